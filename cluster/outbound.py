"""The outbound-connection guard: every connection the server opens to an address a user
chose (``remote_files`` URLs, cloud storage endpoints, a GCS key's ``token_uri``, webhooks)
goes through :class:`OutboundGuard`.

The rule: a host name is resolved once per connection, every address it resolves to must be
public (not private, loopback, link-local, multicast, reserved, unspecified, shared/CGNAT, a
cloud metadata address, nor an IPv6 form that embeds one of those), unless the operator
allow-listed the host or the address (``CVAT_RAY_OUTBOUND__ALLOWLIST``; the older
``CVAT_RAY_MEDIA__REMOTE_ALLOWLIST`` is read too), and the connection goes to an address that
was checked, so a DNS answer that changes between the check and the connect (DNS rebinding)
cannot reach an internal host. Redirects are followed hop by hop with the same check.

Three ways in:

- :meth:`OutboundGuard.open` is a small synchronous HTTP client (``http.client`` pinned to
  the checked address, redirects followed by hand) for downloads, token requests and
  webhooks.
- :class:`GuardedHTTPTransport` (:meth:`OutboundGuard.httpx_client`): an httpx connection
  pool whose network backend resolves, checks and pins every connection it opens (redirect
  hops included); the webhook sender's client.
- :class:`AioHooks` plugs the same check into aiohttp, which the cloud SDKs use (s3fs through
  aiobotocore's ``connector_args``, adlfs through azure-core's aiohttp transport, gcsfs
  through its session): a resolver that refuses names resolving to forbidden addresses, and
  a socket factory that refuses to open a socket to one (IP literals never reach a resolver).
  Both run on every new connection, so the check happens at connect time, not once when a
  storage is created, and every redirect hop is a connection like any other.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult

from cvat_ray.cluster.errors import InvalidInput

if TYPE_CHECKING:
    from cvat_ray.cluster.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Resolves a host name to address strings (``socket.getaddrinfo`` by default; tests inject
# their own to play DNS rebinding without touching the system's resolver).
Resolver = Callable[[str, int], Sequence[str]]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Refused even though Python's ``ipaddress`` may call them global: cloud metadata and
# platform addresses that answer from inside the host's network.
_ALWAYS_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",  # IETF protocol assignments (Oracle Cloud metadata: 192.0.0.192)
        "168.63.129.16/32",  # Azure WireServer / platform DNS
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class OutboundRefused(InvalidInput):
    """A connection the outbound guard refused (400): an address that is not public and
    not allow-listed, a scheme other than http(s), a name that does not resolve."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)


class Unresolvable(OutboundRefused):
    """A refusal because the name does not resolve (may change: callers that retry, such as
    the webhook sender, retry it; a refused address they do not)."""


@dataclass(frozen=True)
class AllowList:
    """Hosts (compared case-insensitively) and networks the operator lets through."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (i.strip() for i in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(_normal_host(item))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str | None, address: IPAddress) -> bool:
        if host is not None and _normal_host(host) in self.hosts:
            return True
        return any(address in n for n in self.networks)


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where a
    connection to it may really go."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in n for n in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is an ordinary Internet address a user may make the server call."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    if any(address in n for n in _ALWAYS_BLOCKED):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``, all allowed) and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def request_target(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class OutboundGuard:
    """The check, with the operator's allow-list and a resolver."""

    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver = system_resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundGuard:
        return cls(AllowList.parse(settings.outbound_allowlist))

    # --- the check -------------------------------------------------------------------------

    def permits(self, host: str | None, address: IPAddress) -> bool:
        return is_public(address) or self.allow.allows(host, address)

    def _refuse(self, host: str, field: str | None) -> OutboundRefused:
        # The resolved address is not shown: it would map internal names for the caller.
        return OutboundRefused(
            f"{host} is a private, loopback, link-local or metadata address; the server "
            "connects to such addresses only when its operator allow-lists them.",
            field=field,
        )

    def _check_name(self, name: str, field: str | None) -> None:
        """What a name alone says: ``localhost`` and ``*.localhost`` are loopback (RFC 6761)."""
        normal = _normal_host(name)
        if normal == "localhost" or normal.endswith(".localhost"):
            if not self.allow.allows(name, ipaddress.ip_address("127.0.0.1")):
                raise self._refuse(name, field)

    def resolve(self, host: str, port: int, *, field: str | None = None) -> list[IPAddress]:
        """Every address of ``host``, each checked; raises :class:`OutboundRefused`."""
        name = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            self._check_name(name, field)
            try:
                answers = self.resolver(name, port)
                addresses = [ipaddress.ip_address(a) for a in answers]
            except (OSError, UnicodeError, ValueError) as exc:
                raise Unresolvable(f"{host} cannot be resolved.", field=field) from exc
            if not addresses:
                raise Unresolvable(f"{host} cannot be resolved.", field=field)
        for address in addresses:
            if not self.permits(name, address):
                raise self._refuse(host, field)
        return addresses

    def check_url_form(self, url: str, *, field: str | None = None) -> tuple[str, str, int]:
        """(scheme, host, port) of an http(s) URL, without any network access; an IP literal
        is checked here already."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"{url}: not a valid URL.", field=field) from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise OutboundRefused(f"{url}: only http and https URLs are supported.", field=field)
        host = parts.hostname
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None:
            self._check_name(host, field)
        elif not self.permits(host, literal):
            raise self._refuse(host, field)
        return scheme, host, port or (443 if scheme == "https" else 80)

    def check_url(self, url: str, *, field: str | None = None) -> Target:
        """Resolve and check ``url``'s host; raises :class:`OutboundRefused`."""
        scheme, host, port = self.check_url_form(url, field=field)
        return Target(url, scheme, host, port, tuple(self.resolve(host, port, field=field)))

    # --- synchronous HTTP ---------------------------------------------------------------------

    def open(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Send one request to ``url`` through the guard and return the response (read it,
        then close it). Redirects are followed by hand, each hop checked; a redirect to
        another origin drops ``Authorization`` and ``Cookie``."""
        current = url
        sent = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            target = self.check_url(current)
            conn = _connect(target, timeout)
            try:
                conn.request(method, target.request_target, body=body, headers=sent)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise OutboundRefused(
                    f"{target.host} cannot be reached ({type(exc).__name__})."
                ) from exc
            location = response.getheader("Location")
            if follow_redirects and response.status in _REDIRECTS and location:
                conn.close()
                following = urljoin(current, location)
                if _origin(following) != _origin(current):
                    sent = {
                        k: v
                        for k, v in sent.items()
                        if k.lower() not in ("authorization", "cookie")
                    }
                if response.status in (301, 302, 303) and method != "HEAD":
                    method, body = "GET", None
                current = following
                continue
            return Response(response.status, response.headers, current, response, conn)
        raise OutboundRefused(f"{url}: too many redirects.")

    # --- aiohttp (the cloud SDKs) ------------------------------------------------------------

    def aio_hooks(self) -> AioHooks:
        return AioHooks(self)

    # --- httpx (the webhook sender) ----------------------------------------------------------

    def httpx_client(
        self,
        *,
        verify: bool = True,
        timeout: httpx.Timeout | float = 10.0,
        max_connections: int = 100,
        follow_redirects: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Client:
        """A pooled httpx client whose every connection goes through this guard (see
        :class:`GuardedHTTPTransport`). Environment proxies are ignored (``trust_env`` off):
        a proxy would connect for us, unchecked. Redirects may be followed: each hop is a
        connection like any other, checked when it is opened."""
        transport = GuardedHTTPTransport(
            self,
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        return httpx.Client(
            transport=transport,
            trust_env=False,
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=MAX_REDIRECTS,
            headers=dict(headers or {}),
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an already checked address (the Host header keeps the name)."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = target.addresses

    def _open_socket(self) -> socket.socket:
        error: OSError | None = None
        for address in self._addresses:
            try:
                return socket.create_connection((str(address), self.port), self.timeout)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedHTTPS(_PinnedHTTP):
    default_port = http.client.HTTPS_PORT

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target, timeout)
        self._context = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._open_socket(), server_hostname=self.host)


def _connect(target: Target, timeout: float) -> _PinnedHTTP:
    cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    return cls(target, timeout)


class Response:
    """A response of :meth:`OutboundGuard.open`: status, headers, the final URL, and the
    body to read (in blocks, or capped with :meth:`read_all`)."""

    def __init__(
        self,
        status: int,
        headers: Message,
        url: str,
        response: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
    ) -> None:
        self.status = status
        self.headers = headers
        self.url = url
        self._response = response
        self._conn = conn

    def header(self, name: str) -> str | None:
        return self._response.getheader(name)

    def blocks(self, size: int = 1 << 20) -> Iterator[bytes]:
        try:
            while block := self._response.read(size):
                yield block
        except (OSError, http.client.HTTPException) as exc:
            raise OutboundRefused(
                f"{self.url}: the connection broke ({type(exc).__name__})."
            ) from exc

    def read_all(self, limit: int) -> bytes:
        out = bytearray()
        for block in self.blocks():
            out += block
            if len(out) > limit:
                raise OutboundRefused(f"{self.url}: the answer is larger than {limit} bytes.")
        return bytes(out)

    def close(self) -> None:
        self._response.close()
        self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- httpx transport --------------------------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend with the guard's check: the host of every new connection is
    resolved once, checked, and the socket opened to a checked address (TLS still verifies
    the certificate against the URL's host name, which httpcore passes on its own)."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._guard.resolve(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("Unix sockets are not outbound connections.")


class GuardedHTTPTransport(httpx.HTTPTransport):
    """An httpx transport (a pool of keep-alive connections) that opens every connection
    through :class:`OutboundGuard`; nothing else builds one. A refusal is raised as
    :class:`OutboundRefused` (:class:`Unresolvable` for a name that does not resolve)."""

    def __init__(
        self,
        guard: OutboundGuard,
        *,
        verify: bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100),
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )


# --- aiohttp hooks ----------------------------------------------------------------------------


class _GuardResolver(AbstractResolver):
    def __init__(self, hooks: AioHooks) -> None:
        self._hooks = hooks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        guard = self._hooks.guard
        addresses = await loop.run_in_executor(None, guard.resolve, host, port)
        results: list[ResolveResult] = []
        for address in addresses:
            addr_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, addr_family):
                continue
            if not is_public(address):
                # allowed through a host entry: let the socket factory open it
                self._hooks.approved.add(address)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=addr_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OutboundRefused(f"{host} cannot be resolved.")
        return results

    async def close(self) -> None:
        return None


@dataclass
class AioHooks:
    """The guard as aiohttp hooks for one client: its resolver, its socket factory (which
    checks the address of every socket the client opens), and a connector using both."""

    guard: OutboundGuard
    # private addresses a resolver answer let through because their host is allow-listed
    approved: set[IPAddress] = field(default_factory=set)

    def resolver(self) -> AbstractResolver:
        return _GuardResolver(self)

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0])
        if address not in self.approved and not self.guard.permits(None, address):
            raise self.guard._refuse(str(address), None)
        return socket.socket(family, type_, proto)

    def connector_args(self) -> dict[str, Any]:
        """For aiobotocore's ``AioConfig(connector_args=...)`` (s3fs ``config_kwargs``)."""
        return {"resolver": self.resolver(), "socket_factory": self.socket_factory}

    def connector(self, **kwargs: Any) -> TCPConnector:
        """A guarded aiohttp connector; build it inside the event loop that will use it."""
        return TCPConnector(
            resolver=self.resolver(),
            socket_factory=self.socket_factory,
            # one address at a time, so a refusal surfaces as itself
            happy_eyeballs_delay=None,
            **kwargs,
        )


def refusal_in(exc: BaseException) -> OutboundRefused | None:
    """The guard's refusal behind an SDK's exception (SDKs wrap what a connector raises)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundRefused):
            return current
        stack.extend((current.__cause__, current.__context__))
        # botocore keeps the original error in its kwargs
        wrapped = getattr(current, "kwargs", None)
        if isinstance(wrapped, dict) and isinstance(wrapped.get("error"), BaseException):
            stack.append(wrapped["error"])
        for attr in ("inner_exception", "exc_value", "error"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
    return None

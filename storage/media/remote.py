"""Fetching ``remote_files`` and checking outbound addresses (the SSRF guard).

A URL is fetched only over http(s), from an address that is public, unless the operator
allow-listed it (``CVAT_RAY_MEDIA__REMOTE_ALLOWLIST``). The name is resolved once, every
address it resolves to is checked, and the connection goes to the checked address (so a DNS
answer that changes between the check and the connect cannot reach an internal host).
Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

from cvat_ray.cluster.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_REDIRECTS = 5
_BLOCK = 1 << 20


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

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
                hosts.add(item.lower())
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host.lower() in self.hosts or any(address in n for n in self.networks)


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _is_public(address.ipv4_mapped)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def resolve_checked(host: str, port: int, allow: AllowList) -> IPAddress:
    """The address to connect to; raises InvalidInput when any address of ``host`` is
    private, loopback or link-local and not allow-listed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"Cannot resolve {host}: {exc.strerror or exc}.") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise InvalidInput(f"Cannot resolve {host}.")
    for address in addresses:
        if not _is_public(address) and not allow.allows(host, address):
            raise InvalidInput(
                f"{host} resolves to {address}, a private, loopback or link-local address; "
                "such addresses are refused unless the server allow-lists them."
            )
    return addresses[0]


def check_url(url: str, allow: AllowList) -> None:
    """Raise InvalidInput unless ``url`` is http(s) to an allowed address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{url}: only http and https URLs are supported.")
    resolve_checked(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allow)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _safe_name(url: str, disposition: str | None) -> str:
    name = ""
    if disposition:
        match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
        if match:
            name = unquote(match.group(1))
    if not name:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .") or "file"
    return name[:200]


def download(url: str, dest_dir: Path, *, allow: AllowList, timeout: float, max_bytes: int) -> Path:
    """Fetch ``url`` into ``dest_dir`` (name from the URL or Content-Disposition, made
    unique); at most ``max_bytes``. Raises InvalidInput with a readable reason."""
    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"{url}: only http and https URLs are supported.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve_checked(parts.hostname, port, allow)
        conn_cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = conn_cls(parts.hostname, port, str(address), timeout)
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn.request("GET", target, headers={"User-Agent": "cvat-ray", "Accept": "*/*"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise InvalidInput(f"{url}: a redirect without a Location.")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise InvalidInput(f"{url}: the server answered {response.status}.")
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InvalidInput(f"{url}: the file is larger than {max_bytes} bytes.")
            dest = _unique(dest_dir, _safe_name(current, response.getheader("Content-Disposition")))
            _save(response, dest, max_bytes, url)
            return dest
        except (OSError, http.client.HTTPException) as exc:
            raise InvalidInput(f"{url}: cannot be downloaded ({exc}).") from exc
        finally:
            conn.close()
    raise InvalidInput(f"{url}: too many redirects.")


def _save(response: http.client.HTTPResponse, dest: Path, max_bytes: int, url: str) -> None:
    size = 0
    with dest.open("wb") as out:
        while block := response.read(_BLOCK):
            size += len(block)
            if size > max_bytes:
                raise InvalidInput(f"{url}: the file is larger than {max_bytes} bytes.")
            out.write(block)


def _unique(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    candidate = directory / name
    stem, suffix = candidate.stem, candidate.suffix
    n = 1
    while candidate.exists():
        candidate = directory / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


def hosts_of(urls: Iterable[str]) -> set[str]:
    return {urlsplit(u).hostname or "" for u in urls}

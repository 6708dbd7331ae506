"""The outbound guard: which addresses pass, the allow-list, resolving once and pinning the
connection (DNS rebinding played with an injected resolver), redirects checked hop by hop, in
the synchronous client and in the aiohttp hooks the cloud SDKs use.

Two loopback HTTP servers stand in for "allowed" (127.0.0.1, allow-listed) and "internal"
(127.0.0.2, not allow-listed); the internal one records every request it gets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aiohttp
import pytest

from cvat_ray.cluster.outbound import AllowList, OutboundGuard, OutboundRefused, is_public
from cvat_ray.cluster.settings import Settings
from tests.http_servers import Server, allowed, internal

__all__ = ["allowed", "internal"]  # fixtures


class FakeDns:
    """A resolver with scripted answers per name (the last answer repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        script = self.answers.get(host)
        if not script:
            raise OSError("no such name")
        return script.pop(0) if len(script) > 1 else script[0]


def _no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} was resolved")


LOOPBACK_ONLY = AllowList.parse("127.0.0.1/32")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",  # AWS, GCP, Azure instance metadata
        "100.64.0.1",  # carrier-grade NAT
        "100.100.100.200",  # Alibaba metadata
        "192.0.0.192",  # Oracle metadata (Python calls it global)
        "168.63.129.16",  # Azure WireServer (a public address)
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible (deprecated)
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_list() -> None:
    allow = AllowList.parse(" 10.0.0.0/8, MinIO.internal. ,127.0.0.1 ,")
    assert allow.allows("x", ipaddress.ip_address("10.2.3.4"))
    assert allow.allows("minio.internal", ipaddress.ip_address("192.168.1.1"))
    assert allow.allows(None, ipaddress.ip_address("127.0.0.1"))
    assert not allow.allows(None, ipaddress.ip_address("127.0.0.2"))


def test_one_setting_with_its_older_name() -> None:
    settings = Settings()
    settings.outbound.allowlist = "10.0.0.0/8"
    settings.media.remote_allowlist = "127.0.0.1/32"
    guard = OutboundGuard.from_settings(settings)
    assert guard.permits(None, ipaddress.ip_address("10.1.1.1"))
    assert guard.permits(None, ipaddress.ip_address("127.0.0.1"))
    assert not guard.permits(None, ipaddress.ip_address("192.168.0.1"))


def test_every_address_of_a_name_is_checked() -> None:
    dns = FakeDns({"mixed.test": [["93.184.216.34", "10.0.0.7"]], "ok.test": [["93.184.216.34"]]})
    guard = OutboundGuard(resolver=dns)
    with pytest.raises(OutboundRefused, match=r"mixed\.test is a private") as caught:
        guard.resolve("mixed.test", 80)
    assert "10.0.0.7" not in caught.value.detail  # internal answers are not shown
    assert [str(a) for a in guard.resolve("ok.test", 80)] == ["93.184.216.34"]
    with pytest.raises(OutboundRefused, match="cannot be resolved"):
        guard.resolve("nowhere.test", 80)


def test_url_form_needs_no_network() -> None:
    guard = OutboundGuard(resolver=_no_dns)
    assert guard.check_url_form("https://files.example.com/a.jpg") == (
        "https",
        "files.example.com",
        443,
    )
    for url in (
        "http://127.0.0.1/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://localhost:8080/x",
        "http://metadata.localhost/x",
    ):
        with pytest.raises(OutboundRefused, match="private"):
            guard.check_url_form(url)
    for url in (
        "file:///etc/passwd",
        "gopher://x/",
        "ftp://x/y.jpg",
        "http:///x",
        "http://x:99999/",
    ):
        with pytest.raises(OutboundRefused):
            guard.check_url_form(url)


def test_redirects_are_followed_by_hand(allowed: Server, internal: Server) -> None:
    guard = OutboundGuard(LOOPBACK_ONLY)
    with guard.open("GET", f"{allowed.url}/redirect?to=/ok", timeout=5) as response:
        assert response.status == 200 and response.url == f"{allowed.url}/ok"
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.2 is a private"):
        guard.open("GET", f"{allowed.url}/redirect?to={internal.url}/secret", timeout=5)
    assert internal.hits == []
    assert [h["path"] for h in allowed.hits] == ["/redirect", "/ok", "/redirect"]


def test_a_redirect_to_another_origin_drops_credentials(allowed: Server) -> None:
    dns = FakeDns({"a.test": [["127.0.0.1"]], "b.test": [["127.0.0.1"]]})
    guard = OutboundGuard(LOOPBACK_ONLY, resolver=dns)
    a, b = f"http://a.test:{allowed.port}", f"http://b.test:{allowed.port}"
    headers = {"Authorization": "Bearer s3cr3t"}
    with guard.open("GET", f"{a}/redirect?to={a}/same", timeout=5, headers=headers) as response:
        assert response.read_all(100) == b"ok:Bearer s3cr3t"
    with guard.open("GET", f"{a}/redirect?to={b}/other", timeout=5, headers=headers) as response:
        assert response.read_all(100) == b"ok:"
    assert allowed.hits[-1]["host"] == f"b.test:{allowed.port}"


def test_dns_rebinding_the_checked_address_is_the_one_connected(
    allowed: Server, internal: Server
) -> None:
    """The name answers an allowed address, then an internal one: the connection goes to
    the address that was checked, and the next connection is checked again."""
    dns = FakeDns({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    guard = OutboundGuard(LOOPBACK_ONLY, resolver=dns)
    with guard.open("GET", f"http://rebind.test:{allowed.port}/ok", timeout=5) as response:
        assert response.status == 200
    assert dns.calls == ["rebind.test"]  # resolved once for the check and the connection
    with pytest.raises(OutboundRefused):
        guard.open("GET", f"http://rebind.test:{internal.port}/ok", timeout=5)
    assert internal.hits == []


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_aiohttp_hooks_check_every_connection(allowed: Server, internal: Server) -> None:
    dns = FakeDns(
        {
            "trusted.test": [["127.0.0.2"]],  # allowed by name, though internal
            "rebind.test": [["127.0.0.1"], ["127.0.0.2"]],
        }
    )
    guard = OutboundGuard(AllowList.parse("127.0.0.1/32,trusted.test"), resolver=dns)
    hooks = guard.aio_hooks()
    async with aiohttp.ClientSession(connector=hooks.connector(force_close=True)) as session:
        assert (await _get(session, f"{allowed.url}/ok"))[0] == 200
        # an IP literal never reaches a resolver: the socket factory refuses it
        with pytest.raises(OutboundRefused):
            await _get(session, f"{internal.url}/literal")
        # a redirect is a new connection, checked like the first
        with pytest.raises(OutboundRefused):
            await _get(session, f"{allowed.url}/redirect?to={internal.url}/hop")
        # rebinding: each new connection resolves and checks again
        assert (await _get(session, f"http://rebind.test:{allowed.port}/ok"))[0] == 200
        with pytest.raises(OutboundRefused):
            await _get(session, f"http://rebind.test:{internal.port}/ok")
        assert internal.hits == []
        # a host the operator allow-listed by name may resolve to an internal address
        assert (await _get(session, f"http://trusted.test:{internal.port}/ok"))[0] == 200
    assert [h["path"] for h in internal.hits] == ["/ok"]

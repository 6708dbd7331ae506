"""The outbound guard inside the cloud SDKs, against the storage emulators, with an injected
resolver (DNS rebinding and names that resolve to loopback, without touching the system's
resolver): the SDKs' own connections are checked when they connect, not only when a storage
is created. Also the bounded cache of filesystem clients."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.outbound import AllowList, OutboundGuard, OutboundRefused
from cvat_ray.storage.media import cloud, cloud_listing
from cvat_ray.storage.media.cloud import CloudAccess
from cvat_ray.storage.media.cloud_listing import iter_keys, list_page
from tests.cloud_servers import AZURITE_KEY, StorageServer, put_object
from tests.factories import service_account_key
from tests.http_servers import Server, allowed, internal

__all__ = ["allowed", "internal"]  # fixtures


class Dns:
    """Scripted answers per name; the last one repeats."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {k.replace("_", "."): v for k, v in answers.items()}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        script = self.answers[host]
        return [script.pop(0) if len(script) > 1 else script[0]]


def _s3(server: StorageServer, endpoint: str, guard: OutboundGuard) -> CloudAccess:
    return CloudAccess(
        provider="AWS_S3_BUCKET",
        resource=server.bucket,
        credentials_type="KEY_SECRET_KEY_PAIR",
        attributes={"endpoint_url": endpoint, "region": "us-east-1"},
        secrets={"key": "testing", "secret_key": "testing"},
        guard=guard,
    )


def test_s3_dns_rebinding_is_refused_at_connect_time(s3_server: StorageServer) -> None:
    # (a name without dots: moto reads a dotted host as <bucket>.<endpoint>)
    port = s3_server.endpoint.rsplit(":", 1)[1]
    # public when the storage is checked, loopback when the SDK connects
    dns = Dns(s3rebind=["93.184.216.34", "127.0.0.1"])
    access = _s3(s3_server, f"http://s3rebind:{port}", OutboundGuard(resolver=dns))
    cloud.check_endpoints(access)
    with pytest.raises(OutboundRefused, match="private, loopback"):
        cloud_listing.status(access, 5)
    # checked once for the storage, then again on each of the SDK's (retried) connections
    assert len(dns.calls) >= 2 and set(dns.calls) == {"s3rebind"}
    # the same name allow-listed: the SDK's connection really goes through the guard
    trusted = OutboundGuard(AllowList.parse("s3rebind"), resolver=Dns(s3rebind=["127.0.0.1"]))
    access = _s3(s3_server, f"http://s3rebind:{port}", trusted)
    assert cloud_listing.status(access, 5) == "AVAILABLE"


def test_s3_ip_literal_endpoint_is_refused_by_the_sdk(s3_server: StorageServer) -> None:
    access = _s3(s3_server, s3_server.endpoint, OutboundGuard())
    with pytest.raises(OutboundRefused):
        cloud_listing.status(access, 5)
    with pytest.raises(OutboundRefused):
        cloud.read(access, "anything.jpg", 5)


def _azure(connection_string: str, guard: OutboundGuard) -> CloudAccess:
    return CloudAccess(
        provider="AZURE_CONTAINER",
        resource="media",
        credentials_type="CONNECTION_STRING",
        secrets={"connection_string": connection_string},
        guard=guard,
    )


def test_azure_endpoint_suffix_is_checked(azure_server: StorageServer) -> None:
    """No BlobEndpoint: Azure connects to ``<account>.blob.<EndpointSuffix>``."""
    port = azure_server.endpoint.split(":")[2].split("/")[0]
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};EndpointSuffix=evil.test:{port}"
    )
    dns = Dns(devstoreaccount1_blob_evil_test=["127.0.0.1"])
    access = _azure(conn, OutboundGuard(resolver=dns))
    assert cloud.azure_endpoints(conn) == [f"http://devstoreaccount1.blob.evil.test:{port}"]
    with pytest.raises(OutboundRefused):
        cloud.check_endpoints(access)
    with pytest.raises(OutboundRefused):
        cloud_listing.status(access, 5)
    assert len(dns.calls) >= 2 and set(dns.calls) == {"devstoreaccount1.blob.evil.test"}


def test_azure_account_names_cannot_carry_a_host(azure_server: StorageServer) -> None:
    access = CloudAccess(
        provider="AZURE_CONTAINER",
        resource="media",
        credentials_type="ACCOUNT_NAME_TOKEN_PAIR",
        secrets={"account_name": "127.0.0.1:10000/x", "session_token": "sv=1"},
    )
    with pytest.raises(InvalidInput, match="account name"):
        cloud.check_form(access)


def test_gcs_token_requests_are_checked_when_they_are_made(
    gcs_server: StorageServer, internal: Server
) -> None:
    """The key's token_uri resolves to a public address when checked and to an internal one
    when the token is fetched: refused, and the internal server sees nothing."""
    dns = Dns(tokens_test=["93.184.216.34", "127.0.0.2"])
    guard = OutboundGuard(AllowList.parse("127.0.0.1/32"), resolver=dns)
    access = CloudAccess(
        provider="GOOGLE_CLOUD_STORAGE",
        resource=gcs_server.bucket,
        credentials_type="KEY_FILE_PATH",
        attributes={"endpoint_url": gcs_server.endpoint, "project_id": "test"},
        secrets={"key_file": service_account_key(f"http://tokens.test:{internal.port}/token")},
        guard=guard,
    )
    cloud.check_endpoints(access)
    with pytest.raises(OutboundRefused):
        cloud_listing.status(access, 5)
    assert internal.hits == []


def test_listing_is_paged_and_capped(s3_server: StorageServer) -> None:
    prefix = uuid.uuid4().hex[:8]
    for i in range(5):
        put_object(s3_server, f"{prefix}/{i}.bin", b"x")
    access = _s3(s3_server, s3_server.endpoint, OutboundGuard(AllowList.parse("127.0.0.1/32")))
    page = list_page(access, f"{prefix}/", recursive=True, limit=2, token=None, timeout=5)
    assert [e.key for e in page.entries] == [f"{prefix}/0.bin", f"{prefix}/1.bin"]
    assert page.next_token
    assert list(iter_keys(access, f"{prefix}/", cap=3, timeout=5)) == [
        f"{prefix}/{i}.bin" for i in range(3)
    ]
    assert len(list(iter_keys(access, f"{prefix}/", cap=100, timeout=5))) == 5


def test_filesystem_cache_is_bounded_and_keyed_by_storage() -> None:
    cloud._fs_cache.clear()

    def access(storage_id: int, version: str) -> CloudAccess:
        return CloudAccess(
            provider="AWS_S3_BUCKET",
            resource="b",
            credentials_type="ANONYMOUS_ACCESS",
            attributes={"endpoint_url": "https://s3.example.com"},
            storage_id=storage_id,
            version=version,
        )

    first = cloud.filesystem(access(1, "v1"), 5)
    assert cloud.filesystem(access(1, "v1"), 5) is first
    second = cloud.filesystem(access(1, "v2"), 5)  # a PATCH: replaced
    assert second is not first and cloud.cached_clients() == 1
    for i in range(2, cloud.FS_CACHE_SIZE + 5):
        cloud.filesystem(access(i, "v1"), 5)
    assert cloud.cached_clients() == cloud.FS_CACHE_SIZE
    assert 1 not in cloud._fs_cache  # the least recently used went first
    cloud.forget(cloud.FS_CACHE_SIZE + 4)
    assert cloud.cached_clients() == cloud.FS_CACHE_SIZE - 1
    cloud._fs_cache.clear()

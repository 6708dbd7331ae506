"""Cloud storages on fsspec: S3 (s3fs), Azure Blob (adlfs), Google Cloud Storage (gcsfs),
and the encryption of their credentials at rest.

``CloudAccess`` is what a worker needs to reach a bucket: provider, bucket, decrypted
credentials and attributes. It lives in memory only; its repr never shows the secrets.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cryptography.fernet import Fernet, InvalidToken

from cvat_ray.cluster.errors import InvalidInput, Unavailable
from cvat_ray.storage.media.remote import AllowList, check_url

PROVIDERS = ("AWS_S3_BUCKET", "AZURE_CONTAINER", "GOOGLE_CLOUD_STORAGE")
CREDENTIALS_TYPES = (
    "KEY_SECRET_KEY_PAIR",
    "ACCOUNT_NAME_TOKEN_PAIR",
    "KEY_FILE_PATH",
    "ANONYMOUS_ACCESS",
    "CONNECTION_STRING",
)
# Which credentials types each provider takes (as CVAT).
ALLOWED_CREDENTIALS = {
    "AWS_S3_BUCKET": {"KEY_SECRET_KEY_PAIR", "ANONYMOUS_ACCESS"},
    "AZURE_CONTAINER": {"ACCOUNT_NAME_TOKEN_PAIR", "CONNECTION_STRING", "ANONYMOUS_ACCESS"},
    "GOOGLE_CLOUD_STORAGE": {"KEY_FILE_PATH", "ANONYMOUS_ACCESS"},
}
SECRET_FIELDS = (
    "key",
    "secret_key",
    "session_token",
    "account_name",
    "connection_string",
    "key_file",
)


class Cipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) with the server's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, configured: str | None, key_path: Path) -> Cipher:
        if configured:
            return cls(configured.encode())
        return cls(_key_file(key_path))

    def encrypt(self, secrets: dict[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(secrets).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        if not token:
            return {}
        try:
            value: dict[str, str] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise Unavailable(
                "The cloud storage credentials cannot be decrypted with the server's key."
            ) from exc
        return value


_key_lock = threading.Lock()


def _key_file(path: Path) -> bytes:
    with _key_lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_bytes().strip()
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return path.read_bytes().strip()


def parse_attributes(text: str) -> dict[str, str]:
    """CVAT's ``specific_attributes``: ``region=eu-west-1&endpoint_url=...&prefix=...``."""
    return dict(parse_qsl(text or "", keep_blank_values=False))


@dataclass(frozen=True)
class CloudAccess:
    provider: str
    resource: str
    credentials_type: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False, hash=False, compare=False)
    # Cache key of the filesystem object (cloud storage id and its update time).
    version: str = ""

    def path(self, key: str) -> str:
        return f"{self.resource}/{key.lstrip('/')}"

    def relative(self, full: str) -> str:
        prefix = self.resource + "/"
        return full[len(prefix) :] if full.startswith(prefix) else full


def connection_endpoint(connection_string: str) -> str | None:
    """The ``BlobEndpoint`` of an Azure connection string (None: Azure's public one)."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return parts.get("BlobEndpoint")


def check_endpoint(
    attributes: dict[str, str], allow: AllowList, connection_string: str = ""
) -> None:
    """The SSRF guard for custom endpoints (S3-compatible servers, emulators)."""
    endpoint = attributes.get("endpoint_url")
    if endpoint:
        check_url(endpoint, allow)
    blob_endpoint = connection_endpoint(connection_string) if connection_string else None
    if blob_endpoint:
        check_url(blob_endpoint, allow)


_fs_cache: dict[tuple[str, str, str], Any] = {}
_fs_lock = threading.Lock()


def filesystem(access: CloudAccess, timeout: float) -> Any:
    """The fsspec filesystem for the access (cached per cloud storage version)."""
    cache_key = (access.provider, access.resource, access.version)
    with _fs_lock:
        fs = _fs_cache.get(cache_key)
        if fs is None or not access.version:
            fs = _make_fs(access, timeout)
            if access.version:
                _fs_cache[cache_key] = fs
        return fs


def _make_fs(access: CloudAccess, timeout: float) -> Any:
    attrs = access.attributes
    secrets = access.secrets
    endpoint = attrs.get("endpoint_url")
    if access.provider == "AWS_S3_BUCKET":
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        if attrs.get("region"):
            client_kwargs["region_name"] = attrs["region"]
        anon = access.credentials_type == "ANONYMOUS_ACCESS"
        return s3fs.S3FileSystem(
            anon=anon,
            key=None if anon else secrets.get("key"),
            secret=None if anon else secrets.get("secret_key"),
            token=secrets.get("session_token") or None,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": timeout,
                "read_timeout": timeout,
                "retries": {"max_attempts": 2},
            },
            skip_instance_cache=True,
        )
    if access.provider == "AZURE_CONTAINER":
        import adlfs

        kwargs: dict[str, Any] = {"skip_instance_cache": True}
        if access.credentials_type == "CONNECTION_STRING":
            kwargs["connection_string"] = secrets.get("connection_string")
        else:
            kwargs["account_name"] = secrets.get("account_name") or attrs.get("account_name")
            if access.credentials_type == "ACCOUNT_NAME_TOKEN_PAIR":
                kwargs["sas_token"] = secrets.get("session_token")
            else:
                kwargs["anon"] = True
        if endpoint:
            kwargs["account_host"] = endpoint
        return adlfs.AzureBlobFileSystem(**kwargs)
    if access.provider == "GOOGLE_CLOUD_STORAGE":
        # The core class: gcsfs's default "extended" one probes Google's gRPC control plane
        # for the bucket type first (a minute of timeouts against anything but Google).
        from gcsfs.core import GCSFileSystem

        token: Any = "anon"
        if access.credentials_type == "KEY_FILE_PATH":
            try:
                token = json.loads(secrets.get("key_file") or "")
            except ValueError as exc:
                raise InvalidInput("The key file is not a JSON service account key.") from exc
        return GCSFileSystem(
            token=token,
            project=attrs.get("project_id") or "cvat-ray",
            endpoint_url=endpoint,
            timeout=timeout,
            skip_instance_cache=True,
        )
    raise InvalidInput(f"Unknown provider {access.provider}.")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def classify_error(exc: BaseException) -> str:
    """CVAT's storage status names: AVAILABLE, NOT_FOUND or FORBIDDEN."""
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(exc, PermissionError):
        return "FORBIDDEN"
    text = _describe(exc).lower()
    if "not found" in text or "nosuchbucket" in text or "404" in text:
        return "NOT_FOUND"
    return "FORBIDDEN"


def status(access: CloudAccess, timeout: float) -> str:
    try:
        fs = filesystem(access, timeout)
        fs.ls(access.resource, detail=False)
    except Exception as exc:  # any failure to list is reported, not raised
        return classify_error(exc)
    return "AVAILABLE"


def listing(access: CloudAccess, prefix: str, timeout: float) -> Iterator[tuple[str, str]]:
    """(name, "REG"|"DIR") entries directly under ``prefix`` (a directory path)."""
    fs = filesystem(access, timeout)
    base = access.path(prefix.strip("/")).rstrip("/")
    try:
        entries = fs.ls(base, detail=True, refresh=True)
    except FileNotFoundError:
        return
    except Exception as exc:
        raise Unavailable(f"The cloud storage cannot be listed: {_describe(exc)}") from exc
    for entry in entries:
        name = access.relative(entry["name"]).rstrip("/")
        if prefix.strip("/") and not name.startswith(prefix.strip("/")):
            continue
        short = name.rsplit("/", 1)[-1]
        if not short:
            continue
        yield short, "DIR" if entry.get("type") == "directory" else "REG"


def walk_files(access: CloudAccess, prefix: str, timeout: float) -> list[str]:
    """Every object key under ``prefix`` (a "directory" path), sorted."""
    fs = filesystem(access, timeout)
    base = access.path(prefix.strip("/")).rstrip("/")
    try:
        found = fs.find(base, detail=False)
    except Exception as exc:
        raise InvalidInput(f"The cloud storage cannot be listed: {_describe(exc)}") from exc
    return sorted(access.relative(p) for p in found)


def read(access: CloudAccess, key: str, timeout: float) -> bytes:
    fs = filesystem(access, timeout)
    try:
        data: bytes = fs.cat_file(access.path(key))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{key}: not found in the cloud storage.") from exc
    except Exception as exc:
        raise Unavailable(
            f"{key}: cannot be read from the cloud storage ({_describe(exc)})."
        ) from exc
    return data


def read_many(access: CloudAccess, keys: list[str], timeout: float) -> list[bytes]:
    """Several objects at once (fsspec fetches them concurrently)."""
    if not keys:
        return []
    fs = filesystem(access, timeout)
    paths = [access.path(k) for k in keys]
    try:
        found = fs.cat(paths, on_error="return")
    except Exception as exc:
        raise Unavailable(f"The cloud storage cannot be read ({_describe(exc)}).") from exc
    out: list[bytes] = []
    for key, path in zip(keys, paths, strict=True):
        value = found.get(path)
        if isinstance(value, FileNotFoundError) or value is None:
            raise InvalidInput(f"{key}: not found in the cloud storage.")
        if isinstance(value, BaseException):
            raise Unavailable(f"{key}: cannot be read from the cloud storage ({_describe(value)}).")
        out.append(value)
    return out


def open_file(access: CloudAccess, key: str, timeout: float) -> Any:
    """A seekable file object (ranged reads), for video containers."""
    return filesystem(access, timeout).open(access.path(key), "rb", block_size=4 << 20)

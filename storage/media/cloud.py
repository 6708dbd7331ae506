"""Cloud storages on fsspec: S3 (s3fs), Azure Blob (adlfs), Google Cloud Storage (gcsfs),
and the encryption of their credentials at rest.

``CloudAccess`` is what a worker needs to reach a bucket: provider, bucket, decrypted
credentials, attributes and the outbound guard every connection goes through. It lives in
memory only; its repr never shows the secrets.

What a provider says when a call fails is logged here and never shown to clients (it can
name internal hosts, accounts or request ids): callers get a fixed message, or the guard's
own refusal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cryptography.fernet import Fernet, InvalidToken

from cvat_ray.cluster.errors import AppError, InvalidInput, Unavailable
from cvat_ray.cluster.outbound import OutboundGuard, refusal_in

logger = logging.getLogger("cvat_ray.cloud")

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
# Azure storage account names: 3-24 lowercase letters and digits (they become a host name).
_AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
# Filesystem clients kept per process (one per storage, the most recently used).
FS_CACHE_SIZE = 16


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


# Reads a storage's decrypted credentials in this process, by storage id: registered by code
# that can reach the database (the pipeline stages of whole-task runs). An access that crossed
# a process boundary carries none (see :meth:`CloudAccess.__reduce__`) and asks this.
secret_loader: Callable[[int], dict[str, str]] | None = None


@dataclass(frozen=True)
class CloudAccess:
    """How to reach one storage. ``secrets`` never leave the process: pickled (a Ray
    argument, an object in Ray's store, which the dashboard and spilled files could show),
    an access is *sealed* and the process that unpickles it reads the credentials itself
    (:data:`secret_loader`)."""

    provider: str
    resource: str
    credentials_type: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False, hash=False, compare=False)
    # The filesystem cache keeps one client per storage id, rebuilt when the version (the
    # storage's update time) changes; an access without an id is never cached.
    storage_id: int | None = None
    version: str = ""
    guard: OutboundGuard = field(default_factory=OutboundGuard, repr=False, compare=False)
    sealed: bool = field(default=False, compare=False)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.secrets and self.storage_id is None:
            # nothing to read them back by: refuse rather than let them travel
            raise TypeError("a cloud access with credentials and no storage id cannot be pickled")
        return (
            CloudAccess,
            (
                self.provider,
                self.resource,
                self.credentials_type,
                self.attributes,
                {},
                self.storage_id,
                self.version,
                self.guard,
                self.sealed or bool(self.secrets),
            ),
        )

    def credentials(self) -> dict[str, str]:
        """The decrypted credentials: held, or read in this process for a sealed access."""
        if not self.sealed:
            return self.secrets
        if self.storage_id is None or secret_loader is None:
            raise Unavailable("The cloud storage's credentials are not available here.")
        return secret_loader(self.storage_id)

    def path(self, key: str) -> str:
        return f"{self.resource}/{key.lstrip('/')}"

    def relative(self, full: str) -> str:
        prefix = self.resource + "/"
        return full[len(prefix) :] if full.startswith(prefix) else full


# --- where a storage connects -------------------------------------------------------------------


def _connection_settings(connection_string: str) -> dict[str, str]:
    """An Azure connection string's settings, keys upper-cased (Azure reads them
    case-insensitively, so ``blobendpoint=`` means ``BlobEndpoint=``)."""
    settings: dict[str, str] = {}
    for part in connection_string.strip().rstrip(";").split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidInput(
                "The connection string is malformed (expected Key=Value pairs separated by ;).",
                field="connection_string",
            )
        settings[key.strip().upper()] = value.strip()
    return settings


def azure_endpoints(connection_string: str) -> list[str]:
    """The blob endpoint an Azure connection string makes the SDK connect to."""
    settings = _connection_settings(connection_string)
    if settings.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return ["http://127.0.0.1:10000/devstoreaccount1"]
    # (a secondary endpoint is used only after the primary failed; the connect-time guard
    # checks it then)
    out = [settings["BLOBENDPOINT"]] if settings.get("BLOBENDPOINT") else []
    if not out:
        account = settings.get("ACCOUNTNAME", "")
        if not _AZURE_ACCOUNT.fullmatch(account):
            raise InvalidInput(
                "The connection string needs a BlobEndpoint or a valid AccountName.",
                field="connection_string",
            )
        protocol = settings.get("DEFAULTENDPOINTSPROTOCOL", "https")
        suffix = settings.get("ENDPOINTSUFFIX", "core.windows.net")
        out.append(f"{protocol}://{account}.blob.{suffix}")
    return out


def azure_account_url(access: CloudAccess) -> str:
    """The account URL of an Azure storage given by account name (not connection string)."""
    endpoint = access.attributes.get("endpoint_url")
    if endpoint:
        return endpoint
    account = (
        access.credentials().get("account_name") or access.attributes.get("account_name") or ""
    )
    if not _AZURE_ACCOUNT.fullmatch(account):
        raise InvalidInput(
            "An Azure storage account name is 3 to 24 lowercase letters and digits.",
            field="account_name",
        )
    return f"https://{account}.blob.core.windows.net"


def endpoints(access: CloudAccess) -> list[tuple[str, str]]:
    """(field, URL) of every address a user chose for this storage: a custom endpoint, the
    endpoints in an Azure connection string, a GCS key's ``token_uri``."""
    from cvat_ray.storage.media.cloud_clients import service_account_info

    out: list[tuple[str, str]] = []
    if access.attributes.get("endpoint_url"):
        out.append(("specific_attributes", access.attributes["endpoint_url"]))
    if access.provider == "AZURE_CONTAINER":
        if access.credentials_type == "CONNECTION_STRING":
            conn = access.credentials().get("connection_string", "")
            out.extend(("connection_string", url) for url in azure_endpoints(conn))
        elif not access.attributes.get("endpoint_url"):
            out.append(("account_name", azure_account_url(access)))
    if access.provider == "GOOGLE_CLOUD_STORAGE" and access.credentials_type == "KEY_FILE_PATH":
        info = service_account_info(access.credentials().get("key_file", ""))
        out.append(("key_file", info["token_uri"]))
    return out


def check_form(access: CloudAccess) -> None:
    """Everything about the storage's addresses that needs no network: http(s) URLs, IP
    literals allowed, a readable key file. Raises InvalidInput naming the field."""
    for name, url in endpoints(access):
        access.guard.check_url_form(url, field=name)


def check_endpoints(access: CloudAccess) -> None:
    """Resolve and check every address a user chose (network: DNS)."""
    for name, url in endpoints(access):
        access.guard.check_url(url, field=name)


# --- filesystem clients -----------------------------------------------------------------------


_fs_cache: OrderedDict[int, tuple[tuple[Any, ...], Any]] = OrderedDict()
_fs_lock = threading.Lock()


def filesystem(access: CloudAccess, timeout: float) -> Any:
    """The fsspec filesystem for the access: one per storage id, least recently used evicted
    past :data:`FS_CACHE_SIZE`, replaced (not added to) when the storage changes."""
    if access.storage_id is None:
        return _make_fs(access, timeout)
    fingerprint = (access.version, access.guard.allow, timeout)
    with _fs_lock:
        cached = _fs_cache.get(access.storage_id)
        if cached is not None and cached[0] == fingerprint:
            _fs_cache.move_to_end(access.storage_id)
            return cached[1]
    fs = _make_fs(access, timeout)
    with _fs_lock:
        _fs_cache[access.storage_id] = (fingerprint, fs)
        _fs_cache.move_to_end(access.storage_id)
        while len(_fs_cache) > FS_CACHE_SIZE:
            _fs_cache.popitem(last=False)
    return fs


def forget(storage_id: int) -> None:
    """Drop the cached client of a storage (deleted or changed)."""
    with _fs_lock:
        _fs_cache.pop(storage_id, None)


def cached_clients() -> int:
    with _fs_lock:
        return len(_fs_cache)


def _make_fs(access: CloudAccess, timeout: float) -> Any:
    from cvat_ray.storage.media import cloud_clients

    attrs = access.attributes
    secrets = access.credentials()
    hooks = access.guard.aio_hooks()
    endpoint = attrs.get("endpoint_url") or None
    if access.provider == "AWS_S3_BUCKET":
        return cloud_clients.s3_filesystem(
            hooks=hooks,
            endpoint=endpoint,
            region=attrs.get("region") or None,
            anon=access.credentials_type == "ANONYMOUS_ACCESS",
            key=secrets.get("key"),
            secret=secrets.get("secret_key"),
            token=secrets.get("session_token") or None,
            timeout=timeout,
        )
    if access.provider == "AZURE_CONTAINER":
        if access.credentials_type == "CONNECTION_STRING":
            return cloud_clients.azure_filesystem(
                hooks=hooks,
                connection_string=secrets.get("connection_string"),
                account_url=None,
                account_name=None,
                sas_token=None,
                timeout=timeout,
            )
        return cloud_clients.azure_filesystem(
            hooks=hooks,
            connection_string=None,
            account_url=azure_account_url(access),
            account_name=secrets.get("account_name") or attrs.get("account_name"),
            sas_token=secrets.get("session_token")
            if access.credentials_type == "ACCOUNT_NAME_TOKEN_PAIR"
            else None,
            timeout=timeout,
        )
    if access.provider == "GOOGLE_CLOUD_STORAGE":
        return cloud_clients.gcs_filesystem(
            hooks=hooks,
            endpoint=endpoint,
            project=attrs.get("project_id") or "cvat-ray",
            key_file=secrets.get("key_file")
            if access.credentials_type == "KEY_FILE_PATH"
            else None,
            timeout=timeout,
        )
    raise InvalidInput(f"Unknown provider {access.provider}.")


# --- errors -----------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """For logs only: the provider's own words."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}"


def failure(access: CloudAccess, exc: BaseException, what: str) -> AppError:
    """The error a client sees when a call to the provider failed: the outbound guard's
    refusal as it is, an AppError raised on our side as it is, otherwise a fixed message
    (the provider's text goes to the log)."""
    refused = refusal_in(exc)
    if refused is not None:
        return refused
    if isinstance(exc, AppError):
        return exc
    logger.warning(
        "cloud storage %s (%s): %s failed: %s",
        access.storage_id,
        access.provider,
        what,
        describe(exc),
    )
    return Unavailable(f"The cloud storage cannot be reached or refused to {what}.")


def classify_error(exc: BaseException) -> str:
    """CVAT's storage status names: AVAILABLE, NOT_FOUND or FORBIDDEN."""
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(exc, PermissionError):
        return "FORBIDDEN"
    # azure-core: status_code; gcsfs: code; botocore: the error code of its response
    codes = {getattr(exc, "status_code", None), getattr(exc, "code", None)}
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        codes.add(response.get("Error", {}).get("Code"))
    if codes & {404, "404", "NoSuchBucket", "NotFound", "ContainerNotFound"}:
        return "NOT_FOUND"
    if "NotFound" in type(exc).__name__:
        return "NOT_FOUND"
    return "FORBIDDEN"


# --- calls ------------------------------------------------------------------------------------


def read(access: CloudAccess, key: str, timeout: float) -> bytes:
    try:
        data: bytes = filesystem(access, timeout).cat_file(access.path(key))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{key}: not found in the cloud storage.") from exc
    except Exception as exc:
        raise failure(access, exc, f"give {key}") from exc
    return data


def read_many(access: CloudAccess, keys: list[str], timeout: float) -> list[bytes]:
    """Several objects at once (fsspec fetches them concurrently)."""
    if not keys:
        return []
    paths = [access.path(k) for k in keys]
    try:
        found = filesystem(access, timeout).cat(paths, on_error="return")
    except Exception as exc:
        raise failure(access, exc, "give the files") from exc
    out: list[bytes] = []
    for key, path in zip(keys, paths, strict=True):
        value = found.get(path)
        if isinstance(value, FileNotFoundError) or value is None:
            raise InvalidInput(f"{key}: not found in the cloud storage.")
        if isinstance(value, BaseException):
            raise failure(access, value, f"give {key}")
        out.append(value)
    return out


def open_file(access: CloudAccess, key: str, timeout: float) -> Any:
    """A seekable file object (ranged reads), for video containers."""
    try:
        return filesystem(access, timeout).open(access.path(key), "rb", block_size=4 << 20)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{key}: not found in the cloud storage.") from exc
    except Exception as exc:
        raise failure(access, exc, f"give {key}") from exc


def upload(access: CloudAccess, key: str, local: Path, timeout: float) -> None:
    """Write a local file to the storage under ``key`` (an export's result)."""
    try:
        filesystem(access, timeout).put_file(str(local), access.path(key))
    except Exception as exc:
        raise failure(access, exc, f"take {key}") from exc


def download(access: CloudAccess, key: str, local: Path, timeout: float) -> None:
    """Copy ``key`` of the storage to a local file (a dataset to import)."""
    try:
        filesystem(access, timeout).get_file(access.path(key), str(local))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{key}: not found in the cloud storage.") from exc
    except Exception as exc:
        raise failure(access, exc, f"give {key}") from exc

"""The fsspec clients of the three providers, each wired to the outbound guard.

Every connection these clients open goes through :class:`~cvat_ray.cluster.outbound.AioHooks`
(a resolver and a socket factory that check each address at connect time):

- S3 (s3fs on aiobotocore): ``AioConfig(connector_args=...)``.
- Azure Blob (adlfs on azure-storage-blob's aio client): our own azure-core aiohttp
  transport, whose session uses a guarded connector.
- GCS (gcsfs): its aiohttp session gets a guarded connector; a service account key's token
  requests (to its ``token_uri``) go through :meth:`OutboundGuard.open` instead of a plain
  ``requests`` session, and only ``service_account`` keys are accepted (other key types can
  make google-auth call URLs of their choosing).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from google.auth import exceptions as google_exceptions
from google.auth import transport as google_transport
from google.oauth2 import service_account

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.outbound import AioHooks, OutboundGuard

GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# Token answers are small JSON documents.
_MAX_TOKEN_ANSWER = 1 << 20


# --- S3 ---------------------------------------------------------------------------------------


def s3_filesystem(
    *,
    hooks: AioHooks,
    endpoint: str | None,
    region: str | None,
    anon: bool,
    key: str | None,
    secret: str | None,
    token: str | None,
    timeout: float,
) -> Any:
    import s3fs

    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if region:
        client_kwargs["region_name"] = region
    return s3fs.S3FileSystem(
        anon=anon,
        key=None if anon else key,
        secret=None if anon else secret,
        token=None if anon else token,
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"max_attempts": 2},
            "connector_args": hooks.connector_args(),
        },
        skip_instance_cache=True,
    )


# --- Azure ------------------------------------------------------------------------------------


class GuardedAioHttpTransport(AioHttpTransport):  # type: ignore[misc]
    """azure-core's aiohttp transport with a guarded connector (and no proxy settings from
    the environment: a proxy would connect on the client's behalf, past the guard)."""

    def __init__(self, hooks: AioHooks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hooks = hooks

    async def open(self) -> None:
        me: Any = self  # azure-core leaves its attributes unannotated
        if me.session is None and me._session_owner:
            me.session = aiohttp.ClientSession(
                connector=self._hooks.connector(),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
            )
        await super().open()


def azure_filesystem(
    *,
    hooks: AioHooks,
    connection_string: str | None,
    account_url: str | None,
    account_name: str | None,
    sas_token: str | None,
    timeout: float,
) -> Any:
    import adlfs
    from azure.storage.blob.aio import BlobServiceClient

    class GuardedAzureBlobFileSystem(adlfs.AzureBlobFileSystem):  # type: ignore[misc]
        """adlfs whose service client is built here, with the guarded transport."""

        def do_connect(self) -> None:
            transport = GuardedAioHttpTransport(
                hooks, connection_timeout=timeout, read_timeout=timeout
            )
            if connection_string:
                self.service_client = BlobServiceClient.from_connection_string(
                    connection_string, transport=transport
                )
            else:
                assert account_url is not None
                self.service_client = BlobServiceClient(
                    account_url=account_url, credential=sas_token or None, transport=transport
                )

    kwargs: dict[str, Any] = {"skip_instance_cache": True}
    if connection_string:
        kwargs["connection_string"] = connection_string
    else:
        kwargs["account_name"] = account_name
        if sas_token:
            kwargs["sas_token"] = sas_token
        else:
            kwargs["anon"] = True
    return GuardedAzureBlobFileSystem(**kwargs)


# --- GCS --------------------------------------------------------------------------------------


class _TokenResponse(google_transport.Response):
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class GuardedAuthRequest(google_transport.Request):
    """google-auth's HTTP callable, sent through the outbound guard (no redirects)."""

    def __init__(self, guard: OutboundGuard, timeout: float) -> None:
        self._guard = guard
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google_transport.Response:
        if isinstance(body, str):
            body = body.encode()
        with self._guard.open(
            method,
            url,
            timeout=min(timeout or self._timeout, self._timeout),
            headers=headers,
            body=body,
            follow_redirects=False,
        ) as response:
            data = response.read_all(_MAX_TOKEN_ANSWER)
            return _TokenResponse(response.status, dict(response.headers.items()), data)


class GuardedServiceAccount(service_account.Credentials):
    """Service account credentials that fetch their tokens through the outbound guard,
    whatever request object the caller (gcsfs: a plain ``requests`` session) passes."""

    guarded_request: google_transport.Request | None = None

    def _request(self, request: google_transport.Request) -> google_transport.Request:
        return self.guarded_request or request

    def refresh(self, request: google_transport.Request) -> None:
        try:
            super().refresh(self._request(request))  # type: ignore[no-untyped-call]
        except google_exceptions.GoogleAuthError as exc:
            # A PermissionError, which gcsfs does not retry: a refused key stays refused, and
            # its retries would hold the caller for half a minute.
            raise PermissionError("The service account key was refused.") from exc

    def before_request(
        self, request: google_transport.Request, method: str, url: str, headers: Any
    ) -> None:
        super().before_request(self._request(request), method, url, headers)  # type: ignore[no-untyped-call]

    def _make_copy(self) -> GuardedServiceAccount:
        copy: GuardedServiceAccount = super()._make_copy()  # type: ignore[no-untyped-call]
        copy.guarded_request = self.guarded_request
        return copy


def service_account_info(key_file: str) -> dict[str, Any]:
    """The JSON of a service account key, or an InvalidInput on ``key_file``."""
    try:
        info = json.loads(key_file)
    except ValueError as exc:
        raise InvalidInput(
            "The key file is not a JSON service account key.", field="key_file"
        ) from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise InvalidInput(
            'Only service account keys ("type": "service_account") are supported.',
            field="key_file",
        )
    for name in ("client_email", "private_key", "token_uri"):
        if not isinstance(info.get(name), str) or not info[name]:
            raise InvalidInput(f"The service account key has no {name}.", field="key_file")
    return info


def gcs_credentials(key_file: str, guard: OutboundGuard, timeout: float) -> GuardedServiceAccount:
    info = service_account_info(key_file)
    try:
        credentials: GuardedServiceAccount = GuardedServiceAccount.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[GCS_SCOPE]
        )
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "The service account key cannot be loaded (is its private key intact?).",
            field="key_file",
        ) from exc
    credentials.guarded_request = GuardedAuthRequest(guard, timeout)
    return credentials


def gcs_filesystem(
    *,
    hooks: AioHooks,
    endpoint: str | None,
    project: str,
    key_file: str | None,
    timeout: float,
) -> Any:
    # The core class: gcsfs's default "extended" one probes Google's gRPC control plane
    # for the bucket type first (a minute of timeouts against anything but Google).
    from gcsfs.core import GCSFileSystem

    class GuardedGCSFileSystem(GCSFileSystem):  # type: ignore[misc]
        """gcsfs whose aiohttp session uses a guarded connector."""

        async def _set_session(self) -> Any:
            me: Any = self  # gcsfs is untyped
            if me._session is None:
                me.session_kwargs = {
                    **me.session_kwargs,
                    "connector": hooks.connector(),
                    "trust_env": False,
                }
            return await super()._set_session()

    token: Any = gcs_credentials(key_file, hooks.guard, timeout) if key_file is not None else "anon"
    return GuardedGCSFileSystem(
        token=token,
        project=project,
        access="read_only",
        endpoint_url=endpoint,
        timeout=timeout,
        skip_instance_cache=True,
    )

"""Listing a bucket one provider page at a time, so no request lists more than it shows.

:func:`list_page` asks the provider for at most ``limit`` entries (objects, and "folders"
when listing one level) and returns its continuation token; :func:`iter_keys` walks every
object under a prefix page by page and stops at a cap. Both use the provider's own paged
call through the guarded fsspec client of :func:`cloud.filesystem`: ``ListObjectsV2`` (S3),
``objects.list`` (GCS), ``List Blobs`` (Azure). Errors are the provider's, raw: callers turn
them into client errors with :func:`cloud.failure`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.outbound import refusal_in
from cvat_ray.storage.media.cloud import CloudAccess, classify_error, describe, filesystem, logger

# The providers' own largest page (S3 and GCS: 1000 entries; Azure allows 5000).
PROVIDER_PAGE = 1000


@dataclass(frozen=True)
class Entry:
    key: str  # the full key; a folder's ends without its "/"
    is_dir: bool


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_token: str | None


def list_page(
    access: CloudAccess,
    prefix: str,
    *,
    recursive: bool,
    limit: int,
    token: str | None,
    timeout: float,
) -> Page:
    """At most ``limit`` entries under ``prefix`` (a key prefix: give ``dir/`` for a
    folder), one level deep unless ``recursive``, starting at ``token``."""
    limit = max(1, min(limit, PROVIDER_PAGE))
    fs = filesystem(access, timeout)
    if access.provider == "AWS_S3_BUCKET":
        return _s3_page(fs, access, prefix, recursive, limit, token)
    if access.provider == "GOOGLE_CLOUD_STORAGE":
        return _gcs_page(fs, access, prefix, recursive, limit, token)
    if access.provider == "AZURE_CONTAINER":
        return _azure_page(fs, access, prefix, recursive, limit, token)
    raise InvalidInput(f"Unknown provider {access.provider}.")


def iter_keys(access: CloudAccess, prefix: str, *, cap: int, timeout: float) -> Iterator[str]:
    """Every object key under ``prefix``, page by page; stops after ``cap`` keys."""
    token: str | None = None
    seen = 0
    while True:
        page = list_page(
            access,
            prefix,
            recursive=True,
            limit=min(PROVIDER_PAGE, cap - seen + 1),
            token=token,
            timeout=timeout,
        )
        for entry in page.entries:
            if entry.is_dir:
                continue
            yield entry.key
            seen += 1
            if seen >= cap:
                return
        if not page.next_token:
            return
        token = page.next_token


def _marker(prefix: str, key: str) -> bool:
    # "folder" placeholder objects (a key equal to the folder prefix) are not files
    return key == prefix or key.endswith("/")


def _s3_page(
    fs: Any, access: CloudAccess, prefix: str, recursive: bool, limit: int, token: str | None
) -> Page:
    kwargs: dict[str, Any] = {"Bucket": access.resource, "Prefix": prefix, "MaxKeys": limit}
    if not recursive:
        kwargs["Delimiter"] = "/"
    if token:
        kwargs["ContinuationToken"] = token
    answer = fs.call_s3("list_objects_v2", **kwargs)
    entries = [Entry(p["Prefix"].rstrip("/"), True) for p in answer.get("CommonPrefixes", [])]
    entries += [
        Entry(o["Key"], False) for o in answer.get("Contents", []) if not _marker(prefix, o["Key"])
    ]
    more = answer.get("IsTruncated") and answer.get("NextContinuationToken")
    return Page(entries, str(more) if more else None)


def _gcs_page(
    fs: Any, access: CloudAccess, prefix: str, recursive: bool, limit: int, token: str | None
) -> Page:
    answer = fs.call(
        "GET",
        "b/{}/o",
        access.resource,
        json_out=True,
        prefix=prefix or None,
        delimiter=None if recursive else "/",
        maxResults=limit,
        pageToken=token or None,
    )
    entries = [Entry(p.rstrip("/"), True) for p in answer.get("prefixes", [])]
    entries += [
        Entry(o["name"], False) for o in answer.get("items", []) if not _marker(prefix, o["name"])
    ]
    more = answer.get("nextPageToken")
    return Page(entries, str(more) if more else None)


def _azure_page(
    fs: Any, access: CloudAccess, prefix: str, recursive: bool, limit: int, token: str | None
) -> Page:
    from azure.storage.blob.aio import BlobPrefix
    from fsspec.asyn import sync

    async def first_page() -> Page:
        container = fs.service_client.get_container_client(access.resource)
        if recursive:
            items = container.list_blobs(name_starts_with=prefix or None, results_per_page=limit)
        else:
            items = container.walk_blobs(
                name_starts_with=prefix or None, delimiter="/", results_per_page=limit
            )
        pages = items.by_page(continuation_token=token or None)
        entries: list[Entry] = []
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return Page([], None)
        async for item in page:
            if isinstance(item, BlobPrefix):
                entries.append(Entry(item.name.rstrip("/"), True))
            elif not _marker(prefix, item.name):
                entries.append(Entry(item.name, False))
        more = pages.continuation_token
        return Page(entries, str(more) if more else None)

    page: Page = sync(fs.loop, first_page)
    return page


def status(access: CloudAccess, timeout: float) -> str:
    """AVAILABLE, NOT_FOUND or FORBIDDEN, from a listing of at most one object. Raises the
    guard's refusal (a 400), so a forbidden address is not reported as a storage state."""
    try:
        list_page(access, "", recursive=True, limit=1, token=None, timeout=timeout)
    except Exception as exc:  # any failure to list is reported, not raised
        refused = refusal_in(exc)
        if refused is not None:
            raise refused from exc
        logger.info(
            "cloud storage %s (%s): status: %s", access.storage_id, access.provider, describe(exc)
        )
        return classify_error(exc)
    return "AVAILABLE"

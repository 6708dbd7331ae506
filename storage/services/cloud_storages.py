"""Cloud storages: CRUD, content listing, status, preview.

Credentials are encrypted with the server's cloud key before they are stored and decrypted
only into a :class:`~cvat_ray.storage.media.cloud.CloudAccess` for a worker; no response
carries them and log lines name only the storage id.

Calls to the provider never run on the API's database threads nor inside a unit of work:
each operation that needs one is split in two. A database part (``prepare_*``, ``*_access``)
loads, authorizes and validates without network access; a network part (``check_reachable``,
``probe_status``, ``list_content``, ``build_preview``) takes only the ``CloudAccess`` and runs
in another thread pool; creating and changing a storage then writes in a second unit of work,
which refuses to apply a change made from a row that changed meanwhile. Listings ask the
provider for one page at a time.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound
from cvat_ray.cluster.outbound import OutboundGuard, refusal_in
from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage import changes
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import Database
from cvat_ray.storage.media import cloud, cloud_listing, images
from cvat_ray.storage.media.cloud import ALLOWED_CREDENTIALS, SECRET_FIELDS, Cipher, CloudAccess
from cvat_ray.storage.media.cloud_clients import service_account_info
from cvat_ray.storage.media.cloud_listing import iter_keys, list_page
from cvat_ray.storage.media.formats import kind_of
from cvat_ray.storage.models import CloudStorage, Data, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.cloud_storages import (
    CloudStorageContent,
    CloudStoragePatch,
    CloudStorageRead,
    CloudStorageWrite,
    FileInfo,
)
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.services.users import basic_users

# The preview looks at this many objects at most (one provider page) for an image, and
# reads at most this many images to find one that decodes.
PREVIEW_SCAN = 1000
PREVIEW_READS = 3

logger = logging.getLogger("cvat_ray.cloud")

CLOUD_LIST = ListSpec(
    policy_paths={
        "owner_id": CloudStorage.owner_id,
        "organization_id": CloudStorage.organization_id,
    },
    fields={
        "id": CloudStorage.id,
        "name": CloudStorage.display_name,
        "provider_type": CloudStorage.provider_type,
        "resource": CloudStorage.resource,
        "credentials_type": CloudStorage.credentials_type,
        "description": CloudStorage.description,
        "owner": User.username,
    },
    search_fields=("name", "resource", "description", "owner"),
    sort_fields={
        "id": CloudStorage.id,
        "name": CloudStorage.display_name,
        "provider_type": CloudStorage.provider_type,
        "resource": CloudStorage.resource,
        "credentials_type": CloudStorage.credentials_type,
        "description": CloudStorage.description,
        "owner": User.username,
    },
    default_sort=(CloudStorage.id.desc(),),
    simple_filters=("name", "provider_type", "resource", "credentials_type", "owner"),
)

# Required secret fields per credentials type.
_REQUIRED = {
    "KEY_SECRET_KEY_PAIR": ("key", "secret_key"),
    "ACCOUNT_NAME_TOKEN_PAIR": ("account_name", "session_token"),
    "CONNECTION_STRING": ("connection_string",),
    "KEY_FILE_PATH": ("key_file",),
    "ANONYMOUS_ACCESS": (),
}


def cloud_resource(storage: CloudStorage) -> Resource:
    return Resource(
        kind="cloudstorage",
        id=storage.id,
        owner_id=storage.owner_id,
        organization_id=storage.organization_id,
    )


def cipher(settings: Settings) -> Cipher:
    key = settings.cloud.credentials_key
    return Cipher.from_settings(key.get_secret_value() if key else None, settings.cloud_key_path)


_secrets_db: dict[str, Database] = {}
_secrets_lock = threading.Lock()


def load_secrets(storage_id: int) -> dict[str, str]:
    """A storage's decrypted credentials, read in this process with its own settings (the
    :data:`cloud.secret_loader` of processes that receive sealed accesses)."""
    settings = get_settings()
    url = settings.database_url
    with _secrets_lock:
        db = _secrets_db.get(url)
        if db is None:
            db = _secrets_db[url] = Database(url, pool_size=1)
    with db.session() as session:
        credentials = session.scalar(
            select(CloudStorage.credentials).where(CloudStorage.id == storage_id)
        )
    if credentials is None:
        raise NotFound("The cloud storage of this data no longer exists.")
    return cipher(settings).decrypt(credentials)


@dataclass
class Destination:
    location: str  # "local" | "cloud_storage"
    cloud_storage_id: int | None = None


def destination(
    session: Session,
    ctx: RequestContext,
    location: str | None,
    cloud_storage_id: str | None,
    default: dict[str, Any] | None,
    field: str = "location",
) -> Destination:
    """Where an export's result goes (``location``, else ``default``, a task's or project's
    target storage; else local): a cloud storage must exist and the caller see it."""
    if not location:
        default = default or {}
        location = default.get("location") or "local"
        if location == "cloud_storage" and not cloud_storage_id:
            cloud_storage_id = str(default.get("cloud_storage_id") or "")
    if location not in ("local", "cloud_storage"):
        raise InvalidInput("must be 'local' or 'cloud_storage'.", field=field)
    if location == "local":
        return Destination("local")
    try:
        storage_id = int(cloud_storage_id or "")
    except ValueError:
        raise InvalidInput(
            "a cloud storage location needs cloud_storage_id.", field="cloud_storage_id"
        ) from None
    storage = session.get(CloudStorage, storage_id)
    if storage is None:
        raise InvalidInput("The cloud storage does not exist.", field="cloud_storage_id")
    authorize(ctx.principal, ctx.org, "view", cloud_resource(storage))
    return Destination("cloud_storage", storage_id)


def access_for(storage: CloudStorage, settings: Settings) -> CloudAccess:
    return _access(storage, cipher(settings).decrypt(storage.credentials), settings)


def _access(storage: CloudStorage, secrets: dict[str, str], settings: Settings) -> CloudAccess:
    return CloudAccess(
        provider=storage.provider_type,
        resource=storage.resource,
        credentials_type=storage.credentials_type,
        attributes=cloud.parse_attributes(storage.specific_attributes),
        secrets=secrets,
        storage_id=storage.id,
        version=storage.updated_date.isoformat() if storage.updated_date else "",
        guard=OutboundGuard.from_settings(settings),
    )


def _get(session: Session, storage_id: int) -> CloudStorage:
    storage = session.get(CloudStorage, storage_id)
    if storage is None:
        raise NotFound("Cloud storage not found.")
    return storage


def _to_reads(
    session: Session, ctx: RequestContext, rows: list[CloudStorage]
) -> list[CloudStorageRead]:
    users = basic_users(session, ctx, [r.owner_id for r in rows])
    return [
        CloudStorageRead(
            id=r.id,
            owner=users.get(r.owner_id) if r.owner_id else None,
            manifests=list(r.manifests or []),
            provider_type=r.provider_type,
            resource=r.resource,
            display_name=r.display_name,
            created_date=r.created_date,
            updated_date=r.updated_date,
            credentials_type=r.credentials_type,
            specific_attributes=r.specific_attributes,
            description=r.description,
            organization=r.organization_id,
        )
        for r in rows
    ]


def _secrets(data: CloudStorageWrite | CloudStoragePatch) -> dict[str, str]:
    return {name: value for name in SECRET_FIELDS if (value := getattr(data, name, None))}


def _validate(storage: CloudStorage, secrets: dict[str, str], settings: Settings) -> CloudAccess:
    """Everything that needs no network; returns the access to check next."""
    allowed = ALLOWED_CREDENTIALS[storage.provider_type]
    if storage.credentials_type not in allowed:
        raise InvalidInput(
            f"{storage.provider_type} takes credentials of type {', '.join(sorted(allowed))}.",
            field="credentials_type",
        )
    for name in _REQUIRED[storage.credentials_type]:
        if not secrets.get(name):
            raise InvalidInput(f"Required for {storage.credentials_type}.", field=name)
    if (
        storage.provider_type == "AZURE_CONTAINER"
        and storage.credentials_type == "ANONYMOUS_ACCESS"
    ):
        if not secrets.get("account_name"):
            raise InvalidInput("Required for anonymous access to Azure.", field="account_name")
    if storage.credentials_type == "KEY_FILE_PATH":
        service_account_info(secrets.get("key_file", ""))
    access = _access(storage, secrets, settings)
    try:
        cloud.check_form(access)
    except InvalidInput as exc:
        field = next(iter(exc.fields))
        if field == "non_field_errors":
            raise InvalidInput(exc.detail, field="specific_attributes") from exc
        raise
    return access


@dataclass(frozen=True)
class CloudDraft:
    """A storage to create or change, validated without network; :func:`check_reachable`
    runs next (outside the database threads), then the write."""

    access: CloudAccess
    values: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    check: bool = True
    storage_id: int | None = None
    # the row's update time the change was made from (a change meanwhile is a conflict)
    seen: datetime | None = None


def check_reachable(draft: CloudDraft, settings: Settings) -> None:
    """The network part of creating or changing a storage: every address a user chose is
    resolved and checked, then the bucket is listed once (one object)."""
    if not draft.check:
        return
    access = draft.access
    cloud.check_endpoints(access)
    state = cloud_listing.status(access, settings.cloud.timeout_s)
    if state != "AVAILABLE":
        reason = (
            "does not exist" if state == "NOT_FOUND" else "cannot be read with these credentials"
        )
        raise InvalidInput(f"The {access.provider} {access.resource!r} {reason}.", field="resource")


def prepare_create(
    session: Session, ctx: RequestContext, data: CloudStorageWrite, settings: Settings
) -> CloudDraft:
    authorize(ctx.principal, ctx.org, "create", Resource(kind="cloudstorage"))
    values = {
        "provider_type": data.provider_type,
        "resource": data.resource,
        "display_name": data.display_name,
        "credentials_type": data.credentials_type,
        "specific_attributes": data.specific_attributes,
        "description": data.description,
        "manifests": list(data.manifests),
    }
    secrets = _secrets(data)
    access = _validate(CloudStorage(**values), secrets, settings)
    return CloudDraft(access=access, values=values, secrets=secrets)


def create_cloud_storage(
    session: Session, ctx: RequestContext, draft: CloudDraft, settings: Settings
) -> CloudStorageRead:
    """Write a storage that :func:`prepare_create` and :func:`check_reachable` accepted."""
    authorize(ctx.principal, ctx.org, "create", Resource(kind="cloudstorage"))
    now = utcnow()
    storage = CloudStorage(
        **draft.values,
        owner_id=ctx.principal.user_id,
        organization_id=ctx.org.org_id,
        created_date=now,
        updated_date=now,
        credentials=cipher(settings).encrypt(draft.secrets),
    )
    session.add(storage)
    session.flush()
    read = _to_reads(session, ctx, [storage])[0]
    _record(session, ctx, "create", storage, after=read.model_dump(mode="json"))
    return read


def _record(
    session: Session,
    ctx: RequestContext,
    action: str,
    storage: CloudStorage,
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
) -> None:
    changes.record(
        session,
        changes.Change(
            action=action,
            resource="cloudstorage",
            after=after,
            before=before,
            scope_ids=changes.Scope(org_id=storage.organization_id),
            actor=changes.Actor.of(ctx),
        ),
    )


def list_cloud_storages(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[CloudStorageRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "cloudstorage"), CLOUD_LIST.policy_paths
    )
    stmt = select(CloudStorage).outerjoin(User, User.id == CloudStorage.owner_id).where(policy)
    stmt = apply_list_params(stmt, CLOUD_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_to_reads(session, ctx, [r[0] for r in rows]))


def retrieve_cloud_storage(
    session: Session, ctx: RequestContext, storage_id: int
) -> CloudStorageRead:
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "view", cloud_resource(storage))
    return _to_reads(session, ctx, [storage])[0]


_PATCHABLE = ("resource", "display_name", "credentials_type", "specific_attributes", "description")


def prepare_update(
    session: Session,
    ctx: RequestContext,
    storage_id: int,
    patch: CloudStoragePatch,
    settings: Settings,
) -> CloudDraft:
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "update", cloud_resource(storage))
    fields = patch.model_fields_set
    values: dict[str, Any] = {
        name: getattr(patch, name)
        for name in _PATCHABLE
        if name in fields and getattr(patch, name) is not None
    }
    if patch.manifests is not None:
        values["manifests"] = list(patch.manifests)
    secrets = cipher(settings).decrypt(storage.credentials)
    new_secrets = _secrets(patch)
    if new_secrets or "credentials_type" in fields:
        secrets = new_secrets if "credentials_type" in fields else {**secrets, **new_secrets}
    seen = storage.updated_date
    # validated as it will be; the loaded row is not changed (this unit of work only reads)
    changed = CloudStorage(
        id=storage.id,
        updated_date=storage.updated_date,
        **{
            name: values.get(name, getattr(storage, name))
            for name in ("provider_type", *_PATCHABLE)
        },
    )
    access = _validate(changed, secrets, settings)
    check = bool(fields & {"resource", "credentials_type", "specific_attributes", *SECRET_FIELDS})
    return CloudDraft(
        access=access,
        values=values,
        secrets=secrets,
        check=check,
        storage_id=storage.id,
        seen=seen,
    )


def partial_update_cloud_storage(
    session: Session, ctx: RequestContext, draft: CloudDraft, settings: Settings
) -> CloudStorageRead:
    """Apply a change that :func:`prepare_update` and :func:`check_reachable` accepted."""
    assert draft.storage_id is not None
    storage = _get(session, draft.storage_id)
    authorize(ctx.principal, ctx.org, "update", cloud_resource(storage))
    if storage.updated_date != draft.seen:
        raise Conflict("The cloud storage was changed meanwhile; send the change again.")
    before = _to_reads(session, ctx, [storage])[0].model_dump(mode="json")
    for name, value in draft.values.items():
        setattr(storage, name, value)
    storage.credentials = cipher(settings).encrypt(draft.secrets)
    storage.updated_date = utcnow()
    session.flush()
    cloud.forget(storage.id)
    read = _to_reads(session, ctx, [storage])[0]
    _record(session, ctx, "update", storage, after=read.model_dump(mode="json"), before=before)
    return read


def delete_cloud_storage(session: Session, ctx: RequestContext, storage_id: int) -> None:
    """Tasks that read from it keep their frame lists but lose the storage (as CVAT)."""
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "delete", cloud_resource(storage))
    _record(
        session,
        ctx,
        "delete",
        storage,
        before=_to_reads(session, ctx, [storage])[0].model_dump(mode="json"),
    )
    session.execute(
        update(Data).where(Data.cloud_storage_id == storage.id).values(cloud_storage_id=None)
    )
    session.delete(storage)
    session.flush()
    cloud.forget(storage_id)


def _viewable(
    session: Session, ctx: RequestContext, storage_id: int, scope: str, settings: Settings
) -> tuple[CloudAccess, str]:
    """The access to a storage the caller may use for ``scope``, and its ``prefix``."""
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, scope, cloud_resource(storage))
    access = access_for(storage, settings)
    return access, access.attributes.get("prefix", "").strip("/")


def content_access(
    session: Session, ctx: RequestContext, storage_id: int, settings: Settings
) -> tuple[CloudAccess, str]:
    """The database part of ``content-v2``."""
    return _viewable(session, ctx, storage_id, "list:content", settings)


def view_access(
    session: Session, ctx: RequestContext, storage_id: int, settings: Settings
) -> tuple[CloudAccess, str]:
    """The database part of status, actions and preview."""
    return _viewable(session, ctx, storage_id, "view", settings)


def _mime(name: str, kind: str) -> str:
    if kind == "DIR":
        return "DIR"
    return {"image": "image", "video": "video", "archive": "archive"}.get(kind_of(name), "unknown")


_TOKEN = re.compile(r"[!-~]{1,4096}")


def _bad_token(exc: BaseException) -> bool:
    codes = {getattr(exc, "status_code", None), getattr(exc, "code", None)}
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        codes.add(response.get("Error", {}).get("Code"))
    return isinstance(exc, ValueError) or bool(codes & {400, "400", "InvalidArgument"})


def list_content(
    access: CloudAccess,
    root: str,
    settings: Settings,
    prefix: str,
    next_token: str | None,
    page_size: int,
) -> CloudStorageContent:
    """CVAT ``content-v2`` (network part): one provider page of the entries directly under
    ``prefix``, directories first; ``next`` is the provider's continuation token."""
    if next_token and not _TOKEN.fullmatch(next_token):
        # Providers' continuation tokens are printable ASCII; anything else is not one of
        # theirs (and made emulators fail with a 500 instead of refusing it).
        raise InvalidInput("Invalid next_token.", field="next_token")
    folder = "/".join(p for p in (root, prefix.strip("/")) if p)
    listed = folder + "/" if folder else ""
    try:
        page = list_page(
            access,
            listed,
            recursive=False,
            limit=page_size,
            token=next_token or None,
            timeout=settings.cloud.timeout_s,
        )
    except FileNotFoundError:
        return CloudStorageContent(content=[], next=None)
    except Exception as exc:
        if next_token and refusal_in(exc) is None and _bad_token(exc):
            raise InvalidInput("Invalid next_token.", field="next_token") from exc
        raise cloud.failure(access, exc, "list its content") from exc
    content = sorted(
        (
            FileInfo(
                name=name,
                type="DIR" if e.is_dir else "REG",
                mime_type=_mime(name, "DIR" if e.is_dir else "REG"),
            )
            for e in page.entries
            if (name := e.key[len(listed) :])
        ),
        key=lambda f: (f.type != "DIR", f.name),
    )
    return CloudStorageContent(content=content, next=page.next_token)


def probe_status(access: CloudAccess, settings: Settings) -> str:
    """CVAT's storage status (network part): ``AVAILABLE``, ``NOT_FOUND`` or ``FORBIDDEN``."""
    return cloud_listing.status(access, settings.cloud.timeout_s)


def build_preview(access: CloudAccess, root: str, settings: Settings) -> bytes:
    """A thumbnail of the first image among the first objects of the storage (or under its
    ``prefix``); network part."""
    timeout = settings.cloud.timeout_s
    try:
        keys = list(
            iter_keys(access, root + "/" if root else "", cap=PREVIEW_SCAN, timeout=timeout)
        )
    except FileNotFoundError:
        keys = []
    except Exception as exc:
        raise cloud.failure(access, exc, "list its content") from exc
    tried = 0
    for key in keys:
        if kind_of(key) != "image":
            continue
        data = cloud.read(access, key, timeout)
        try:
            return images.thumbnail(images.open_upright(data), settings.media.preview_size)
        except Exception as exc:  # Pillow raises many types for broken files
            logger.info(
                "cloud storage %s: %s is not a readable image: %s", access.storage_id, key, exc
            )
        tried += 1
        if tried >= PREVIEW_READS:
            break
    raise NotFound("The cloud storage holds no images that can be read.")

"""Cloud storages: CRUD, content listing, status, preview.

Credentials are encrypted with the server's cloud key before they are stored and decrypted
only into a :class:`~cvat_ray.storage.media.cloud.CloudAccess` for a worker; no response carries them
and log lines name only the storage id.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.media import cloud, images
from cvat_ray.storage.media.cloud import ALLOWED_CREDENTIALS, SECRET_FIELDS, Cipher, CloudAccess
from cvat_ray.storage.media.formats import kind_of
from cvat_ray.storage.media.remote import AllowList
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


def access_for(storage: CloudStorage, settings: Settings) -> CloudAccess:
    return CloudAccess(
        provider=storage.provider_type,
        resource=storage.resource,
        credentials_type=storage.credentials_type,
        attributes=cloud.parse_attributes(storage.specific_attributes),
        secrets=cipher(settings).decrypt(storage.credentials),
        version=f"{storage.id}:{storage.updated_date.isoformat()}",
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


def _validate(storage: CloudStorage, secrets: dict[str, str], settings: Settings) -> None:
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
    attributes = cloud.parse_attributes(storage.specific_attributes)
    try:
        cloud.check_endpoint(
            attributes,
            AllowList.parse(settings.media.remote_allowlist),
            secrets.get("connection_string", ""),
        )
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field="specific_attributes") from exc


def _check_reachable(storage: CloudStorage, secrets: dict[str, str], settings: Settings) -> None:
    access = CloudAccess(
        provider=storage.provider_type,
        resource=storage.resource,
        credentials_type=storage.credentials_type,
        attributes=cloud.parse_attributes(storage.specific_attributes),
        secrets=secrets,
    )
    state = cloud.status(access, settings.cloud.timeout_s)
    if state != "AVAILABLE":
        reason = (
            "does not exist" if state == "NOT_FOUND" else "cannot be read with these credentials"
        )
        raise InvalidInput(
            f"The {storage.provider_type} {storage.resource!r} {reason}.", field="resource"
        )


def create_cloud_storage(
    session: Session, ctx: RequestContext, data: CloudStorageWrite, settings: Settings
) -> CloudStorageRead:
    authorize(ctx.principal, ctx.org, "create", Resource(kind="cloudstorage"))
    secrets = _secrets(data)
    now = utcnow()
    storage = CloudStorage(
        provider_type=data.provider_type,
        resource=data.resource,
        display_name=data.display_name,
        credentials_type=data.credentials_type,
        specific_attributes=data.specific_attributes,
        description=data.description,
        manifests=list(data.manifests),
        owner_id=ctx.principal.user_id,
        organization_id=ctx.org.org_id,
        created_date=now,
        updated_date=now,
    )
    _validate(storage, secrets, settings)
    _check_reachable(storage, secrets, settings)
    storage.credentials = cipher(settings).encrypt(secrets)
    session.add(storage)
    session.flush()
    return _to_reads(session, ctx, [storage])[0]


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


def partial_update_cloud_storage(
    session: Session,
    ctx: RequestContext,
    storage_id: int,
    patch: CloudStoragePatch,
    settings: Settings,
) -> CloudStorageRead:
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "update", cloud_resource(storage))
    fields = patch.model_fields_set
    for name in (
        "resource",
        "display_name",
        "credentials_type",
        "specific_attributes",
        "description",
    ):
        value = getattr(patch, name)
        if name in fields and value is not None:
            setattr(storage, name, value)
    if patch.manifests is not None:
        storage.manifests = list(patch.manifests)
    secrets = cipher(settings).decrypt(storage.credentials)
    new_secrets = _secrets(patch)
    if new_secrets or "credentials_type" in fields:
        secrets = new_secrets if "credentials_type" in fields else {**secrets, **new_secrets}
    _validate(storage, secrets, settings)
    if fields & {"resource", "credentials_type", "specific_attributes", *SECRET_FIELDS}:
        _check_reachable(storage, secrets, settings)
    storage.credentials = cipher(settings).encrypt(secrets)
    storage.updated_date = utcnow()
    session.flush()
    return _to_reads(session, ctx, [storage])[0]


def delete_cloud_storage(session: Session, ctx: RequestContext, storage_id: int) -> None:
    """Tasks that read from it keep their frame lists but lose the storage (as CVAT)."""
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "delete", cloud_resource(storage))
    session.execute(
        update(Data).where(Data.cloud_storage_id == storage.id).values(cloud_storage_id=None)
    )
    session.delete(storage)
    session.flush()


def _viewable(
    session: Session, ctx: RequestContext, storage_id: int, scope: str, settings: Settings
) -> CloudAccess:
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, scope, cloud_resource(storage))
    return access_for(storage, settings)


def _mime(name: str, kind: str) -> str:
    if kind == "DIR":
        return "DIR"
    return {"image": "image", "video": "video", "archive": "archive"}.get(kind_of(name), "unknown")


def content(
    session: Session,
    ctx: RequestContext,
    storage_id: int,
    settings: Settings,
    prefix: str,
    next_token: str | None,
    page_size: int,
) -> CloudStorageContent:
    """CVAT ``content-v2``: the entries directly under ``prefix``, directories first,
    ``page_size`` at a time (``next`` is an opaque token)."""
    access = _viewable(session, ctx, storage_id, "list:content", settings)
    root = cloud.parse_attributes(
        session.get(CloudStorage, storage_id).specific_attributes  # type: ignore[union-attr]
    ).get("prefix", "")
    full_prefix = "/".join(p for p in (root.strip("/"), prefix.strip("/")) if p)
    entries = sorted(
        cloud.listing(access, full_prefix, settings.cloud.timeout_s),
        key=lambda e: (e[1] != "DIR", e[0]),
    )
    try:
        start = int(next_token or 0)
    except ValueError as exc:
        raise InvalidInput("Invalid next_token.", field="next_token") from exc
    page = entries[start : start + page_size]
    more = start + page_size < len(entries)
    return CloudStorageContent(
        content=[FileInfo(name=n, type=t, mime_type=_mime(n, t)) for n, t in page],
        next=str(start + page_size) if more else None,
    )


def status(session: Session, ctx: RequestContext, storage_id: int, settings: Settings) -> str:
    access = _viewable(session, ctx, storage_id, "view", settings)
    return cloud.status(access, settings.cloud.timeout_s)


def actions(
    session: Session, ctx: RequestContext, storage_id: int, settings: Settings
) -> list[str]:
    return ["read"] if status(session, ctx, storage_id, settings) == "AVAILABLE" else []


def preview(session: Session, ctx: RequestContext, storage_id: int, settings: Settings) -> bytes:
    """A thumbnail of the first image in the storage (or under its ``prefix``)."""
    storage = _get(session, storage_id)
    authorize(ctx.principal, ctx.org, "view", cloud_resource(storage))
    access = access_for(storage, settings)
    root = cloud.parse_attributes(storage.specific_attributes).get("prefix", "")
    for key in cloud.walk_files(access, root, settings.cloud.timeout_s)[:1000]:
        if kind_of(key) == "image":
            data = cloud.read(access, key, settings.cloud.timeout_s)
            return images.thumbnail(images.open_upright(data), settings.media.preview_size)
    raise NotFound("The cloud storage holds no images.")

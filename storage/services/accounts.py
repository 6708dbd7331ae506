"""Accounts: login, registration, password change, personal access tokens, the admin account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound, PermissionDenied
from cvat_ray.cluster.settings import get_settings
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.iam.keys import digest, new_access_token
from cvat_ray.iam.passwords import hash_password, verify_password
from cvat_ray.iam.principal import Principal
from cvat_ray.iam.throttle import LoginThrottle
from cvat_ray.storage import changes
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import AccessToken, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, paginate
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.users import (
    AccessTokenCreated,
    AccessTokenPatch,
    AccessTokenRead,
    AccessTokenWrite,
    LoginRequest,
    PasswordChangeRequest,
    RegisterRequest,
)
from cvat_ray.storage.services import authn
from cvat_ray.storage.services.users import (
    INVITED,
    basic_users,
    claim_invited,
    create_user,
    groups_of,
    record_new_user,
    set_groups,
)


def login(
    session: Session,
    data: LoginRequest,
    ttl_s: int,
    throttle: LoginThrottle,
    client: str,
) -> authn.LoginSession:
    """Check the credentials (behind the login throttle) and start a cookie session."""
    username = authn.find_login_user(session, data.username, data.email)
    user = authn.checked_login(session, throttle, client, username, data.password)
    if user is None:
        raise InvalidInput("Unable to log in with provided credentials.")
    return authn.start_session(session, user, ttl_s)


def validate_new_password(password: str, min_length: int, field: str, username: str = "") -> None:
    problems = []
    if len(password) < min_length:
        problems.append(
            f"This password is too short. It must contain at least {min_length} characters."
        )
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if username and password.lower() == username.lower():
        problems.append("The password is too similar to the username.")
    if problems:
        raise InvalidInput({field: problems})


LDAP_MANAGED = "Accounts and passwords are managed in the LDAP directory of this server."


def register(
    session: Session, data: RegisterRequest, min_length: int, ttl_s: int, *, base_url: str = ""
) -> tuple[User, authn.LoginSession]:
    """Create a ``user`` account and log it in. An e-mail that was invited before it had an
    account takes over the account the invitation made (and so finds the invitation)."""
    if get_settings().ldap.enabled:
        raise PermissionDenied(f"Registration is disabled. {LDAP_MANAGED}")
    if data.password1 != data.password2:
        raise InvalidInput("The two password fields didn't match.", field="password2")
    validate_new_password(data.password1, min_length, "password1", data.username)
    invited = None
    if data.email:
        invited = session.scalar(
            select(User.id).where(User.email == data.email, User.auth_source == INVITED)
        )
    owner = session.scalar(select(User.id).where(User.username == data.username))
    if owner is not None and owner != invited:
        raise InvalidInput("A user with that username already exists.", field="username")
    if invited is not None:
        user = claim_invited(session, data.email, data.username, "local")
        assert user is not None
        user.password_hash = hash_password(data.password1)
        user.first_name, user.last_name = data.first_name, data.last_name
        set_groups(session, user.id, ["user"])
        session.flush()
        record_new_user(session, user, base_url)
        return user, authn.start_session(session, user, ttl_s)
    if data.email and session.scalar(select(exists().where(User.email == data.email))):
        raise InvalidInput("A user is already registered with this e-mail address.", field="email")
    user = create_user(
        session,
        username=data.username,
        password=data.password1,
        email=data.email,
        first_name=data.first_name,
        last_name=data.last_name,
    )
    record_new_user(session, user, base_url)
    return user, authn.start_session(session, user, ttl_s)


def logout(
    session: Session, _principal: Principal | None, cookie: str | None, authorization: str | None
) -> None:
    """End the login session (the caller was authenticated first, so a session-cookie logout
    passes the CSRF check)."""
    authn.end_session(session, cookie, authorization)


def change_password(
    session: Session,
    ctx: RequestContext,
    data: PasswordChangeRequest,
    min_length: int,
    throttle: LoginThrottle,
    client: str,
) -> None:
    """Set a new password and end the user's other login sessions and access tokens (the
    one this request came with stays)."""
    user = session.get(User, ctx.principal.user_id)
    assert user is not None
    authorize(ctx.principal, ctx.org, "update:personal_data", Resource(kind="user", id=user.id))
    if user.auth_source != "local" or get_settings().ldap.enabled:
        raise PermissionDenied(f"Passwords cannot be changed here. {LDAP_MANAGED}")
    # The old password is a credential like any other: guessing it goes through the throttle.
    throttle.check(user.username, client)
    if not verify_password(user.password_hash, data.old_password):
        throttle.failed(user.username, client)
        raise InvalidInput("Your old password was entered incorrectly.", field="old_password")
    throttle.succeeded(user.username, client)
    if data.new_password1 != data.new_password2:
        raise InvalidInput("The two password fields didn't match.", field="new_password2")
    validate_new_password(data.new_password1, min_length, "new_password2", user.username)
    user.password_hash = hash_password(data.new_password1)
    authn.revoke_other_credentials(session, ctx.principal)


def ensure_superuser(
    session: Session, username: str, password: str, email: str = ""
) -> tuple[User, bool]:
    """Create the superuser if absent. Returns (user, created). An existing account is left
    as it is (its password is not reset)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is not None:
        return user, False
    user = create_user(
        session,
        username=username,
        password=password,
        email=email,
        groups=("admin",),
        is_superuser=True,
    )
    return user, True


def set_superuser_password(session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.is_superuser = user.is_staff = True
    groups = groups_of(session, [user.id])[user.id]
    if "admin" not in groups:
        set_groups(session, user.id, ["admin", *groups])


# --------------------------------------------------------------------------- access tokens


def _token_read(session: Session, ctx: RequestContext, token: AccessToken) -> AccessTokenRead:
    owner = basic_users(session, ctx, [token.owner_id])[token.owner_id]
    return AccessTokenRead(
        id=token.id,
        name=token.name,
        owner=owner,
        read_only=token.read_only,
        created_date=token.created_date,
        updated_date=token.updated_date,
        expiry_date=token.expiry_date,
        last_used_date=token.last_used_date,
    )


def _get_token(
    session: Session, ctx: RequestContext, token_id: int, scope: str = "view"
) -> AccessToken:
    token = session.get(AccessToken, token_id)
    if token is None:
        raise NotFound("Access token not found.")
    authorize(ctx.principal, ctx.org, scope, Resource(kind="access_token", owner_id=token.owner_id))
    return token


def create_access_token(
    session: Session, ctx: RequestContext, data: AccessTokenWrite
) -> AccessTokenCreated:
    authorize(ctx.principal, ctx.org, "create", Resource(kind="access_token"))
    if ctx.principal.auth == "access_token":
        raise PermissionDenied("An access token cannot create access tokens.")
    if data.expiry_date is not None and data.expiry_date <= utcnow():
        raise InvalidInput("The expiry date must be in the future.", field="expiry_date")
    value = new_access_token()
    now = utcnow()
    token = AccessToken(
        name=data.name,
        key_hash=digest(value),
        owner_id=ctx.principal.user_id,
        read_only=data.read_only,
        expiry_date=data.expiry_date,
        created_date=now,
        updated_date=now,
    )
    session.add(token)
    session.flush()
    read = _token_read(session, ctx, token)
    _record_token(session, ctx, "create", after=read.model_dump(mode="json"))
    return AccessTokenCreated(**read.model_dump(), value=value)


def _record_token(
    session: Session,
    ctx: RequestContext,
    action: str,
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
) -> None:
    changes.record(
        session,
        changes.Change(
            action=action,
            resource="accesstoken",
            after=after,
            before=before,
            actor=changes.Actor.of(ctx),
        ),
    )


_TOKEN_FIELDS = {
    "id": AccessToken.id,
    "name": AccessToken.name,
    "read_only": AccessToken.read_only,
    "created_date": AccessToken.created_date,
    "updated_date": AccessToken.updated_date,
    "expiry_date": AccessToken.expiry_date,
    "last_used_date": AccessToken.last_used_date,
}
ACCESS_TOKEN_LIST = ListSpec(
    policy_paths={},
    fields=_TOKEN_FIELDS,
    search_fields=("name",),
    sort_fields=_TOKEN_FIELDS,
    default_sort=(AccessToken.id.asc(),),
    simple_filters=("name", "read_only"),
)


def list_access_tokens(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[AccessTokenRead]:
    authorize(ctx.principal, ctx.org, "list", Resource(kind="access_token"))
    stmt = select(AccessToken).where(AccessToken.owner_id == ctx.principal.user_id)
    stmt = apply_list_params(stmt, ACCESS_TOKEN_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=[_token_read(session, ctx, r[0]) for r in rows])


def retrieve_access_token(session: Session, ctx: RequestContext, token_id: int) -> AccessTokenRead:
    return _token_read(session, ctx, _get_token(session, ctx, token_id))


def retrieve_current_access_token(session: Session, ctx: RequestContext) -> AccessTokenRead:
    if ctx.principal.access_token_id is None:
        raise NotFound("This request was not authenticated with an access token.")
    return retrieve_access_token(session, ctx, ctx.principal.access_token_id)


def partial_update_access_token(
    session: Session, ctx: RequestContext, token_id: int, data: AccessTokenPatch
) -> AccessTokenRead:
    token = _get_token(session, ctx, token_id, "update")
    before = _token_read(session, ctx, token).model_dump(mode="json")
    if data.name is not None:
        token.name = data.name
    if "expiry_date" in data.model_fields_set:
        if data.expiry_date is not None and data.expiry_date <= utcnow():
            raise InvalidInput("The expiry date must be in the future.", field="expiry_date")
        token.expiry_date = data.expiry_date
    if data.read_only is not None:
        token.read_only = data.read_only
    token.updated_date = utcnow()
    session.flush()
    read = _token_read(session, ctx, token)
    _record_token(session, ctx, "update", after=read.model_dump(mode="json"), before=before)
    return read


def delete_access_token(session: Session, ctx: RequestContext, token_id: int) -> None:
    token = _get_token(session, ctx, token_id, "delete")
    _record_token(
        session, ctx, "delete", before=_token_read(session, ctx, token).model_dump(mode="json")
    )
    session.delete(token)

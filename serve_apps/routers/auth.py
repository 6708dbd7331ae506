"""``/api/auth``: login, logout, register, password change, personal access tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cluster.errors import PermissionDenied
from iam.authn import end_session, start_session
from serve_apps.deps import Ctx, DbSession, Listing, MaybePrincipal, ObjectId, get_settings_dep
from serve_apps.pagination import paginated
from storage.schemas.common import Detail, Paginated
from storage.schemas.users import (
    AccessTokenCreated,
    AccessTokenPatch,
    AccessTokenRead,
    AccessTokenWrite,
    LoginRequest,
    PasswordChangeRequest,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
)
from storage.services import accounts

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _cookie(name: str, value: str, max_age: int, *, http_only: bool, secure: bool) -> str:
    # cvat-sdk parses Set-Cookie with SimpleCookie after urllib3 joins the headers with ", ":
    # a header ending in a flag (HttpOnly, Secure) breaks the parse of every cookie. Flags
    # therefore go first and every cookie ends with SameSite.
    flags = ("; HttpOnly" if http_only else "") + ("; Secure" if secure else "")
    return f"{name}={value}{flags}; Max-Age={max_age}; Path=/; SameSite=Lax"


def _set_login_cookies(request: Request, response: Response, key: str, csrf: str) -> None:
    settings = get_settings_dep(request)
    ttl, secure = settings.auth.session_ttl_s, settings.auth.cookie_secure
    response.headers.append(
        "Set-Cookie", _cookie("csrftoken", csrf, ttl, http_only=False, secure=secure)
    )
    response.headers.append(
        "Set-Cookie", _cookie("sessionid", key, ttl, http_only=True, secure=secure)
    )


@router.post("/login", response_model=TokenResponse)
def login(
    data: LoginRequest, request: Request, response: Response, session: DbSession
) -> TokenResponse:
    """CVAT ``POST /api/auth/login``: sets the ``sessionid`` and ``csrftoken`` cookies."""
    settings = get_settings_dep(request)
    login_session = accounts.login(session, data, settings.auth.session_ttl_s)
    _set_login_cookies(request, response, login_session.key, login_session.csrf_token)
    return TokenResponse(key=login_session.key)


@router.post("/logout", response_model=Detail)
def logout(request: Request, response: Response, session: DbSession, _: MaybePrincipal) -> Detail:
    """CVAT ``POST /api/auth/logout``: ends the session and clears the cookies."""
    end_session(session, request.cookies.get("sessionid"), request.headers.get("authorization"))
    response.headers.append(
        "Set-Cookie", _cookie("csrftoken", "", 0, http_only=False, secure=False)
    )
    response.headers.append("Set-Cookie", _cookie("sessionid", "", 0, http_only=True, secure=False))
    return Detail(detail="Successfully logged out.")


@router.post("/register", response_model=RegisterResponse, status_code=status.HTTP_201_CREATED)
def register(
    data: RegisterRequest, request: Request, response: Response, session: DbSession
) -> RegisterResponse:
    """CVAT ``POST /api/auth/register``: creates a ``user`` account and logs it in."""
    settings = get_settings_dep(request)
    if not settings.auth.allow_registration:
        raise PermissionDenied("Registration is disabled on this server.")
    user = accounts.register(session, data, settings.auth.password_min_length)
    login_session = start_session(session, user, settings.auth.session_ttl_s)
    _set_login_cookies(request, response, login_session.key, login_session.csrf_token)
    return RegisterResponse(
        username=user.username,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        key=login_session.key,
    )


@router.post("/password/change", response_model=Detail)
def change_password(
    data: PasswordChangeRequest, request: Request, session: DbSession, ctx: Ctx
) -> Detail:
    """CVAT ``POST /api/auth/password/change``."""
    settings = get_settings_dep(request)
    accounts.change_password(session, ctx, data, settings.auth.password_min_length)
    return Detail(detail="New password has been saved.")


@router.get("/access_tokens", response_model=Paginated[AccessTokenRead])
def list_access_tokens(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[AccessTokenRead]:
    """CVAT ``GET /api/auth/access_tokens``: the caller's tokens (values are never shown)."""
    return paginated(
        request, params, accounts.list_access_tokens(session, ctx, params.page, params.page_size)
    )


@router.post(
    "/access_tokens", response_model=AccessTokenCreated, status_code=status.HTTP_201_CREATED
)
def create_access_token(data: AccessTokenWrite, session: DbSession, ctx: Ctx) -> AccessTokenCreated:
    """CVAT ``POST /api/auth/access_tokens``: the value is shown once; only its hash is kept."""
    return accounts.create_access_token(session, ctx, data)


@router.get("/access_tokens/self", response_model=AccessTokenRead)
def retrieve_current_access_token(session: DbSession, ctx: Ctx) -> AccessTokenRead:
    """CVAT ``GET /api/auth/access_tokens/self``: the token this request was made with."""
    return accounts.retrieve_current_access_token(session, ctx)


@router.get("/access_tokens/{token_id}", response_model=AccessTokenRead)
def retrieve_access_token(token_id: ObjectId, session: DbSession, ctx: Ctx) -> AccessTokenRead:
    """CVAT ``GET /api/auth/access_tokens/{id}``."""
    return accounts.retrieve_access_token(session, ctx, token_id)


@router.patch("/access_tokens/{token_id}", response_model=AccessTokenRead)
def partial_update_access_token(
    token_id: ObjectId, data: AccessTokenPatch, session: DbSession, ctx: Ctx
) -> AccessTokenRead:
    """CVAT ``PATCH /api/auth/access_tokens/{id}``."""
    return accounts.partial_update_access_token(session, ctx, token_id, data)


@router.delete("/access_tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_access_token(token_id: ObjectId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``DELETE /api/auth/access_tokens/{id}``: revokes the token."""
    accounts.delete_access_token(session, ctx, token_id)

"""``/api/auth``: login, logout, register, password change, personal access tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cvat_ray.cluster.errors import PermissionDenied
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.bodies import KIB, body_rule
from cvat_ray.serve_apps.deps import (
    Call,
    Listing,
    ObjectId,
    SettingsDep,
    ThrottleDep,
    base_url_of,
    client_of,
)
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Detail, Paginated
from cvat_ray.storage.schemas.users import (
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
from cvat_ray.storage.services import accounts

router = APIRouter(prefix="/api/auth", tags=["auth"])

# Login, register and logout bodies are read before anybody is known: a few fields only.
_PUBLIC_BODY = 64 * KIB
# The login's ``key``: CVAT clients ignore it or use it only when it is not empty (cvat-sdk
# asserts the cookies and reads nothing else). The session is the cookie, and its key is not
# handed to scripts in the body, where it would work as a CSRF-free ``Token`` header.
_NO_TOKEN = ""


def _cookie(name: str, value: str, max_age: int, *, http_only: bool, secure: bool) -> str:
    # cvat-sdk parses Set-Cookie with SimpleCookie after urllib3 joins the headers with ", ":
    # a header ending in a flag (HttpOnly, Secure) breaks the parse of every cookie. Flags
    # therefore go first and every cookie ends with SameSite.
    flags = ("; HttpOnly" if http_only else "") + ("; Secure" if secure else "")
    return f"{name}={value}{flags}; Max-Age={max_age}; Path=/; SameSite=Lax"


def _set_login_cookies(settings: Settings, response: Response, key: str, csrf: str) -> None:
    ttl, secure = settings.auth.session_ttl_s, settings.auth.cookie_secure
    response.headers.append(
        "Set-Cookie", _cookie("csrftoken", csrf, ttl, http_only=False, secure=secure)
    )
    response.headers.append(
        "Set-Cookie", _cookie("sessionid", key, ttl, http_only=True, secure=secure)
    )


@router.post("/login", response_model=TokenResponse)
@body_rule(_PUBLIC_BODY, public=True)
async def login(
    data: LoginRequest,
    request: Request,
    response: Response,
    call: Call,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> TokenResponse:
    """CVAT ``POST /api/auth/login``: sets the ``sessionid`` and ``csrftoken`` cookies (the
    login throttle answers 429 while the client must wait)."""
    session = await call.anonymous(
        accounts.login, data, settings.auth.session_ttl_s, throttle, client_of(request)
    )
    _set_login_cookies(settings, response, session.key, session.csrf_token)
    return TokenResponse(key=_NO_TOKEN)


@router.post("/logout", response_model=Detail)
@body_rule(_PUBLIC_BODY, public=True)
async def logout(request: Request, response: Response, call: Call) -> Detail:
    """CVAT ``POST /api/auth/logout``: ends the session and clears the cookies."""
    await call.optional(
        accounts.logout, request.cookies.get("sessionid"), request.headers.get("authorization")
    )
    response.headers.append(
        "Set-Cookie", _cookie("csrftoken", "", 0, http_only=False, secure=False)
    )
    response.headers.append("Set-Cookie", _cookie("sessionid", "", 0, http_only=True, secure=False))
    return Detail(detail="Successfully logged out.")


@router.post("/register", response_model=RegisterResponse, status_code=status.HTTP_201_CREATED)
@body_rule(_PUBLIC_BODY, public=True)
async def register(
    data: RegisterRequest,
    request: Request,
    response: Response,
    call: Call,
    settings: SettingsDep,
) -> RegisterResponse:
    """CVAT ``POST /api/auth/register``: creates a ``user`` account and logs it in."""
    if not settings.auth.allow_registration:
        raise PermissionDenied("Registration is disabled on this server.")
    user, session = await call.anonymous(
        accounts.register,
        data,
        settings.auth.password_min_length,
        settings.auth.session_ttl_s,
        base_url=base_url_of(request),
    )
    _set_login_cookies(settings, response, session.key, session.csrf_token)
    return RegisterResponse(
        username=user.username,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        key=None,
    )


@router.post("/password/change", response_model=Detail)
async def change_password(
    data: PasswordChangeRequest,
    request: Request,
    call: Call,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> Detail:
    """CVAT ``POST /api/auth/password/change``: ends the user's other sessions and revokes
    their other access tokens."""
    await call(
        accounts.change_password,
        data,
        settings.auth.password_min_length,
        throttle,
        client_of(request),
    )
    return Detail(detail="New password has been saved.")


@router.get("/access_tokens", response_model=Paginated[AccessTokenRead])
async def list_access_tokens(
    request: Request, call: Call, params: Listing
) -> Paginated[AccessTokenRead]:
    """CVAT ``GET /api/auth/access_tokens``: the caller's tokens (values are never shown)."""
    page = await call(accounts.list_access_tokens, params)
    return paginated(request, params, page)


@router.post(
    "/access_tokens", response_model=AccessTokenCreated, status_code=status.HTTP_201_CREATED
)
async def create_access_token(data: AccessTokenWrite, call: Call) -> AccessTokenCreated:
    """CVAT ``POST /api/auth/access_tokens``: the value is shown once; only its hash is kept."""
    return await call(accounts.create_access_token, data)


@router.get("/access_tokens/self", response_model=AccessTokenRead)
async def retrieve_current_access_token(call: Call) -> AccessTokenRead:
    """CVAT ``GET /api/auth/access_tokens/self``: the token this request was made with."""
    return await call(accounts.retrieve_current_access_token)


@router.get("/access_tokens/{token_id}", response_model=AccessTokenRead)
async def retrieve_access_token(token_id: ObjectId, call: Call) -> AccessTokenRead:
    """CVAT ``GET /api/auth/access_tokens/{id}``."""
    return await call(accounts.retrieve_access_token, token_id)


@router.patch("/access_tokens/{token_id}", response_model=AccessTokenRead)
async def partial_update_access_token(
    token_id: ObjectId, data: AccessTokenPatch, call: Call
) -> AccessTokenRead:
    """CVAT ``PATCH /api/auth/access_tokens/{id}``."""
    return await call(accounts.partial_update_access_token, token_id, data)


@router.delete("/access_tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_access_token(token_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/auth/access_tokens/{id}``: revokes the token."""
    await call(accounts.delete_access_token, token_id)

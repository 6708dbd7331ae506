"""``/api/users``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from serve_apps.deps import Ctx, DbSession, Listing, ObjectId
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.users import UserPatch, UserRead
from storage.services import users as user_service

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=Paginated[UserRead])
def list_users(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[UserRead]:
    """CVAT ``GET /api/users``: admins see everyone, others themselves and fellow members."""
    return paginated(request, params, user_service.list_users(session, ctx, params))


@router.get("/self", response_model=UserRead)
def retrieve_self(session: DbSession, ctx: Ctx) -> UserRead:
    """CVAT ``GET /api/users/self``."""
    return user_service.retrieve_self(session, ctx)


@router.get("/{user_id}", response_model=UserRead)
def retrieve_user(user_id: ObjectId, session: DbSession, ctx: Ctx) -> UserRead:
    """CVAT ``GET /api/users/{id}``."""
    return user_service.retrieve_user(session, ctx, user_id)


@router.patch("/{user_id}", response_model=UserRead)
def partial_update_user(
    user_id: ObjectId, data: UserPatch, session: DbSession, ctx: Ctx
) -> UserRead:
    """CVAT ``PATCH /api/users/{id}``: names by the user, e-mail and permissions by admins."""
    return user_service.partial_update_user(session, ctx, user_id, data)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: ObjectId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``DELETE /api/users/{id}``."""
    user_service.delete_user(session, ctx, user_id)

"""``/api/users``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import BasicUser, Paginated
from cvat_ray.storage.schemas.users import UserPatch, UserRead
from cvat_ray.storage.services import users as user_service

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=Paginated[UserRead | BasicUser])
async def list_users(
    request: Request, call: Call, params: Listing
) -> Paginated[UserRead | BasicUser]:
    """CVAT ``GET /api/users``: admins see everyone (whole records), others themselves and
    fellow active members (the basic shape: id, username, names)."""
    return paginated(request, params, await call(user_service.list_users, params))


@router.get("/self", response_model=UserRead)
async def retrieve_self(call: Call) -> UserRead:
    """CVAT ``GET /api/users/self``."""
    return await call(user_service.retrieve_self)


@router.get("/{user_id}", response_model=UserRead | BasicUser)
async def retrieve_user(user_id: ObjectId, call: Call) -> UserRead | BasicUser:
    """CVAT ``GET /api/users/{id}``: the whole record for admins and for oneself, the basic
    shape otherwise."""
    return await call(user_service.retrieve_user, user_id)


@router.patch("/{user_id}", response_model=UserRead | BasicUser)
async def partial_update_user(
    user_id: ObjectId, data: UserPatch, call: Call
) -> UserRead | BasicUser:
    """CVAT ``PATCH /api/users/{id}``: names by the user, e-mail and permissions by admins
    (CVAT answers non-admins with the basic shape)."""
    return await call(user_service.partial_update_user, user_id, data)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/users/{id}``."""
    await call(user_service.delete_user, user_id)

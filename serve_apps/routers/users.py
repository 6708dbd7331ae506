"""``/api/users``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.users import UserPatch, UserRead
from cvat_ray.storage.services import users as user_service

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=Paginated[UserRead])
async def list_users(request: Request, call: Call, params: Listing) -> Paginated[UserRead]:
    """CVAT ``GET /api/users``: admins see everyone, others themselves and fellow members."""
    return paginated(request, params, await call(user_service.list_users, params))


@router.get("/self", response_model=UserRead)
async def retrieve_self(call: Call) -> UserRead:
    """CVAT ``GET /api/users/self``."""
    return await call(user_service.retrieve_self)


@router.get("/{user_id}", response_model=UserRead)
async def retrieve_user(user_id: ObjectId, call: Call) -> UserRead:
    """CVAT ``GET /api/users/{id}``."""
    return await call(user_service.retrieve_user, user_id)


@router.patch("/{user_id}", response_model=UserRead)
async def partial_update_user(user_id: ObjectId, data: UserPatch, call: Call) -> UserRead:
    """CVAT ``PATCH /api/users/{id}``: names by the user, e-mail and permissions by admins."""
    return await call(user_service.partial_update_user, user_id, data)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/users/{id}``."""
    await call(user_service.delete_user, user_id)

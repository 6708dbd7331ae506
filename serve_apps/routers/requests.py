"""``/api/requests``: background requests of the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from cvat_ray.serve_apps.deps import Call, Listing
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.requests import RequestRead
from cvat_ray.storage.services import requests as request_service

router = APIRouter(prefix="/api/requests", tags=["requests"])

RequestId = Annotated[str, Path(max_length=128)]


@router.get("", response_model=Paginated[RequestRead])
async def list_requests(request: Request, call: Call, params: Listing) -> Paginated[RequestRead]:
    """CVAT ``GET /api/requests`` (filters ``action``, ``target``, ``status``, ``task_id``, ...)."""
    return paginated(request, params, await call(request_service.list_requests, params))


@router.get("/{request_id}", response_model=RequestRead)
async def retrieve_request(request_id: RequestId, call: Call) -> RequestRead:
    """CVAT ``GET /api/requests/{id}``: what the clients poll until finished or failed."""
    return await call(request_service.retrieve_request, request_id)


@router.post("/{request_id}/cancel")
async def cancel_request(request_id: RequestId, call: Call) -> None:
    """CVAT ``POST /api/requests/{id}/cancel``: only queued requests can be cancelled."""
    await call(request_service.cancel_request, request_id)

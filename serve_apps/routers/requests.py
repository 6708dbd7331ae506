"""``/api/requests``: background requests of the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from serve_apps.deps import Ctx, DbSession, Listing
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.requests import RequestRead
from storage.services import requests as request_service

router = APIRouter(prefix="/api/requests", tags=["requests"])

RequestId = Annotated[str, Path(max_length=128)]


@router.get("", response_model=Paginated[RequestRead])
def list_requests(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[RequestRead]:
    """CVAT ``GET /api/requests`` (filters ``action``, ``target``, ``status``, ``task_id``, ...)."""
    return paginated(request, params, request_service.list_requests(session, ctx, params))


@router.get("/{request_id}", response_model=RequestRead)
def retrieve_request(request_id: RequestId, session: DbSession, ctx: Ctx) -> RequestRead:
    """CVAT ``GET /api/requests/{id}``: what the clients poll until finished or failed."""
    return request_service.retrieve_request(session, ctx, request_id)


@router.post("/{request_id}/cancel")
def cancel_request(request_id: RequestId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``POST /api/requests/{id}/cancel``: only queued requests can be cancelled."""
    request_service.cancel_request(session, ctx, request_id)

"""``/api/issues`` and ``/api/comments``: review issues on a job's frames and their comments."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.issues import (
    CommentPatch,
    CommentRead,
    CommentWrite,
    IssuePatch,
    IssueRead,
    IssueWrite,
)
from cvat_ray.storage.services import issues as issue_service

router = APIRouter(tags=["issues"])


@router.get("/api/issues", response_model=Paginated[IssueRead])
async def list_issues(request: Request, call: Call, params: Listing) -> Paginated[IssueRead]:
    """CVAT ``GET /api/issues`` (filters ``job_id``, ``task_id``, ``frame_id``, ``resolved``,
    ``owner``, ``assignee``)."""
    return paginated(request, params, await call(issue_service.list_issues, params))


@router.post("/api/issues", response_model=IssueRead, status_code=status.HTTP_201_CREATED)
async def create_issue(data: IssueWrite, call: Call) -> IssueRead:
    """CVAT ``POST /api/issues``: an issue on a job's frame, opened with its first comment."""
    return await call(issue_service.create_issue, data)


@router.get("/api/issues/{issue_id}", response_model=IssueRead)
async def retrieve_issue(issue_id: ObjectId, call: Call) -> IssueRead:
    """CVAT ``GET /api/issues/{id}``."""
    return await call(issue_service.retrieve_issue, issue_id)


@router.patch("/api/issues/{issue_id}", response_model=IssueRead)
async def partial_update_issue(issue_id: ObjectId, data: IssuePatch, call: Call) -> IssueRead:
    """CVAT ``PATCH /api/issues/{id}``: position, assignee, resolved."""
    return await call(issue_service.partial_update_issue, issue_id, data)


@router.delete("/api/issues/{issue_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_issue(issue_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/issues/{id}``: with its comments."""
    await call(issue_service.delete_issue, issue_id)


@router.get("/api/comments", response_model=Paginated[CommentRead])
async def list_comments(request: Request, call: Call, params: Listing) -> Paginated[CommentRead]:
    """CVAT ``GET /api/comments`` (filters ``issue_id``, ``job_id``, ``frame_id``, ``owner``)."""
    return paginated(request, params, await call(issue_service.list_comments, params))


@router.post("/api/comments", response_model=CommentRead, status_code=status.HTTP_201_CREATED)
async def create_comment(data: CommentWrite, call: Call) -> CommentRead:
    """CVAT ``POST /api/comments``."""
    return await call(issue_service.create_comment, data)


@router.get("/api/comments/{comment_id}", response_model=CommentRead)
async def retrieve_comment(comment_id: ObjectId, call: Call) -> CommentRead:
    """CVAT ``GET /api/comments/{id}``."""
    return await call(issue_service.retrieve_comment, comment_id)


@router.patch("/api/comments/{comment_id}", response_model=CommentRead)
async def partial_update_comment(
    comment_id: ObjectId, data: CommentPatch, call: Call
) -> CommentRead:
    """CVAT ``PATCH /api/comments/{id}``: the message."""
    return await call(issue_service.partial_update_comment, comment_id, data)


@router.delete("/api/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(comment_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/comments/{id}``."""
    await call(issue_service.delete_comment, comment_id)

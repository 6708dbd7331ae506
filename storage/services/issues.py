"""Review issues on a job's frames, and their comments (``/api/issues``, ``/api/comments``).

An issue marks a region (``position``) on a frame of a job; it is opened with its first
comment (CVAT's ``message``), may be assigned and resolved. Who may do what follows CVAT's
issues.csv and comments.csv (scopes ``create@job``, ``create@issue``, ``view``, ``update``,
``delete``): people who work on the job, task or project, plus the issue's owner and
assignee.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.iam.authz import Resource, authorize, list_filter, person
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Comment, Issue, Job, Project, Segment, Task, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import CountedLink, Page
from cvat_ray.storage.schemas.issues import (
    CommentPatch,
    CommentRead,
    CommentWrite,
    IssuePatch,
    IssueRead,
    IssueWrite,
)
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.projects import check_assignee
from cvat_ray.storage.services.resources import get_job, job_resource
from cvat_ray.storage.services.users import basic_users

_Project = aliased(Project, name="issue_project")
_Owner = aliased(User, name="issue_owner")
_Assignee = aliased(User, name="issue_assignee")
_CommentOwner = aliased(User, name="comment_owner")


def _relations_paths(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization_id": Task.organization_id,
        "job.assignee_id": Job.assignee_id,
        "task.owner_id": Task.owner_id,
        "task.assignee_id": Task.assignee_id,
        "project.owner_id": _Project.owner_id,
        "project.assignee_id": _Project.assignee_id,
        **extra,
    }


ISSUE_LIST = ListSpec(
    policy_paths=_relations_paths({"owner_id": Issue.owner_id, "assignee_id": Issue.assignee_id}),
    fields={
        "id": Issue.id,
        "job_id": Issue.job_id,
        "task_id": Job.task_id,
        "frame_id": Issue.frame,
        "resolved": Issue.resolved,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
    },
    search_fields=("owner", "assignee"),
    sort_fields={
        "id": Issue.id,
        "job_id": Issue.job_id,
        "task_id": Job.task_id,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
        "resolved": Issue.resolved,
        "frame_id": Issue.frame,
    },
    default_sort=(Issue.id.desc(),),
    simple_filters=("job_id", "task_id", "frame_id", "resolved", "owner", "assignee"),
)

COMMENT_LIST = ListSpec(
    policy_paths=_relations_paths(
        {
            "owner_id": Comment.owner_id,
            "issue.owner_id": Issue.owner_id,
            "issue.assignee_id": Issue.assignee_id,
        }
    ),
    fields={
        "id": Comment.id,
        "issue_id": Comment.issue_id,
        "frame_id": Issue.frame,
        "job_id": Issue.job_id,
        "owner": _CommentOwner.username,
    },
    search_fields=("owner",),
    sort_fields={
        "id": Comment.id,
        "issue_id": Comment.issue_id,
        "frame_id": Issue.frame,
        "job_id": Issue.job_id,
        "owner": _CommentOwner.username,
    },
    default_sort=(Comment.id.desc(),),
    simple_filters=("issue_id", "frame_id", "job_id", "owner"),
)


def _issue_stmt() -> Any:
    return (
        select(Issue)
        .join(Job, Job.id == Issue.job_id)
        .join(Task, Task.id == Job.task_id)
        .outerjoin(_Project, _Project.id == Task.project_id)
        .outerjoin(_Owner, _Owner.id == Issue.owner_id)
        .outerjoin(_Assignee, _Assignee.id == Issue.assignee_id)
    )


def _comment_stmt() -> Any:
    return (
        select(Comment)
        .join(Issue, Issue.id == Comment.issue_id)
        .join(Job, Job.id == Issue.job_id)
        .join(Task, Task.id == Job.task_id)
        .outerjoin(_Project, _Project.id == Task.project_id)
        .outerjoin(_CommentOwner, _CommentOwner.id == Comment.owner_id)
    )


def _issue_reads(session: Session, ctx: RequestContext, issues: Sequence[Issue]) -> list[IssueRead]:
    ids = [i.id for i in issues]
    counts = {
        int(issue_id): int(count)
        for issue_id, count in session.execute(
            select(Comment.issue_id, func.count(Comment.id))
            .where(Comment.issue_id.in_(ids))
            .group_by(Comment.issue_id)
        ).all()
    }
    users = basic_users(session, ctx, [u for i in issues for u in (i.owner_id, i.assignee_id)])
    return [
        IssueRead(
            id=i.id,
            frame=i.frame,
            position=i.position,
            job=i.job_id,
            owner=users.get(i.owner_id) if i.owner_id else None,
            assignee=users.get(i.assignee_id) if i.assignee_id else None,
            created_date=i.created_date,
            updated_date=i.updated_date,
            resolved=i.resolved,
            comments=CountedLink(
                url=ctx.url(f"/api/comments?issue_id={i.id}"), count=counts.get(i.id, 0)
            ),
        )
        for i in issues
    ]


def _comment_reads(
    session: Session, ctx: RequestContext, comments: Sequence[Comment]
) -> list[CommentRead]:
    users = basic_users(session, ctx, [c.owner_id for c in comments])
    return [
        CommentRead(
            id=c.id,
            issue=c.issue_id,
            owner=users.get(c.owner_id) if c.owner_id else None,
            message=c.message,
            created_date=c.created_date,
            updated_date=c.updated_date,
        )
        for c in comments
    ]


def _get_issue(session: Session, issue_id: int, *, for_update: bool = False) -> Issue:
    stmt = select(Issue).where(Issue.id == issue_id)
    if for_update:
        stmt = stmt.with_for_update()
    issue = session.scalar(stmt)
    if issue is None:
        raise NotFound("Issue not found.")
    return issue


def _get_comment(session: Session, comment_id: int) -> Comment:
    comment = session.get(Comment, comment_id)
    if comment is None:
        raise NotFound("Comment not found.")
    return comment


def _job_facts(session: Session, job: Job) -> tuple[int | None, dict[str, object]]:
    """(organization, facts) of a job for the policies: its task's and project's people and
    its own assignee."""
    resource = job_resource(session, job)
    facts = {**resource.facts, "job": {"assignee": person(job.assignee_id)}}
    return resource.organization_id, facts


def issue_resource(session: Session, issue: Issue) -> Resource:
    org_id, facts = _job_facts(session, get_job(session, issue.job_id))
    return Resource(
        kind="issue",
        id=issue.id,
        owner_id=issue.owner_id,
        assignee_id=issue.assignee_id,
        organization_id=org_id,
        facts=facts,
    )


def _on_issue(session: Session, issue: Issue, comment: Comment | None = None) -> Resource:
    """A comment (or one about to be written, ``create@issue``) on ``issue``."""
    org_id, facts = _job_facts(session, get_job(session, issue.job_id))
    return Resource(
        kind="comment",
        id=comment.id if comment else None,
        owner_id=comment.owner_id if comment else None,
        organization_id=org_id,
        facts={
            **facts,
            "issue": {"owner": person(issue.owner_id), "assignee": person(issue.assignee_id)},
        },
    )


def _comment_resource(session: Session, comment: Comment) -> Resource:
    return _on_issue(session, _get_issue(session, comment.issue_id), comment)


def _scope(session: Session, issue: Issue) -> Scope:
    job = get_job(session, issue.job_id)
    task = session.get(Task, job.task_id)
    assert task is not None
    return Scope(
        org_id=task.organization_id, project_id=task.project_id, task_id=task.id, job_id=job.id
    )


def _check_frame(session: Session, job: Job, frame: int) -> None:
    segment = session.get(Segment, job.segment_id)
    assert segment is not None
    inside = segment.start_frame <= frame <= segment.stop_frame
    if segment.frames is not None:
        inside = frame in segment.frames
    if not inside:
        raise InvalidInput(
            f"frame {frame} is outside the job's frames "
            f"{segment.start_frame}..{segment.stop_frame}",
            field="frame",
        )


# ---------------------------------------------------------------------------------- issues


def list_issues(session: Session, ctx: RequestContext, params: ListParams) -> Page[IssueRead]:
    policy = compile_policy(list_filter(ctx.principal, ctx.org, "issue"), ISSUE_LIST.policy_paths)
    stmt = apply_list_params(_issue_stmt().where(policy), ISSUE_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_issue_reads(session, ctx, [r[0] for r in rows]))


def retrieve_issue(session: Session, ctx: RequestContext, issue_id: int) -> IssueRead:
    issue = _get_issue(session, issue_id)
    authorize(ctx.principal, ctx.org, "view", issue_resource(session, issue))
    return _issue_reads(session, ctx, [issue])[0]


def create_issue(session: Session, ctx: RequestContext, data: IssueWrite) -> IssueRead:
    job = session.get(Job, data.job)
    if job is None:
        raise InvalidInput(f"Job {data.job} does not exist.", field="job")
    org_id, facts = _job_facts(session, job)
    authorize(
        ctx.principal,
        ctx.org,
        "create@job",
        Resource(kind="issue", organization_id=org_id, facts=facts),
    )
    _check_frame(session, job, data.frame)
    check_assignee(session, data.assignee, org_id, "assignee")
    now = utcnow()
    issue = Issue(
        job_id=job.id,
        frame=data.frame,
        position=data.position,
        owner_id=ctx.principal.user_id,
        assignee_id=data.assignee,
        resolved=data.resolved,
        created_date=now,
        updated_date=now,
    )
    session.add(issue)
    session.flush()
    session.add(
        Comment(
            issue_id=issue.id,
            owner_id=ctx.principal.user_id,
            message=data.message,
            created_date=now,
            updated_date=now,
        )
    )
    session.flush()
    read = _issue_reads(session, ctx, [issue])[0]
    recorded.record(session, ctx, "create", "issue", after=read, scope=_scope(session, issue))
    return read


def partial_update_issue(
    session: Session, ctx: RequestContext, issue_id: int, patch: IssuePatch
) -> IssueRead:
    issue = _get_issue(session, issue_id, for_update=True)
    resource = issue_resource(session, issue)
    authorize(ctx.principal, ctx.org, "update", resource)
    before = _issue_reads(session, ctx, [issue])[0]
    fields = patch.model_fields_set
    if "assignee" in fields:
        check_assignee(session, patch.assignee, resource.organization_id, "assignee")
        issue.assignee_id = patch.assignee
    if patch.position is not None:
        issue.position = patch.position
    if patch.resolved is not None:
        issue.resolved = patch.resolved
    issue.updated_date = utcnow()
    session.flush()
    read = _issue_reads(session, ctx, [issue])[0]
    recorded.record(
        session, ctx, "update", "issue", after=read, before=before, scope=_scope(session, issue)
    )
    return read


def delete_issue(session: Session, ctx: RequestContext, issue_id: int) -> None:
    issue = _get_issue(session, issue_id, for_update=True)
    authorize(ctx.principal, ctx.org, "delete", issue_resource(session, issue))
    recorded.record(
        session,
        ctx,
        "delete",
        "issue",
        before=_issue_reads(session, ctx, [issue])[0],
        scope=_scope(session, issue),
    )
    session.delete(issue)
    session.flush()


def issue_counts(session: Session, job_ids: Sequence[int]) -> dict[int, int]:
    """Issues per job, for ``JobRead.issues.count``."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Issue.job_id, func.count(Issue.id))
        .where(Issue.job_id.in_(list(job_ids)))
        .group_by(Issue.job_id)
    ).all()
    return {int(job_id): int(count) for job_id, count in rows}


# ---------------------------------------------------------------------------------- comments


def list_comments(session: Session, ctx: RequestContext, params: ListParams) -> Page[CommentRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "comment"), COMMENT_LIST.policy_paths
    )
    stmt = apply_list_params(_comment_stmt().where(policy), COMMENT_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_comment_reads(session, ctx, [r[0] for r in rows]))


def retrieve_comment(session: Session, ctx: RequestContext, comment_id: int) -> CommentRead:
    comment = _get_comment(session, comment_id)
    authorize(ctx.principal, ctx.org, "view", _comment_resource(session, comment))
    return _comment_reads(session, ctx, [comment])[0]


def create_comment(session: Session, ctx: RequestContext, data: CommentWrite) -> CommentRead:
    issue = session.get(Issue, data.issue)
    if issue is None:
        raise InvalidInput(f"Issue {data.issue} does not exist.", field="issue")
    resource = _on_issue(session, issue)
    authorize(ctx.principal, ctx.org, "create@issue", resource)
    now = utcnow()
    comment = Comment(
        issue_id=issue.id,
        owner_id=ctx.principal.user_id,
        message=data.message,
        created_date=now,
        updated_date=now,
    )
    session.add(comment)
    issue.updated_date = now
    session.flush()
    read = _comment_reads(session, ctx, [comment])[0]
    recorded.record(session, ctx, "create", "comment", after=read, scope=_scope(session, issue))
    return read


def partial_update_comment(
    session: Session, ctx: RequestContext, comment_id: int, patch: CommentPatch
) -> CommentRead:
    comment = _get_comment(session, comment_id)
    authorize(ctx.principal, ctx.org, "update", _comment_resource(session, comment))
    before = _comment_reads(session, ctx, [comment])[0]
    comment.message = patch.message
    comment.updated_date = utcnow()
    session.flush()
    read = _comment_reads(session, ctx, [comment])[0]
    scope = _scope(session, _get_issue(session, comment.issue_id))
    recorded.record(session, ctx, "update", "comment", after=read, before=before, scope=scope)
    return read


def delete_comment(session: Session, ctx: RequestContext, comment_id: int) -> None:
    comment = _get_comment(session, comment_id)
    authorize(ctx.principal, ctx.org, "delete", _comment_resource(session, comment))
    recorded.record(
        session,
        ctx,
        "delete",
        "comment",
        before=_comment_reads(session, ctx, [comment])[0],
        scope=_scope(session, _get_issue(session, comment.issue_id)),
    )
    session.delete(comment)
    session.flush()

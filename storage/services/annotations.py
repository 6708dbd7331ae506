"""Annotations of jobs and tasks: ``GET/PUT/PATCH/DELETE /api/{jobs|tasks}/{id}/annotations``.

CVAT's semantics: PUT replaces everything (objects carry no ids); PATCH ``action=create``
adds (no ids), ``update`` replaces the objects with the given ids and creates those without
one (CVAT's backward compatibility), ``delete`` removes the objects with the given ids; DELETE
clears. ``group`` null becomes 0; ``source`` and ``score`` are kept. PUT and PATCH return the
objects they wrote, with their ids. Ids of objects that are not in the job (or task) are
refused with a 400, and a failing request changes nothing (one transaction).

Concurrency: a write locks the rows of the jobs it changes (``SELECT ... FOR UPDATE`` in id
order; SQLite serialises writers anyway), so two clients on one job never lose each other's
changes, and bumps ``updated_date`` of those jobs and of the task (the SDK's dataset cache
keys on the task's). Reads stream from one snapshot (``cvat_ray.storage.annotations.reads``).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.iam.authz import authorize
from cvat_ray.storage import changes
from cvat_ray.storage.annotations import bulk, reads
from cvat_ray.storage.annotations.merge import (
    JobIndex,
    JobRange,
    Split,
    TrackJoiner,
    duplicates,
    split_for_jobs,
)
from cvat_ray.storage.annotations.validation import (
    Scope,
    Validator,
    ids_of,
    load_scope,
    require_no_ids,
)
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.events import outbox as events_outbox
from cvat_ray.storage.models import Data, Job, Segment, Task, utcnow
from cvat_ray.storage.schemas.annotations import (
    LabeledData,
    LabeledTrack,
    decode_labeled_data,
    encode,
    gc_paused,
)
from cvat_ray.storage.services.resources import get_job, get_task, job_resource, task_resource

ACTIONS = ("create", "update", "delete")


# ---------------------------------------------------------------------------------- helpers


def _ranges(session: Session, *conditions: object) -> list[JobRange]:
    rows = session.execute(
        select(Job.id, Segment.start_frame, Segment.stop_frame, Segment.frames)
        .join(Segment, Segment.id == Job.segment_id)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(Segment.start_frame, Job.id)
    ).all()
    return [
        JobRange(r.id, r.start_frame, r.stop_frame, frozenset(r.frames) if r.frames else None)
        for r in rows
    ]


def _task_jobs(session: Session, task_id: int) -> list[JobRange]:
    # Only annotation jobs make up the task view (ground-truth jobs are reviewed apart).
    return _ranges(session, Job.task_id == task_id, Job.type == "annotation")


def _job_range(session: Session, job: Job) -> JobRange:
    return _ranges(session, Job.id == job.id)[0]


def task_size(session: Session, task: Task) -> int:
    if task.data_id is None:
        return 0
    return session.scalar(select(Data.size).where(Data.id == task.data_id)) or 0


def _job_scope(session: Session, job: Job) -> tuple[Scope, JobRange]:
    task = get_task(session, job.task_id)
    rng = _job_range(session, job)
    stop = min(rng.stop, task_size(session, task) - 1)
    scope = load_scope(session, task, rng.start, stop)
    scope.frames = rng.frames
    return scope, rng


def _lock(session: Session, job_ids: Sequence[int], task_id: int) -> None:
    """Lock the jobs' rows (id order, so writers never deadlock) and bump their and the
    task's ``updated_date``. On SQLite the UPDATE takes the database's write lock, which the
    id allocator relies on."""
    now = utcnow()
    ids = sorted(job_ids)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Job.id).where(Job.id.in_(ids)).order_by(Job.id).with_for_update())
    session.execute(
        update(Job).where(Job.id.in_(ids)).values(updated_date=now),
        execution_options={"synchronize_session": False},
    )
    session.execute(
        update(Task).where(Task.id == task_id).values(updated_date=now),
        execution_options={"synchronize_session": False},
    )


_SECTIONS = (("tags", bulk.TAGS), ("shapes", bulk.SHAPES), ("tracks", bulk.TRACKS))


def _owned(
    session: Session, data: LabeledData, job_ids: set[int], *, ids_required: bool
) -> dict[str, dict[int, int]]:
    """id -> job for every object with an id, refusing ids that are not in ``job_ids``."""
    result: dict[str, dict[int, int]] = {}
    for section, table in _SECTIONS:
        objects = getattr(data, section)
        if ids_required:
            ids = ids_of(objects, section)
        else:
            ids = [o.id for o in objects if o.id is not None]
            if len(set(ids)) != len(ids):
                seen: set[int] = set()
                for i, o in enumerate(objects):
                    if o.id is not None and o.id in seen:
                        raise InvalidInput(f"object {o.id} is given twice", f"{section}[{i}].id")
                    if o.id is not None:
                        seen.add(o.id)
        found = bulk.owners(session, table, ids)
        for i, obj in enumerate(objects):
            if obj.id is not None and found.get(obj.id) not in job_ids:
                where = "job" if len(job_ids) == 1 else "task"
                raise InvalidInput(f"object {obj.id} is not in this {where}", f"{section}[{i}].id")
        result[section] = found
    return result


def _check_element_ids(session: Session, data: LabeledData) -> None:
    """Elements of updated objects keep their ids only if they were elements of that object."""
    for section, table in (("shapes", bulk.SHAPES), ("tracks", bulk.TRACKS)):
        pairs = [
            (i, k, obj.id, e.id)
            for i, obj in enumerate(getattr(data, section))
            for k, e in enumerate(obj.elements)
            if e.id is not None
        ]
        if not pairs:
            continue
        parents = bulk.element_owners(session, table, [p[3] for p in pairs])
        for i, k, parent, element in pairs:
            if parent is None or parents.get(element) != parent:
                raise InvalidInput(
                    f"element {element} is not an element of this object",
                    f"{section}[{i}].elements[{k}].id",
                )


def _insert(
    session: Session, per_job: dict[int, LabeledData], ids: bulk.IdAllocator | None = None
) -> None:
    ids = ids or bulk.IdAllocator(session)
    for data in per_job.values():
        bulk.assign_ids(data, ids)
    bulk.insert_objects(session, per_job)


def _delete_by_ids(session: Session, data: LabeledData) -> None:
    for section, table in _SECTIONS:
        ids = [o.id for o in getattr(data, section) if o.id is not None]
        if ids:
            bulk.delete_ids(session, table, ids)


def _action(action: str | None) -> str:
    if action not in ACTIONS:
        raise InvalidInput(f"must be one of {', '.join(ACTIONS)}", field="action")
    return action


# ---------------------------------------------------------------------------------- reads

_OPEN = b'{"version":0,"tags":['
_CLOSE = b'],"intervals":[]}'


class _List:
    """Writes the items of one JSON array across chunks: a comma before all but the first."""

    def __init__(self) -> None:
        self.empty = True

    def chunk(self, items: Sequence[bytes] | Sequence[str]) -> bytes:
        text = ",".join(items) if isinstance(items[0], str) else b",".join(items)  # type: ignore[arg-type]
        data = text.encode() if isinstance(text, str) else text
        if self.empty:
            self.empty = False
            return data
        return b"," + data


def _section_chunks(
    session: Session, section: str, job_id: int, out: _List, excluded: Collection[int] = ()
) -> Iterator[bytes]:
    for batch in reads.stream_section(session, section, job_id, excluded=excluded):
        if batch:
            yield out.chunk(batch)


def _stream_jobs(session: Session, jobs: Sequence[JobRange]) -> Iterator[bytes]:
    """The ``LabeledData`` of a job, or of a task as the union of its jobs."""
    reads.begin_snapshot(session)
    yield _OPEN
    for section in ("tags", "shapes"):
        if section == "shapes":
            yield b'],"shapes":['
        out = _List()
        previous: JobRange | None = None
        for job in jobs:
            excluded: set[int] = set()
            if previous is not None and job.start <= previous.stop:
                shared = (job.start, previous.stop)
                excluded = duplicates(
                    reads.load_section(session, section, previous.id, frames=shared),
                    reads.load_section(session, section, job.id, frames=shared),
                )
            yield from _section_chunks(session, section, job.id, out, excluded)
            previous = job
    yield b'],"tracks":['
    out = _List()
    if len(jobs) == 1:
        yield from _section_chunks(session, "tracks", jobs[0].id, out)
    else:
        for ready in joined_tracks(session, jobs):
            yield out.chunk([encode(t) for t in ready])
    yield _CLOSE


def joined_tracks(session: Session, jobs: Sequence[JobRange]) -> Iterator[list[LabeledTrack]]:
    """The tracks of a task's jobs, those that continue across a job boundary joined into
    one (batches; only tracks alive at a job's end are held between jobs)."""
    joiner = TrackJoiner()
    for n, job in enumerate(jobs):
        tracks = [
            t
            for batch in reads.stream_section(session, "tracks", job.id)
            for t in reads.decode("tracks", batch)
        ]
        ready = joiner.job(job, tracks, last=n == len(jobs) - 1)
        if ready:
            yield ready


def task_job_ranges(session: Session, task_id: int) -> list[JobRange]:
    """The annotation jobs that make up the task view, in frame order."""
    return _task_jobs(session, task_id)


def job_range(session: Session, job: Job) -> JobRange:
    return _job_range(session, job)


def job_annotations(session: Session, ctx: RequestContext, job_id: int) -> Iterator[bytes]:
    """CVAT ``GET /api/jobs/{id}/annotations``, streamed."""
    job = get_job(session, job_id)
    authorize(ctx.principal, ctx.org, "view:annotations", job_resource(session, job))
    yield from _stream_jobs(session, [_job_range(session, job)])


def task_annotations(session: Session, ctx: RequestContext, task_id: int) -> Iterator[bytes]:
    """CVAT ``GET /api/tasks/{id}/annotations``: the union of the task's jobs, streamed."""
    task = get_task(session, task_id)
    authorize(ctx.principal, ctx.org, "view:annotations", task_resource(session, task))
    yield from _stream_jobs(session, _task_jobs(session, task.id))


# ---------------------------------------------------------------------------------- job writes


def _record_changes(
    session: Session,
    actor: changes.Actor,
    action: str,
    data: LabeledData,
    task: Task,
    job_id: int | None = None,
) -> None:
    """CVAT's annotation events: ``<action>:tags`` once, ``<action>:shapes`` and
    ``<action>:tracks`` once per shape type (``obj_name``; a track's is its first shape's),
    with the number of objects and (up to 1000 of) their ids in CVAT's payload form."""
    _emit(session, actor, action, _counted(data), task, job_id)


Counted = dict[tuple[str, str | None], tuple[int, list[dict[str, Any]]]]


def _counted(data: LabeledData) -> Counted:
    """What the annotation events of ``data`` say: per section and shape type, the number
    of objects and the first ids."""
    # counted per kind, the first ids collected until each kind has its share: no dict per
    # object (an import writes millions)
    counted: Counted = {}
    if data.tags:
        counted[("tags", None)] = (len(data.tags), _first_ids(data.tags))
    per_type = collections.Counter(str(s.type) for s in data.shapes)
    listed = _first_ids_by_type(data.shapes, per_type)
    for shape_type, count in per_type.items():
        counted[("shapes", shape_type)] = (count, listed[shape_type])
    for track in data.tracks:
        first = str(track.shapes[0].type) if track.shapes else None
        count, entries = counted.get(("tracks", first)) or (0, [])
        if track.id is not None and len(entries) < _LISTED:
            entries.append({"id": track.id, "shapes": [{"id": s.id} for s in track.shapes if s.id]})
        counted[("tracks", first)] = (count + 1, entries)
    return counted


# how many objects' ids an annotation event lists (CVAT's payload keeps them all; the count
# is always the whole number)
_LISTED = 1000


def _first_ids(objects: Sequence[Any]) -> list[dict[str, Any]]:
    """``[{"id": ..}]`` of the first ``_LISTED`` objects with an id."""
    with_id = (o for o in objects if o.id is not None)
    return [{"id": o.id} for o in itertools.islice(with_id, _LISTED)]


def _first_ids_by_type(
    shapes: Sequence[Any], counts: Mapping[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """:func:`_first_ids` per shape type (``counts``: shapes per type), the shapes read only
    until every type's list is full."""
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in counts}
    open_kinds = set(counts)
    for shape in shapes:
        if not open_kinds:
            break
        kind = str(shape.type)
        entries = out[kind]
        if shape.id is not None and len(entries) < _LISTED:
            entries.append({"id": shape.id})
            if len(entries) == min(_LISTED, counts[kind]):
                open_kinds.discard(kind)
    return out


def _record_cleared(
    session: Session, actor: changes.Actor, task: Task, job_ids: Sequence[int], job_id: int | None
) -> None:
    """CVAT's ``delete:tags|shapes|tracks`` events of what a PUT, an import or a DELETE is about
    to clear from ``job_ids`` (counted in SQL, not read back). Only analytics takes these
    events: with it off, the queries are skipped."""
    if not events_outbox.enabled():
        return
    found = bulk.summary(session, job_ids, listed=_LISTED)
    listed = {key: (n, [{"id": i} for i in ids]) for key, (n, ids) in found.items()}
    _emit(session, actor, "delete", listed, task, job_id)


def _emit(
    session: Session,
    actor: changes.Actor,
    action: str,
    groups: dict[tuple[str, str | None], tuple[int, list[dict[str, Any]]]],
    task: Task,
    job_id: int | None,
) -> None:
    scope_ids = changes.Scope(
        org_id=task.organization_id, project_id=task.project_id, task_id=task.id, job_id=job_id
    )
    for (section, kind), (count, listed) in groups.items():
        changes.record(
            session,
            changes.Change(
                action=action,
                resource=section,
                scope_ids=scope_ids,
                actor=actor,
                extra={
                    "event": {
                        "obj_name": kind,
                        "count": min(count, 65535),
                        "payload": {section: listed},
                    }
                },
            ),
        )


def _job_for_write(session: Session, ctx: RequestContext, job_id: int, scope: str) -> Job:
    job = get_job(session, job_id)
    authorize(ctx.principal, ctx.org, scope, job_resource(session, job))
    return job


def put_job_annotations(
    session: Session, ctx: RequestContext, job_id: int, body: bytes
) -> LabeledData:
    """CVAT ``PUT /api/jobs/{id}/annotations``: replace everything."""
    job = _job_for_write(session, ctx, job_id, "update:annotations")
    with gc_paused():
        data = decode_labeled_data(body)
        require_no_ids(data)
        scope, _ = _job_scope(session, job)
        Validator(scope).payload(data)
        _lock(session, [job.id], job.task_id)
        task = get_task(session, job.task_id)
        actor = changes.Actor.of(ctx)
        _record_cleared(session, actor, task, [job.id], job.id)
        bulk.clear_jobs(session, [job.id])
        _insert(session, {job.id: data})
        _record_changes(session, actor, "create", data, task, job.id)
    return data


def patch_job_annotations(
    session: Session, ctx: RequestContext, job_id: int, action: str | None, body: bytes
) -> LabeledData:
    """CVAT ``PATCH /api/jobs/{id}/annotations?action=create|update|delete``."""
    action = _action(action)
    job = _job_for_write(session, ctx, job_id, "update:annotations")
    with gc_paused():
        data = decode_labeled_data(body)
        if action == "delete":
            _owned(session, data, {job.id}, ids_required=True)
            _lock(session, [job.id], job.task_id)
            _delete_by_ids(session, data)
            _record_changes(
                session,
                changes.Actor.of(ctx),
                "delete",
                data,
                get_task(session, job.task_id),
                job.id,
            )
            return data
        scope, _ = _job_scope(session, job)
        if action == "create":
            require_no_ids(data)
        Validator(scope).payload(data)
        if action == "update":
            _owned(session, data, {job.id}, ids_required=False)
            _check_element_ids(session, data)
        _lock(session, [job.id], job.task_id)
        if action == "update":
            _delete_by_ids(session, data)
        _insert(session, {job.id: data})
        _record_changes(
            session, changes.Actor.of(ctx), action, data, get_task(session, job.task_id), job.id
        )
    return data


def delete_job_annotations(session: Session, ctx: RequestContext, job_id: int) -> None:
    """CVAT ``DELETE /api/jobs/{id}/annotations``."""
    job = _job_for_write(session, ctx, job_id, "delete:annotations")
    _lock(session, [job.id], job.task_id)
    _record_cleared(
        session, changes.Actor.of(ctx), get_task(session, job.task_id), [job.id], job.id
    )
    bulk.clear_jobs(session, [job.id])


# ---------------------------------------------------------------------------------- task writes


def _task_for_write(
    session: Session, ctx: RequestContext, task_id: int, scope: str
) -> tuple[Task, list[JobRange]]:
    task = get_task(session, task_id)
    authorize(ctx.principal, ctx.org, scope, task_resource(session, task))
    return task, _task_jobs(session, task.id)


def _task_scope(session: Session, task: Task, jobs: Sequence[JobRange]) -> Scope:
    if not jobs:
        # No data yet: no frame can hold an annotation.
        return load_scope(session, task, 0, -1)
    return load_scope(session, task, min(j.start for j in jobs), max(j.stop for j in jobs))


def _check_frames_in_jobs(
    data: LabeledData, jobs: Sequence[JobRange], index: JobIndex | None = None
) -> None:
    """Frames of new objects must be in some job (GT-only frames are not)."""
    index = index or JobIndex(jobs)
    for section in ("tags", "shapes"):
        for i, obj in enumerate(getattr(data, section)):
            if obj.id is None and not index.holding(obj.frame):
                raise InvalidInput(
                    f"frame {obj.frame} is in no annotation job", f"{section}[{i}].frame"
                )


def _write_task(
    session: Session,
    task: Task,
    jobs: Sequence[JobRange],
    data: LabeledData,
    *,
    replace: bool,
    cleared_by: changes.Actor | None = None,
    job_id: int | None = None,
) -> None:
    """Write ``data`` into the jobs by frame; ``replace``: clear them first (with the
    ``delete`` events of what is cleared, under ``cleared_by``, when given)."""
    _open_jobs(session, task, jobs, replace=replace, cleared_by=cleared_by, job_id=job_id)
    _insert_by_job(session, data, jobs)


def _open_jobs(
    session: Session,
    task: Task,
    jobs: Sequence[JobRange],
    *,
    replace: bool,
    cleared_by: changes.Actor | None,
    job_id: int | None,
) -> None:
    """Lock the jobs for writing and, with ``replace``, clear them (see :func:`_write_task`)."""
    _lock(session, [j.id for j in jobs], task.id)
    if replace:
        if cleared_by is not None:
            _record_cleared(session, cleared_by, task, [j.id for j in jobs], job_id)
        bulk.clear_jobs(session, [j.id for j in jobs])


def _insert_by_job(
    session: Session,
    data: LabeledData,
    jobs: Sequence[JobRange],
    index: JobIndex | None = None,
    ids: bulk.IdAllocator | None = None,
) -> None:
    """Insert ``data`` into the locked jobs holding its frames (``index`` and ``ids``: the
    caller's, kept across its writes)."""
    split, per_job = _split(data, jobs, index)
    _insert(session, per_job, ids)
    split.copy_track_ids()


def _split(
    data: LabeledData, jobs: Sequence[JobRange], index: JobIndex | None
) -> tuple[Split, dict[int, LabeledData]]:
    """``data`` split into the jobs holding its frames: the split, and its jobs that got
    objects."""
    split = split_for_jobs(data, jobs, index)
    return split, {k: v for k, v in split.per_job.items() if v.tags or v.shapes or v.tracks}


def put_task_annotations(
    session: Session, ctx: RequestContext, task_id: int, body: bytes
) -> LabeledData:
    """CVAT ``PUT /api/tasks/{id}/annotations``: replace the annotations of every job."""
    task, jobs = _task_for_write(session, ctx, task_id, "update:annotations")
    with gc_paused():
        data = decode_labeled_data(body)
        require_no_ids(data)
        Validator(_task_scope(session, task, jobs)).payload(data)
        _check_frames_in_jobs(data, jobs)
        actor = changes.Actor.of(ctx)
        _write_task(session, task, jobs, data, replace=True, cleared_by=actor)
        _record_changes(session, actor, "create", data, task)
    return data


def patch_task_annotations(
    session: Session, ctx: RequestContext, task_id: int, action: str | None, body: bytes
) -> LabeledData:
    """CVAT ``PATCH /api/tasks/{id}/annotations?action=...``. New objects are split into the
    jobs by frame; objects with ids are updated or deleted in the job that holds them."""
    action = _action(action)
    task, jobs = _task_for_write(session, ctx, task_id, "update:annotations")
    job_ids = {j.id for j in jobs}
    with gc_paused():
        data = decode_labeled_data(body)
        if action == "delete":
            _owned(session, data, job_ids, ids_required=True)
            _lock(session, sorted(job_ids), task.id)
            _delete_by_ids(session, data)
            _record_changes(session, changes.Actor.of(ctx), "delete", data, task)
            return data
        if action == "create":
            require_no_ids(data)
        scope = _task_scope(session, task, jobs)
        Validator(scope).payload(data)
        _check_frames_in_jobs(data, jobs)
        if action == "create":
            _write_task(session, task, jobs, data, replace=False)
            _record_changes(session, changes.Actor.of(ctx), "create", data, task)
            return data
        owned = _owned(session, data, job_ids, ids_required=False)
        _check_element_ids(session, data)
        by_id = {j.id: j for j in jobs}
        existing = LabeledData()
        new = LabeledData()
        for section in ("tags", "shapes", "tracks"):
            for i, obj in enumerate(getattr(data, section)):
                if obj.id is None:
                    getattr(new, section).append(obj)
                    continue
                job = by_id[owned[section][obj.id]]
                # An updated object stays in its job: its frames must be the job's.
                checker = Validator(scope.with_frames(job.start, job.stop, job.frames))
                getattr(checker, section[:-1])(obj, f"{section}[{i}]")
                getattr(existing, section).append(obj)
        split = split_for_jobs(new, jobs)
        _lock(session, sorted(job_ids), task.id)
        _delete_by_ids(session, existing)
        per_job: dict[int, LabeledData] = {}
        for section in ("tags", "shapes", "tracks"):
            for obj in getattr(existing, section):
                target = per_job.setdefault(owned[section][obj.id], LabeledData())
                getattr(target, section).append(obj)
        for job_id, part in split.per_job.items():
            target = per_job.setdefault(job_id, LabeledData())
            target.tags.extend(part.tags)
            target.shapes.extend(part.shapes)
            target.tracks.extend(part.tracks)
        _insert(session, per_job)
        split.copy_track_ids()
        _record_changes(session, changes.Actor.of(ctx), "update", data, task)
    return data


def delete_task_annotations(session: Session, ctx: RequestContext, task_id: int) -> None:
    """CVAT ``DELETE /api/tasks/{id}/annotations``: clear every job."""
    task, jobs = _task_for_write(session, ctx, task_id, "delete:annotations")
    if jobs:
        _lock(session, [j.id for j in jobs], task.id)
        _record_cleared(session, changes.Actor.of(ctx), task, [j.id for j in jobs], None)
        bulk.clear_jobs(session, [j.id for j in jobs])


# ---------------------------------------------------------------------------------- model output


def run_jobs(session: Session, task_id: int, job_id: int | None) -> list[JobRange]:
    """The jobs an auto-annotation run writes to: the task's, or one of them."""
    jobs = _task_jobs(session, task_id)
    return [j for j in jobs if j.id == job_id] if job_id is not None else jobs


def lock_run_jobs(session: Session, task_id: int, jobs: Sequence[JobRange]) -> None:
    """Hold the jobs against other annotation writers until the transaction ends (a run's
    ``cleanup`` marks and replaces rows under it; authorized when the run was created)."""
    if jobs:
        _lock(session, [j.id for j in jobs], task_id)


def add_model_annotations(
    session: Session,
    task: Task,
    jobs: Sequence[JobRange],
    data: LabeledData,
    actor: changes.Actor,
    job_id: int | None = None,
) -> tuple[int, list[str]]:
    """Append model output to ``jobs`` (authorized when the run was created). Objects that
    fail validation are dropped one by one, not the batch: returns (objects written, the
    reasons of those dropped). What is written makes the annotation events of a user's save
    (``create:tags|shapes``), named after ``actor``, the run's owner."""
    if not jobs:
        return 0, []
    scope = _task_scope(session, task, jobs)
    checker = Validator(scope)
    index = JobIndex(jobs)
    kept = LabeledData()
    dropped: list[str] = []
    for section in ("tags", "shapes"):
        for obj in getattr(data, section):
            if not index.holding(obj.frame):
                continue
            try:
                getattr(checker, section[:-1])(obj, f"frame {obj.frame}")
            except InvalidInput as exc:
                dropped.append(str(exc))
                continue
            getattr(kept, section).append(obj)
    if kept.tags or kept.shapes:
        _write_task(session, task, jobs, kept, replace=False)
        _record_changes(session, actor, "create", kept, task, job_id)
    return len(kept.tags) + len(kept.shapes), dropped


class ImportWriter:
    """Writes an imported dataset into ``jobs`` (a task's, or one job ``job_id``) chunk by
    chunk in the caller's transaction, so a failing import changes nothing (authorized when
    the import was requested): the first chunk clears the jobs, each is validated as a PUT
    is (:meth:`check`) and written through the bulk path, and makes the annotation events of a PUT
    (``create:tags|shapes|tracks`` per shape type) named after ``actor``, the import's
    owner. What holds for the whole import (the jobs' lock, the task's labels, the caches
    of the validator and of the job lookup) is set up once."""

    def __init__(
        self,
        session: Session,
        task: Task,
        jobs: Sequence[JobRange],
        actor: changes.Actor,
        job_id: int | None = None,
    ) -> None:
        self.session = session
        self.task = task
        self.jobs = jobs
        self.actor = actor
        self.job_id = job_id
        self.validator = Validator(_task_scope(session, task, jobs))
        self.index = JobIndex(jobs)
        self.ids = bulk.IdAllocator(session)
        self.started = False

    def check(self, data: LabeledData) -> LabeledData:
        """Validate a chunk as a PUT is (no database access: the chunk maker calls this, in
        its thread or forked process, so the writer only writes)."""
        with gc_paused():
            self.validator.payload(data)
            _check_frames_in_jobs(data, self.jobs, self.index)
        return data

    def rows(self, data: LabeledData, ids: bulk.IdAllocator) -> CopyChunk:
        """A chunk that passed :meth:`check` as rows, its ids taken from ``ids`` (a
        connection of the process making it; no other database access), for
        :meth:`write_rows` (PostgreSQL)."""
        with gc_paused():
            split, per_job = _split(data, self.jobs, self.index)
            for part in per_job.values():
                bulk.assign_ids(part, ids)
            texts = bulk.copy_texts(per_job)
            split.copy_track_ids()
            events = [(section, kind, count, listed)
                      for (section, kind), (count, listed) in _counted(data).items()]  # fmt: skip
        return CopyChunk(texts, len(data.tags) + len(data.shapes) + len(data.tracks), events)

    def write_rows(self, chunk: CopyChunk) -> None:
        """Write a chunk made by :meth:`rows` (the first one locks and clears the jobs)."""
        self._start()
        bulk.insert_copy_texts(self.session, chunk.texts)
        events = {(section, kind): (count, listed)
                  for section, kind, count, listed in chunk.events}  # fmt: skip
        _emit(self.session, self.actor, "create", events, self.task, self.job_id)

    def _start(self) -> None:
        if not self.started:
            _open_jobs(self.session, self.task, self.jobs, replace=True,
                       cleared_by=self.actor, job_id=self.job_id)  # fmt: skip
            self.started = True

    def write(self, data: LabeledData) -> None:
        """Write a chunk that passed :meth:`check` (the first one locks and clears the
        jobs)."""
        with gc_paused():
            self._start()
            _insert_by_job(self.session, data, self.jobs, self.index, self.ids)
            _record_changes(self.session, self.actor, "create", data, self.task, self.job_id)


class CopyChunk(msgspec.Struct, gc=False):
    """A checked chunk of an import made into rows away from the writer
    (:meth:`ImportWriter.rows`): each table's COPY text, its number of objects and what its
    annotation events say (section, shape type, count, first ids)."""

    texts: dict[str, str]
    count: int
    events: list[tuple[str, str | None, int, list[dict[str, Any]]]]


def require_no_format(fmt: str | None) -> None:
    if fmt:
        raise InvalidInput(
            "Datasets are exported with POST .../dataset/export?format= and imported with "
            "POST .../annotations?format=; omit 'format' to read or write annotations as JSON.",
            field="format",
        )


__all__ = [
    "delete_job_annotations",
    "delete_task_annotations",
    "job_annotations",
    "patch_job_annotations",
    "patch_task_annotations",
    "put_job_annotations",
    "put_task_annotations",
    "task_annotations",
]

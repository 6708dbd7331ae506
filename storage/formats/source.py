"""Datasets read from the database for exports: a task, one job, or a project's tasks.

Frames come from ``data_frames`` and annotations from the annotations read path
(:mod:`cvat_ray.storage.annotations.reads`: the database writes each object's JSON), both
a page of frames at a time, so an export holds one page of annotations however large the
task. Tracks are read once per task (joined across jobs as the annotations GET joins them)
and interpolated page by page into per-frame shapes. Deleted frames and frames in no
annotation job are left out, as CVAT does. Where jobs overlap, a frame's annotations are
taken from the first job that holds it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.annotations import reads
from cvat_ray.storage.annotations.interpolation import FrameShape, interpolate
from cvat_ray.storage.annotations.merge import JobRange
from cvat_ray.storage.db import forked_session
from cvat_ray.storage.formats import forked
from cvat_ray.storage.formats.model import (
    AttrDef,
    Item,
    LabelDef,
    Meta,
    Shape,
    Tag,
    Track,
    TrackKey,
)
from cvat_ray.storage.media.render import decode_arrays, read_encoded
from cvat_ray.storage.models import AttributeSpec, Data, DataFrame, Job, Label, Project, Task
from cvat_ray.storage.schemas.annotations import (
    AttributeVal,
    LabeledTrack,
    SubLabeledTrack,
)
from cvat_ray.storage.services.annotations import job_range, joined_tracks, task_job_ranges
from cvat_ray.storage.services.data_access import frames_plan

T = TypeVar("T")

# frames per page of annotations read at once
PAGE = 128
# frames whose images are read at once
IMAGE_BATCH = 16


class _Attr(msgspec.Struct, gc=False):
    spec_id: int
    value: str


class _Shape(msgspec.Struct, gc=False):
    """A stored shape as the read path writes it, decoded without the API's checks (the
    rows were checked when written): an export decodes millions of them."""

    type: str
    label_id: int
    frame: int
    points: list[float]
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    rotation: float = 0.0
    group: int | None = 0
    source: str = "manual"
    score: float = 1.0
    attributes: list[_Attr] = []
    elements: list[_Shape] = []
    id: int | None = None


class _Tag(msgspec.Struct, gc=False):
    label_id: int
    frame: int
    group: int | None = 0
    source: str = "manual"
    attributes: list[_Attr] = []
    id: int | None = None


_DECODE = {
    "tags": msgspec.json.Decoder(_Tag).decode,
    "shapes": msgspec.json.Decoder(_Shape).decode,
}


def _section(session: Session, section: str, job_id: int, frames: tuple[int, int]) -> Iterator[Any]:
    decode = _DECODE[section]
    for batch in reads.stream_section(session, section, job_id, frames=frames):
        for body in batch:
            yield decode(body)


def video_frame_name(frame: int) -> str:
    return f"frame_{frame:06d}"


@dataclass
class Part:
    """One task's share of a dataset: the jobs (all, or the one exported) and its subset."""

    task: Task
    data: Data | None
    jobs: list[JobRange]
    subset: str

    @property
    def video(self) -> bool:
        return self.data is not None and self.data.original_chunk_type == "video"


class Names:
    """Label and attribute ids -> names for a set of labels (a task's or a project's)."""

    def __init__(self, session: Session, owner_clause: Any) -> None:
        rows = list(session.scalars(select(Label).where(owner_clause).order_by(Label.id)))
        self.labels = {r.id: r for r in rows}
        specs = (
            list(
                session.scalars(
                    select(AttributeSpec)
                    .where(AttributeSpec.label_id.in_(list(self.labels)))
                    .order_by(AttributeSpec.id)
                )
            )
            if rows
            else []
        )
        self.specs = {a.id: a for a in specs}
        self._names: dict[int, str] = {}
        # plain dicts: ORM attribute reads cost microseconds each, per annotation
        self._spec_names = {a.id: a.name for a in specs}
        self.by_label: dict[int, list[AttributeSpec]] = {}
        for a in specs:
            self.by_label.setdefault(a.label_id, []).append(a)

    def label(self, label_id: int) -> str:
        name = self._names.get(label_id)
        if name is None:
            row = self.labels.get(label_id)
            name = self._names[label_id] = row.name if row is not None else str(label_id)
        return name

    def attrs(self, values: Sequence[AttributeVal] | Sequence[_Attr]) -> dict[str, str]:
        if not values:
            return {}
        names = self._spec_names
        return {names[v.spec_id]: v.value for v in values if v.spec_id in names}

    def defs(self) -> list[LabelDef]:
        def attr_defs(label_id: int) -> list[AttrDef]:
            return [
                AttrDef(
                    a.name,
                    a.input_type,
                    a.mutable,
                    a.default_value,
                    a.values.split("\n") if a.values else [],
                )
                for a in self.by_label.get(label_id, [])
            ]

        children: dict[int, list[Label]] = {}
        for row in self.labels.values():
            if row.parent_id is not None:
                children.setdefault(row.parent_id, []).append(row)
        return [
            LabelDef(
                row.name,
                row.type,
                row.color,
                attr_defs(row.id),
                [
                    LabelDef(c.name, c.type, c.color, attr_defs(c.id))
                    for c in children.get(row.id, [])
                ],
                row.svg,
            )
            for row in self.labels.values()
            if row.parent_id is None
        ]


class DbDataset:
    """A :class:`~cvat_ray.storage.formats.model.Dataset` over the database."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        parts: list[Part],
        names: Names,
        meta: Meta,
    ) -> None:
        self.session = session
        self.settings = settings
        self.parts = parts
        self.names = names
        self.meta = meta
        self._tracks: dict[int, list[LabeledTrack]] = {}
        # called after each page of items with the share of frames done (progress, and
        # the place where a cancelled export stops)
        self.on_page: Callable[[float], None] | None = None
        self._total = max(1, sum(p.data.size for p in parts if p.data is not None))
        self._done = 0
        self._parent_session: Session | None = None

    # ------------------------------------------------------------------ frames

    def _owned(self, part: Part) -> list[tuple[JobRange, int, int]]:
        """(job, first, last): the frames each job contributes (the first job holding a
        frame wins)."""
        out: list[tuple[JobRange, int, int]] = []
        done = -1
        for job in sorted(part.jobs, key=lambda j: (j.start, j.id)):
            first = max(job.start, done + 1)
            if first <= job.stop:
                out.append((job, first, job.stop))
                done = job.stop
        return out

    def _parts(self, subset: str | None) -> list[Part]:
        return [p for p in self.parts if subset is None or p.subset == subset]

    def _kept(self, part: Part) -> Callable[[int], bool]:
        """Whether a frame of ``part`` is exported (not deleted, in an annotation job)."""
        assert part.data is not None
        deleted = set(part.data.deleted_frames or ())
        explicit = [j.frames for j in part.jobs if j.frames is not None]
        if explicit:
            return lambda f: f not in deleted and any(f in e for e in explicit)
        return lambda f: f not in deleted

    def _frame_page(self, part: Part, first: int, last: int) -> list[Item]:
        assert part.data is not None
        kept = self._kept(part)
        rows = self.session.execute(
            select(DataFrame.frame, DataFrame.path, DataFrame.width, DataFrame.height)
            .where(
                DataFrame.data_id == part.data.id,
                DataFrame.frame >= first,
                DataFrame.frame <= last,
            )
            .order_by(DataFrame.frame)
        ).all()
        # a video's frames all share the video's path and size
        return [
            Item(r.frame, video_frame_name(r.frame) if part.video else r.path, r.width,
                 r.height, part.subset)
            for r in rows
            if kept(r.frame)
        ]  # fmt: skip

    def _firsts(self, plan: list[tuple[Part, JobRange, int, int]]) -> list[int]:
        """Where each page's items start among the plan's items (a query per part)."""
        out: list[int] = []
        first = 0
        current: Part | None = None
        frames: list[int] = []
        for part, _, lo, hi in plan:
            if part is not current:
                assert part.data is not None
                current, kept = part, self._kept(part)
                query = select(DataFrame.frame).where(DataFrame.data_id == part.data.id)
                frames = sorted(f for f in self.session.scalars(query) if kept(f))
            out.append(first)
            first += bisect.bisect_right(frames, hi) - bisect.bisect_left(frames, lo)
        return out

    def _pages(self, part: Part) -> Iterator[tuple[JobRange, int, int]]:
        for job, first, last in self._owned(part):
            for lo in range(first, last + 1, PAGE):
                yield job, lo, min(last, lo + PAGE - 1)

    def frames(self, subset: str | None = None) -> Iterator[Item]:
        for part in self._parts(subset):
            if part.data is None:
                continue
            for _, lo, hi in self._pages(part):
                yield from self._frame_page(part, lo, hi)

    # ------------------------------------------------------------------ annotations

    def _task_tracks(self, part: Part) -> list[LabeledTrack]:
        cached = self._tracks.get(part.task.id)
        if cached is None:
            # one task's tracks are held at a time
            cached = [t for batch in joined_tracks(self.session, part.jobs) for t in batch]
            self._tracks = {part.task.id: cached}
        return cached

    def _tag(self, t: _Tag) -> Tag:
        return Tag(
            self.names.label(t.label_id), self.names.attrs(t.attributes), t.group or 0, t.source
        )

    def _shape(self, s: _Shape) -> Shape:
        shape = Shape(
            s.type,
            self.names.label(s.label_id),
            list(s.points),
            self.names.attrs(s.attributes),
            s.occluded,
            s.outside,
            s.z_order,
            s.rotation,
            s.group or 0,
            s.source,
            s.score,
        )
        if s.elements:
            shape.elements = [self._shape(e) for e in s.elements]
        return shape

    def _frame_shape(self, track: LabeledTrack, fs: FrameShape) -> Shape:
        attrs = self.names.attrs(track.attributes)
        attrs.update(self.names.attrs(fs.attributes))
        shape = Shape(
            fs.type,
            self.names.label(track.label_id),
            list(fs.points),
            attrs,
            fs.occluded,
            fs.outside,
            fs.z_order,
            fs.rotation,
            track.group or 0,
            track.source,
            track_id=track.id,
            keyframe=fs.keyframe,
        )
        shape.elements = [
            Shape(
                es.type,
                self.names.label(label_id),
                list(es.points),
                self.names.attrs(es.attributes),
                es.occluded,
                es.outside,
                es.z_order,
                es.rotation,
                track_id=track.id,
                keyframe=es.keyframe,
            )
            for label_id, es in fs.elements
        ]
        return shape

    def _page_items(self, part: Part, job: JobRange, lo: int, hi: int) -> list[Item]:
        """Frames ``lo``..``hi`` of ``job`` as items with their tags and shapes."""
        page = self._frame_page(part, lo, hi)
        if not page:
            return page
        by_frame = {item.frame: item for item in page}
        for t in _section(self.session, "tags", job.id, (lo, hi)):
            item = by_frame.get(t.frame)
            if item is not None:
                item.tags.append(self._tag(t))
        for s in _section(self.session, "shapes", job.id, (lo, hi)):
            item = by_frame.get(s.frame)
            if item is not None:
                item.shapes.append(self._shape(s))
        for track in self._task_tracks(part):
            if track.frame > hi or _ends_before(track, lo):
                continue
            for fs in interpolate(track, lo, hi + 1, include_outside=False):
                item = by_frame.get(fs.frame)
                if item is not None:
                    item.shapes.append(self._frame_shape(track, fs))
        return page

    def _page_done(self, lo: int, hi: int) -> None:
        if self.on_page is not None:
            self._done += hi - lo + 1
            self.on_page(min(1.0, self._done / self._total))

    def items(self, subset: str | None = None) -> Iterator[Item]:
        for part, job, lo, hi in self._plan(subset):
            yield from self._page_items(part, job, lo, hi)
            self._page_done(lo, hi)

    def _plan(self, subset: str | None) -> list[tuple[Part, JobRange, int, int]]:
        return [
            (part, job, lo, hi)
            for part in self._parts(subset)
            if part.data is not None
            for job, lo, hi in self._pages(part)
        ]

    def map_pages(
        self, subset: str | None, convert: Callable[[list[Item], int], T], kind: type[T]
    ) -> Generator[T, None, None]:
        """``convert(items, first)`` for each page of items (with their annotations) in
        order, ``first`` the index of the page's first item among the subset's items.

        Large exports on PostgreSQL make their pages in forked processes
        (``datasets.export_processes``), each reading this session's snapshot on a
        connection of its own; ``convert`` runs there, and its results (msgspec-encodable,
        of type ``kind``) come back in page order."""
        plan = self._plan(subset)
        processes = self._processes(plan)
        if not processes:
            first = 0
            for part, job, lo, hi in plan:
                page = self._page_items(part, job, lo, hi)
                yield convert(page, first)
                first += len(page)
                self._page_done(lo, hi)
            return
        firsts = self._firsts(plan)
        snapshot = reads.export_snapshot(self.session)
        # what the children read without a query is loaded before they are forked
        for part in self._parts(subset):
            if part.data is not None:
                self._task_tracks(part)
                break

        def make(n: int) -> T:
            part, job, lo, hi = plan[n]
            return convert(self._page_items(part, job, lo, hi), firsts[n])

        pages = forked.pages_in_children(
            len(plan), make, kind, processes, functools.partial(self._reconnect, snapshot)
        )
        with contextlib.closing(pages):  # a stop (a cancel, an error) ends the processes
            for (_, _, lo, hi), result in zip(plan, pages, strict=True):
                yield result
                self._page_done(lo, hi)

    def _processes(self, plan: list[tuple[Part, JobRange, int, int]]) -> int:
        """How many processes make ``plan``'s pages (0: this thread)."""
        settings = self.settings.datasets
        frames = sum(hi - lo + 1 for _, _, lo, hi in plan)
        if (
            settings.export_processes == 0
            or not plan
            or frames < settings.fork_export_from_frames
            or self.session.get_bind().dialect.name != "postgresql"
            or not forked.available()
        ):
            return 0
        return min(settings.export_processes, len(plan))

    def _reconnect(self, snapshot: str) -> None:
        """In a forked page process: read ``snapshot`` on a connection of its own.

        The parent's session (and the connection it shares with the parent) is kept
        referenced and never used: freeing it would end the parent's connection through
        the shared socket. Its objects are detached, so that a lazy load fails instead."""
        parent = self.session
        parent.expunge_all()
        self._parent_session = parent
        self.session = forked_session(parent)
        reads.join_snapshot(self.session, snapshot)

    def tracks(self) -> Iterator[tuple[int, Track]]:
        """Each track with its shape on every frame of its span (``keyframe`` marks keys)."""
        for part in self.parts:
            if part.data is None or not part.jobs:
                continue
            stop = max(j.stop for j in part.jobs) + 1
            for track in self._task_tracks(part):
                yield track.id or 0, self._track(track, stop)

    def _keys(self, t: SubLabeledTrack, stop: int) -> list[TrackKey]:
        return [
            TrackKey(
                fs.frame,
                fs.type,
                list(fs.points),
                fs.outside,
                fs.occluded,
                fs.keyframe,
                fs.z_order,
                fs.rotation,
                self.names.attrs(fs.attributes),
            )
            for fs in interpolate(t, 0, stop, with_elements=False)
        ]

    def _track(self, t: LabeledTrack, stop: int) -> Track:
        return Track(
            self.names.label(t.label_id),
            self._keys(t, stop),
            self.names.attrs(t.attributes),
            t.group or 0,
            t.source,
            [
                Track(
                    self.names.label(e.label_id),
                    self._keys(e, stop),
                    self.names.attrs(e.attributes),
                )
                for e in t.elements
            ],
        )

    # ------------------------------------------------------------------ images

    def images(self, subset: str | None = None) -> Iterator[tuple[Item, bytes, str]]:
        """(item, image bytes, extension): stored files as they are; video frames as PNG."""
        for part in self._parts(subset):
            if part.data is None:
                continue
            batch: list[Item] = []
            for item in self._frames_of(part):
                batch.append(item)
                if len(batch) >= IMAGE_BATCH:
                    yield from self._read(part, batch)
                    batch = []
            if batch:
                yield from self._read(part, batch)

    def _frames_of(self, part: Part) -> Iterator[Item]:
        for _, lo, hi in self._pages(part):
            yield from self._frame_page(part, lo, hi)

    def _read(self, part: Part, batch: list[Item]) -> Iterator[tuple[Item, bytes, str]]:
        plan = frames_plan(self.session, part.task, self.settings, [i.frame for i in batch])
        if part.video:
            for item, array in zip(batch, decode_arrays(plan), strict=True):
                yield item, _png(array), ".png"
        else:
            for item, data in zip(batch, read_encoded(plan), strict=True):
                ext = "." + item.name.rpartition(".")[2] if "." in item.name else ".jpg"
                yield item, data, ext


def _ends_before(track: LabeledTrack, frame: int) -> bool:
    last = track.shapes[-1] if track.shapes else None
    return last is not None and last.outside and last.frame < frame


def _png(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _part(session: Session, task: Task, jobs: list[JobRange]) -> Part:
    data = session.get(Data, task.data_id) if task.data_id is not None else None
    return Part(task, data, jobs, task.subset or "default")


def _names(session: Session, task: Task) -> Names:
    owner = (
        Label.project_id == task.project_id
        if task.project_id is not None
        else Label.task_id == task.id
    )
    return Names(session, owner)


def _meta(name: str, mode: str, parts: list[Part], names: Names) -> Meta:
    subsets = list(dict.fromkeys(p.subset for p in parts))
    size = sum(p.data.size for p in parts if p.data is not None)
    created = min((p.task.created_date for p in parts), default=None)
    updated = max((p.task.updated_date for p in parts), default=None)
    return Meta(
        name=name,
        mode=mode or "annotation",
        size=size,
        labels=names.defs(),
        subsets=subsets or ["default"],
        created=created.isoformat() if created else "",
        updated=updated.isoformat() if updated else "",
        tasks=[(p.task.id, p.task.name) for p in parts],
    )


def task_dataset(session: Session, settings: Settings, task: Task) -> DbDataset:
    parts = [_part(session, task, task_job_ranges(session, task.id))]
    names = _names(session, task)
    return DbDataset(session, settings, parts, names, _meta(task.name, task.mode, parts, names))


def job_dataset(session: Session, settings: Settings, job: Job) -> DbDataset:
    task = session.get(Task, job.task_id)
    assert task is not None
    parts = [_part(session, task, [job_range(session, job)])]
    names = _names(session, task)
    return DbDataset(
        session,
        settings,
        parts,
        names,
        _meta(f"{task.name} (job {job.id})", task.mode, parts, names),
    )


def project_dataset(session: Session, settings: Settings, project: Project) -> DbDataset:
    tasks = list(
        session.scalars(select(Task).where(Task.project_id == project.id).order_by(Task.id))
    )
    parts = [_part(session, t, task_job_ranges(session, t.id)) for t in tasks]
    names = Names(session, Label.project_id == project.id)
    mode = tasks[0].mode if tasks else "annotation"
    return DbDataset(session, settings, parts, names, _meta(project.name, mode, parts, names))

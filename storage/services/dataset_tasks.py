"""A project dataset import whose archive holds images: tasks made from the dataset.

As CVAT (``load_dataset_data``): the project's labels are checked against the dataset's
(``Target project does not have label with name "x"``), or made from them when the project
has none; then each subset becomes a new task of the project, named after the subset and
with it as its ``subset``, owned by the project's owner, whose frames are the subset's
images (sorted as a new task's are) and whose annotations are the subset's. Every item must
have its image in the archive.

Everything happens in the caller's transaction; the images are unpacked (each member name
through :func:`safe_join`) into a staging folder per task, which the caller moves to the
task's data folder once the rows are written (:class:`NewTask`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.formats.archive import Archive
from cvat_ray.storage.formats.model import Item, LabelDef, Parsed
from cvat_ray.storage.media.formats import kind_of
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.models import Label, Project, Task, utcnow
from cvat_ray.storage.schemas.data import DataRequest
from cvat_ray.storage.schemas.labels import AttributeWrite, InputType, LabelType, LabelWrite
from cvat_ray.storage.services import labels as label_service
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services import tasks as task_service
from cvat_ray.storage.services.data_processing import prepare_files
from cvat_ray.storage.services.jobs import record_created_jobs
from cvat_ray.storage.services.task_data import attach_data

# label types a label made from a dataset can take (a skeleton needs its sublabels' drawing)
_PLAIN_TYPES = set(get_args(LabelType)) - {"skeleton"}


@dataclass
class NewTask:
    task_id: int
    data_id: int
    media: Path  # the staging folder that becomes the data folder


def archive_images(archive: Archive) -> list[str]:
    """The archive's image members the format's reader did not take as annotation files
    (masks are PNGs too); none for an annotations-only upload. Call it after the read."""
    if not archive.is_zip:
        return []
    return [n for n in archive.names() if kind_of(n) == "image" and n not in archive.consumed]


class _ImageFinder:
    """An item's image among the archive's: the member the format named for it, or else the
    member whose trailing path parts are the item's name (its extension may be missing),
    preferring one under the subset's folder."""

    def __init__(self, members: list[str]) -> None:
        self.members = set(members)
        self.by_tail: dict[str, list[str]] = {}
        for member in members:
            parts = PurePosixPath(member).parts
            for i in range(len(parts)):
                tail = PurePosixPath(*parts[i:])
                for key in {str(tail), str(tail.with_suffix(""))}:
                    self.by_tail.setdefault(key, []).append(member)

    def find(self, item: Item) -> str | None:
        if item.image in self.members:
            return item.image
        name = item.name.replace("\\", "/").strip("/")
        found = self.by_tail.get(name) or []
        if len(found) > 1:
            inside = [m for m in found if item.subset in PurePosixPath(m).parts[:-1]]
            found = inside or found
        return min(found, key=len) if found else None


def has_images(archive: Archive) -> bool:
    """Whether the dataset brings its images (then a project import makes tasks of it): the
    archive holds images besides the annotation files the reader took (masks are PNGs too).
    Reads only member names, so a streamed ``Parsed.more`` stays unread."""
    return bool(archive_images(archive))


def _used(parsed: Parsed, items: list[Item]) -> list[str]:
    """The dataset's top-level labels: those it declares, then those its annotations use."""
    names: dict[str, None] = {lb.name: None for lb in parsed.labels}
    for item in items:
        for tag in item.tags:
            names.setdefault(tag.label)
        for shape in item.shapes:
            names.setdefault(shape.label)
    for track in parsed.tracks:
        names.setdefault(track.label)
    return [n for n in names if n]


def _check_labels(session: Session, project: Project, parsed: Parsed, items: list[Item]) -> None:
    """CVAT's rule: a project without labels takes the dataset's, otherwise every label of
    the dataset must be one of the project's."""
    have = set(
        session.scalars(
            select(Label.name).where(Label.project_id == project.id, Label.parent_id.is_(None))
        )
    )
    wanted = _used(parsed, items)
    if have:
        for name in wanted:
            if name not in have:
                raise InvalidInput(f'Target project does not have label with name "{name}"')
        return
    defs = {lb.name: lb for lb in parsed.labels}
    attrs: dict[str, dict[str, None]] = {}
    for item in items:
        pairs = [(t.label, t.attributes) for t in item.tags]
        pairs += [(s.label, s.attributes) for s in item.shapes]
        for label, values in pairs:
            for a in values:
                attrs.setdefault(label, {})[a] = None
    label_service.create_labels(
        session,
        label_service.LabelOwner(project_id=project.id),
        [_label_write(name, defs.get(name), list(attrs.get(name, {}))) for name in wanted],
    )


def _label_write(name: str, known: LabelDef | None, seen: list[str]) -> LabelWrite:
    """A new project label from the dataset's definition (CVAT XML has one) or, without
    one, with the attributes its annotations use as text attributes."""
    if known is not None and known.attributes:
        attributes = [
            AttributeWrite(
                name=a.name,
                mutable=a.mutable,
                input_type=a.input_type if a.input_type in get_args(InputType) else "text",
                default_value=a.default_value,
                values=a.values,
            )
            for a in known.attributes
        ]
    else:
        attributes = [
            AttributeWrite(name=a, mutable=False, input_type="text", default_value="", values=[])
            for a in seen
        ]
    kind = known.type if known is not None and known.type in _PLAIN_TYPES else None
    return LabelWrite(
        name=name,
        color=(known.color or None) if known is not None else None,
        type=kind,
        attributes=attributes,
    )


def _subsets(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for item in items:
        out.setdefault(item.subset or "default", []).append(item)
    return out


def create_tasks(
    session: Session,
    settings: Settings,
    project: Project,
    archive: Archive,
    parsed: Parsed,
    staging: Path,
    progress: Callable[[float, str], None],
    write: Callable[[Session, Task, Parsed], int],
    ctx: RequestContext | None = None,
) -> tuple[int, list[NewTask]]:
    """A task per subset of the dataset, with its images and annotations; ``write`` puts a
    subset's annotations into its task; the tasks and their jobs are recorded as created
    by ``ctx`` (the request's owner). Returns the objects written and the new tasks."""
    items = list(parsed.all_items())
    if not items:
        raise InvalidInput("The dataset lists no images.")
    _check_labels(session, project, parsed, items)
    subsets = _subsets(items)
    if parsed.tracks and len(subsets) > 1:
        raise InvalidInput("Tracks cannot be imported into a dataset with several subsets.")
    finder = _ImageFinder(archive_images(archive))
    created: list[NewTask] = []
    total = 0
    for done_count, (subset, members) in enumerate(subsets.items()):
        progress(done_count / len(subsets), f"Creating the task of subset {subset}")
        folder = safe_join(staging, f"task-{done_count}")
        raw = folder / "raw"
        paths: dict[str, None] = {}
        for item in members:
            if item.name in paths:
                continue
            member = finder.find(item)
            if member is None:
                raise InvalidInput(
                    f"The archive holds no image for '{item.name}' (subset '{subset}')."
                )
            name = item.name.replace("\\", "/").strip("/")
            if PurePosixPath(name).suffix.lower() != PurePosixPath(member).suffix.lower():
                name += PurePosixPath(member).suffix
            target = safe_join(raw, name)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            paths[name] = None
        now = utcnow()
        task = Task(
            name=subset,
            subset=subset,
            project_id=project.id,
            owner_id=project.owner_id,
            organization_id=project.organization_id,
            created_date=now,
            updated_date=now,
        )
        session.add(task)
        session.flush()
        body = DataRequest(image_quality=70)
        prepared = prepare_files(
            settings,
            body,
            MediaSource(storage="local", root=str(raw)),
            list(paths),
            ordered=False,
            progress=lambda f, m, **_: None,
            seed=str(raw),
        )
        data = attach_data(
            session,
            task,
            prepared.frames,
            mode=prepared.mode,
            image_quality=body.image_quality,
            original_chunk_type=prepared.original_chunk_type,
            compressed_chunk_type=prepared.compressed_chunk_type,
            start_frame=prepared.start_frame,
            stop_frame=prepared.stop_frame,
            storage="local",
            storage_method="cache",
            max_chunk_size=settings.media.max_chunk_size,
            max_chunk_pixels=settings.media.max_chunk_pixels,
        )
        sub = Parsed(items=members, tracks=parsed.tracks, normalized=parsed.normalized)
        total += write(session, task, sub)
        if ctx is not None:
            read = task_service.task_reads(session, ctx, [task])[0]
            scope = task_service.task_scope(task)
            recorded.record(session, ctx, "create", "task", after=read, scope=scope)
            record_created_jobs(session, ctx, task)
        created.append(NewTask(task.id, data.id, folder))
    project.updated_date = utcnow()
    return total, created

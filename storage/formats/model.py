"""The intermediate model every format reads and writes: dataset items with annotations.

Names, not ids: an item's annotations refer to labels and attributes by name, so one
format's reader and another's writer meet here without knowing the database. Exports build
it from the database (:mod:`cvat_ray.storage.formats.source`), a page of frames at a time;
imports produce it from files and :mod:`cvat_ray.storage.formats.sink` turns it into
``LabeledData`` against the target's labels.

- :class:`Item`: one frame (``frame``, ``name``: the media file's path, or ``frame_000012``
  for a video frame; ``width``/``height``; ``subset``) with its tags and shapes. A track's
  shape on the frame is a shape with ``track_id`` set (``keyframe`` tells whether the track
  has a keyframe there): formats without tracks write it as a plain shape, formats with
  tracks (CVAT for video, MOT) regroup them by ``track_id``.
- :class:`LabelDef`: a label with its attribute specs and sublabels (skeletons).
- :class:`Track`: a whole track, for the formats that keep tracks (read: CVAT for video).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Protocol, TypeVar

import msgspec

T = TypeVar("T")


class AttrDef(msgspec.Struct):
    name: str
    input_type: str = "text"
    mutable: bool = False
    default_value: str = ""
    values: list[str] = msgspec.field(default_factory=list)


class LabelDef(msgspec.Struct):
    name: str
    type: str = "any"
    color: str = ""
    attributes: list[AttrDef] = msgspec.field(default_factory=list)
    sublabels: list[LabelDef] = msgspec.field(default_factory=list)
    svg: str = ""


class Tag(msgspec.Struct):
    label: str
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    group: int = 0
    source: str = "manual"


class Shape(msgspec.Struct):
    type: str
    label: str
    points: list[float]
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    rotation: float = 0.0
    group: int = 0
    source: str = "manual"
    score: float = 1.0
    # set for a track's shape on a frame
    track_id: int | None = None
    keyframe: bool = True
    # a skeleton's points, each with its sublabel's name as ``label`` (an empty name: the
    # skeleton's sublabel at that position, for formats that keep points by order)
    elements: list[Shape] = msgspec.field(default_factory=list)


class Item(msgspec.Struct):
    frame: int
    name: str
    width: int = 0
    height: int = 0
    subset: str = "default"
    tags: list[Tag] = msgspec.field(default_factory=list)
    shapes: list[Shape] = msgspec.field(default_factory=list)
    # the archive member holding the item's image, where the format names it
    image: str = ""

    @property
    def stem(self) -> str:
        """The name without its extension (what most formats key items on)."""
        base, dot, ext = self.name.rpartition(".")
        return base if dot and "/" not in ext else self.name


class TrackKey(msgspec.Struct):
    """A track's shape on one frame, as a format with tracks keeps it."""

    frame: int
    type: str
    points: list[float]
    outside: bool = False
    occluded: bool = False
    keyframe: bool = True
    z_order: int = 0
    rotation: float = 0.0
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    elements: list[tuple[str, TrackKey]] = msgspec.field(default_factory=list)


class Track(msgspec.Struct):
    label: str
    keys: list[TrackKey]
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    group: int = 0
    source: str = "manual"
    # skeleton tracks: one track per sublabel
    elements: list[Track] = msgspec.field(default_factory=list)


class Meta(msgspec.Struct):
    """What a dataset says about itself."""

    name: str
    mode: str  # "annotation" (images) or "interpolation" (video)
    size: int
    labels: list[LabelDef]
    subsets: list[str]
    created: str = ""
    updated: str = ""
    # the task ids and names it covers (project exports have several)
    tasks: list[tuple[int, str]] = msgspec.field(default_factory=list)


class Dataset(Protocol):
    """A dataset being exported: its meta and its items, read in pages."""

    meta: Meta

    def frames(self, subset: str | None = None) -> Iterator[Item]:
        """The items without annotations (cheap: names and sizes only)."""
        ...

    def items(self, subset: str | None = None) -> Iterator[Item]:
        """The items with their tags and shapes (tracks' shapes included)."""
        ...

    def map_pages(
        self, subset: str | None, convert: Callable[[list[Item], int], T], kind: type[T]
    ) -> Generator[T, None, None]:
        """``convert(items, first)`` for each page of :meth:`items` in order (``first``: the
        index of the page's first item in the subset), possibly made in other processes:
        ``convert`` returns what msgspec encodes as ``kind`` (a large format's text). Close
        it when stopping early (it ends those processes)."""
        ...

    def tracks(self) -> Iterator[tuple[int, Track]]:
        """(track id, track) for the formats that keep tracks."""
        ...

    def images(self, subset: str | None = None) -> Iterator[tuple[Item, bytes, str]]:
        """(item without annotations, image bytes, extension with the dot), in item order,
        for ``save_images``."""
        ...


class Undivided(Exception):
    """A reader found that its file cannot be read in shares after all (:meth:`Parsed.share`):
    read it whole instead."""


class Parsed(msgspec.Struct):
    """What an importer read: items (matched to frames by name, or by frame number when
    ``by_frame``) and whole tracks (CVAT for video).

    ``more`` streams further items while the archive is open (large files: COCO, CVAT XML,
    Datumaro), read after ``items``; ``tracks`` is complete once they are consumed. Several
    items may name the same frame (COCO streams one per annotation)."""

    items: list[Item] = msgspec.field(default_factory=list)
    more: Iterator[Item] | None = None
    tracks: list[Track] = msgspec.field(default_factory=list)
    labels: list[LabelDef] = msgspec.field(default_factory=list)
    by_frame: bool = False

    def all_items(self) -> Iterator[Item]:
        yield from self.items
        if self.more is not None:
            yield from self.more

    # coordinates relative to the image size (YOLO): scaled by the matched frame's size
    normalized: bool = False
    # attribute names dropped where the target's label lacks them (formats that always
    # write them, as CVAT does: WiderFace's face flags, Market-1501's ids, KITTI's
    # ``truncated``, Cityscapes' ``is_crowd``, Open Images' flags)
    soft_attributes: frozenset[str] = frozenset()
    # set by a reader that can read its items in shares, each by another process (COCO's
    # annotations: pieces of the array): ``divide(k, n)`` streams share ``k`` of ``n``
    divide: Callable[[int, int], Iterator[Item]] | None = None

    def share(self, k: int, n: int) -> Parsed:
        """Share ``k`` of ``n`` of a dataset with ``divide`` (and no items or tracks read
        yet): every annotation is in one share (an item's may be divided between two),
        images without annotations are in none.
        Its stream raises :class:`Undivided` where the file cannot be divided."""
        assert self.divide is not None and not self.items and not self.tracks
        return Parsed(
            more=self.divide(k, n),
            by_frame=self.by_frame,
            normalized=self.normalized,
            soft_attributes=self.soft_attributes,
        )

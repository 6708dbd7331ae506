"""``LabeledData`` and its parts: the body and response of ``/api/{jobs|tasks}/{id}/annotations``.

These are msgspec structs, not pydantic models: a request may carry a million shapes, and
msgspec decodes JSON straight into compact typed objects (types, ranges and required fields
checked in C, errors with a path such as ``$.shapes[12].frame``) several times faster than
building dicts, and encodes them back as fast. The rules that need the task (labels,
attributes, frames) are checked in ``cvat_ray.storage.annotations.validation``.

Field names, defaults and ranges follow CVAT's ``LabeledDataRequest`` schema; unknown keys
are ignored as DRF does.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from cvat_ray.cluster.errors import InvalidInput

ShapeType = Literal[
    "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"
]
Id = Annotated[int, Meta(ge=0, le=2_147_483_647)]
Frame = Annotated[int, Meta(ge=0, le=2_147_483_647)]
Int32 = Annotated[int, Meta(ge=-2_147_483_648, le=2_147_483_647)]
Group = Annotated[int, Meta(ge=0, le=2_147_483_647)]
Rotation = Annotated[float, Meta(ge=0, le=360)]
Score = Annotated[float, Meta(ge=0, le=1)]
Source = Annotated[str, Meta(min_length=1, max_length=16)]


class AttributeVal(Struct, gc=False):
    spec_id: Id
    value: Annotated[str, Meta(max_length=4096)]


class TrackedShape(Struct, kw_only=True, gc=False):
    """A keyframe of a track. Keyframes are stored with their track and have no id of their
    own: ``id`` is accepted and returned as null."""

    type: ShapeType
    occluded: bool = False
    outside: bool = False
    z_order: Int32 = 0
    rotation: Rotation = 0.0
    points: list[float] = []
    attributes: list[AttributeVal] = []
    id: Id | None = None
    frame: Frame


class SubLabeledShape(Struct, kw_only=True, gc=False):
    type: ShapeType
    occluded: bool = False
    outside: bool = False
    z_order: Int32 = 0
    rotation: Rotation = 0.0
    points: list[float] = []
    id: Id | None = None
    label_id: Id
    group: Group | None = 0
    source: Source = "manual"
    frame: Frame
    attributes: list[AttributeVal] = []
    score: Score = 1.0


class LabeledShape(SubLabeledShape, kw_only=True):
    elements: list[SubLabeledShape] = []


class SubLabeledTrack(Struct, kw_only=True, gc=False):
    id: Id | None = None
    label_id: Id
    group: Group | None = 0
    source: Source = "manual"
    frame: Frame
    attributes: list[AttributeVal] = []
    shapes: list[TrackedShape]


class LabeledTrack(SubLabeledTrack, kw_only=True):
    elements: list[SubLabeledTrack] = []


class LabeledImage(Struct, kw_only=True, gc=False):
    """A tag."""

    id: Id | None = None
    label_id: Id
    group: Group | None = 0
    source: Source = "manual"
    frame: Frame
    attributes: list[AttributeVal] = []


class LabeledData(Struct, kw_only=True, gc=False):
    version: int = 0
    tags: list[LabeledImage] = []
    shapes: list[LabeledShape] = []
    tracks: list[LabeledTrack] = []
    # Audio intervals (CVAT 2.68+): accepted only empty, always returned empty.
    intervals: list[Any] = []


_decoder = msgspec.json.Decoder(LabeledData)
_encoder = msgspec.json.Encoder()


def decode_labeled_data(body: bytes) -> LabeledData:
    """Parse a request body, or raise a 400 naming the field (``shapes[12].frame``)."""
    if not body.strip():
        return LabeledData()
    try:
        data = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        if not message:
            raise InvalidInput(str(exc)) from exc
        field = where.rstrip("`").removeprefix("$").removeprefix(".") or "non_field_errors"
        raise InvalidInput(message, field=field) from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"JSON parse error - {exc}") from exc
    if data.intervals:
        raise InvalidInput("Audio intervals are not supported.", field="intervals")
    return data


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


_gc_lock = threading.Lock()
_gc_holders = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while bulk objects are built.

    Decoding a million shapes allocates millions of lists; every 700 allocations Python's
    cyclic collector runs, and its older generations rescan everything built so far, which
    made decoding 2-3x slower. These objects form no cycles (reference counting frees them),
    so the collector is paused while any thread holds this and resumes afterwards.
    """
    global _gc_holders
    with _gc_lock:
        _gc_holders += 1
        if _gc_holders == 1:
            was_enabled = gc.isenabled()
            gc.disable()
            _gc_state.append(was_enabled)
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_state.pop():
                gc.enable()


# a young collection every this many allocations while long work holds gc_relaxed()
_RELAXED_THRESHOLD = (100_000, 20, 20)
_relaxed_holders = 0
_relaxed_saved: list[tuple[int, int, int]] = []


@contextmanager
def gc_relaxed() -> Iterator[None]:
    """Run the cyclic garbage collector ~150x less often while long bulk work runs (a
    dataset export or import: minutes of building and dropping millions of small objects).

    With the default thresholds the collector ran every 700 allocations and its older
    generations rescanned everything alive, 40 % of an export's time. Unlike
    :func:`gc_paused` the collector keeps running, so other threads of the process (the
    API's, where exports run in threads) cannot pile up cyclic garbage for minutes."""
    global _relaxed_holders
    with _gc_lock:
        _relaxed_holders += 1
        if _relaxed_holders == 1:
            _relaxed_saved.append(gc.get_threshold())
            gc.set_threshold(*_RELAXED_THRESHOLD)
    try:
        yield
    finally:
        with _gc_lock:
            _relaxed_holders -= 1
            if _relaxed_holders == 0:
                gc.set_threshold(*_relaxed_saved.pop())


_gc_state: list[bool] = []


def _new_lock_in_child() -> None:
    """A forked child (an import's reader, storage/formats/forked.py) gets a lock of its own:
    another thread of the parent may have held this one at the fork."""
    global _gc_lock
    _gc_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def encode_chunks(data: LabeledData, batch: int = 20_000) -> Iterator[bytes]:
    """``data`` as JSON in pieces of at most ``batch`` objects, so a response with a million
    shapes is never one buffer."""
    yield b'{"version":%d' % data.version
    for name in ("tags", "shapes", "tracks"):
        objects: list[Any] = getattr(data, name)
        yield b',"%s":[' % name.encode()
        for start in range(0, len(objects), batch):
            piece = _encoder.encode(objects[start : start + batch])[1:-1]
            yield piece if start == 0 else b"," + piece
        yield b"]"
    yield b',"intervals":[]}'

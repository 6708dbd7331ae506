"""Building what the data endpoints serve: chunks, frames, previews, context images.

A :class:`RenderPlan` is everything needed, already authorized and read from the database;
:func:`render` turns it into bytes without touching the database, so it runs in a worker
thread of the API and its result can be cached under ``plan.key``. Chunks are written to a
file object frame by frame (:func:`write_chunk`): what is held in memory while building one
is a frame (or a few stored files of an image set), never the whole chunk decoded.

Chunk formats (CVAT's contract): an imageset chunk is a ZIP whose members are the frames in
order (names do not matter, positions do); a video chunk is an H.264 MP4 of its frames.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Literal, cast

import numpy as np
from PIL import Image

from cvat_ray.storage.media import images, video
from cvat_ray.storage.media.sources import MediaSource

if TYPE_CHECKING:
    from cvat_ray.storage.changes import Actor, Scope

RenderKind = Literal["chunk", "frame", "preview", "context_image"]
Quality = Literal["original", "compressed"]

# Original-quality video chunks: visually lossless, still decodable by browsers (yuv420p).
ORIGINAL_VIDEO_CRF = 12
# Stored files of an image set read at once (cloud reads run in parallel).
READ_BATCH = 8


@dataclass(frozen=True)
class FrameRef:
    path: str
    width: int
    height: int
    pts: int | None = None
    key_pts: int | None = None

    @property
    def video_frame(self) -> video.VideoFrame:
        assert self.pts is not None
        return video.VideoFrame(pts=self.pts, key_pts=self.key_pts)


@dataclass(frozen=True)
class RenderPlan:
    kind: RenderKind
    key: str
    source: MediaSource
    frames: tuple[FrameRef, ...]
    # what the source holds: "imageset" (image files) or "video" (frames of one video)
    media: Literal["imageset", "video"]
    # what to produce for chunks
    chunk_type: Literal["imageset", "video"] = "imageset"
    quality: Quality = "original"
    image_quality: int = 70
    preview_size: int = 256
    related: tuple[str, ...] = ()
    # most video frames decoded to read one frame (``media.max_keyframe_interval``)
    max_decode: int | None = None
    # who asked, and the task (job) the item belongs to: for the cache item events
    origin: tuple[Actor, Scope] | None = None


def render(plan: RenderPlan) -> tuple[bytes, str]:
    """(body, content type) for the plan."""
    if plan.kind == "chunk":
        buf = io.BytesIO()
        mime = write_chunk(plan, buf)
        return buf.getvalue(), mime
    if plan.kind == "frame":
        return _frame(plan)
    if plan.kind == "preview":
        return _preview(plan)
    return _context(plan)


def decode_arrays(plan: RenderPlan) -> list[np.ndarray]:
    """The plan's frames as the upright RGB arrays at original quality that models take;
    the frames of a video are decoded with one seek, stored files by :func:`decode_array`."""
    if plan.media == "video":
        return [np.asarray(_rgb(im)) for im in _decoded(plan)]
    return [decode_array(d) for d in read_encoded(plan)]


def read_encoded(plan: RenderPlan) -> list[bytes]:
    """The files of an imageset plan's frames, as stored (decode each with
    :func:`decode_array`, where the pixels are needed)."""
    if plan.media == "video":
        raise ValueError("the frames of a video are not stored one by one")
    return plan.source.read_many([f.path for f in plan.frames])


def decode_image(data: bytes) -> Image.Image:
    """One stored image file as the upright RGB image models see."""
    return _rgb(images.open_upright(data))


# Files OpenCV decodes to the same pixels as Pillow (both use libjpeg-turbo and libpng):
# 8-bit RGB or grey JPEG and PNG.
_OPENCV_FORMATS = frozenset({"JPEG", "PNG"})
_OPENCV_MODES = frozenset({"RGB", "L"})


def decode_array(data: bytes) -> np.ndarray:
    """:func:`decode_image` as an ``(H, W, 3)`` uint8 array. JPEG and PNG files in RGB or
    grey that need no rotation are decoded by OpenCV: the same pixels in two thirds of
    the time (a 640x480 JPEG: 1.6 ms instead of 2.5); Pillow decodes the others."""
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        fast = (
            im.format in _OPENCV_FORMATS
            and im.mode in _OPENCV_MODES
            and images.exif_orientation(im) == 1
        )
    if fast:
        import cv2

        flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        if array is not None:
            return cast(np.ndarray, array)
    return np.asarray(decode_image(data))


def _rgb(im: Image.Image) -> Image.Image:
    """``im`` in RGB, as ``convert`` gives it, without the copy ``convert`` makes of an
    image that is RGB already."""
    return im if im.mode == "RGB" else im.convert("RGB")


def _iter_decoded(plan: RenderPlan) -> Generator[Image.Image, None, None]:
    """The plan's video frames, decoded one at a time (closing it closes the video)."""
    source = plan.source.video(plan.frames[0].path)
    try:
        yield from video.iter_frames(
            source,
            [f.video_frame for f in plan.frames],
            name=PurePosixPath(plan.frames[0].path).name,
            max_decode=plan.max_decode,
        )
    finally:
        if not isinstance(source, str):
            source.close()


def _decoded(plan: RenderPlan) -> list[Image.Image]:
    """The plan's video frames (a few: every one is held)."""
    return list(_iter_decoded(plan))


def _stored(plan: RenderPlan) -> Iterator[bytes]:
    """The stored files of an image set's frames, a batch at a time."""
    paths = [f.path for f in plan.frames]
    for start in range(0, len(paths), READ_BATCH):
        yield from plan.source.read_many(paths[start : start + READ_BATCH])


def _zip(out: IO[bytes]) -> zipfile.ZipFile:
    # Stored, not deflated: the members are compressed images already.
    return zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED)


def _member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def _ext(mime: str) -> str:
    return {"image/jpeg": ".jpg", "image/png": ".png", "image/bmp": ".bmp"}.get(
        mime, "." + mime.rsplit("/", 1)[-1]
    )


def write_chunk(plan: RenderPlan, out: IO[bytes]) -> str:
    """Write the plan's chunk to ``out`` (a seekable file object), a frame at a time;
    returns its content type."""
    if plan.media == "video":
        decoded = _iter_decoded(plan)
        try:
            if plan.chunk_type == "video":
                crf = (
                    ORIGINAL_VIDEO_CRF
                    if plan.quality == "original"
                    else video.quality_to_crf(plan.image_quality)
                )
                video.encode_mp4(decoded, out, fps=25, crf=crf)
                return "video/mp4"
            with _zip(out) as zf:
                for i, im in enumerate(decoded):
                    if plan.quality == "original":
                        _member(zf, f"{i:06d}.png", images.encode_png(im))
                    else:
                        _member(zf, f"{i:06d}.jpg", images.encode_jpeg(im, plan.image_quality))
            return "application/zip"
        finally:
            decoded.close()
    with _zip(out) as zf:
        for i, data in enumerate(_stored(plan)):
            if plan.quality == "original":
                body, mime = images.original_frame(data)
            else:
                body, mime = images.compressed_frame(data, plan.image_quality), "image/jpeg"
            _member(zf, f"{i:06d}{_ext(mime)}", body)
    return "application/zip"


def _frame(plan: RenderPlan) -> tuple[bytes, str]:
    if plan.media == "video":
        (im,) = _decoded(plan)
        if plan.quality == "original":
            return images.encode_png(im), "image/png"
        return images.encode_jpeg(im, plan.image_quality), "image/jpeg"
    data = plan.source.read(plan.frames[0].path)
    if plan.quality == "original":
        return images.original_frame(data)
    return images.compressed_frame(data, plan.image_quality), "image/jpeg"


def _preview(plan: RenderPlan) -> tuple[bytes, str]:
    if plan.media == "video":
        (im,) = _decoded(plan)
    else:
        im = images.open_upright(plan.source.read(plan.frames[0].path))
    return images.thumbnail(im, plan.preview_size), "image/jpeg"


def _context(plan: RenderPlan) -> tuple[bytes, str]:
    datas = plan.source.read_many(list(plan.related))
    buf = io.BytesIO()
    with _zip(buf) as zf:
        for i, (p, d) in enumerate(zip(plan.related, datas, strict=True)):
            _member(zf, f"{i:02d}_{PurePosixPath(p).name}", d)
    return buf.getvalue(), "application/zip"

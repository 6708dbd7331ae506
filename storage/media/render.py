"""Building what the data endpoints serve: chunks, frames, previews, context images.

A :class:`RenderPlan` is everything needed, already authorized and read from the database;
:func:`render` turns it into bytes without touching the database, so it runs in a worker
thread of the API and its result can be cached under ``plan.key``.

Chunk formats (CVAT's contract): an imageset chunk is a ZIP whose members are the frames in
order (names do not matter, positions do); a video chunk is an H.264 MP4 of its frames.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, cast

import numpy as np
from PIL import Image

from cvat_ray.storage.media import images, video
from cvat_ray.storage.media.sources import MediaSource

RenderKind = Literal["chunk", "frame", "preview", "context_image"]
Quality = Literal["original", "compressed"]

# Original-quality video chunks: visually lossless, still decodable by browsers (yuv420p).
ORIGINAL_VIDEO_CRF = 12


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


def render(plan: RenderPlan) -> tuple[bytes, str]:
    """(body, content type) for the plan."""
    if plan.kind == "chunk":
        return _chunk(plan)
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


def _decoded(plan: RenderPlan) -> list[Image.Image]:
    """The plan's video frames, decoded with one seek."""
    source = plan.source.video(plan.frames[0].path)
    try:
        return video.read_frames(
            source,
            [f.video_frame for f in plan.frames],
            name=PurePosixPath(plan.frames[0].path).name,
        )
    finally:
        if not isinstance(source, str):
            source.close()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    # Stored, not deflated: the members are compressed images already.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _ext(mime: str) -> str:
    return {"image/jpeg": ".jpg", "image/png": ".png", "image/bmp": ".bmp"}.get(
        mime, "." + mime.rsplit("/", 1)[-1]
    )


def _chunk(plan: RenderPlan) -> tuple[bytes, str]:
    if plan.media == "video":
        decoded = _decoded(plan)
        if plan.chunk_type == "video":
            crf = (
                ORIGINAL_VIDEO_CRF
                if plan.quality == "original"
                else video.quality_to_crf(plan.image_quality)
            )
            return video.encode_mp4(decoded, fps=25, crf=crf), "video/mp4"
        members = []
        for i, im in enumerate(decoded):
            if plan.quality == "original":
                members.append((f"{i:06d}.png", images.encode_png(im)))
            else:
                members.append((f"{i:06d}.jpg", images.encode_jpeg(im, plan.image_quality)))
        return _zip(members), "application/zip"
    datas = plan.source.read_many([f.path for f in plan.frames])
    members = []
    for i, data in enumerate(datas):
        if plan.quality == "original":
            body, mime = images.original_frame(data)
        else:
            body, mime = images.compressed_frame(data, plan.image_quality), "image/jpeg"
        members.append((f"{i:06d}{_ext(mime)}", body))
    return _zip(members), "application/zip"


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
    members = [
        (f"{i:02d}_{PurePosixPath(p).name}", d)
        for i, (p, d) in enumerate(zip(plan.related, datas, strict=True))
    ]
    return _zip(members), "application/zip"

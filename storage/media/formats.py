"""What a file is, judged by its name first (its content is checked when it is decoded)."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Literal

FileKind = Literal["image", "video", "archive", "related", "ignored", "unsupported"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
# Pillow's names of the formats we accept, whatever the extension says.
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})
ARCHIVE_SUFFIXES = (
    ".zip",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
)
# Files that may travel with media and are not frames (CVAT's manifests, OS litter).
IGNORED_NAMES = frozenset({"manifest.jsonl", "index.json", ".ds_store", "thumbs.db"})
RELATED_DIR = "related_images"

FORMAT_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}


def kind_of(path: str) -> FileKind:
    p = PurePosixPath(path)
    name = p.name.lower()
    if name in IGNORED_NAMES or any(part == "__MACOSX" for part in p.parts):
        return "ignored"
    if RELATED_DIR in p.parts[:-1]:
        return "related"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    suffix = p.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "unsupported"


def mime_of(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def related_owner(path: str) -> str | None:
    """The frame a context image belongs to: ``a/related_images/img_1_png/ctx.jpg`` belongs
    to ``a/img_1.png`` (CVAT's layout: the frame's name with its last dot made ``_``)."""
    p = PurePosixPath(path)
    parts = p.parts
    if RELATED_DIR not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1].index(RELATED_DIR, 1)
    if at + 2 != len(parts) - 1:
        return None
    encoded = parts[at + 1]
    stem, sep, ext = encoded.rpartition("_")
    if not sep:
        return None
    return str(PurePosixPath(*parts[:at], f"{stem}.{ext}"))

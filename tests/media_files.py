"""Test media made at run time: images in every accepted format, videos, archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image


def image_bytes(
    width: int = 64,
    height: int = 48,
    color: tuple[int, int, int] = (200, 30, 30),
    fmt: str = "JPEG",
    **save: object,
) -> bytes:
    im = Image.new("RGB", (width, height), color)
    # a corner marker, so orientation is testable
    im.paste((0, 0, 255), (0, 0, max(1, width // 4), max(1, height // 4)))
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    im = Image.new("RGB", (width, height), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def write_images(
    folder: Path,
    count: int,
    *,
    fmt: str = "JPEG",
    ext: str = ".jpg",
    width: int = 64,
    height: int = 48,
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"img_{i:03d}{ext}"
        p.write_bytes(image_bytes(width, height, ((i * 40) % 256, 100, 50), fmt=fmt))
        paths.append(p)
    return paths


def write_video(
    path: Path,
    frames: int = 20,
    *,
    width: int = 64,
    height: int = 48,
    fmt: str | None = None,
    codec: str = "libx264",
    gop: int = 10,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"g": str(gop), "preset": "ultrafast"}
        for i in range(frames):
            a = np.full((height, width, 3), (i * 10) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(a, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def zip_of(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_members(data: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [zf.read(i) for i in zf.infolist()]

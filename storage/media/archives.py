"""Unpacking zip and tar archives safely.

Every member is checked before a byte is written: its name goes through the path guard
(:func:`cvat_ray.cluster.paths.safe_join`: no absolute paths, no ``..``, nothing that leads
out of the destination), links and devices are refused (zip-slip), and the bytes actually
written are counted against the caps (a member's declared size can lie), so a decompression
bomb stops at the cap instead of filling the disk.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import relative_parts, safe_join

_COPY_BLOCK = 1 << 20


@dataclass
class UnpackBudget:
    """Caps shared by all archives of one task."""

    max_members: int
    max_bytes: int
    max_ratio: float
    members: int = 0
    written: int = 0


def safe_member_path(name: str, archive: str) -> PurePosixPath | None:
    """The member's relative path, or None for directory entries; raises for unsafe names."""
    cleaned = name.replace("\\", "/")  # zips written on Windows
    if cleaned.endswith("/"):
        return None
    unsafe = InvalidInput(f"{archive}: unsafe path {name!r} in the archive.")
    if ":" in cleaned.split("/", 1)[0]:  # a drive letter
        raise unsafe
    try:
        return relative_parts(cleaned)
    except InvalidInput as exc:
        raise unsafe from exc


def _target(dest: Path, rel: PurePosixPath, name: str, archive: str) -> Path:
    try:
        return safe_join(dest, str(rel))
    except InvalidInput as exc:
        raise InvalidInput(f"{archive}: unsafe path {name!r} in the archive.") from exc


def _copy(src: IO[bytes], dest: Path, budget: UnpackBudget, packed: int, label: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        out = dest.open("xb")
    except FileExistsError as exc:
        raise InvalidInput(f"{label}: {dest.name} is in the upload twice.") from exc
    with out:
        while block := src.read(_COPY_BLOCK):
            written += len(block)
            budget.written += len(block)
            if budget.written > budget.max_bytes:
                raise InvalidInput(
                    f"{label}: the archives unpack to more than {budget.max_bytes} bytes, "
                    "the most allowed."
                )
            if written > 10 * _COPY_BLOCK and written > budget.max_ratio * max(packed, 1):
                raise InvalidInput(
                    f"{label}: a member unpacks to more than {budget.max_ratio:g} times its "
                    "packed size (a decompression bomb?)."
                )
            out.write(block)


def _count(budget: UnpackBudget, label: str) -> None:
    budget.members += 1
    if budget.members > budget.max_members:
        raise InvalidInput(f"{label}: more than {budget.max_members} archive entries.")


def unpack(archive: Path, dest: Path, budget: UnpackBudget, label: str) -> list[PurePosixPath]:
    """Unpack ``archive`` under ``dest``; returns the files written, relative to ``dest``."""
    try:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, dest, budget, label)
        if tarfile.is_tarfile(archive):
            return _unpack_tar(archive, dest, budget, label)
    except InvalidInput:
        raise
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError) as exc:
        raise InvalidInput(f"{label}: the archive is damaged ({exc}).") from exc
    raise InvalidInput(f"{label}: not a zip or tar archive.")


def _unpack_zip(archive: Path, dest: Path, budget: UnpackBudget, label: str) -> list[PurePosixPath]:
    written: list[PurePosixPath] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _count(budget, label)
            rel = safe_member_path(info.filename, label)
            if rel is None:
                continue
            mode = info.external_attr >> 16
            if mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
                raise InvalidInput(f"{label}: {info.filename!r} is a link or special file.")
            if info.flag_bits & 0x1:
                raise InvalidInput(f"{label}: encrypted archives are not supported.")
            target = _target(dest, rel, info.filename, label)
            with zf.open(info) as src:
                _copy(src, target, budget, info.compress_size, label)
            written.append(rel)
    return written


def _unpack_tar(archive: Path, dest: Path, budget: UnpackBudget, label: str) -> list[PurePosixPath]:
    written: list[PurePosixPath] = []
    packed = archive.stat().st_size
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            _count(budget, label)
            if member.isdir():
                continue
            if not member.isfile():
                raise InvalidInput(f"{label}: {member.name!r} is a link or special file.")
            rel = safe_member_path(member.name, label)
            if rel is None:
                continue
            target = _target(dest, rel, member.name, label)
            src = tf.extractfile(member)
            if src is None:
                continue
            with src:
                _copy(src, target, budget, packed, label)
            written.append(rel)
    return written

"""Where guide images live on disk: ``<data dir>/assets/<uuid>``, one file each.

Names are server-made UUIDs, never a client's file name; :func:`safe_join` refuses anything
that would still leave the folder. (A local stand-in for ``cluster/paths.safe_join``.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from cvat_ray.cluster.errors import NotFound


def safe_join(root: Path, name: str) -> Path:
    """``root/name`` when it stays inside ``root``; a 404 otherwise."""
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise NotFound("Asset not found.")
    return path


def asset_root(data_dir: Path) -> Path:
    return data_dir / "assets"


def write_file(data_dir: Path, uuid: str, data: bytes) -> None:
    """Write atomically: a reader never sees half a file."""
    root = asset_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = safe_join(root, uuid)
    partial = safe_join(root, f"{uuid}.part")
    partial.write_bytes(data)
    os.replace(partial, final)


def read_file(data_dir: Path, uuid: str) -> bytes:
    try:
        return safe_join(asset_root(data_dir), uuid).read_bytes()
    except FileNotFoundError as exc:
        raise NotFound("Asset not found.") from exc


def remove_files(data_dir: Path, uuids: Iterable[str]) -> None:
    root = asset_root(data_dir)
    for uuid in uuids:
        with contextlib.suppress(FileNotFoundError):
            safe_join(root, uuid).unlink()

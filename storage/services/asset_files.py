"""Where guide images live on disk: ``<data dir>/assets/<uuid>``, one file each.

Names are server-made UUIDs, never a client's file name; the path guard refuses anything
that would still leave the folder (:func:`cvat_ray.cluster.paths.safe_join`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.cluster.paths import safe_join


def _path(root: Path, name: str) -> Path:
    """``root/name`` through the one path guard; a name that is not one plain file of the
    folder is a missing asset (404), whatever it tried."""
    try:
        path = safe_join(root, name, field="uuid")
    except InvalidInput:
        raise NotFound("Asset not found.") from None
    if path.parent != root:
        raise NotFound("Asset not found.")
    return path


def asset_root(data_dir: Path) -> Path:
    return data_dir / "assets"


def write_file(data_dir: Path, uuid: str, data: bytes) -> None:
    """Write atomically: a reader never sees half a file."""
    root = asset_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = _path(root, uuid)
    partial = _path(root, f"{uuid}.part")
    partial.write_bytes(data)
    os.replace(partial, final)


def read_file(data_dir: Path, uuid: str) -> bytes:
    try:
        return _path(asset_root(data_dir), uuid).read_bytes()
    except FileNotFoundError as exc:
        raise NotFound("Asset not found.") from exc


def remove_files(data_dir: Path, uuids: Iterable[str]) -> None:
    root = asset_root(data_dir)
    for uuid in uuids:
        with contextlib.suppress(FileNotFoundError):
            _path(root, uuid).unlink()

"""Where a task's media lives: a local folder (uploads, copies, downloads), the server file
share, or a cloud storage (read on demand)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import safe_join
from cvat_ray.storage.media import cloud
from cvat_ray.storage.media.cloud import CloudAccess

StorageKind = Literal["local", "share", "cloud_storage"]


@dataclass(frozen=True)
class MediaSource:
    storage: StorageKind
    # the folder frame paths are relative to (local and share)
    root: str = ""
    access: CloudAccess | None = None
    timeout: float = 30

    def local_path(self, path: str) -> Path:
        """Where a local or share frame file is (through the path guard)."""
        return self._local(path)

    def _local(self, path: str) -> Path:
        # Frame paths were checked when the task was made; checked again here because the
        # folder may have changed since (a share is managed outside the server).
        return safe_join(Path(self.root), path)

    def read(self, path: str) -> bytes:
        if self.access is not None:
            return cloud.read(self.access, path, self.timeout)
        try:
            return self._local(path).read_bytes()
        except FileNotFoundError as exc:
            raise InvalidInput(f"{path}: the media file is missing.") from exc

    def read_many(self, paths: list[str]) -> list[bytes]:
        if self.access is not None:
            return cloud.read_many(self.access, paths, self.timeout)
        return [self.read(p) for p in paths]

    def video(self, path: str) -> str | IO[bytes]:
        """What PyAV opens: a local path, or a seekable remote file."""
        if self.access is not None:
            handle: IO[bytes] = cloud.open_file(self.access, path, self.timeout)
            return handle
        return str(self._local(path))

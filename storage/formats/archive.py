"""The files of a dataset: an uploaded archive (or single file) being imported, and the ZIP
an export is written into.

Imports read members straight from the ZIP, never unpacking them to disk. Every member name
goes through the path guard's check (:func:`cvat_ray.storage.media.archives.safe_member_path`:
no absolute path, no ``..``, no drive letter) before anything is read, so an archive with a
zip-slip member is refused whole; links and devices are refused; the bytes read are counted
against the server's unpack caps (a member's declared size can lie).

Exports write members one after another into a ``zipfile.ZipFile`` on disk: annotation files
through a streaming member writer (deflated), images stored as they are (already compressed).
A member's bytes are gathered into 1 MiB chunks that a second thread deflates and writes
(zlib lets go of the GIL), so compressing overlaps with building the next chunk; at most
:data:`_QUEUED` chunks wait, so memory stays constant.
"""

from __future__ import annotations

import contextlib
import queue
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import relative_parts
from cvat_ray.storage.media.archives import UnpackBudget, safe_member_path


class _Capped:
    """A member's stream that fails once more than its share of the budget was read."""

    def __init__(self, raw: IO[bytes], budget: UnpackBudget, packed: int, name: str) -> None:
        self.raw = raw
        self.budget = budget
        self.packed = max(packed, 1)
        self.name = name
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.read_bytes += len(data)
        self.budget.written += len(data)
        if self.budget.written > self.budget.max_bytes:
            raise InvalidInput(f"The upload unpacks to more than {self.budget.max_bytes} bytes.")
        if self.read_bytes > 1 << 20 and self.read_bytes / self.packed > self.budget.max_ratio:
            raise InvalidInput(f"{self.name}: compressed too much (a decompression bomb?).")
        return data

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> _Capped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Archive:
    """An uploaded dataset: a ZIP, or one annotation file (its name is its only member)."""

    def __init__(self, path: Path, budget: UnpackBudget, display_name: str = "") -> None:
        self.path = path
        self.budget = budget
        self.display = display_name or path.name
        self.zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}
        # members the reader took as annotation files (read, or claimed as their companions):
        # never an item's image
        self.consumed: set[str] = set()
        size = path.stat().st_size
        if size == 0:
            raise InvalidInput(f"{self.display}: the uploaded file is empty.")
        with path.open("rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise InvalidInput(f"{self.display}: not a readable ZIP archive ({exc}).") from exc
            self._scan()
        elif path.suffix.lower() == ".zip":
            raise InvalidInput(f"{self.display}: not a readable ZIP archive.")

    def _scan(self) -> None:
        assert self.zip is not None
        infos = self.zip.infolist()
        if len(infos) > self.budget.max_members:
            raise InvalidInput(
                f"{self.display}: {len(infos)} entries; at most {self.budget.max_members} "
                "are allowed."
            )
        for info in infos:
            mode = (info.external_attr >> 16) & 0o170000
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise InvalidInput(
                    f"{self.display}: {info.filename!r} is a link or a device, not a file."
                )
            rel = safe_member_path(info.filename, self.display)
            if rel is not None:
                self._members[str(rel)] = info

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def reopen(self) -> None:
        """Read through a file of its own from now on (a forked reader: a file shared with
        the parent process shares its offset). The members stay those checked on opening."""
        if self.zip is not None:
            self.zip = zipfile.ZipFile(self.path)

    @property
    def size(self) -> int:
        """The upload's size in bytes."""
        return self.path.stat().st_size

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_zip(self) -> bool:
        return self.zip is not None

    def names(self, *suffixes: str) -> list[str]:
        """Member paths (sorted), those ending with one of ``suffixes`` when given."""
        if self.zip is None:
            names = [self.display]
        else:
            names = sorted(self._members)
        if suffixes:
            lowered = tuple(s.lower() for s in suffixes)
            names = [n for n in names if n.lower().endswith(lowered)]
        return names

    def claim(self, *names: str) -> None:
        """Mark members as annotation files the reader skips (a mask's other renderings)."""
        self.consumed.update(names)

    def open(self, name: str) -> _Capped:
        self.consumed.add(name)
        if self.zip is None:
            if name != self.display:
                raise InvalidInput(f"{self.display}: no member {name!r}.")
            raw: IO[bytes] = self.path.open("rb")
            return _Capped(raw, self.budget, self.path.stat().st_size, name)
        info = self._members.get(name)
        if info is None:
            raise InvalidInput(f"{self.display}: no member {name!r}.")
        try:
            raw = self.zip.open(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise InvalidInput(f"{self.display}: cannot read {name!r} ({exc}).") from exc
        return _Capped(raw, self.budget, info.compress_size, name)

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            try:
                return stream.read()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidInput(f"{self.display}: {name!r} is corrupt ({exc}).") from exc

    def text(self, name: str) -> str:
        data = self.read(name)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{self.display}: {name!r} is not UTF-8 text.") from exc


class BinaryWriter(Protocol):
    """Where an exporter writes a member's bytes."""

    def write(self, data: bytes, /) -> int: ...


# a deflated member's bytes handed to its writer thread at once, and how many may wait
_CHUNK = 1 << 20
_QUEUED = 4


class _BackgroundMember:
    """A deflated member written by a thread of its own (see the module's docstring); the
    writer's error surfaces on the next ``write`` or at ``close``."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._parts: list[bytes] = []
        self._size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="zip-member", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is None:
                try:
                    self._stream.write(chunk)
                except BaseException as exc:  # reported to the producer
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        self._check()
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _CHUNK:
            self._queue.put(b"".join(self._parts))
            self._parts, self._size = [], 0
        return len(data)

    def close(self, *, failed: bool = False) -> None:
        """Write what is left and wait for the writer; ``failed``: the producer failed (its
        error is the one to report: the rest is dropped)."""
        if self._parts and not failed:
            self._queue.put(b"".join(self._parts))
        self._parts, self._size = [], 0
        self._queue.put(None)
        self._thread.join()
        if not failed:
            self._check()


# zlib's level for annotation files: 3 deflates the JSON/XML of an export 2.5x faster than
# the default 6 for a file about a quarter larger (80 MB of COCO JSON: 0.16 s / 4.1 MB
# against 0.40 s / 3.3 MB), on the critical path of a CPU-bound export
COMPRESS_LEVEL = 3


class ZipOut:
    """The export archive being written."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(
            path, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=COMPRESS_LEVEL
        )
        self.names: set[str] = set()

    def _name(self, name: str) -> str:
        clean = str(relative_parts(name))
        if clean in self.names:
            raise ValueError(f"{clean} written twice")
        self.names.add(clean)
        return clean

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryWriter]:
        # opened by name: deflated at the archive's level
        with self.zip.open(self._name(name), "w", force_zip64=True) as stream:
            member = _BackgroundMember(stream)
            try:
                yield member
            except BaseException:
                member.close(failed=True)
                raise
            member.close()

    def write(self, name: str, data: bytes, compress: bool = False) -> None:
        clean = str(PurePosixPath(name))
        if clean in self.names:
            # two items with one name (project exports): keep the first
            return
        info = zipfile.ZipInfo(self._name(name))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.zip.writestr(info, data, compresslevel=COMPRESS_LEVEL if compress else None)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> ZipOut:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

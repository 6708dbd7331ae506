"""Files a client sends between Upload-Start and Upload-Finish, kept on disk per task.

Layout under the uploads folder: ``tasks/<task id>/files/<name>`` for finished files and
``tasks/<task id>/tus/<upload id>.part`` (+ ``.json``) for TUS uploads in progress. Multipart
bodies are parsed as they stream in and written straight to ``files/``: nothing is held in
memory beyond one block. Every write counts against the task's upload cap.

``tasks/<task id>/.activity`` is touched by every call on the upload (Upload-Start, each
block of a multipart body or TUS PATCH, TUS creation and HEAD, Upload-Finish): its time is
the upload's last activity, which decides when an abandoned upload may be removed
(:meth:`UploadArea.remove_if_idle`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound
from cvat_ray.cluster.paths import safe_join

_FILE_FIELD = re.compile(r"^client_files\[\d+\]$|^client_files$")
_MAX_FIELD_BYTES = 1 << 20


def client_basename(name: str) -> str:
    """The file name without the client's directories (clients send absolute paths)."""
    base = PureWindowsPath(PurePosixPath(name.replace("\x00", "")).name).name
    base = base.strip()
    if not base or base in (".", ".."):
        raise InvalidInput(f"Invalid file name {name!r}.", field="client_files")
    return base[:255]


@dataclass(frozen=True)
class TusState:
    upload_id: str
    filename: str
    length: int
    offset: int


# Folders being removed are renamed to this first (never a task id), so a removal that
# stopped halfway is recognised and finished later.
_REMOVING = ".removing-"


class UploadArea:
    def __init__(self, root: Path, task_id: int | str, max_bytes: int) -> None:
        self.dir = root / "tasks" / str(task_id)
        self.files = self.dir / "files"
        self.tus = self.dir / "tus"
        self.activity = self.dir / ".activity"
        self.max_bytes = max_bytes

    @classmethod
    def at(cls, folder: Path, max_bytes: int) -> UploadArea:
        """An upload kept in ``folder`` (a backup being uploaded by a user) rather than in a
        task's folder."""
        area = cls(folder, 0, max_bytes)
        area.dir = folder
        area.files = folder / "files"
        area.tus = folder / "tus"
        area.activity = folder / ".activity"
        return area

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Forget any previous upload of the task and make room for a new one."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.files.mkdir(parents=True)
        self.tus.mkdir()
        self.touch()

    @property
    def started(self) -> bool:
        return self.files.is_dir()

    def require_started(self) -> None:
        if not self.started:
            raise Conflict("No upload is in progress for this task: send Upload-Start first.")
        self.touch()

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def touch(self) -> None:
        """Record activity now (no-op once the upload is gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.activity.touch()

    def last_activity(self) -> float:
        """When the upload was last used (epoch seconds): the activity marker's time, or the
        folder's for one made before markers existed (0 when there is no upload)."""
        for path in (self.activity, self.dir):
            with contextlib.suppress(FileNotFoundError):
                return path.stat().st_mtime
        return 0.0

    def remove_if_idle(self, idle_s: float) -> bool:
        """Remove the upload when nothing used it for ``idle_s`` seconds; True when removed.

        The folder is renamed away before it is deleted, so a call arriving meanwhile finds
        no upload (a clean 409/404) rather than a half-deleted one."""
        if time.time() - self.last_activity() <= idle_s:
            return False
        trash = self.dir.with_name(f"{_REMOVING}{self.dir.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.dir, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def file(self, name: str) -> Path:
        """Where the uploaded file ``name`` lives (the name through the path guard)."""
        return safe_join(self.files, name, field="client_files")

    def names(self) -> list[str]:
        if not self.files.is_dir():
            return []
        return sorted(p.name for p in self.files.iterdir() if p.is_file())

    def used_bytes(self) -> int:
        total = 0
        for folder in (self.files, self.tus):
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.endswith(".json"):
                        continue
                    total += entry.stat().st_size
        return total

    def pending_tus(self) -> list[str]:
        if not self.tus.is_dir():
            return []
        return [p.stem for p in self.tus.glob("*.json")]

    def _check_room(self, extra: int) -> None:
        if self.used_bytes() + extra > self.max_bytes:
            raise InvalidInput(
                f"The upload is larger than {self.max_bytes} bytes, the most allowed for a task."
            )

    # --- TUS -------------------------------------------------------------------------------

    def tus_create(self, filename: str, length: int) -> TusState:
        self.require_started()
        name = client_basename(filename)
        if length < 0:
            raise InvalidInput("Upload-Length must not be negative.")
        self._check_room(length)
        if self.file(name).exists() or name in {
            self.tus_state(u).filename for u in self.pending_tus()
        }:
            raise InvalidInput(f"{name} is uploaded twice.", field="client_files")
        upload_id = uuid.uuid4().hex
        (self.tus / f"{upload_id}.part").touch()
        state = TusState(upload_id=upload_id, filename=name, length=length, offset=0)
        (self.tus / f"{upload_id}.json").write_text(
            json.dumps({"filename": name, "length": length})
        )
        if length == 0:
            self._tus_complete(state)
        return state

    def tus_state(self, upload_id: str) -> TusState:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise NotFound("Upload not found.")
        self.touch()  # a HEAD or PATCH: the client is alive
        meta = self.tus / f"{upload_id}.json"
        part = self.tus / f"{upload_id}.part"
        try:
            info: dict[str, Any] = json.loads(meta.read_text())
        except FileNotFoundError:
            done_name = self._done_name(upload_id)
            done = self.file(done_name) if done_name else None
            if done is not None and done.exists():
                size = done.stat().st_size
                return TusState(upload_id, done.name, size, size)
            raise NotFound("Upload not found.") from None
        offset = part.stat().st_size if part.exists() else 0
        return TusState(upload_id, info["filename"], int(info["length"]), offset)

    def _done_name(self, upload_id: str) -> str | None:
        marker = self.tus / f"{upload_id}.done"
        return marker.read_text() if marker.exists() else None

    def tus_write(self, upload_id: str, offset: int, body: IO[bytes] | bytes) -> TusState:
        """Append ``body`` at ``offset`` (which must be the current size: TUS offsets)."""
        state = self.tus_state(upload_id)
        if state.offset == state.length and state.length > 0:
            raise Conflict("The upload is already complete.")
        if offset != state.offset:
            raise Conflict(
                f"Upload-Offset {offset} does not match the current offset {state.offset}."
            )
        part = self.tus / f"{upload_id}.part"
        data = body if isinstance(body, bytes) else body.read()
        if state.offset + len(data) > state.length:
            raise InvalidInput("The chunk goes past Upload-Length.")
        with part.open("ab") as out:
            out.write(data)
        state = TusState(upload_id, state.filename, state.length, state.offset + len(data))
        if state.offset == state.length:
            self._tus_complete(state)
        return state

    def _tus_complete(self, state: TusState) -> None:
        os.replace(self.tus / f"{state.upload_id}.part", self.file(state.filename))
        (self.tus / f"{state.upload_id}.done").write_text(state.filename)
        (self.tus / f"{state.upload_id}.json").unlink()


def leftover_removals(root: Path) -> list[Path]:
    """Folders under ``root/tasks`` whose removal stopped halfway."""
    folder = root / "tasks"
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(_REMOVING)]


class MultipartSink:
    """Parses a multipart/form-data body fed in blocks; ``client_files[i]`` parts go to the
    upload area's files, other fields are kept (small) in :attr:`fields`."""

    def __init__(
        self, area: UploadArea, content_type: str, file_field: re.Pattern[str] = _FILE_FIELD
    ) -> None:
        ctype, params = parse_options_header(content_type)
        self.file_field = file_field
        if ctype != b"multipart/form-data" or b"boundary" not in params:
            raise InvalidInput("Expected a multipart/form-data body.")
        self.area = area
        self.fields: dict[str, str] = {}
        self.saved: list[str] = []
        self._budget = area.max_bytes - area.used_bytes()
        self._header_field = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_value = b""
        self._out: IO[bytes] | None = None
        self._out_path: Path | None = None
        self._field: str | None = None
        self._value = bytearray()
        self._error: Exception | None = None
        self._parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._hdr_field,
                "on_header_value": self._hdr_value,
                "on_header_end": self._hdr_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_field = b""
        self._header_value = b""

    def _hdr_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hdr_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _hdr_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._field = name
        self._value = bytearray()
        if filename is not None and self.file_field.match(name):
            base = client_basename(filename.decode("utf-8", "replace"))
            path = self.area.file(base)
            try:
                self._out = path.open("xb")
            except FileExistsError:
                raise InvalidInput(f"{base} is uploaded twice.", field="client_files") from None
            self._out_path = path
            self.saved.append(base)

    def _data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._out is not None:
            self._budget -= size
            if self._budget < 0:
                raise InvalidInput(
                    f"The upload is larger than {self.area.max_bytes} bytes, "
                    "the most allowed for a task."
                )
            self._out.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > _MAX_FIELD_BYTES:
                raise InvalidInput(f"The form field {self._field} is too large.")

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self._out_path = None
        elif self._field:
            self.fields[self._field] = self._value.decode("utf-8", "replace")

    def feed(self, block: bytes) -> None:
        self.area.touch()
        try:
            self._parser.write(block)
        except InvalidInput:
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            raise InvalidInput(f"Malformed multipart body ({exc}).") from exc

    def finish(self) -> None:
        self._parser.finalize()
        if self._out is not None:
            self.abort()
            raise InvalidInput("The multipart body ended in the middle of a file.")

    def abort(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._out_path is not None:
            self._out_path.unlink(missing_ok=True)
            self._out_path = None

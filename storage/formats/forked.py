"""Work made in forked child processes, each on a core of its own.

An import is CPU-bound Python on both sides of its pipeline: the format's reader and the
sink (parse, match, convert) make the chunks, the write path (validate, split, build rows)
writes them, and both hold the GIL, so in one process they take turns on one core while the
database's COPY waits on the other. Forked, the child makes (and validates) the chunks
while the parent writes the previous one (:func:`chunks_in_child`); a reader that can
divide its file makes it in shares, one child each, whose chunks the parent takes in turn
(:func:`streams_in_children`). A large export is
per-object Python too (database JSON to items to the format's text): its pages are made by
several children at once, each page by one, and the parent writes them in order
(:func:`pages_in_children`). Each result is handed over as msgpack (msgspec encodes and
decodes in C, a small part of making it).

A child is a fork of the calling thread: the caller's state (a parsed dataset's lazy
iterators, the task's labels and frames, an export's page plan and tracks) is simply there,
nothing is pickled. ``before`` runs first in the child: it reopens what must not be shared
with the parent (an upload's file offset, a database connection). The child runs with the
garbage collector off and leaves with ``os._exit``, so nothing the parent owns (database
connections, threads' locks) is finalized or touched by it. An error of the dataset
(InvalidInput) travels back with its message; the parent kills its children when it stops
early. Where ``os.fork`` is missing or fails the work is done in the calling thread.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import struct
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any, TypeVar

import msgspec

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.model import Undivided

T = TypeVar("T")

_HEADER = struct.Struct("!BQ")
_RESULT, _DONE, _INVALID, _FAILED, _UNDIVIDED = range(5)


def available() -> bool:
    return hasattr(os, "fork")


class _Child:
    """A forked child writing the results of ``make()`` to a pipe; read with :meth:`next`."""

    def __init__(
        self, make: Callable[[], Iterator[Any]], before: Callable[[], None] | None, flush: bool
    ) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if self.pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(make, before, write_fd, flush)
        os.close(write_fd)
        self.pipe: IO[bytes] = os.fdopen(read_fd, "rb", buffering=1 << 20)

    def next(self, what: str) -> bytes | None:
        """The next result's msgpack, or None once the child is done."""
        head = self.pipe.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise RuntimeError(f"The {what} process ended without a word.")
        tag, size = _HEADER.unpack(head)
        body = self.pipe.read(size)
        if tag == _RESULT:
            return body
        if tag == _DONE:
            return None
        if tag == _INVALID:
            raise InvalidInput(msgspec.msgpack.decode(body))
        if tag == _UNDIVIDED:
            raise Undivided(body.decode())
        raise RuntimeError(f"The {what} failed: {body.decode()}")

    def end(self) -> None:
        self.pipe.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def chunks_in_child(
    make: Callable[[], Iterator[T]], kind: type[T], before: Callable[[], None] | None = None
) -> Generator[T, None, None]:
    """The chunks of ``make()`` (msgspec structs of type ``kind``), made in a forked child.
    ``before`` runs first in the child (reopen what must not share the parent's file
    offsets)."""
    try:
        child = _Child(make, before, flush=False)
    except OSError:  # no process to be had (limits, memory): made here instead
        yield from make()
        return
    decode = msgspec.msgpack.Decoder(kind).decode
    try:
        while (body := child.next("import's reader")) is not None:
            yield decode(body)
    finally:
        child.end()


def streams_in_children(
    makers: list[Callable[[], Iterator[T]]],
    kind: type[T],
    before: Callable[[], None] | None = None,
    what: str = "import's reader",
) -> Generator[T, None, None]:
    """The results of each ``makers[k]()``, made in a forked child of its own, taken in
    turn: the first of each child's, then the second of each, ... (a child that is done is
    skipped). Each result is flushed as it is made. ``before`` runs first in each child.
    Raises OSError, before any result, when a child cannot be forked."""
    children: list[_Child] = []
    try:
        for make in makers:
            children.append(_Child(make, before, flush=True))
        decode = msgspec.msgpack.Decoder(kind).decode
        live = list(children)
        while live:
            for child in list(live):
                body = child.next(what)
                if body is None:
                    live.remove(child)
                else:
                    yield decode(body)
    finally:
        for child in children:
            child.end()


def pages_in_children(
    count: int,
    make: Callable[[int], T],
    kind: type[T],
    processes: int,
    before: Callable[[], None] | None = None,
) -> Generator[T, None, None]:
    """``make(0)``, ..., ``make(count - 1)`` in that order, made by ``processes`` forked
    children: child ``k`` makes pages ``k``, ``k + processes``, ... (each result flushed as
    it is made, so the parent writes page ``i`` while the others make the next ones).
    ``before`` runs first in each child."""
    processes = max(1, min(processes, count))

    def share(first: int) -> Iterator[T]:
        for page in range(first, count, processes):
            yield make(page)

    pages = streams_in_children(
        [functools.partial(share, k) for k in range(processes)], kind, before, "export's page"
    )
    made = 0
    try:
        for result in pages:
            made += 1
            yield result
    except OSError:  # no process to be had (limits, memory): all made here instead
        if made:
            raise
        for page in range(count):
            yield make(page)
        return
    finally:
        pages.close()
    if made != count:
        raise RuntimeError("An export's page process ended early.")


def _child(
    make: Callable[[], Iterator[Any]], before: Callable[[], None] | None, fd: int, flush: bool
) -> None:
    code = 1
    try:
        gc.disable()
        encode = msgspec.msgpack.Encoder().encode
        with os.fdopen(fd, "wb", buffering=1 << 20) as pipe:
            try:
                if before is not None:
                    before()
                for data in make():
                    body = encode(data)
                    pipe.write(_HEADER.pack(_RESULT, len(body)))
                    pipe.write(body)
                    if flush:
                        pipe.flush()
                pipe.write(_HEADER.pack(_DONE, 0))
                code = 0
            except InvalidInput as exc:
                fields = encode(exc.fields)
                pipe.write(_HEADER.pack(_INVALID, len(fields)) + fields)
            except Undivided as exc:
                reason = str(exc).encode()
                pipe.write(_HEADER.pack(_UNDIVIDED, len(reason)) + reason)
            except BaseException as exc:  # reported to the parent, which raises it
                message = f"{type(exc).__name__}: {exc}".encode()
                pipe.write(_HEADER.pack(_FAILED, len(message)) + message)
    finally:
        os._exit(code)

"""An import's chunks made in a forked child process, on a core of their own.

An import is CPU-bound Python on both sides of its pipeline: the format's reader and the
sink (parse, match, convert) make the chunks, the write path (validate, split, build rows)
writes them, and both hold the GIL, so in one process they take turns on one core while the
database's COPY waits on the other. Forked, the child makes (and validates) the chunks
while the parent writes the previous one, and hands each over as msgpack (msgspec encodes
and decodes a chunk in C, a small part of making it).

The child is a fork of the importing thread, taken before any of the dataset was read: the
reader's and the sink's state (the parsed dataset's lazy iterators, the task's labels and
frames) are simply there, nothing is pickled. It reopens the upload (its own file offset),
runs with the garbage collector off and leaves with ``os._exit``, so nothing the parent
owns (database connections, threads' locks) is finalized or touched by it. An error of the
dataset (InvalidInput) travels back with its message; the parent kills the child when it
stops early. Where ``os.fork`` is missing or fails the chunks are made in the calling
thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import struct
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import msgspec

from cvat_ray.cluster.errors import InvalidInput

T = TypeVar("T")

_HEADER = struct.Struct("!BQ")
_CHUNK, _DONE, _INVALID, _FAILED = range(4)


def available() -> bool:
    return hasattr(os, "fork")


def chunks_in_child(
    make: Callable[[], Iterator[T]], kind: type[T], before: Callable[[], None] | None = None
) -> Generator[T, None, None]:
    """The chunks of ``make()`` (msgspec structs of type ``kind``), made in a forked child.
    ``before`` runs first in the child (reopen what must not share the parent's file
    offsets)."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to be had (limits, memory): made here instead
        os.close(read_fd)
        os.close(write_fd)
        yield from make()
        return
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(make, before, write_fd)
    os.close(write_fd)
    decode = msgspec.msgpack.Decoder(kind).decode
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as pipe:
            while True:
                head = pipe.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    raise RuntimeError("The import's reader process ended without a word.")
                tag, size = _HEADER.unpack(head)
                body = pipe.read(size)
                if tag == _CHUNK:
                    yield decode(body)
                elif tag == _DONE:
                    return
                elif tag == _INVALID:
                    raise InvalidInput(msgspec.msgpack.decode(body))
                else:
                    raise RuntimeError(f"The import's reader failed: {body.decode()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _child(make: Callable[[], Iterator[Any]], before: Callable[[], None] | None, fd: int) -> None:
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
                    pipe.write(_HEADER.pack(_CHUNK, len(body)))
                    pipe.write(body)
                pipe.write(_HEADER.pack(_DONE, 0))
                code = 0
            except InvalidInput as exc:
                fields = encode(exc.fields)
                pipe.write(_HEADER.pack(_INVALID, len(fields)) + fields)
            except BaseException as exc:  # reported to the parent, which raises it
                message = f"{type(exc).__name__}: {exc}".encode()
                pipe.write(_HEADER.pack(_FAILED, len(message)) + message)
    finally:
        os._exit(code)

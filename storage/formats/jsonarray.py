"""The elements of a big JSON array, typed and read a piece at a time (COCO's
``annotations``, Datumaro's ``items``).

An event parser (ijson) builds a dict per element in a few microseconds; msgspec decodes
typed structs in C several times faster, but only from whole documents. So the array is cut
into pieces of about ``BLOCK`` bytes at separators between elements (``}`` ``,`` ``{``) and
each piece is decoded as an array of its own: memory stays that of a piece, not of the file.

A separator can also occur inside a string or a nested array of objects; a piece cut there
is not valid JSON (an unterminated string, unbalanced brackets), so its decoding fails.
Then, and for anything else unexpected (the key not found at the top level by the quick
scan, data after the array, a malformed file), the elements not yet given are read again
with ijson and decoded from their JSON text into the same structs, which is also where a malformed file's error
comes from. A piece that decodes is therefore exactly the elements it spans.

Read in shares (``share=(k, n)``: each of ``n`` processes scans the whole text and decodes
only the pieces ``k``, ``k + n``, ...), a piece that does not decode raises
:class:`~cvat_ray.storage.formats.model.Undivided`: its elements cannot be told apart
without the others' pieces, so the caller reads the file whole instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any, TypeVar

import ijson
import msgspec

from cvat_ray.storage.formats.model import Undivided

T = TypeVar("T")

# bytes per piece (about 20,000 COCO annotations)
BLOCK = 4 << 20

# a JSON string, or a quote whose string does not end in the buffer, or a bracket
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|["\[\]{}]')
_SPACE = b" \t\r\n"
_SEP = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")


_encode = msgspec.json.Encoder().encode


class _Unexpected(Exception):
    """The quick path cannot go on: read the rest with ijson."""


def items(
    open_file: Callable[[], AbstractContextManager[Any]],
    key: str,
    kind: type[T],
    share: tuple[int, int] | None = None,
) -> Iterator[T]:
    """The elements of the array under the top-level object's ``key``, as ``kind`` (numbers
    given as strings, or integers as floats, are converted as in msgspec's lax mode). A key
    that is missing gives nothing. ``open_file`` opens the file (a binary stream, read twice
    when the quick path gives up); a malformed file raises ijson's or msgspec's error.
    ``share``: ``(k, n)``, the elements of every ``n``-th piece from piece ``k``."""
    decoder = msgspec.json.Decoder(list[kind], strict=False)  # type: ignore[valid-type]
    done = 0
    k, n = share or (0, 1)
    try:
        with open_file() as f:
            found = _array_start(f, key.encode())
            if found is not None:
                for number, piece in enumerate(_pieces(f, found)):
                    if number % n != k:
                        continue
                    try:
                        decoded = decoder.decode(piece)
                    except msgspec.DecodeError as exc:
                        raise _Unexpected from exc
                    done += len(decoded)
                    yield from decoded
                return
    except _Unexpected as exc:
        if share is not None:
            raise Undivided(f"the '{key}' array cannot be read in pieces") from exc
    one = msgspec.json.Decoder(kind, strict=False)
    with open_file() as f:
        for number, element in enumerate(ijson.items(f, f"{key}.item", use_float=True)):
            if number >= done:
                # through JSON text again, so ``kind`` may keep parts raw (msgspec.Raw)
                yield one.decode(_encode(element))


def _array_start(f: IO[bytes], key: bytes) -> bytes | None:
    """Read ``f`` until the array of the top-level ``key`` opens: what follows its ``[``
    (the rest of the buffer read), or None when the top-level object has no such key."""
    wanted = b'"' + key + b'"'
    buf = b""
    pos = 0
    depth = 0
    eof = False
    while True:
        if not eof:
            more = f.read(BLOCK)
            eof = not more
            buf = buf[pos:] + more
            pos = 0
        stalled = True
        for m in _TOKEN.finditer(buf, pos):
            if m.end() + 64 > len(buf) and not eof:
                pos = m.start()  # too near the end to look past: read more first
                stalled = False
                break
            token = m.group()
            if token in (b"{", b"["):
                depth += 1
            elif token in (b"}", b"]"):
                depth -= 1
                if depth <= 0:
                    return None
            elif token == b'"':
                if eof:
                    raise _Unexpected  # an unterminated string: ijson says where
                pos = m.start()
                stalled = False
                break
            elif depth == 1 and token == wanted:
                rest = buf[m.end() :].lstrip(_SPACE)
                if rest[:1] == b":":
                    value = rest[1:].lstrip(_SPACE)
                    if value[:1] != b"[":
                        raise _Unexpected
                    return value[1:]
        if stalled:
            if eof:
                return None
            pos = len(buf)


def _pieces(f: IO[bytes], buf: bytes) -> Iterator[bytes]:
    """The array's text after its ``[`` in pieces of whole elements, each as the text of an
    array (the last one's closing ``]`` is the array's own, the end of the top-level object
    cut off)."""
    eof = False
    start = 0
    while True:
        if not eof and len(buf) - start < 2 * BLOCK:
            more = f.read(2 * BLOCK)
            eof = not more
            buf = buf[start:] + more
            start = 0
            continue
        m = _SEP.search(buf, start + BLOCK) if not eof else None
        if m is None and not eof:
            # one element longer than a block: read on
            more = f.read(BLOCK)
            eof = not more
            buf += more
            continue
        if m is None:
            tail = buf[start:].rstrip(_SPACE)
            if not tail.endswith(b"}"):
                raise _Unexpected
            tail = tail[:-1].rstrip(_SPACE)
            if not tail.endswith(b"]"):
                raise _Unexpected
            yield b"[" + tail
            return
        yield b"".join((b"[", memoryview(buf)[start : m.start() + 1], b"]"))
        start = m.end() - 1

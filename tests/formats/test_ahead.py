"""``ahead``: an import's chunks made by a thread while the previous one is written."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from cvat_ray.storage.formats.sink import ahead


def test_every_chunk_in_order() -> None:
    assert list(ahead(iter(range(50)))) == list(range(50))
    assert list(ahead(iter([]))) == []


def test_the_producers_error_comes_after_the_chunks_before_it() -> None:
    def chunks() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("label 'x' is not in the task")

    seen = []
    with pytest.raises(ValueError, match="label 'x'"):
        for chunk in ahead(chunks()):
            seen.append(chunk)
    assert seen == [1, 2]


def test_a_caller_that_stops_stops_the_producer() -> None:
    made: list[int] = []
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            for n in range(1_000_000):
                made.append(n)
                yield n
        finally:
            closed.set()

    stream = ahead(chunks())
    for chunk in stream:
        if chunk == 3:
            break
    stream.close()  # the caller's write failed: the generator is closed
    assert closed.is_set()
    assert len(made) <= 6  # the chunk given, one waiting, one being made

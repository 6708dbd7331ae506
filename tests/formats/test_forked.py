"""Chunks made in a forked process: the same as made in place, errors of the dataset come
back with their fields, other errors as failures, and a parent that stops early leaves no
process behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import forked
from cvat_ray.storage.schemas.annotations import AttributeVal, LabeledData, LabeledShape

pytestmark = pytest.mark.skipif(not forked.available(), reason="no os.fork")


def _chunks(count: int, fail: Exception | None = None) -> Iterator[LabeledData]:
    for n in range(count):
        yield LabeledData(
            shapes=[
                LabeledShape(
                    type="rectangle", frame=n, label_id=7, points=[n, 0.5, n + 2.25, 3],
                    attributes=[AttributeVal(spec_id=3, value=f"v{n}")], z_order=-n,
                )
                for _ in range(1000)
            ]
        )  # fmt: skip
    if fail is not None:
        raise fail


def test_chunks_come_back_as_made() -> None:
    assert list(forked.chunks_in_child(lambda: _chunks(5), LabeledData)) == list(_chunks(5))


def test_the_before_hook_runs_in_the_child_only() -> None:
    seen: list[int] = []
    assert list(
        forked.chunks_in_child(lambda: _chunks(1), LabeledData, lambda: seen.append(1))
    ) == list(_chunks(1))
    assert seen == []


def test_a_dataset_error_comes_back_with_its_fields() -> None:
    error = InvalidInput("Label 'unicorn' is not in the task", field="labels")
    with pytest.raises(InvalidInput) as caught:
        list(forked.chunks_in_child(lambda: _chunks(2, error), LabeledData))
    assert caught.value.fields == {"labels": ["Label 'unicorn' is not in the task"]}


def test_other_errors_fail_with_their_message() -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError: boom"):
        list(forked.chunks_in_child(lambda: _chunks(1, ZeroDivisionError("boom")), LabeledData))


def test_stopping_early_ends_the_child() -> None:
    before = _children()
    chunks = forked.chunks_in_child(lambda: _chunks(10_000), LabeledData)
    next(chunks)
    assert len(_children()) == len(before) + 1
    chunks.close()
    assert _children() == before


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(pid))
    return out


def test_without_a_process_the_chunks_are_made_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    before = _children()
    assert list(forked.chunks_in_child(lambda: _chunks(3), LabeledData)) == list(_chunks(3))
    assert _children() == before


# ------------------------------------------------------------------ an export's pages


def _page(n: int) -> tuple[int, int, bytes]:
    """A page's result: its number, the process that made it, and some text."""
    return n, os.getpid(), b"page %d " % n * 5000


def test_pages_come_back_in_order_made_by_each_child() -> None:
    pages = list(forked.pages_in_children(11, _page, tuple[int, int, bytes], 3))
    assert [(n, text) for n, _, text in pages] == [(n, _page(n)[2]) for n in range(11)]
    makers = [pid for _, pid, _ in pages]
    assert os.getpid() not in makers
    # child k makes pages k, k + 3, ...: three processes, each page by its share's maker
    assert len(set(makers)) == 3
    assert all(makers[n] == makers[n % 3] for n in range(11))


def test_each_page_child_runs_before_once() -> None:
    ran: list[int] = []

    def before() -> None:
        ran.append(1)  # the child's own copy of the list

    def page(n: int) -> int:
        return len(ran)

    assert list(forked.pages_in_children(6, page, int, 2, before)) == [1] * 6
    assert ran == []


def test_more_processes_than_pages() -> None:
    before = _children()
    assert [n for n, _, _ in forked.pages_in_children(2, _page, tuple[int, int, bytes], 8)] == [
        0,
        1,
    ]
    assert _children() == before


def test_a_failing_page_fails_the_export() -> None:
    def page(n: int) -> int:
        if n == 4:
            raise ValueError("no such frame")
        return n

    before = _children()
    with pytest.raises(RuntimeError, match="ValueError: no such frame"):
        list(forked.pages_in_children(9, page, int, 2))
    assert _children() == before


def test_stopping_early_ends_the_page_children() -> None:
    before = _children()
    pages = forked.pages_in_children(1000, _page, tuple[int, int, bytes], 2)
    next(pages)
    assert len(_children()) == len(before) + 2
    pages.close()
    assert _children() == before


def test_without_a_process_the_pages_are_made_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    pages = list(forked.pages_in_children(5, _page, tuple[int, int, bytes], 2))
    assert [(n, pid) for n, pid, _ in pages] == [(n, os.getpid()) for n in range(5)]


def test_a_later_fork_failing_makes_all_pages_here(monkeypatch: pytest.MonkeyPatch) -> None:
    real, forks = os.fork, []

    def second_fails() -> int:
        forks.append(1)
        if len(forks) > 1:
            raise OSError("Resource temporarily unavailable")
        return real()

    monkeypatch.setattr(os, "fork", second_fails)
    before = _children()
    pages = list(forked.pages_in_children(4, _page, tuple[int, int, bytes], 2))
    assert [(n, pid) for n, pid, _ in pages] == [(n, os.getpid()) for n in range(4)]
    assert _children() == before

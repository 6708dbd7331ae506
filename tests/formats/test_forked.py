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

"""The piecewise typed reader of a big JSON array: every cut it makes is checked against what
a full JSON parser reads, with pieces small enough that separators inside strings and
nested arrays of objects are hit, and malformed files fail as ijson or msgspec says."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ijson
import msgspec
import pytest

from cvat_ray.storage.formats import jsonarray


class Ann(msgspec.Struct):
    image_id: int
    category_id: int
    id: int = 0
    attributes: dict[str, Any] = {}


def _read(data: bytes, monkeypatch: pytest.MonkeyPatch, block: int) -> list[Ann]:
    monkeypatch.setattr(jsonarray, "BLOCK", block)
    opened: list[int] = []

    @contextmanager
    def open_file() -> Iterator[io.BytesIO]:
        opened.append(1)
        yield io.BytesIO(data)

    return list(jsonarray.items(open_file, "annotations", Ann))


ELEMENTS = [
    {"id": k, "image_id": k // 3, "category_id": 1 + k % 2, "attributes": {"n": f"v{k}"}}
    for k in range(200)
]

DOCS: dict[str, dict[str, Any]] = {
    "plain": {"images": [{"id": 1}], "annotations": ELEMENTS},
    "annotations last but one": {"annotations": ELEMENTS, "categories": [{"id": 1}]},
    "empty": {"annotations": []},
    "missing": {"images": [{"id": 1, "file_name": "a.jpg"}]},
    "separator in strings": {
        "info": {"annotations": [{"image_id": 9, "category_id": 9}]},
        "x": '"annotations":[{"image_id": 7, "category_id": 7}]',
        "annotations": [
            {"image_id": k, "category_id": 2, "attributes": {"s": 'a"},{"b' * (k % 4)}}
            for k in range(100)
        ],
    },
    "nested arrays of objects": {
        "annotations": [
            {"image_id": k, "category_id": 1, "attributes": {"l": [{"a": 1}, {"b": k}]}}
            for k in range(100)
        ]
    },
    "lax numbers": {"annotations": [{"image_id": "5", "category_id": 2.0, "id": 3}] * 30},
}


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize("block", [8, 64, 1000, 1 << 22])
@pytest.mark.parametrize("indent", [None, 3])
def test_pieces_read_what_a_parser_reads(
    name: str, block: int, indent: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = DOCS[name]
    raw = json.dumps(doc, indent=indent).encode()
    expected = [msgspec.convert(a, Ann, strict=False) for a in doc.get("annotations", [])]
    assert _read(raw, monkeypatch, block) == expected


def test_a_big_array_is_read_in_pieces_without_falling_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = json.dumps({"images": [], "annotations": ELEMENTS * 50}).encode()

    def no_ijson(*args: object, **kwargs: object) -> None:
        raise AssertionError("the quick path gave up")

    monkeypatch.setattr(ijson, "items", no_ijson)
    got = _read(raw, monkeypatch, 4096)
    assert len(got) == 10_000 and got[-1] == msgspec.convert(ELEMENTS[-1], Ann)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"annotations": [{"image_id": 1, "category_id": 1}', ijson.JSONError),
        (b'{"annotations": [{"image_id": 1}]}', msgspec.ValidationError),
        (b'{"annotations": [{"image_id": 1, "category_id": 1}]} trailing', ijson.JSONError),
        (b'{"annotations": [{"image_id": 1, "category_id": "x"}]}', msgspec.ValidationError),
        (b'{"annotations": [1, 2]}', msgspec.ValidationError),
    ],
)
def test_malformed_files_fail(
    raw: bytes, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(error):
        _read(raw, monkeypatch, 8)

"""The export archive's deflated members, written by a thread of their own."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pytest

from cvat_ray.storage.formats.archive import _CHUNK, ZipOut, _BackgroundMember


def test_members_round_trip_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "out.zip"
    pieces = [bytes([n % 251]) * (n * 997 % 70_000) for n in range(200)]  # ~7 MiB
    with ZipOut(path) as out:
        with out.open("annotations/big.json") as f:
            for piece in pieces:
                assert f.write(piece) == len(piece)
        with out.open("small.txt") as f:
            f.write(b"x")
        out.write("images/a.jpg", b"jpeg")
    with zipfile.ZipFile(path) as zf:
        assert zf.read("annotations/big.json") == b"".join(pieces)
        assert zf.read("small.txt") == b"x"
        assert zf.getinfo("annotations/big.json").compress_type == zipfile.ZIP_DEFLATED
        assert zf.getinfo("images/a.jpg").compress_type == zipfile.ZIP_STORED


def test_a_failing_producer_reports_its_own_error(tmp_path: Path) -> None:
    before = threading.active_count()
    with (
        pytest.raises(KeyError, match="producer"),
        ZipOut(tmp_path / "out.zip") as out,
        out.open("a.json") as f,
    ):
        f.write(b"y" * (_CHUNK + 1))
        raise KeyError("producer")
    assert threading.active_count() == before  # the writer thread ended


class _Full:
    """A member stream on a full disk."""

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")


def test_a_failing_writer_stops_the_producer() -> None:
    member = _BackgroundMember(_Full())  # type: ignore[arg-type]
    member.write(b"z" * _CHUNK)  # handed to the writer, which fails
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):  # the error surfaces on a later write, at the latest at close
            member.write(b"z" * _CHUNK)
        member.close()
    member.close(failed=True)

"""Bounds on the work of one media read and on what uploads leave behind: video reads seek
per frame and stop past the keyframe interval, chunk sizes fit the limits, uploads know
their last activity."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.media import video
from cvat_ray.storage.media.render import FrameRef, RenderPlan, write_chunk
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.media.uploads import UploadArea
from cvat_ray.storage.services.task_data import FrameInfo, fitting_chunk_size
from tests.media_files import write_video


def grey(image: object) -> int:
    return int(image.convert("L").getpixel((32, 24)))  # type: ignore[attr-defined]


def test_a_read_seeks_to_each_frames_keyframe(tmp_path: Path) -> None:
    """Frames 5 and 95 of a video with a keyframe every 10 frames: the second is read from
    keyframe 90 (6 frames decoded), not by decoding on from frame 5 (91 frames), so a bound
    of 10 frames per read holds."""
    path = str(write_video(tmp_path / "gop10.mp4", 100, gop=10))
    info = video.probe_video(path, "gop10.mp4", max_frames=1000, max_decode=10)
    wanted = [info.frames[5], info.frames[95]]
    first, second = video.read_frames(path, wanted, max_decode=10)
    assert abs(grey(first) - 50) < 8 and abs(grey(second) - (950 % 256)) < 8
    # the same frames in the other order seek back
    again = video.read_frames(path, wanted[::-1], max_decode=10)
    assert all(abs(grey(a) - grey(b)) < 3 for a, b in zip(again, [second, first], strict=True))


def test_a_single_keyframe_video_is_refused_or_bounded(tmp_path: Path) -> None:
    path = str(write_video(tmp_path / "one-key.mp4", 60, gop=1000))
    with pytest.raises(InvalidInput, match="Re-encode the video"):
        video.probe_video(path, "one-key.mp4", max_frames=1000, max_decode=20)
    # made under a looser bound, a read past the bound stops instead of decoding on
    info = video.probe_video(path, "one-key.mp4", max_frames=1000, max_decode=100)
    assert video.read_frames(path, [info.frames[19]], max_decode=20)
    with pytest.raises(InvalidInput, match="decodes more than 20 frames"):
        video.read_frames(path, [info.frames[20]], max_decode=20)


def test_video_chunks_are_written_frame_by_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 30, gop=10)
    info = video.probe_video(str(path), "clip.mp4", max_frames=1000)
    frames = tuple(
        FrameRef(path="clip.mp4", width=64, height=48, pts=f.pts, key_pts=f.key_pts)
        for f in info.frames[12:20]
    )
    source = MediaSource(storage="local", root=str(tmp_path))
    plan = RenderPlan("chunk", "k", source, frames, "video", chunk_type="imageset", max_decode=10)
    out = io.BytesIO()
    assert write_chunk(plan, out) == "application/zip"
    with zipfile.ZipFile(out) as zf:
        assert len(zf.infolist()) == 8
    mp4 = io.BytesIO()
    plan = RenderPlan("chunk", "k", source, frames, "video", chunk_type="video", max_decode=10)
    assert write_chunk(plan, mp4) == "video/mp4" and mp4.getvalue()[4:8] == b"ftyp"


def test_chunk_sizes_fit_the_frame_and_pixel_limits() -> None:
    frames = [FrameInfo(f"{i}.jpg", 100, 100) for i in range(5)] + [FrameInfo("big.jpg", 400, 100)]
    assert fitting_chunk_size(frames, 50, max_frames=1000, max_pixels=40_000 * 10) == 10
    assert fitting_chunk_size(frames, 50, max_frames=8, max_pixels=10**9) == 8
    assert fitting_chunk_size(frames, 5, max_frames=8, max_pixels=10**9) == 5
    # a frame larger than the pixel limit still gets a chunk of its own
    assert fitting_chunk_size(frames, 50, max_frames=8, max_pixels=10) == 1


def _age(folder: Path, seconds: float) -> None:
    """Set every entry under ``folder`` (and itself) ``seconds`` into the past."""
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))


def test_uploads_know_their_last_activity(tmp_path: Path) -> None:
    area = UploadArea(tmp_path, 7, 10**6)
    area.start()
    state = area.tus_create("a.bin", 10)
    _age(area.dir, 2 * 24 * 3600)  # Upload-Start two days ago, nothing since
    assert area.remove_if_idle(24 * 3600) and not area.dir.exists()
    area.start()
    state = area.tus_create("a.bin", 10)
    area.tus_write(state.upload_id, 0, b"12345")
    _age(area.dir, 2 * 24 * 3600)
    area.tus_write(state.upload_id, 5, b"678")  # ... but a PATCH came just now
    assert not area.remove_if_idle(24 * 3600)
    assert area.tus_state(state.upload_id).offset == 8
    _age(area.dir, 2 * 24 * 3600)
    area.tus_state(state.upload_id)  # a HEAD is activity too
    assert not area.remove_if_idle(24 * 3600)
    _age(area.dir, 2 * 24 * 3600)
    assert area.remove_if_idle(24 * 3600)
    assert not area.dir.exists() and list((tmp_path / "tasks").iterdir()) == []
    area.touch()  # a late call on a removed upload changes nothing
    assert not area.dir.exists()

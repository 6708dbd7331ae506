"""Video: probing (frame count, timestamps, keyframes), frame reads by seeking, MP4 chunks.

A video is never decoded whole per request: probing demuxes packets without decoding (plus
the first and last group of pictures, to catch broken files), and every read seeks to the
keyframe recorded for each wanted frame (unless decoding on from the previous one is shorter)
and yields the frames one at a time. What one frame may cost is bounded
(``media.max_keyframe_interval``): probing refuses a video whose keyframes are further apart,
and a read stops with an error past the bound.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
from PIL import Image

from cvat_ray.cluster.errors import InvalidInput

VideoInput = str | IO[bytes]


@dataclass(frozen=True)
class VideoFrame:
    pts: int
    key_pts: int | None


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: tuple[VideoFrame, ...]


def _video_stream(container: Any, name: str) -> Any:
    if not container.streams.video:
        raise InvalidInput(f"{name}: the file has no video stream.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def probe_video(
    source: VideoInput, name: str, *, max_frames: int, max_decode: int | None = None
) -> VideoInfo:
    """Frame count and per-frame timestamps from the packets; raise InvalidInput for files
    that cannot be demuxed, whose first or last frames cannot be decoded, or (with
    ``max_decode``) where reading some frame decodes more than ``max_decode`` frames."""
    try:
        with av.open(source, mode="r") as container:
            stream = _video_stream(container, name)
            stamps: list[int] = []
            keys: list[int] = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise InvalidInput(f"{name}: the video has no timestamps.")
                stamps.append(ts)
                if packet.is_keyframe:
                    keys.append(ts)
                if len(stamps) > max_frames:
                    raise InvalidInput(
                        f"{name}: the video has more than {max_frames} frames, the most allowed."
                    )
            if not stamps:
                raise InvalidInput(f"{name}: the video has no frames.")
            stamps.sort()
            keys.sort()
            frames = tuple(VideoFrame(pts=ts, key_pts=_key_for(keys, ts)) for ts in stamps)
            rate = stream.average_rate or stream.guessed_rate or 25
            fps = float(rate)
    except InvalidInput:
        raise
    except Exception as exc:  # PyAV raises FFmpeg errors of many types
        raise InvalidInput(f"{name}: not a readable video ({exc}).") from exc
    if max_decode is not None:
        _check_keyframes(frames, name, max_decode)
    # Decode the first and the last frame: a truncated or corrupt stream fails here.
    first = read_frames(source, [frames[0]], name=name, max_decode=max_decode)
    read_frames(source, [frames[-1]], name=name, max_decode=max_decode)
    width, height = first[0].size
    return VideoInfo(width=width, height=height, fps=fps, frames=frames)


def _key_for(keys: Sequence[int], ts: int) -> int | None:
    at = bisect.bisect_right(keys, ts)
    return keys[at - 1] if at else None


def _check_keyframes(frames: Sequence[VideoFrame], name: str, max_decode: int) -> None:
    """Refuse a video where reading some frame decodes more than ``max_decode`` frames (from
    its keyframe, or from the start when no keyframe comes before it)."""
    index = {f.pts: i for i, f in enumerate(frames)}
    worst, at = 0, 0
    for i, frame in enumerate(frames):
        start = index.get(frame.key_pts, 0) if frame.key_pts is not None else 0
        if i - start + 1 > worst:
            worst, at = i - start + 1, i
    if worst > max_decode:
        raise InvalidInput(
            f"{name}: reading frame {at} decodes {worst} frames from its keyframe; this server "
            f"decodes at most {max_decode} to read one frame. Re-encode the video with keyframes "
            f"closer together (e.g. ffmpeg -i {name} -g 250 out.mp4)."
        )


def iter_frames(
    source: VideoInput,
    wanted: Sequence[VideoFrame],
    *,
    name: str = "video",
    max_decode: int | None = None,
) -> Generator[Image.Image, None, None]:
    """The wanted frames as images, one at a time, in the order given.

    Before a frame whose keyframe lies past the last frame decoded (or when the frame lies
    behind it) the reader seeks to that keyframe; otherwise it decodes on. A frame that needs
    more than ``max_decode`` frames decoded (counted from the seek or from the previous wanted
    frame, itself included) raises InvalidInput, so the work of one read is bounded whatever
    the file holds. Close the iterator when stopping early: it holds the open file."""
    if not wanted:
        return
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        with av.open(source, mode="r") as container:
            stream = _video_stream(container, name)
            step = _frame_duration(stream)
            frames: Iterator[Any] | None = None
            position: int | None = None  # pts of the last wanted frame decoded
            floor: int | None = None  # the keyframe sought to last
            for target in wanted:
                key = target.key_pts
                behind = position is not None and position >= target.pts
                # a keyframe right after the last frame read is reached by decoding on
                ahead = key is not None and position is not None and key - position > step
                if frames is None or behind or ahead:
                    if key is not None:
                        container.seek(key, stream=stream, backward=True, any_frame=False)
                    elif frames is not None:
                        container.seek(0, backward=True, any_frame=False)
                    frames, floor = container.decode(stream), key
                yield _decode_to(frames, target, floor, max_decode, name)
                position = target.pts
    except InvalidInput:
        raise
    except Exception as exc:  # PyAV raises FFmpeg errors of many types
        raise InvalidInput(f"{name}: cannot decode the video ({exc}).") from exc


def _frame_duration(stream: Any) -> float:
    """One frame's duration in the stream's time base (0 when the rate is unknown)."""
    try:
        return 1 / float(stream.average_rate * stream.time_base)
    except (TypeError, ZeroDivisionError):
        return 0.0


def _decode_to(
    frames: Iterator[Any], target: VideoFrame, floor: int | None, limit: int | None, name: str
) -> Image.Image:
    """Decode on to ``target`` and return it."""
    decoded = 1
    for frame in frames:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or (floor is not None and pts < floor):
            continue  # leading frames of an open group of pictures
        if pts == target.pts:
            image: Image.Image = frame.to_image()
            return image
        if pts > target.pts:
            break
        decoded += 1
        if limit is not None and decoded > limit:
            raise InvalidInput(
                f"{name}: reading the frame at timestamp {target.pts} decodes more than "
                f"{limit} frames, the most this server decodes to read one frame."
            )
    raise InvalidInput(f"{name}: cannot decode the frame with timestamp {target.pts}.")


def read_frames(
    source: VideoInput,
    wanted: Sequence[VideoFrame],
    *,
    name: str = "video",
    max_decode: int | None = None,
) -> list[Image.Image]:
    """:func:`iter_frames` as a list (for a few frames)."""
    frames = iter_frames(source, wanted, name=name, max_decode=max_decode)
    try:
        return list(frames)
    finally:
        frames.close()


def encode_mp4(images: Iterable[Image.Image], out_file: IO[bytes], *, fps: float, crf: int) -> None:
    """Write an H.264 MP4 of the images (CVAT's video chunks) to ``out_file`` (seekable),
    encoding them as they come; odd sizes are cropped to even."""
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
    frames = iter(images)
    first = next(frames, None)
    if first is None:
        raise ValueError("an MP4 chunk needs at least one frame")
    with av.open(out_file, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        width, height = first.size
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for i, image in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_image(image.convert("RGB"))  # type: ignore[no-untyped-call]
            if (frame.width, frame.height) != (stream.width, stream.height):
                frame = frame.reformat(width=stream.width, height=stream.height)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def quality_to_crf(quality: int) -> int:
    """CVAT's image_quality (1..100) as an x264 CRF (51..0)."""
    return max(0, min(51, round(51 * (100 - quality) / 100)))

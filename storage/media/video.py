"""Video: probing (frame count, timestamps, keyframes), frame reads by seeking, MP4 chunks.

A video is never decoded whole per request: probing demuxes packets without decoding (plus
the first and last group of pictures, to catch broken files), and every read seeks to the
keyframe recorded for the first wanted frame and decodes forward from there.
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Iterator, Sequence
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


def probe_video(source: VideoInput, name: str, *, max_frames: int) -> VideoInfo:
    """Frame count and per-frame timestamps from the packets; raise InvalidInput for files
    that cannot be demuxed or whose first or last frames cannot be decoded."""
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
    # Decode the first and the last frame: a truncated or corrupt stream fails here.
    first = read_frames(source, [frames[0]], name=name)
    read_frames(source, [frames[-1]], name=name)
    width, height = first[0].size
    return VideoInfo(width=width, height=height, fps=fps, frames=frames)


def _key_for(keys: Sequence[int], ts: int) -> int | None:
    at = bisect.bisect_right(keys, ts)
    return keys[at - 1] if at else None


def _decode_from(container: Any, stream: Any, seek_to: int | None) -> Iterator[Any]:
    if seek_to is not None:
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
    yield from container.decode(stream)


def read_frames(
    source: VideoInput, wanted: Sequence[VideoFrame], *, name: str = "video"
) -> list[Image.Image]:
    """Decode the wanted frames (in presentation order, all within one seek) as images."""
    if not wanted:
        return []
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        with av.open(source, mode="r") as container:
            stream = _video_stream(container, name)
            targets = {f.pts for f in wanted}
            last = max(t for t in targets if t is not None)
            found: dict[int, Image.Image] = {}
            for frame in _decode_from(container, stream, wanted[0].key_pts):
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    continue
                if pts in targets:
                    found[pts] = frame.to_image()
                if pts >= last:
                    break
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"{name}: cannot decode the video ({exc}).") from exc
    missing = [f.pts for f in wanted if f.pts not in found]
    if missing:
        raise InvalidInput(f"{name}: cannot decode frames with timestamps {missing[:5]}.")
    return [found[f.pts] for f in wanted]


def encode_mp4(images: Sequence[Image.Image], *, fps: float, crf: int) -> bytes:
    """An H.264 MP4 of the images (CVAT's video chunks); odd sizes are cropped to even."""
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        width, height = images[0].size
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_image(image.convert("RGB"))  # type: ignore[no-untyped-call]
            if (frame.width, frame.height) != (stream.width, stream.height):
                frame = frame.reformat(width=stream.width, height=stream.height)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def quality_to_crf(quality: int) -> int:
    """CVAT's image_quality (1..100) as an x264 CRF (51..0)."""
    return max(0, min(51, round(51 * (100 - quality) / 100)))

"""Task data benchmark: processing throughput and chunk serving overhead.

Generates its media at run time (no downloads): 1,000 640x480 JPEGs and a 1,000-frame
640x480 H.264 video. Then:

1. processing: the ``create:task`` pipeline (the code the Ray media workers run), timed on
   the JPEGs and on the video -> frames/s;
2. serving: the API as a real HTTP server (uvicorn in a child process, SQLite), every chunk
   of the JPEG task requested once on a cold cache, then again on a warm cache -> chunks/s,
   for original and compressed quality;
3. the baseline: the same chunks built in this process straight from the files with Pillow
   (no HTTP, no database, no cache) -> chunks/s.

    python bench/media.py [--frames 1000] [--rounds 3]

The figure it is judged by: ratio = served chunks/s / direct Pillow chunks/s (the overhead
of serving; above 1 the cache beats building).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import httpx
import numpy as np
from PIL import Image


def make_jpegs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    paths = []
    for i in range(count):
        base = ((xx + yy + i * 7) % 256).astype(np.uint8)
        noise = rng.integers(0, 24, (480, 640), dtype=np.uint8)
        rgb = np.stack([base, base + noise, 255 - base], axis=-1)  # uint8 wraps around
        path = folder / f"frame_{i:05d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        paths.append(path)
    return paths


def make_video(path: Path, count: int) -> Path:
    yy, xx = np.mgrid[0:480, 0:640]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "50"}
        for i in range(count):
            base = ((xx + yy * 2 + i * 5) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(
                np.stack([base, base, 255 - base], -1), format="rgb24"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _setup(workdir: Path):  # type: ignore[no-untyped-def]
    from cvat_ray.cluster.settings import Settings
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.users import create_user

    settings = Settings(data_dir=workdir / "data")
    db = Database(settings.database_url)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(session, username="bench", password="Bench-pass-1")
        key = start_session(session, user, 3600, "token").key
        user_id = user.id
    return settings, db, key, user_id


def process(
    settings, db, user_id: int, files: list[Path], chunk_size: int | None
) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Run the create:task pipeline on ``files``; returns (task id, seconds)."""
    from cvat_ray.storage.models import BackgroundRequest, Label, Task, utcnow
    from cvat_ray.storage.services.data_processing import process_request
    from cvat_ray.storage.services.data_upload import upload_area

    with db.session() as session:
        task = Task(name="bench", owner_id=user_id, segment_size=100)
        session.add(task)
        session.flush()
        session.add(Label(name="cat", task_id=task.id))
        task_id = task.id
    area = upload_area(settings, task_id)
    area.start()
    for f in files:
        os.link(f, area.files / f.name)
    request_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(
            BackgroundRequest(
                id=request_id,
                operation_type="create:task",
                target="task",
                task_id=task_id,
                owner_id=user_id,
                params={"source": "local", "data": {"image_quality": 70, "chunk_size": chunk_size}},
                created_date=utcnow(),
            )
        )
    started = time.perf_counter()
    process_request(db, settings, request_id, "bench")
    elapsed = time.perf_counter() - started
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None and row.status == "finished", (row.status, row.message)
    return task_id, elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(settings) -> tuple[subprocess.Popen[bytes], str]:  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {
        **os.environ,
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_BACKGROUND__LAUNCHER": "inprocess",
        "CVAT_RAY_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "cvat_ray.serve_apps.app:build_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/api/server/about", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the API did not start") from None
            time.sleep(0.2)


def fetch_all(client: httpx.Client, url: str, task_id: int, chunks: int, quality: str) -> float:
    started = time.perf_counter()
    for n in range(chunks):
        r = client.get(f"{url}/api/tasks/{task_id}/data/?type=chunk&number={n}&quality={quality}")
        r.raise_for_status()
    return chunks / (time.perf_counter() - started)


def direct(files: list[Path], chunk_size: int, quality: str) -> float:
    """The same chunks built in-process straight from the files with Pillow."""
    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    started = time.perf_counter()
    for chunk in chunks:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for i, path in enumerate(chunk):
                if quality == "original":
                    data = path.read_bytes()
                    with Image.open(io.BytesIO(data)) as im:
                        im.size  # noqa: B018 - what a server checks before sending
                    zf.writestr(f"{i:06d}.jpg", data)
                else:
                    with Image.open(path) as im:
                        out = io.BytesIO()
                        im.convert("RGB").save(out, format="JPEG", quality=70)
                    zf.writestr(f"{i:06d}.jpg", out.getvalue())
    return len(chunks) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="warm-cache and baseline rounds")
    parser.add_argument("--chunk-size", type=int, default=36)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cvat-bench-media-"))
    try:
        print(
            f"generating {args.frames} 640x480 JPEGs and a {args.frames}-frame 640x480 video ...",
            flush=True,
        )
        t = time.perf_counter()
        jpegs = make_jpegs(workdir / "jpegs", args.frames)
        (workdir / "video").mkdir()
        video = make_video(workdir / "video" / "clip.mp4", args.frames)
        print(
            f"  done in {time.perf_counter() - t:.1f} s ({sum(p.stat().st_size for p in jpegs) / 2**20:.0f} MiB of JPEG, video {video.stat().st_size / 2**20:.1f} MiB)\n"
        )

        settings, db, key, user_id = _setup(workdir)
        image_task, image_s = process(settings, db, user_id, jpegs, args.chunk_size)
        _, video_s = process(settings, db, user_id, [video], None)
        db.dispose()
        print("processing (create:task pipeline, one worker)")
        print(
            f"  {args.frames} JPEGs:        {image_s:6.2f} s   {args.frames / image_s:8.0f} frames/s"
        )
        print(
            f"  {args.frames}-frame video:  {video_s:6.2f} s   {args.frames / video_s:8.0f} frames/s\n"
        )

        chunks = -(-args.frames // args.chunk_size)
        proc, url = serve(settings)
        results: dict[str, dict[str, float]] = {}
        try:
            with httpx.Client(headers={"Authorization": f"Token {key}"}, timeout=60) as client:
                for quality in ("original", "compressed"):
                    cold = fetch_all(client, url, image_task, chunks, quality)
                    warm = statistics.median(
                        fetch_all(client, url, image_task, chunks, quality)
                        for _ in range(args.rounds)
                    )
                    base = statistics.median(
                        direct(jpegs, args.chunk_size, quality) for _ in range(args.rounds)
                    )
                    results[quality] = {"cold": cold, "warm": warm, "direct": base}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(
            f"chunk serving over HTTP ({chunks} chunks of {args.chunk_size} frames, one client, in-process LRU cache)"
        )
        print(
            f"  {'quality':<11}{'cold':>10}{'warm':>10}{'direct Pillow':>15}{'ratio cold':>12}{'ratio warm':>12}"
        )
        for quality, r in results.items():
            print(
                f"  {quality:<11}{r['cold']:>8.1f}/s{r['warm']:>8.1f}/s{r['direct']:>13.1f}/s"
                f"{r['cold'] / r['direct']:>12.2f}{r['warm'] / r['direct']:>12.2f}"
            )
        print(
            "\nratio = served chunks/s / chunks/s built directly from the files with Pillow in-process"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Task backup benchmark: export and restore of a big task against a plain zipfile baseline.

Generates its data at run time: a task of 5,000 640x480 JPEG frames (segment size 500) with
500,000 rectangles (with an attribute each). Then, in one run:

1. export through the API: ``POST /api/tasks/{id}/backup/export`` -> the ``export:backup``
   handler (what the ``backup-worker`` actor runs) in a child process -> ``GET result_url``;
2. restore through the API: ``POST /api/tasks/backup/`` (multipart upload) -> the
   ``import:backup`` handler in a child process -> the request's ``result_id``;
3. the baseline, on the same data: Python's ``zipfile`` writing the same media files plus a
   JSON dump of the same annotations (``json.dumps`` of the API's annotations), and reading
   them back (extracting the media, ``json.loads``).

The handlers run in a warm worker process as in the actor (imports done, started before
the timings), so "peak memory" is that process's peak RSS during the request (``VmHWM``,
reset before each request).

    python bench/backup.py                 # the issue's sizes
    python bench/backup.py --scale 0.02    # a quick run (100 frames, 10,000 shapes)

Judged by: export throughput >= 0.8x the baseline's, restore >= 0.5x, peak memory <= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
from PIL import Image

from cvat_ray.actors.launcher import ThreadLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import upgrade
from cvat_ray.storage.services.authn import start_session
from cvat_ray.storage.services.backups import run_export, run_import
from cvat_ray.storage.services.resources import get_task
from cvat_ray.storage.services.task_data import FrameInfo, attach_data
from cvat_ray.storage.services.users import create_user

LABELS = [
    {
        "name": "car",
        "type": "rectangle",
        "attributes": [
            {"name": "kind", "mutable": True, "input_type": "select", "values": ["a", "b", "c"]}
        ],
    }
]


class Held(ThreadLauncher):
    """Runs task creation as usual but leaves backups to the bench (a child process)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db)
        self.kept: list[str] = []

    def submit(self, request_id: str, operation_type: str) -> None:
        self.kept.append(request_id)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _warm() -> None:
    """The worker process imports what the actor has imported before any request."""
    import cvat_ray.storage.backups.reader
    import cvat_ray.storage.backups.writer  # noqa: F401


def _job(kind: str, url: str, data_dir: str, request_id: str) -> tuple[float, float, float]:
    """One handler run in the (warm) worker process: seconds, its peak RSS during the run and
    its RSS before (MB)."""
    settings = Settings(data_dir=Path(data_dir))
    settings.database.url = url
    db = Database(url, pool_size=2)
    before = _rss_mb("VmRSS")
    # reset the process's peak RSS (VmHWM) so the figure is this run's
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    (run_export if kind == "export" else run_import)(db, settings, request_id, "bench")
    elapsed = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    db.dispose()
    return elapsed, peak, before


class Worker:
    """A warm process standing in for the backup-worker actor."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx, initializer=_warm)
        self.pool.submit(_rss_mb, "VmRSS").result()

    def run(
        self, kind: str, url: str, data_dir: Path, request_id: str
    ) -> tuple[float, float, float]:
        return self.pool.submit(_job, kind, url, str(data_dir), request_id).result()

    def close(self) -> None:
        self.pool.shutdown()


def make_frames(raw: Path, count: int) -> list[Path]:
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    paths = []
    for i in range(count):
        base = ((xx + yy + i * 7) % 256).astype(np.uint8)
        noise = rng.integers(0, 24, (480, 640), dtype=np.uint8)
        rgb = np.stack([base, base + noise, 255 - base], axis=-1)
        path = raw / f"frame_{i:05d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        paths.append(path)
    return paths


def shapes_for(count: int, frames: int, label_id: int, spec_id: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    boxes = rng.uniform(0, 400, (count, 2))
    return {
        "shapes": [
            {
                "type": "rectangle",
                "frame": int(i % frames),
                "label_id": label_id,
                "points": [round(float(x), 2), round(float(y), 2), round(float(x) + 50, 2),
                           round(float(y) + 40, 2)],
                "attributes": [{"spec_id": spec_id, "value": "abc"[i % 3]}],
            }
            for i, (x, y) in enumerate(boxes)
        ]
    }  # fmt: skip


async def wait(api: httpx.AsyncClient, rq_id: str) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = (await api.get(f"/api/requests/{rq_id}")).json()
        if body["status"] in ("finished", "failed"):
            assert body["status"] == "finished", body
            return body
        await asyncio.sleep(0.05)


def baseline(media: list[Path], annotations: dict[str, Any], out: Path) -> tuple[float, float]:
    """(write s, read s) of zipfile + json on the same media and annotations."""
    start = time.perf_counter()
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for path in media:
            zf.write(path, f"data/{path.name}")
        zf.writestr("annotations.json", json.dumps(annotations), zipfile.ZIP_DEFLATED)
    written = time.perf_counter() - start
    dest = out.parent / "baseline-out"
    start = time.perf_counter()
    with zipfile.ZipFile(out) as zf:
        for info in zf.infolist():
            if info.filename.startswith("data/"):
                zf.extract(info, dest)
        json.loads(zf.read("annotations.json"))
    read = time.perf_counter() - start
    shutil.rmtree(dest)
    return written, read


async def run(frames: int, shapes: int, keep: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    settings = Settings(data_dir=root / "data")
    settings.data_dir.mkdir(parents=True)
    url = settings.database_url
    db = Database(url, pool_size=4)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(
            session, username="bench", password="benchpass-123", email="b@x.io",
            groups=("admin",), is_superuser=True,
        )  # fmt: skip
        token = start_session(session, user, 3600, "token").key
    launcher = Held(settings, db)
    worker = Worker()
    app = build_app(settings, db, launcher=launcher)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Token {token}"},
        timeout=3600,
    ) as api:
        r = await api.post(
            "/api/tasks", json={"name": "bench", "labels": LABELS, "segment_size": 500}
        )
        task_id = r.json()["id"]
        print(f"generating {frames} 640x480 JPEGs and {shapes} shapes ...", flush=True)
        staging = root / "frames"
        media = make_frames(staging, frames)
        with db.session() as session:
            task = get_task(session, task_id)
            data = attach_data(
                session, task, [FrameInfo(p.name, 640, 480) for p in media], chunk_size=36
            )
            data_id = data.id
        raw = settings.media_dir / "data" / str(data_id) / "raw"
        raw.parent.mkdir(parents=True)
        shutil.move(str(staging), str(raw))
        media = sorted(raw.iterdir())
        label = (await api.get(f"/api/labels?task_id={task_id}")).json()["results"][0]
        body = shapes_for(shapes, frames, label["id"], label["attributes"][0]["id"])
        for first in range(0, shapes, 100_000):
            part = {"shapes": body["shapes"][first : first + 100_000]}
            r = await api.patch(f"/api/tasks/{task_id}/annotations?action=create", json=part)
            assert r.status_code == 200, r.text[:300]
        annotations = (await api.get(f"/api/tasks/{task_id}/annotations")).json()
        media_bytes = sum(p.stat().st_size for p in media)

        # 1. export
        start = time.perf_counter()
        r = await api.post(f"/api/tasks/{task_id}/backup/export")
        rq_id = r.json()["rq_id"]
        export_work, export_rss, idle_rss = worker.run("export", url, settings.data_dir, rq_id)
        done = await wait(api, rq_id)
        backup_path = root / "backup.zip"
        async with api.stream("GET", str(done["result_url"])) as response:
            with backup_path.open("wb") as out:
                async for block in response.aiter_bytes(1 << 20):
                    out.write(block)
        export_s = time.perf_counter() - start

        # 2. restore
        start = time.perf_counter()
        with backup_path.open("rb") as f:
            r = await api.post(
                "/api/tasks/backup/", files={"task_file": ("backup.zip", f, "application/zip")}
            )
        rq_id = r.json()["rq_id"]
        restore_work, restore_rss, _ = worker.run("import", url, settings.data_dir, rq_id)
        done = await wait(api, rq_id)
        restore_s = time.perf_counter() - start
        restored = (await api.get(f"/api/tasks/{done['result_id']}")).json()
        assert restored["size"] == frames
        count = len((await api.get(f"/api/tasks/{done['result_id']}/annotations")).json()["shapes"])
        assert count == shapes, count

    # 3. baseline
    write_s, read_s = baseline(media, annotations, root / "baseline.zip")
    size_mb = backup_path.stat().st_size / 1e6
    export_ratio = write_s / export_s
    restore_ratio = read_s / restore_s
    print(f"task: {frames} frames ({media_bytes / 1e6:.0f} MB of JPEG), {shapes} shapes; "
          f"backup {size_mb:.0f} MB")  # fmt: skip
    print(f"export (API, actor process, download): {export_s:7.2f} s  "
          f"{media_bytes / 1e6 / export_s:7.1f} MB/s  peak RSS {export_rss:.0f} MB")  # fmt: skip
    print(f"restore (API upload, actor process):   {restore_s:7.2f} s  "
          f"{media_bytes / 1e6 / restore_s:7.1f} MB/s  peak RSS {restore_rss:.0f} MB")  # fmt: skip
    print(f"baseline zipfile+json write:           {write_s:7.2f} s  "
          f"{media_bytes / 1e6 / write_s:7.1f} MB/s")  # fmt: skip
    print(f"baseline zipfile+json read:            {read_s:7.2f} s  "
          f"{media_bytes / 1e6 / read_s:7.1f} MB/s")  # fmt: skip
    print(f"  of which the actor's work: export {export_work:.2f} s, restore {restore_work:.2f} s")
    print(f"ratio export/baseline:  {export_ratio:.2f}x (goal >= 0.8)")
    print(f"  (the actor's work alone: export {write_s / export_work:.2f}x, "
          f"restore {read_s / restore_work:.2f}x the baseline)")  # fmt: skip
    print(f"ratio restore/baseline: {restore_ratio:.2f}x (goal >= 0.5)")
    print(
        f"peak actor memory: {max(export_rss, restore_rss):.0f} MB (goal <= 300; "
        f"the worker process holds {idle_rss:.0f} MB with its imports before a request)"
    )
    worker.close()
    db.dispose()
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--shapes", type=int, default=500_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply both sizes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    frames = max(2, int(args.frames * args.scale))
    shapes = max(1, int(args.shapes * args.scale))
    asyncio.run(run(frames, shapes, args.keep))


if __name__ == "__main__":
    main()

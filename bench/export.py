"""Dataset export at scale: COCO 1.0 and CVAT for images 1.1 through the API, against an
in-memory converter baseline measured in the same run.

Sets up (on PostgreSQL by default) a task of 10,000 frames with 1.2 million annotations
(60% rectangles with attributes, 25% polygons, 10% points, 5% as tracks of 10 keyframes over 90 frames),
written straight through the bulk path. Then, each in its own process so that peak memory
is its own:

- ``coco``     ``POST /api/tasks/{id}/dataset/export?format=COCO 1.0``, poll, download;
- ``cvat``     the same with ``CVAT for images 1.1``;
- ``import``   that COCO file imported into a fresh task of the same frames and labels
  (``POST /api/tasks/{id}/annotations?format=COCO 1.0``), to the finished request;
- ``baseline`` what a converter that loads the dataset does (datumaro's way): the task's
  annotations JSON and frame list read whole through the API, the COCO document built in
  memory (tracks interpolated per frame) and dumped into a ZIP.

On PostgreSQL a CHECKPOINT precedes each variant (what the setup and the variant before
left to write out is not written in the next one's time).
The API runs in the measuring process (the app over ASGI, the export on its worker thread),
so wall time and peak RSS growth (sampled from /proc every 20 ms) cover the whole export.
With ``--datumaro-python`` (a Python whose own venv has ``datumaro``: it pins an older
Pillow, so it does not install next to this project) datumaro's own COCO export of the same
annotations and its COCO import of our export run too (``bench/datumaro_baseline.py``), and the
ratios against them are printed.

The import is measured in ``--rounds`` rounds (3 by default), each our import into a fresh
task followed at once by datumaro's import of the same file: this box's speed drifts by up
to 2x within minutes (the same pure-Python loop took 1.1-2.1 s on an idle box), so each
ratio compares two runs made under the same conditions. Every round is printed; the figures
named ``import`` are the median round's and the ratio is the median of the rounds' ratios.

    python bench/export.py [--scale 0.01] [--pg-url URL | --sqlite] [--json out.json]
                           [--datumaro-python /path/to/datumaro-venv/bin/python] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
sys.path.insert(0, str(ROOT))

FRAMES = 10_000
ANNOTATIONS = 1_200_000
PG_URL = os.environ.get(
    "CVAT_RAY_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
LABELS = [
    {"name": "car"},
    {"name": "person", "attributes": [
        {"name": "pose", "mutable": True, "input_type": "select", "values": ["up", "down"]},
    ]},
]  # fmt: skip


class Peak:
    """Peak RSS growth of this process (with its children's private memory) while in the
    block (sampled from /proc)."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # a child's private memory is costly to read (its page tables are walked): read
        # every 25th sample, this process's RSS every time
        n = 0
        children = 0
        while not self._stop.wait(0.02):
            n += 1
            if n % 25 == 0:
                children = _children_private()
            self.peak = max(self.peak, _rss() + children)

    def __enter__(self) -> Peak:
        self.start = self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _children_private() -> int:
    """The private memory of this process's children (an import parses large uploads in a
    forked process: its pages shared with this one count once, here)."""
    children: list[str] = []
    for tid in os.listdir("/proc/self/task"):  # a child is listed under its forking thread
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children += f.read().split()
        except OSError:
            continue
    total = 0
    for pid in children:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


# ---------------------------------------------------------------------------------- setup


def new_task(db: Any, user_id: int, frames: int) -> int:
    """A task with the bench's labels over ``frames`` frames (no media files)."""
    from cvat_ray.storage.models import Task
    from cvat_ray.storage.schemas.labels import LabelWrite
    from cvat_ray.storage.services.labels import LabelOwner, create_labels
    from cvat_ray.storage.services.task_data import FrameInfo, attach_data

    with db.session() as session:
        task = Task(name="bench export", owner_id=user_id, mode="annotation")
        session.add(task)
        session.flush()
        create_labels(
            session, LabelOwner(task_id=task.id), [LabelWrite.model_validate(x) for x in LABELS]
        )
        attach_data(
            session, task, [FrameInfo(f"frame_{i:06d}.jpg", 1920, 1080) for i in range(frames)]
        )
        return int(task.id)


def prepare(url: str, frames: int, count: int) -> tuple[str, int]:
    from sqlalchemy import select

    from cvat_ray.storage.annotations import bulk
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import AttributeSpec, Job, Label
    from cvat_ray.storage.schemas.annotations import (
        AttributeVal,
        LabeledData,
        LabeledShape,
        LabeledTrack,
        TrackedShape,
    )
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.users import create_user

    db = Database(url)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(session, username=f"bench{uuid.uuid4().hex[:6]}",
                           password="Bench-pass-1", groups=("admin",), is_superuser=True)  # fmt: skip
        user_id = user.id
        key = start_session(session, user, 24 * 3600, "token").key
    task_id = new_task(db, user_id, frames)
    with db.session() as session:
        job_id = session.scalars(select(Job.id).where(Job.task_id == task_id)).one()
        labels = {
            r.name: r.id for r in session.scalars(select(Label).where(Label.task_id == task_id))
        }
        pose = session.scalars(
            select(AttributeSpec.id).where(AttributeSpec.label_id == labels["person"])
        ).one()
    batch = 200_000
    made = 0
    n_tracks = count * 5 // 100 // 10
    while made < count - n_tracks * 10:
        data = LabeledData()
        for i in range(made, min(made + batch, count - n_tracks * 10)):
            frame, x, y = i % frames, (i * 7) % 1800, (i * 13) % 1000
            kind = i % 20
            if kind < 12:
                data.shapes.append(LabeledShape(type="rectangle", frame=frame, label_id=labels["person"],
                    points=[x, y, x + 50.5, y + 80.25],
                    attributes=[AttributeVal(spec_id=pose, value="up" if i % 2 else "down")]))  # fmt: skip
            elif kind < 17:
                data.shapes.append(LabeledShape(type="polygon", frame=frame, label_id=labels["car"],
                    points=[x, y, x + 30, y, x + 40, y + 20, x + 10, y + 35.5]))  # fmt: skip
            else:
                data.shapes.append(LabeledShape(type="points", frame=frame, label_id=labels["car"],
                    points=[x, y, x + 3, y + 4]))  # fmt: skip
            made += 1
        _write(db, bulk, job_id, data)
    tracks = LabeledData()
    for t in range(n_tracks):
        first = (t * 37) % max(frames - 100, 1)
        tracks.tracks.append(LabeledTrack(frame=first, label_id=labels["car"], shapes=[
            TrackedShape(type="rectangle", frame=first + k * 10, outside=k == 9,
                         points=[k * 5.0, k * 3.0, k * 5.0 + 60, k * 3.0 + 40])
            for k in range(10)]))  # fmt: skip
    _write(db, bulk, job_id, tracks)
    db.dispose()
    return key, task_id


def _write(db: Any, bulk: Any, job_id: int, data: Any) -> None:
    with db.session() as session:
        ids = bulk.IdAllocator(session)
        bulk.assign_ids(data, ids)
        rows = bulk.rows_for(job_id, data, bulk.new_rows(session))
        bulk.insert_rows(session, rows)


# ---------------------------------------------------------------------------------- variants


async def _api_export(api: Any, task_id: int, fmt: str, out: Path) -> None:
    r = await api.post(
        f"/api/tasks/{task_id}/dataset/export", params={"format": fmt, "save_images": "False"}
    )
    assert r.status_code == 202, r.text
    rq = r.json()["rq_id"]
    while True:
        body = (await api.get(f"/api/requests/{rq}")).json()
        if body["status"] in ("finished", "failed"):
            break
        await asyncio.sleep(0.1)
    assert body["status"] == "finished", body
    async with api.stream("GET", body["result_url"]) as response:
        with out.open("wb") as f:
            async for block in response.aiter_bytes():
                f.write(block)


async def _everything(api: Any, task_id: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Frames, labels and every shape as (frame, label id, type, points), tracks interpolated
    to per-frame shapes: the whole task loaded, as an in-memory converter loads it."""
    from cvat_ray.storage.annotations.interpolation import interpolate
    from cvat_ray.storage.schemas.annotations import LabeledTrack, TrackedShape

    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    labels = (await api.get(f"/api/labels?task_id={task_id}&page_size=100")).json()["results"]
    data = json.loads((await api.get(f"/api/tasks/{task_id}/annotations/")).content)
    frames = meta["frames"]
    shapes = [(s["frame"], s["label_id"], s["type"], s["points"]) for s in data["shapes"]]
    for t in data["tracks"]:
        track = LabeledTrack(frame=t["frame"], label_id=t["label_id"], shapes=[])
        track.shapes = [TrackedShape(type=k["type"], frame=k["frame"], points=k["points"],
                                     outside=k["outside"]) for k in t["shapes"]]  # fmt: skip
        for fs in interpolate(track, 0, len(frames), include_outside=False):
            shapes.append((fs.frame, t["label_id"], fs.type, fs.points))
    return frames, labels, shapes


async def _baseline(api: Any, task_id: int, out: Path) -> None:
    """Load everything, build the COCO document in memory, dump it."""
    frames, labels, shapes = await _everything(api, task_id)
    cats = {lb["id"]: n + 1 for n, lb in enumerate(labels)}
    images = [{"id": i + 1, "file_name": f["name"], "width": f["width"], "height": f["height"]}
              for i, f in enumerate(frames)]  # fmt: skip
    anns: list[dict[str, Any]] = []
    for frame, label, kind, p in shapes:
        if kind == "rectangle":
            seg, bbox = [], [p[0], p[1], p[2] - p[0], p[3] - p[1]]
        elif kind == "polygon":
            xs, ys = p[0::2], p[1::2]
            seg, bbox = [p], [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        else:
            continue
        anns.append({"id": len(anns) + 1, "image_id": frame + 1, "category_id": cats[label],
                     "segmentation": seg, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})  # fmt: skip
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": n, "name": str(i)} for i, n in cats.items()]}  # fmt: skip
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("annotations/instances_default.json", json.dumps(doc))


async def _flat(api: Any, task_id: int, out: Path) -> None:
    """The task as datumaro's baseline reads it (bench/datumaro_baseline.py); not timed."""
    frames, labels, shapes = await _everything(api, task_id)
    doc = {"frames": frames, "labels": [lb["id"] for lb in labels], "shapes": shapes}
    out.write_text(json.dumps(doc))


async def _import(api: Any, task_id: int, archive: Path) -> None:
    r = await api.post(
        f"/api/tasks/{task_id}/annotations/",
        params={"format": "COCO 1.0"},
        files={"annotation_file": ("coco.zip", archive.read_bytes())},
    )
    assert r.status_code == 202, r.text
    rq = r.json()["rq_id"]
    while True:
        body = (await api.get(f"/api/requests/{rq}")).json()
        if body["status"] in ("finished", "failed"):
            break
        await asyncio.sleep(0.2)
    assert body["status"] == "finished", body


def child(args: argparse.Namespace) -> None:
    import httpx

    # what each variant imports is loaded before measuring (memory of code, not of work)
    import cvat_ray.storage.annotations.interpolation
    import cvat_ray.storage.formats.coco
    import cvat_ray.storage.formats.cvat_xml
    import cvat_ray.storage.services.datasets  # noqa: F401
    from cvat_ray.actors.analytics import store_for
    from cvat_ray.cluster.settings import Settings
    from cvat_ray.serve_apps.app import build_app
    from cvat_ray.storage.db import Database

    settings = Settings(data_dir=Path(args.data_dir))
    db = Database(args.url)
    app = build_app(settings, db)
    out = Path(args.data_dir) / f"{args.child}.zip"
    target = 0
    if args.child == "import":
        from sqlalchemy import select

        from cvat_ray.storage.models import Task

        with db.session() as session:
            owner = int(
                session.scalars(select(Task.owner_id).where(Task.id == args.task)).one() or 0
            )
        target = new_task(db, owner, args.frames)
        out = Path(args.data_dir) / "coco.zip"

    peak = Peak()

    async def run() -> float:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench",
            headers={"Authorization": f"Token {args.key}"}, timeout=3600,
        ) as api:  # fmt: skip
            await api.get("/api/server/annotation/formats")  # warm the app
            # the embedded analytics engine (chdb: ~260 MiB of code and caches) starts with
            # a server's first events, long before a large export: started here too
            store_for(settings)
            # what is measured is the request's work: the server started (its lifespan, a
            # first request, the analytics engine) before, like the code loaded above
            with peak:
                started = time.perf_counter()
                if args.child == "baseline":
                    await _baseline(api, args.task, out)
                elif args.child == "flat":
                    await _flat(api, args.task, Path(args.data_dir) / "flat.json")
                elif args.child == "import":
                    await _import(api, target, out)
                else:
                    fmt = "COCO 1.0" if args.child == "coco" else "CVAT for images 1.1"
                    await _api_export(api, args.task, fmt, out)
                return time.perf_counter() - started

    seconds = asyncio.run(run())
    if args.child == "flat":
        return
    with zipfile.ZipFile(out) as zf:
        # the import's input, or the export's output
        unpacked = sum(i.file_size for i in zf.infolist())
    print(json.dumps({"seconds": seconds, "peak_mib": peak.mib, "bytes": unpacked}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of 10k frames / 1.2M annotations"
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--child", choices=["coco", "cvat", "baseline", "import", "flat"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--datumaro-python",
        help="a Python with datumaro installed (its own venv): adds datumaro's COCO export and "
        "import as the baseline (bench/datumaro_baseline.py)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="import rounds, each ours then datumaro's (with --datumaro-python) at once",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--task", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    frames = max(10, int(FRAMES * args.scale))
    count = max(200, int(ANNOTATIONS * args.scale))
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        url, drop = _database(args, Path(tmp))
        try:
            started = time.perf_counter()
            key, task_id = prepare(url, frames, count)
            print(
                f"set up {frames} frames, {count} annotations in {time.perf_counter() - started:.1f} s"
            )
            figures: dict[str, Any] = {"frames": frames, "annotations": count}
            common = ["--url", url, "--key", key, "--task", str(task_id), "--data-dir", tmp,
                      "--frames", str(frames)]  # fmt: skip

            def measure(name: str) -> dict[str, Any]:
                _settle(url)
                return _last_json(_run(name, [sys.executable, __file__, "--child", name, *common]))

            for name in ("coco", "cvat", "baseline"):
                figures[name] = measure(name)
            datumaro = _Datumaro(args.datumaro_python, common, Path(tmp))
            if args.datumaro_python:
                figures["datumaro_export"] = datumaro.export()
            rounds: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
            for _ in range(max(1, args.rounds)):
                ours = measure("import")
                rounds.append((ours, datumaro.import_() if args.datumaro_python else None))
            _rounds(figures, rounds)
        finally:
            drop()
    base = figures["baseline"]
    print(f"{'export':<26}{'seconds':>9}{'peak MiB':>10}{'MiB JSON/XML':>14}")
    for variant, title in (("coco", "COCO 1.0 (API)"), ("cvat", "CVAT for images 1.1 (API)"),
                           ("baseline", "in-memory COCO baseline"),
                           ("import", "COCO import (API), median")):  # fmt: skip
        f = figures[variant]
        print(f"{title:<26}{f['seconds']:>9.2f}{f['peak_mib']:>10.0f}{f['bytes'] / 2**20:>14.1f}")
    for variant, title in (("datumaro_export", "datumaro COCO export"),
                           ("datumaro_import", "datumaro import, median")):  # fmt: skip
        if variant in figures:
            f = figures[variant]
            print(f"{title:<26}{f['seconds']:>9.2f}{f['peak_mib']:>10.0f}")
    coco = figures["coco"]
    for k, (ours, theirs) in enumerate(figures["import_rounds"], 1):
        line = f"import round {k}: {ours['seconds']:.2f} s / {ours['peak_mib']:.0f} MiB"
        if theirs is not None:
            line += (f", datumaro {theirs['seconds']:.2f} s / {theirs['peak_mib']:.0f} MiB: "
                     f"{theirs['seconds'] / ours['seconds']:.2f}x")  # fmt: skip
        print(line)
    if "datumaro_export" in figures:
        dm_export = figures["datumaro_export"]
        figures["ratio_time_datumaro"] = dm_export["seconds"] / coco["seconds"]
        figures["ratio_memory_datumaro"] = dm_export["peak_mib"] / max(coco["peak_mib"], 1.0)
        print(f"COCO export vs datumaro: {figures['ratio_time_datumaro']:.2f}x faster "
              f"(goal 3x), {figures['ratio_memory_datumaro']:.2f}x less peak memory (goal 6x); "
              f"COCO import vs datumaro's parse alone, median of "
              f"{len(figures['import_rounds'])} rounds: "
              f"{figures['ratio_import_datumaro']:.2f}x faster (goal 3x), "
              f"lowest {figures['ratio_import_datumaro_lowest']:.2f}x")  # fmt: skip
    figures["ratio_time"] = base["seconds"] / coco["seconds"]
    figures["ratio_memory"] = base["peak_mib"] / max(coco["peak_mib"], 1.0)
    print(f"COCO vs baseline: {figures['ratio_time']:.2f}x faster, "
          f"{figures['ratio_memory']:.2f}x less peak memory")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def _rounds(
    figures: dict[str, Any], rounds: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    """The import rounds into ``figures``: each round, its median (``import``,
    ``datumaro_import``) and, with datumaro, the median and lowest of the rounds' ratios."""
    figures["import_rounds"] = rounds
    figures["import"] = _median([ours for ours, _ in rounds], _seconds)
    theirs = [t for _, t in rounds if t is not None]
    if not theirs:
        return
    ratios = [t["seconds"] / ours["seconds"] for ours, t in rounds if t is not None]
    figures["datumaro_import"] = _median(theirs, _seconds)
    figures["ratio_import_datumaro"] = _median(ratios, float)
    figures["ratio_import_datumaro_lowest"] = min(ratios)


def _seconds(figure: dict[str, Any]) -> float:
    return float(figure["seconds"])


def _median(values: list[T], key: Callable[[T], float]) -> T:
    """The middle value by ``key`` (the lower middle of an even count)."""
    return sorted(values, key=key)[(len(values) - 1) // 2]


def _run(name: str, argv: list[str]) -> str:
    """The stdout of ``argv`` (one of this bench's processes, called ``name``), which must
    succeed."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _last_json(stdout: str) -> dict[str, Any]:
    """The figures a process prints as its last line."""
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def _settle(url: str) -> None:
    """On PostgreSQL, a CHECKPOINT before each variant: what the setup and the variants
    before it left in memory to write out (1.2M new rows, then the hint bits the first
    reads set on them) is written then, not in the middle of the next variant's time. A
    variant's own writes still pay for themselves."""
    from sqlalchemy import create_engine, text

    if not url.startswith("postgresql"):
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    except Exception as exc:  # a role without the right to checkpoint: measured as it is
        print(f"no CHECKPOINT before the variant ({type(exc).__name__})", file=sys.stderr)
    finally:
        engine.dispose()


class _Datumaro:
    """datumaro's COCO export of the same annotations and its import of our COCO export,
    each run by ``bench/datumaro_baseline.py`` in datumaro's own Python."""

    def __init__(self, python: str | None, common: list[str], tmp: Path) -> None:
        self.python, self.common, self.tmp = python, common, tmp

    def export(self) -> dict[str, Any]:
        _run("flat", [sys.executable, __file__, "--child", "flat", *self.common])
        return self._measure(["export", str(self.tmp / "flat.json"), str(self.tmp / "dm-export")])

    def import_(self) -> dict[str, Any]:
        coco = self.tmp / "coco-unpacked"
        if not coco.exists():
            with zipfile.ZipFile(self.tmp / "coco.zip") as zf:
                zf.extractall(coco)
            # datumaro 1.x's importer wants an images/ folder even for annotations alone
            (coco / "images").mkdir(exist_ok=True)
        return self._measure(["import", str(coco)])

    def _measure(self, argv: list[str]) -> dict[str, Any]:
        assert self.python is not None
        script = str(ROOT / "bench" / "datumaro_baseline.py")
        return _last_json(_run(f"datumaro {argv[0]}", [self.python, script, *argv]))


def _database(args: argparse.Namespace, tmp: Path) -> tuple[str, Any]:
    if args.sqlite:
        return f"sqlite:///{tmp / 'bench.db'}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cvat_ray_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(args.pg_url).set(database=name).render_as_string(hide_password=False), drop


if __name__ == "__main__":
    main()

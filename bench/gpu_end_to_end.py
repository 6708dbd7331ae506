"""End-to-end auto-annotation on one GPU: the whole path, measured against CVAT's way and
against the model alone.

It generates everything it needs (no download): ``--frames`` 640x480 JPEG frames of
:mod:`cvat_ray.actors.functions.synthetic` scenes (known objects) in a file share, a video of
the same frames, and a detector-sized TorchScript model (:mod:`bench.heavy_detector`, about
38 GFLOPs a frame). It starts ``cvat-ray up`` as a subprocess (SQLite, a local Ray head) with
that model as a function asking for ``num_gpus: 1``, creates the tasks through the API (an
image task, a video task and the extra image tasks of the dataset run), and measures:

(a) a whole-task ``POST /api/lambda/requests`` on the image task (and on the video task),
    timed by the server (request arrival to run end), with the GPU's utilisation sampled
    through NVML (or ``nvidia-smi``) while the run is started;
(b) the CVAT way: one ``POST /api/lambda/functions/{id}`` per frame, ``--online-frames``
    frames, one after the other;
(c) the model alone on the same GPU, before the server starts: its ``infer`` (host to device
    copies included) on frames already decoded and preprocessed, at the function's batch
    size; the forward pass on frames already on the device is printed for context;
(d) a dataset run over ``--dataset-tasks`` image tasks with ``cvat-ray auto-annotate`` (a
    Ray job), frames/s from the run's own summary.

Then it does (a), (b) and (c) again with the built-in colour detector given the GPU, after
replacing the heavy function on the cluster (``cvat-ray functions delete`` / ``deploy``).

It prints frames/s of each, the GPU's busy share during (a), and the ratios the issue judges:
(a)/(b) (goal >= 20) and (a)/(c) (goal >= 0.8 for the heavy detector), and checks the saved
objects against the scenes' truth. ``--json PATH`` writes the figures.

    python bench/gpu_end_to_end.py                   # a CUDA machine: 10,000 frames
    python bench/gpu_end_to_end.py --device cpu      # tiny sizes on the CPU (CI keeps it working)

On a machine without the console script, the server is started as ``python -m cvat_ray.cli``
with this interpreter (so the project and its dependencies on ``PYTHONPATH`` are enough).
Exit code 0 when every measurement ran and the objects were found, 1 otherwise, 2 when CUDA
is asked for but absent.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.auto_annotation import LABELS, Http, accuracy, create_task, cvat_way, make_frames, ours
from bench.heavy_detector import union_truth, write_model

HEAVY = "heavy-detector"
COLOUR = "colour-detector-gpu"
PASSWORD = "Bench-pass-1"


@dataclass
class Sizes:
    frames: int
    online: int
    dataset_tasks: int
    batch: int
    width: float
    limit_frames: int


def sizes_for(args: argparse.Namespace) -> Sizes:
    gpu = args.device.startswith("cuda")
    return Sizes(
        frames=args.frames or (10_000 if gpu else 24),
        online=args.online_frames or (500 if gpu else 4),
        dataset_tasks=args.dataset_tasks or (4 if gpu else 2),
        batch=args.batch or (32 if gpu else 4),
        width=args.width or (1.5 if gpu else 0.25),
        limit_frames=2048 if gpu else 16,
    )


# ----------------------------------------------------------------------------- inputs


def scene_pixels(i: int) -> np.ndarray:
    from cvat_ray.actors.functions.synthetic import make_scene

    return make_scene(640, 480, (1, 6), seed=i)[0]


def make_video(path: Path, count: int, workers: int) -> None:
    """The same scenes as the image frames, as an H.264 video (a keyframe every 32 frames,
    so a pipeline task's group starts close to one)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18", "g": "32"}
        frames: Iterator[np.ndarray]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers)
            frames = pool.map(scene_pixels, range(count), chunksize=32)
        else:
            pool = None
            frames = (scene_pixels(i) for i in range(count))
        try:
            for pixels in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            if pool is not None:
                pool.shutdown()


def write_specs(folder: Path, models: Path, sizes: Sizes, gpus: float) -> dict[str, Path]:
    """The two functions' spec files: the heavy TorchScript detector (in ``folder``, which
    ``cvat-ray up`` deploys) and the built-in colour detector (in ``models``, deployed later).
    Each asks for the whole GPU (``gpus``) and keeps one replica up."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = "\n".join(f"  - {{name: {n}, type: rectangle}}" for n in LABELS)
    # a whole CPU beside the GPU; on a CPU machine a quarter, so the tiny run fits two cores
    common = (
        f"resources: {{num_cpus: {1 if gpus else 0.25}, num_gpus: {gpus}}}\n"
        "autoscaling: {min_replicas: 1, max_replicas: 1}\n"
        f"batching: {{max_batch_size: {sizes.batch}, batch_wait_timeout_s: 0.005}}\n"
    )
    heavy = folder / f"{HEAVY}.yaml"
    heavy.write_text(
        f"id: {HEAVY}\nname: Heavy detector (TorchScript, bench)\nkind: detector\n"
        f"labels:\n{labels}\nruntime:\n  torchscript: {models / 'heavy.pt'}\n{common}"
    )
    colour = models / f"{COLOUR}.yaml"
    colour.write_text(
        f"id: {COLOUR}\nname: Colour blobs on the GPU (bench)\nkind: detector\n"
        f"labels:\n{labels}\nruntime:\n  class: colour\n{common}"
    )
    return {HEAVY: heavy, COLOUR: colour}


# ----------------------------------------------------------------------------- (c)


def model_alone(spec_path: Path, device: str, share: Path, sizes: Sizes) -> dict[str, float]:
    """(c): the function's model in this process on ``device``: ``infer`` on decoded,
    preprocessed frames in host memory at the function's batch size, and the forward pass
    on frames already on the device (context)."""
    import torch

    from cvat_ray.actors.functions.host import load_spec_model
    from cvat_ray.storage.functions.spec import load_spec_file
    from cvat_ray.storage.media.render import decode_array

    spec = load_spec_file(spec_path)
    model: Any = load_spec_model(spec, device=device)
    distinct = min(256, sizes.frames)
    frames = [
        model.preprocess(decode_array((share / f"frames/frame_{i:05d}.jpg").read_bytes()))
        for i in range(distinct)
    ]
    batch = sizes.batch
    batches = [frames[i : i + batch] for i in range(0, distinct - batch + 1, batch)]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for b in batches[:2]:
        model.infer(b)  # warm-up (CUDA kernels, cuDNN's choices)
    sync()
    done, started = 0, time.perf_counter()
    while done < sizes.limit_frames:
        model.infer(batches[(done // batch) % len(batches)])
        done += batch
    sync()
    infer_fps = done / (time.perf_counter() - started)
    forward_fps = float("nan")
    # the device part alone: uint8 [N, H, W, 3] frames already on the GPU
    core = getattr(model, "forward_pixels", None) or getattr(model, "classify_pixels", None)
    if core is not None and device.startswith("cuda"):
        x = torch.from_numpy(np.stack(batches[0])).to(device)
        rounds = max(1, sizes.limit_frames // batch)
        with torch.inference_mode():
            core(x)
            sync()
            started = time.perf_counter()
            for _ in range(rounds):
                core(x)
            sync()
        forward_fps = rounds * batch / (time.perf_counter() - started)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"infer_fps": infer_fps, "forward_fps": forward_fps}


# ----------------------------------------------------------------------------- GPU sampling


class GpuSampler:
    """Samples the GPU's utilisation (percent of time a kernel ran) every 0.1 s, through
    NVML when ``pynvml`` imports, else ``nvidia-smi``."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.source = "none"

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "NVML"
            while not self._stop.wait(0.1):
                rate = pynvml.nvmlDeviceGetUtilizationRates(handle)
                self.samples.append((time.time(), float(rate.gpu)))
            return
        except Exception:  # no NVML binding or no driver: try the command line tool
            pass
        if shutil.which("nvidia-smi") is None:
            return
        self.source = "nvidia-smi"
        with subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                "100",
            ],
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    self.samples.append((time.time(), float(line.split(",")[0])))
                if self._stop.is_set():
                    proc.terminate()
                    break

    def busy(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return sum(inside) / len(inside) if inside else None


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def cli(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A ``cvat-ray`` command against this server (same data dir and environment)."""
        return subprocess.run(
            [sys.executable, "-m", "cvat_ray.cli", *argv, "--data-dir", str(self.data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def start_server(workdir: Path, share: Path, specs: Path, gpu: bool) -> Server:
    from cvat_ray.cluster.runtime import free_port

    port = free_port()
    data_dir = workdir / "data"
    env = {
        **os.environ,
        "CVAT_RAY_ADMIN_PASSWORD": PASSWORD,
        "CVAT_RAY_FUNCTIONS__BUILTINS": "false",
        "CVAT_RAY_FUNCTIONS__DIR": str(specs),
        "CVAT_RAY_MEDIA__SHARE_ROOT": str(share),
        "CVAT_RAY_MEDIA__WORKERS": "4" if gpu else "1",
        "CVAT_RAY_RAY__DASHBOARD_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cvat_ray.cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", data_dir, env)
    up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.append(line.rstrip())
            if "cvat-ray is up" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 600
    while not up.wait(1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            print("\n".join(server.lines[-40:]), file=sys.stderr)
            raise RuntimeError("cvat-ray up did not start")
    return server


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.proc.kill()


def bearer(url: str) -> str:
    """A personal access token of the admin (made with Basic auth, once): ``Bearer ...``."""
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    client = Http(url, f"Basic {basic}")
    token = client.call("POST", "/api/auth/access_tokens", {"name": "gpu bench"})
    return f"Bearer {token['value']}"


# ----------------------------------------------------------------------------- checks


def heavy_hits(
    shapes: list[dict[str, Any]], labels: dict[int, str], truths: list[Any], frames: int
) -> tuple[int, int]:
    """(boxes expected: one per colour present per frame, found within 2 px)."""
    got: dict[tuple[int, str], list[float]] = {
        (s["frame"], labels[s["label_id"]]): s["points"] for s in shapes
    }
    want = [(i, n, b) for i in range(frames) for n, b in union_truth(truths[i]).items()]
    hits = sum(
        1
        for i, name, box in want
        if (i, name) in got
        and all(abs(a - b) <= 2 for a, b in zip(got[(i, name)], box, strict=True))
    )
    return len(want), hits


def task_labels(client: Http, task: int) -> dict[int, str]:
    """Label id -> name of a task."""
    page = client.call("GET", f"/api/labels?task_id={task}&page_size=100")
    return {lb["id"]: lb["name"] for lb in page["results"]}


def run_a(
    client: Http, task: int, function: str, sampler: GpuSampler | None
) -> tuple[float, float | None, list[dict[str, Any]]]:
    """(a): frames/s's seconds, the GPU's mean utilisation while the run was started, the
    task's shapes."""
    seconds, shapes, state = ours(client, task, function)
    busy = None
    if sampler is not None:
        start = datetime.fromisoformat(state["started"]).timestamp()
        end = datetime.fromisoformat(state["ended"]).timestamp()
        busy = sampler.busy(start, end)
    return seconds, busy, shapes


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (tiny sizes)")
    parser.add_argument("--frames", type=int, default=0, help="frames per task (10,000 on GPU)")
    parser.add_argument("--online-frames", type=int, default=0, help="frames for (b) (500)")
    parser.add_argument("--dataset-tasks", type=int, default=0, help="tasks of (d) (4)")
    parser.add_argument("--batch", type=int, default=0, help="the functions' batch (32)")
    parser.add_argument("--width", type=float, default=0.0, help="heavy model width (1.5)")
    parser.add_argument("--no-video", action="store_true", help="skip the video task")
    parser.add_argument("--no-colour", action="store_true", help="skip the colour detector")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpu = args.device.startswith("cuda")
    if gpu:
        import torch

        if not torch.cuda.is_available():
            print(f"CUDA is not available (torch {torch.__version__})", file=sys.stderr)
            return 2
        print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    sizes = sizes_for(args)
    workers = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="cvat-bench-gpu-"))
    share, models, specs = workdir / "share", workdir / "models", workdir / "functions"
    models.mkdir(parents=True)
    results: dict[str, Any] = {"device": args.device, "frames": sizes.frames}
    ok = True
    try:
        t0 = time.perf_counter()
        truths = make_frames(share / "frames", sizes.frames, workers=workers)
        if not args.no_video:
            make_video(share / "video.mp4", sizes.frames, workers)
        gflops = write_model(models / "heavy.pt", width=sizes.width, device=args.device)
        spec_files = write_specs(specs, models, sizes, 1 if gpu else 0)
        print(
            f"{sizes.frames} frames and a video generated in {time.perf_counter() - t0:.1f} s; "
            f"heavy model {gflops:.1f} GFLOPs/frame",
            flush=True,
        )
        results["heavy_gflops"] = round(gflops, 1)
        device = "cuda" if gpu else "cpu"
        print("(c) models alone...", flush=True)
        limits = {
            name: model_alone(path, device, share, sizes) for name, path in spec_files.items()
        }
        for name, limit in limits.items():
            print(f"    {name}: infer {limit['infer_fps']:.1f} frames/s", flush=True)

        server = start_server(workdir, share, specs, gpu)
        try:
            client = Http(server.url, bearer(server.url))
            print("Creating the tasks...", flush=True)
            t0 = time.perf_counter()
            image_task = create_task(client, sizes.frames, name="bench gpu images")
            extra = [
                create_task(client, sizes.frames, name=f"bench gpu dataset {i}")
                for i in range(1, sizes.dataset_tasks)
            ]
            video_task = (
                None
                if args.no_video
                else create_task(client, 0, files=["video.mp4"], name="bench gpu video")
            )
            print(f"    done in {time.perf_counter() - t0:.1f} s", flush=True)
            labels = {
                task: task_labels(client, task)
                for task in (image_task, video_task)
                if task is not None
            }
            order = [HEAVY] if args.no_colour else [HEAVY, COLOUR]
            for function in order:
                if function == COLOUR:
                    for argv_ in (
                        ("functions", "delete", HEAVY),
                        ("functions", "deploy", str(spec_files[COLOUR])),
                    ):
                        done = server.cli(*argv_)
                        if done.returncode != 0:
                            raise RuntimeError(f"cvat-ray {' '.join(argv_)}: {done.stderr}")
                figures = measure(
                    client,
                    server,
                    function,
                    sizes,
                    image_task,
                    video_task if function == HEAVY else None,
                    [image_task, *extra] if function == HEAVY else [],
                    labels,
                    truths,
                    gpu,
                )
                figures["c_infer_fps"] = limits[function]["infer_fps"]
                figures["c_forward_fps"] = limits[function]["forward_fps"]
                results[function] = figures
                ok = ok and figures["objects_ok"]
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report(results, sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


def measure(
    client: Http,
    server: Server,
    function: str,
    sizes: Sizes,
    image_task: int,
    video_task: int | None,
    dataset: list[int],
    labels: dict[int, dict[int, str]],
    truths: list[Any],
    gpu: bool,
) -> dict[str, Any]:
    """(b), (a) on images (and video), (d) for one deployed function."""
    out: dict[str, Any] = {}
    print(f"[{function}] (b) CVAT way, {sizes.online} online calls...", flush=True)
    online_s = cvat_way(client, image_task, sizes.online, function)
    out["b_fps"] = sizes.online / online_s
    print(f"[{function}] (a) whole task, images...", flush=True)
    with GpuSampler() if gpu else contextlib.nullcontext() as sampler:
        seconds, busy, shapes = run_a(client, image_task, function, sampler)
        out["a_fps"] = sizes.frames / seconds
        out["a_gpu_busy"] = busy
        out["gpu_source"] = sampler.source if sampler else None
        if function == HEAVY:
            expected, hits = heavy_hits(shapes, labels[image_task], truths, sizes.frames)
        else:
            expected, hits, _ = accuracy(shapes, labels[image_task], truths)
        out["objects"] = [expected, hits, len(shapes)]
        out["objects_ok"] = hits == expected
        if video_task is not None:
            print(f"[{function}] (a) whole task, video...", flush=True)
            seconds, busy, shapes = run_a(client, video_task, function, sampler)
            out["a_video_fps"] = sizes.frames / seconds
            out["a_video_gpu_busy"] = busy
            out["video_objects"] = [*heavy_hits(shapes, labels[video_task], truths, sizes.frames)]
    if dataset:
        print(f"[{function}] (d) dataset run over {len(dataset)} tasks...", flush=True)
        argv = ["auto-annotate", "--function", function, "--cleanup"]
        for task in dataset:
            argv += ["--task", str(task)]
        started = time.perf_counter()
        done = server.cli(*argv)
        wall = time.perf_counter() - started
        summary = next(
            (json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith('{"run"')), None
        )
        if done.returncode != 0 or summary is None:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            raise RuntimeError("the dataset run failed")
        frames = len(dataset) * sizes.frames
        out["d_fps"] = frames / summary["seconds"]
        out["d_wall_fps"] = frames / wall
        out["d_summary"] = summary
    return out


def report(results: dict[str, Any], sizes: Sizes) -> None:
    def fps(value: float | None) -> str:
        return "n/a" if value is None or value != value else f"{value:9.1f}"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} %"

    print()
    print(f"device {results['device']}, {sizes.frames} frames of 640x480 per task")
    for function in (HEAVY, COLOUR):
        r = results.get(function)
        if r is None:
            continue
        extra = f", {results['heavy_gflops']} GFLOPs/frame" if function == HEAVY else ""
        print(f"\n{function}{extra}, batch {sizes.batch}")
        print(
            f"  (a) whole task, images:   {fps(r['a_fps'])} frames/s  GPU busy {pct(r['a_gpu_busy'])}"
        )
        if "a_video_fps" in r:
            print(
                f"  (a) whole task, video:    {fps(r['a_video_fps'])} frames/s  "
                f"GPU busy {pct(r['a_video_gpu_busy'])}"
            )
        print(f"  (b) CVAT way, per frame:  {fps(r['b_fps'])} frames/s  ({sizes.online} frames)")
        print(f"  (c) model alone, infer:   {fps(r['c_infer_fps'])} frames/s")
        print(f"      forward, on device:   {fps(r['c_forward_fps'])} frames/s")
        if "d_fps" in r:
            s = r["d_summary"]
            print(
                f"  (d) dataset run:          {fps(r['d_fps'])} frames/s  ({s['tasks']} tasks, "
                f"{s['annotated']} annotated, {s['objects']} objects; "
                f"{fps(r['d_wall_fps']).strip()} frames/s with the job's start)"
            )
        expected, hits, saved = r["objects"]
        print(f"  objects: {expected} expected, {hits} found, {saved} saved")
        if "video_objects" in r:
            print(
                f"  video objects: {r['video_objects'][0]} expected, {r['video_objects'][1]} found"
            )
        print(f"  ratio (a)/(b) = {r['a_fps'] / r['b_fps']:.1f}   (goal >= 20)")
        print(f"  ratio (a)/(c) = {r['a_fps'] / r['c_infer_fps']:.2f}   (goal >= 0.8, heavy)")


if __name__ == "__main__":
    sys.exit(main())

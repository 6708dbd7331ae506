"""GPU batching benchmark: the colour detector's inference core at several batch sizes.

Generates ``--frames`` synthetic 640x480 frames (``cvat_ray.actors.functions.synthetic``, no
downloads), preprocesses them (on CUDA: the uint8 pixels the device converts) and preloads them as one tensor on the device, so neither
decoding nor host-to-device copies are measured. Then, for each batch size, after a
warm-up pass, it times ``ColourDetector.classify`` (the fixed-weight conv stack, the
per-pixel class map and its uint8 packing: what ``infer`` runs on the device) over all
frames, synchronising the device before reading the clock, and keeps the best of
``--rounds`` passes. A second column times the whole ``infer`` (numpy in, numpy out, so
with both copies) for context. Before timing, the detections of the first frames are
checked against the scenes' truth, so a fast but wrong setup (e.g. float16 drift) fails.

    python bench/gpu_auto_annotation.py [--device cuda] [--frames 512]
        [--batch-sizes 1,2,4,8,16,32] [--width 16] [--depth 2]
    python bench/gpu_auto_annotation.py --device cpu --allow-cpu --frames 64 --batch-sizes 1,4

The figure it is judged by: ratio = best frames/s / frames/s at batch 1 (what batching
buys on the accelerator; CVAT sends one frame per call, i.e. batch 1). Exit code 2 when
CUDA is asked for but absent (unless ``--allow-cpu``), 1 when the detections are wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from cvat_ray.actors.functions.builtin.colour import ColourDetector
from cvat_ray.actors.functions.synthetic import Truth, random_scenes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU if CUDA is absent")
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--width", type=int, default=16, help="conv channels (model option)")
    parser.add_argument("--depth", type=int, default=2, help="3x3 conv layers (model option)")
    parser.add_argument("--half", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def pick_device(name: str, allow_cpu: bool) -> str | None:
    """The device to run on, or None (after a message) when CUDA is required but absent."""
    if not name.startswith("cuda") or torch.cuda.is_available():
        return name
    if allow_cpu:
        print(f"CUDA is not available; running on CPU (--allow-cpu), not {name}")
        return "cpu"
    print(
        f"CUDA is not available (torch {torch.__version__}, cuda build: {torch.version.cuda}); "
        "pass --allow-cpu to measure the CPU instead",
        file=sys.stderr,
    )
    return None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: str, rounds: int) -> float:
    """Best wall time of ``rounds`` calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def check(model: ColourDetector, frames: list[np.ndarray], truth: list[Truth]) -> bool:
    """Detections on the first frames equal the truth, box for box."""
    outputs = model.infer([model.preprocess(f) for f in frames])
    for output, expected in zip(outputs, truth, strict=True):
        found = sorted(
            (d.label, tuple(int(v) for v in d.points)) for d in model.postprocess(output, 0.5)
        )
        if found != sorted(expected):
            print(f"wrong detections: {found} != {sorted(expected)}", file=sys.stderr)
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device, args.allow_cpu)
    if device is None:
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    options: dict[str, object] = {"width": args.width, "depth": args.depth}
    if args.half != "auto":
        options["half"] = args.half == "on"
    model = ColourDetector(options=options, device=device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"device: {device} ({name}); torch {torch.__version__}, {torch.get_num_threads()} CPU "
        f"threads; model width={args.width} depth={args.depth} dtype={model.dtype}"
    )

    scenes = list(random_scenes(args.frames, seed=args.seed))
    if not check(model, [s[0] for s in scenes[:8]], [s[1] for s in scenes[:8]]):
        return 1
    prepared = [model.preprocess(image) for image, _ in scenes]
    frames = torch.from_numpy(np.stack(prepared)).to(model.device)
    macs = sum(
        c.weight.numel() * 480 * 640
        for c in model.net.mean
        if isinstance(c, torch.nn.Conv2d)  # multiply-adds of the 3x3 stack per frame
    )
    print(f"{len(scenes)} frames 640x480 preloaded; conv stack {macs / 1e9:.2f} GMAC/frame\n")

    # on CUDA the frames are uint8 pixels (converted on the device), else float CHW
    classify = model.classify_pixels if prepared[0].dtype == np.uint8 else model.classify
    print(f"{'batch':>6} {'core frames/s':>14} {'ms/frame':>9} {'infer frames/s':>15}")
    results: dict[int, float] = {}
    for size in sizes:
        batches = [frames[i : i + size] for i in range(0, len(frames) - size + 1, size)]
        count = len(batches) * size

        def core(batches: list[torch.Tensor] = batches) -> None:
            for batch in batches:
                classify(batch)

        def whole(size: int = size) -> None:
            for i in range(0, len(prepared) - size + 1, size):
                model.infer(prepared[i : i + size])

        fps = count / timed(core, device, args.rounds)
        infer_fps = count / timed(whole, device, 1)
        results[size] = fps
        print(f"{size:>6} {fps:>14.1f} {1000 / fps:>9.2f} {infer_fps:>15.1f}")

    base = results.get(1)
    best_size = max(results, key=lambda s: results[s])
    print()
    if base is not None:
        print(f"batch 1: {base:.1f} frames/s")
    print(f"best: batch {best_size}, {results[best_size]:.1f} frames/s")
    if base is not None:
        print(f"ratio best / batch 1: {results[best_size] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

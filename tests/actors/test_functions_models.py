"""The model runtimes on synthetic frames: the colour detector is exact, the OpenCV models
find drawn faces and people, GrabCut and MIL follow known objects, and the loader runs
TorchScript and ONNX files by the documented contract and rejects broken ones clearly.

No photo ships offline, so the Haar and HOG tests draw a cartoon face and a silhouette
(both detectors fire on them with the default options); the rest of their behaviour is
checked by contract (valid boxes, confidences in (0, 1])."""

from __future__ import annotations

import concurrent.futures
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from cvat_ray.actors.functions.base import Detection, ModelError
from cvat_ray.actors.functions.builtin.colour import ColourDetector
from cvat_ray.actors.functions.builtin.exported import TorchScriptDetector
from cvat_ray.actors.functions.builtin.opencv import (
    GrabCutInteractor,
    HaarFaceDetector,
    HogPeopleDetector,
    MilTracker,
)
from cvat_ray.actors.functions.loader import BUILTINS, load_model, run_detector
from cvat_ray.actors.functions.staging import PinnedBuffers
from cvat_ray.actors.functions.synthetic import COLOURS, GAP, make_scene, random_scenes
from tests.factories import cartoon_face, silhouette

LABELS = list(COLOURS)
# The torch models' tests run on CUDA too where a GPU is visible (CI has none: CPU only).
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
# Writing the test models: torch deprecates TorchScript and the legacy ONNX exporter.
EXPORTS_WARN = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _found(detections: list[Detection]) -> list[tuple[str, tuple[int, ...]]]:
    return sorted((d.label, tuple(int(v) for v in d.points)) for d in detections)


def _iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _textured(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (np.sin(xx / 7.0) + np.cos(yy / 5.0)) * 30 + 120
    image = np.stack([base, base + 10, base - 10], -1) + rng.integers(-15, 16, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


# --- synthetic scenes -----------------------------------------------------------------


def test_scenes_are_deterministic_and_objects_apart() -> None:
    a, truth_a = make_scene(seed=7)
    b, truth_b = make_scene(seed=7)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and truth_a == truth_b
    assert not np.array_equal(a, make_scene(seed=8)[0])
    for _, truth in random_scenes(20, seed=3):
        assert 1 <= len(truth) <= 6
        boxes = [box for _, box in truth]
        for i, p in enumerate(boxes):
            assert 24 <= p[2] - p[0] <= 160 and 24 <= p[3] - p[1] <= 160
            for q in boxes[i + 1 :]:
                assert (
                    p[2] + GAP <= q[0]
                    or q[2] + GAP <= p[0]
                    or p[3] + GAP <= q[1]
                    or q[3] + GAP <= p[1]
                )


# --- the colour detector --------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_colour_detector_is_exact_on_random_scenes(device: str) -> None:
    model = load_model("detector", {"class": "colour"}, LABELS, device)
    assert isinstance(model, ColourDetector) and model.device.type == device
    scenes = list(random_scenes(20, seed=11))
    for start in range(0, len(scenes), 5):
        chunk = scenes[start : start + 5]
        results = run_detector(model, [image for image, _ in chunk], threshold=0.5)
        for detections, (_, truth) in zip(results, chunk, strict=True):
            assert _found(detections) == sorted(truth)
            assert all(0.5 <= d.confidence <= 1 and d.type == "rectangle" for d in detections)


@pytest.mark.parametrize("device", DEVICES)
def test_colour_detector_mixed_sizes_edges_and_depths(device: str) -> None:
    # Frames of two sizes in one batch, objects touching the frame's edges, other stacks.
    edge = np.full((240, 320, 3), 128, np.uint8)
    edge[0:40, 0:50] = COLOURS["red"]
    edge[200:240, 280:320] = COLOURS["blue"]
    edge[100:130, 100:300] = COLOURS["green"]
    edge_truth = [
        ("blue", (280, 200, 320, 240)),
        ("green", (100, 100, 300, 130)),
        ("red", (0, 0, 50, 40)),
    ]
    big, big_truth = make_scene(seed=5, objects=4)
    # float16 is the CUDA default; on CPU it checks the same numerics.
    for options in ({}, {"depth": 5, "width": 8}, {"depth": 0}, {"half": True}, {"half": False}):
        model = ColourDetector(options=options, labels=LABELS, device=device)
        results = run_detector(model, [edge, big, edge], threshold=0.1)
        assert _found(results[0]) == edge_truth == _found(results[2])
        assert _found(results[1]) == sorted(big_truth)


@pytest.mark.parametrize("device", DEVICES)
def test_pinned_buffers_stage_batches_of_any_size(device: str) -> None:
    if device == "cpu":
        with pytest.raises(ValueError, match="for CUDA devices"):
            PinnedBuffers(torch.device(device))
        return
    staging = PinnedBuffers(torch.device(device))
    rng = np.random.default_rng(0)
    for n, shape in ((2, (3, 8, 8)), (5, (3, 16, 4)), (1, (3, 8, 8))):  # grows, then reuses
        frames = [rng.random(shape, dtype=np.float32) for _ in range(n)]
        first = staging.run(frames, lambda x: (x * 2).to(torch.float16))
        again = staging.run(frames[::-1], lambda x: (x * 2).to(torch.float16))
        assert first.shape == (n, *shape) and first.dtype == np.float16
        expected = (np.stack(frames) * 2).astype(np.float16)
        assert np.array_equal(first, expected)  # not overwritten by the second batch
        assert np.array_equal(again, expected[::-1])
    # A replica's calls in flight stage their batches from several threads at once.
    batches = [
        [rng.random((3, 8, 8), dtype=np.float32) for _ in range(1 + i % 4)] for i in range(24)
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda fs: staging.run(fs, lambda x: x + 1), batches))
    for frames, result in zip(batches, results, strict=True):
        assert np.array_equal(result, np.stack(frames) + 1)


def test_colour_detector_labels_threshold_and_outputs() -> None:
    image, truth = make_scene(seed=2, objects=6)
    reds = ColourDetector(labels=["red", "cat"])
    assert reds.labels == ["red"]
    assert _found(run_detector(reds, [image], 0.5)[0]) == sorted(t for t in truth if t[0] == "red")
    model = ColourDetector()
    prepared = model.preprocess(image)
    assert prepared.shape == (3, 480, 640) and prepared.dtype == np.float32
    assert pickle.loads(pickle.dumps(prepared)).shape == prepared.shape
    output = model.infer([prepared])[0]
    assert output.shape == (2, 480, 640) and output.dtype == np.uint8
    assert model.postprocess(output, threshold=1.01) == []
    with pytest.raises(ModelError, match="knows none of the labels"):
        ColourDetector(labels=["cat"])
    with pytest.raises(ModelError, match="option 'width'"):
        ColourDetector(options={"width": "wide"})
    custom = ColourDetector(options={"colours": {"white": [250, 250, 250]}, "min_area": 10})
    blank = np.zeros((60, 60, 3), np.uint8)
    blank[10:14, 20:50] = 250  # 120 px, kept; the next one (8 px) is below min_area
    blank[40:42, 5:9] = 250
    assert _found(custom.postprocess(custom.infer([custom.preprocess(blank)])[0], 0.1)) == [
        ("white", (20, 10, 50, 14))
    ]


def test_colour_postprocess_separates_touching_classes_and_nested_objects() -> None:
    """Components are each class's 4-connected pixels, wherever they sit: classes that
    touch, an object inside another's hole, a same-class square only diagonally connected."""
    model = ColourDetector(options={"min_area": 4})
    cls = np.zeros((120, 160), np.uint8)
    cls[10:60, 10:60] = 1  # a red ring...
    cls[20:50, 20:50] = 0
    cls[25:35, 25:35] = 2  # ...with a green square in its hole
    cls[38:46, 38:46] = 1  # ...and a red one, not touching the ring
    cls[10:40, 60:90] = 3  # a blue square touching the ring's right side
    cls[70:80, 100:110] = 4  # yellow
    cls[80:90, 110:120] = 4  # yellow, touching the first only at a corner
    level = np.where(cls > 0, 200, 0).astype(np.uint8)
    level[70:80, 100:110] = 100  # a confidence of 100/255 for the first yellow
    found = model.postprocess(np.stack([cls, level]), threshold=0.5)
    assert _found(found) == sorted(
        [
            ("red", (10, 10, 60, 60)),
            ("green", (25, 25, 35, 35)),
            ("red", (38, 38, 46, 46)),
            ("blue", (60, 10, 90, 40)),
            ("yellow", (110, 80, 120, 90)),
        ]
    )
    assert {round(d.confidence, 3) for d in found} == {round(200 / 255, 3)}
    assert len(model.postprocess(np.stack([cls, level]), threshold=0.3)) == 6


def test_colour_postprocess_matches_labelling_the_whole_frame() -> None:
    """Labelling only the windows that hold non-background pixels finds exactly the
    components (boxes and confidences) of labelling each class over the whole frame."""
    model = ColourDetector(options={"min_area": 6})
    rng = np.random.default_rng(3)
    for trial in range(12):
        coarse = (rng.random((40, 50)) < 0.1 + 0.05 * trial) * rng.integers(1, 5, (40, 50))
        cls = np.kron(coarse, np.ones((3, 4), np.int64)).astype(np.uint8)
        level = np.where(cls > 0, rng.integers(60, 256, cls.shape), 0).astype(np.uint8)
        expected = []
        for k, label in enumerate(LABELS, start=1):
            count, comps, stats, _ = cv2.connectedComponentsWithStats(
                (cls == k).astype(np.uint8), connectivity=4
            )
            for i in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[i])
                confidence = float(level[comps == i].mean()) / 255.0
                if area >= 6 and confidence >= 0.4:
                    expected.append((label, (x, y, x + w, y + h), round(confidence, 4)))
        found = model.postprocess(np.stack([cls, level]), threshold=0.4)
        assert sorted(
            (d.label, tuple(int(v) for v in d.points), d.confidence) for d in found
        ) == sorted(expected)


# --- OpenCV detectors ------------------------------------------------------------------


def _check_contract(detections: list[Detection], label: str, width: int, height: int) -> None:
    for d in detections:
        x0, y0, x1, y1 = d.points
        assert d.label == label and d.type == "rectangle"
        assert 0 <= x0 < x1 <= width + 1 and 0 <= y0 < y1 <= height + 1
        assert 0 < d.confidence <= 1


@pytest.mark.parametrize(
    ("name", "label", "drawing"),
    [("haar-face", "face", cartoon_face), ("hog-people", "person", silhouette)],
)
def test_opencv_detectors_find_drawn_objects(name, label, drawing) -> None:
    model = load_model("detector", {"class": name}, [label, "other"])
    image, (cx, cy) = drawing()
    noise = cv2.GaussianBlur(
        np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 2
    )
    found, on_noise = run_detector(model, [image, noise], threshold=0.3)
    _check_contract(found + on_noise, label, 640, 480)
    hits = [d for d in found if d.points[0] < cx < d.points[2] and d.points[1] < cy < d.points[3]]
    assert hits, found
    assert run_detector(model, [image], threshold=1.01) == [[]]
    with pytest.raises(ModelError, match="lack"):
        load_model("detector", {"class": name}, ["cat"])


def test_haar_rejects_a_bad_cascade(tmp_path: Path) -> None:
    bad = tmp_path / "cascade.xml"
    bad.write_text("<not-a-cascade/>")
    with pytest.raises(ModelError, match=r"cascade\.xml"):
        HaarFaceDetector(weights=str(bad))
    assert HogPeopleDetector().labels == ["person"]


# --- GrabCut and MIL --------------------------------------------------------------------


def test_grabcut_outlines_an_object_from_a_box_or_a_click() -> None:
    image = _textured()
    image[150:290, 200:380] = (200, 40, 40)
    model = load_model("interactor", {"class": "grabcut"}, [])
    assert isinstance(model, GrabCutInteractor)
    for pos, box in (([], (185, 138, 392, 305)), ([(290.0, 220.0)], None)):
        result = model.interact(image, pos, [], box)
        xs, ys = result.points[0::2], result.points[1::2]
        assert len(xs) >= 4
        assert abs(min(xs) - 200) <= 3 and abs(max(xs) - 379) <= 3
        assert abs(min(ys) - 150) <= 3 and abs(max(ys) - 289) <= 3
        assert result.mask is not None and result.mask.shape == (480, 640)
        assert abs(int(result.mask.sum()) - 140 * 180) <= 0.03 * 140 * 180
    with pytest.raises(ModelError, match="positive point"):
        model.interact(image, [], [(10.0, 10.0)], None)


def test_mil_tracker_follows_a_moving_square() -> None:
    pattern = ((np.indices((60, 60)).sum(0) // 10) % 2)[..., None] == 1
    square = np.where(pattern, np.array([230, 40, 40], np.uint8), np.array([40, 40, 230], np.uint8))

    def frame(x: int, y: int) -> np.ndarray:
        image = _textured(seed=x)
        image[y : y + 60, x : x + 60] = square
        return image

    tracker = load_model("tracker", {"class": "mil-tracker"}, [])
    assert isinstance(tracker, MilTracker)
    result = tracker.start(frame(100, 100), [100.0, 100.0, 160.0, 160.0])
    assert result.points == [100, 100, 160, 160]
    assert set(result.state) == {"id", "box"}
    for i in range(1, 6):
        x, y = 100 + 10 * i, 100 + 6 * i
        result = tracker.step(frame(x, y), result.state)
        assert _iou(result.points, (x, y, x + 60, y + 60)) > 0.5, (i, result.points)
    # An id this instance does not hold: re-initialised on this frame from the box.
    other = MilTracker(options={"capacity": 1})
    moved = other.step(frame(150, 130), {"id": "elsewhere", "box": [150, 130, 210, 190]})
    assert moved.points == [150, 130, 210, 190] and moved.state["id"] == "elsewhere"
    other.start(frame(100, 100), [100, 100, 160, 160])
    assert len(other._trackers) == 1
    with pytest.raises(ModelError, match="rectangle"):
        other.step(frame(100, 100), {"id": "x", "box": [1, 2]})


# --- the loader: TorchScript and ONNX ---------------------------------------------------


class FixedBoxes(torch.nn.Module):
    """Two fixed boxes, a padding row, and a box whose score is the mean red level (so the
    test sees the input's layout, channel order and scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "rows",
            torch.tensor([[10.0, 20.0, 100.0, 120.0, 0.9, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        red = x[:, 0].mean(dim=(1, 2))
        zero = torch.zeros_like(red)
        extra = torch.stack([zero + 5, zero + 5, zero + 50, zero + 60, red, zero], dim=1)
        rows = self.rows
        assert isinstance(rows, torch.Tensor)
        return torch.cat([rows.unsqueeze(0).expand(n, -1, -1), extra.unsqueeze(1)], dim=1)


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _onnx(module: torch.nn.Module, path: Path) -> str:
    torch.onnx.export(
        module,
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        dynamo=False,
        input_names=["images"],
        output_names=["boxes"],
        dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "boxes": {0: "n"}},
        opset_version=17,
    )
    return str(path)


def _torchscript(module: torch.nn.Module, path: Path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


@EXPORTS_WARN
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_detectors_follow_the_contract(fmt: str, device: str, tmp_path: Path) -> None:
    write = _torchscript if fmt == "torchscript" else _onnx
    path = write(FixedBoxes(), tmp_path / f"model.{fmt}")
    red = np.zeros((480, 640, 3), np.uint8)
    red[..., 0] = 255
    dark = np.zeros((240, 320, 3), np.uint8)
    labels = ["cat", "dog"]

    # input_size [240, 320]: boxes come back scaled by 2 to the 640x480 frame, 1 for 320x240.
    model = load_model("detector", {fmt: path, "input_size": [240, 320]}, labels, device)
    if isinstance(model, TorchScriptDetector):  # onnxruntime uses CUDA only with its provider
        assert model.device.type == device
    first, second = run_detector(model, [red, dark], threshold=0.5)
    assert [(d.label, d.points, round(d.confidence, 3)) for d in first] == [
        ("dog", [20.0, 40.0, 200.0, 240.0], 0.9),
        ("cat", [10.0, 10.0, 100.0, 120.0], 1.0),
    ]
    assert [(d.label, d.points) for d in second] == [("dog", [10.0, 20.0, 100.0, 120.0])]

    # Native size: mixed sizes run as separate sub-batches, boxes unscaled.
    model = load_model("detector", {fmt: path}, labels, device)
    results = run_detector(model, [dark, red, dark], threshold=0.0)
    assert [len(r) for r in results] == [1, 2, 1]  # the score-0 rows are padding
    assert results[1][1].points == [5.0, 5.0, 50.0, 60.0]

    with pytest.raises(ModelError, match="class_index 1 is out of range for 1 labels"):
        run_detector(load_model("detector", {fmt: path}, ["cat"]), [red], 0.5)


@EXPORTS_WARN
def test_loader_rejects_broken_models(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(ModelError, match=r"model\.onnx: not an ONNX model"):
        load_model("detector", {"onnx": str(corrupt)}, ["cat"])
    corrupt_ts = tmp_path / "model.pt"
    corrupt_ts.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ModelError, match=r"model\.pt: not a TorchScript file"):
        load_model("detector", {"torchscript": str(corrupt_ts)}, ["cat"])
    with pytest.raises(ModelError, match="not found"):
        load_model("detector", {"onnx": str(tmp_path / "missing.onnx")}, ["cat"])

    wrong_onnx = _onnx(WrongShape(), tmp_path / "wrong.onnx")
    with pytest.raises(ModelError, match=r"wrong\.onnx: output must be \[N,K,6\], got \["):
        load_model("detector", {"onnx": wrong_onnx}, ["cat"])
    wrong_ts = _torchscript(WrongShape(), tmp_path / "wrong.pt")
    model = load_model("detector", {"torchscript": wrong_ts}, ["cat"])
    with pytest.raises(
        ModelError, match=r"wrong\.pt: output must be \[N,K,6\] with N=1, got \[1, 3\]"
    ):
        run_detector(model, [np.zeros((8, 8, 3), np.uint8)], 0.5)

    good = _torchscript(FixedBoxes(), tmp_path / "good.pt")
    with pytest.raises(ModelError, match="detectors only"):
        load_model("tracker", {"torchscript": good}, ["cat"])
    with pytest.raises(ModelError, match="input_size"):
        load_model("detector", {"torchscript": good, "input_size": [0, 10]}, ["cat"])
    with pytest.raises(ModelError, match="needs labels"):
        load_model("detector", {"torchscript": good}, [])


def test_loader_resolves_classes_and_checks_kinds() -> None:
    assert set(BUILTINS) == {"colour", "haar-face", "hog-people", "grabcut", "mil-tracker"}
    colour = load_model("detector", {"class": BUILTINS["colour"], "options": {"depth": 1}}, ["red"])
    assert isinstance(colour, ColourDetector) and colour.labels == ["red"]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("segmenter", {"class": "colour"}, "unknown function kind"),
        ("detector", {"class": "no-such-model"}, "unknown model class"),
        ("detector", {"class": "cvat_ray.actors.functions.nope:Model"}, "cannot import"),
        ("detector", {"class": "cvat_ray.actors.functions.loader:Missing"}, "has no class"),
        ("detector", {"class": "grabcut"}, "is not a detector"),
        ("tracker", {"class": "colour"}, "is not a tracker"),
        ("detector", {}, "exactly one of"),
        ("detector", {"class": "colour", "onnx": "m.onnx"}, "exactly one of"),
        ("detector", {"class": "colour", "shape": 1}, "unknown keys"),
        ("detector", {"class": "colour", "weights": "s3://bucket/w.pt"}, "local file"),
    ]
    for kind, runtime, message in cases:
        with pytest.raises(ModelError, match=message):
            load_model(kind, runtime, ["red"])

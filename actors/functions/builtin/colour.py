"""A torch detector of solid-colour rectangles, exact on :mod:`cvat_ray.actors.functions.synthetic`.

It needs no training and no download: every weight is set by hand, so its answer on
synthetic frames is known exactly and its cost is that of a real dense conv stack.

The network (``x`` is RGB in 0..1):

1. the frame is replicate-padded by ``depth`` px (so it behaves as if it continued beyond
   its edges and boxes touching them stay exact);
2. colour evidence, per class ``k`` with colour ``c_k``: ``clamp(1 - |x - c_k|^2 / TAU, 0,
   1)``, computed in float32 as a 1x1 conv over the features ``[x, x^2]``;
3. ``depth`` dense 3x3 conv layers without padding (channels-last memory): ``K -> width``,
   then ``width -> width``. Each weight tensor is a per-channel 3x3 mean filter with
   identity channel mixing: the class channels come first, the other ``width - K`` channels
   and the off-diagonal weights are zeros but are computed all the same, so the stack costs
   ``9 * (K * width + (depth - 1) * width^2)`` multiply-adds per pixel. On CUDA it runs in
   float16;
4. the per-pixel class is the arg-max of the class channels where the maximum is at least
   0.5.

Why the boxes are exact: ``depth`` 3x3 means make a separable kernel that is symmetric
along each axis. A straight edge of a uniform region blurred by it is at ``0.5 + c/2`` on
the first pixel inside and ``0.5 - c/2`` on the first outside (``c`` is the kernel's centre
weight), so thresholding at 0.5 puts the edge back where it was. Corners are shaved off,
but the rows and columns of the box's sides keep their middle pixels, so the box is exact.
This holds for rectangles at least ``depth + 1`` px on each side and at least ``2 * depth +
1`` px from another rectangle of the same colour; synthetic scenes keep 24 px and 16 px.

``infer`` returns, per frame, a ``(2, H, W)`` uint8 array: the class index + 1 (0: none)
and the evidence scaled to 0..255 (600 KB for 640x480, rather than 4-byte evidence per
class). ``postprocess`` labels the 4-connected components of each class with OpenCV (within
the windows that hold non-background pixels), keeps those of at least ``min_area`` px, and
gives each a box ``[x0, y0, x1 + 1, y1 + 1]`` and a confidence equal to the mean evidence
over its pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from cvat_ray.actors.functions.base import Detection, Image, ModelError, to_device
from cvat_ray.actors.functions.builtin.common import apply_threads, option_int, shape_groups
from cvat_ray.actors.functions.staging import PinnedBuffers
from cvat_ray.actors.functions.synthetic import COLOURS

TAU = 0.1  # squared RGB distance (0..1 units) at which the evidence falls to 0
THRESHOLD = 0.5  # evidence at which a pixel belongs to a class; see the module docstring


class ColourNet(torch.nn.Module):
    """The fixed-weight network; ``forward`` maps ``[N, 3, H, W]`` RGB in 0..1 to ``[N, K,
    H, W]`` per-class evidence."""

    def __init__(self, colours: list[tuple[float, float, float]], width: int, depth: int) -> None:
        super().__init__()
        k = len(colours)
        c = torch.tensor(colours, dtype=torch.float32)  # [K, 3] in 0..1
        evidence = torch.nn.Conv2d(6, k, kernel_size=1)
        convs = [
            torch.nn.Conv2d(k if i == 0 else width, width, 3, bias=False) for i in range(depth)
        ]
        with torch.no_grad():
            # 1 - |x - c|^2 / TAU = (1 - |c|^2 / TAU) + sum(2c/TAU * x) - sum(x^2 / TAU)
            evidence.weight[:, :3, 0, 0] = 2 * c / TAU
            evidence.weight[:, 3:, 0, 0] = -1 / TAU
            assert evidence.bias is not None
            evidence.bias[:] = 1 - (c * c).sum(dim=1) / TAU
            for conv in convs:
                weight = torch.zeros_like(conv.weight)
                for i in range(conv.in_channels):
                    weight[i, i] = 1.0 / 9.0
                # channels-last weights for channels-last activations (kept by .to())
                conv.weight = torch.nn.Parameter(
                    weight.contiguous(memory_format=torch.channels_last), requires_grad=False
                )
        self.classes = k
        self.depth = depth
        self.evidence = evidence
        self.mean = torch.nn.Sequential(*convs)

    def forward(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        # Replicate-pad once by the stack's reach, then unpadded 3x3 convs: the frame
        # behaves as if it continued beyond its edges, so boxes touching them stay exact.
        x = x.float()
        if self.depth:
            x = torch.nn.functional.pad(x, (self.depth,) * 4, mode="replicate")
        e: torch.Tensor = self.evidence(torch.cat([x, x * x], dim=1)).clamp_(0.0, 1.0)
        e = self.mean(e.to(dtype).contiguous(memory_format=torch.channels_last))
        return e[:, : self.classes]


class ColourDetector:
    """Detector of solid rectangles in known colours (labels are colour names).

    Options: ``width`` (channels of the conv stack, >= the number of colours, default 16),
    ``depth`` (3x3 layers, default 2), ``min_area`` (px, default 64), ``colours`` (``{name:
    [r, g, b]}`` in 0..255, replacing :data:`~cvat_ray.actors.functions.synthetic.COLOURS`; colours
    must be more than ``sqrt(TAU)`` apart in 0..1 units), ``half`` (float16 stack, default
    on CUDA only), ``threads`` (``torch.set_num_threads``). ``labels``, when given, keeps
    the colours it names (the others are never emitted); ``weights`` is not used.

    Cost with the defaults (0.88 GMAC per 640x480 frame in the 3x3 stack), measured on one
    core of the project's 2-vCPU EPYC VM: about 25 ms of ``infer`` and 1 ms of
    ``postprocess`` per frame, against about 1 ms to decode the frame's JPEG, so
    inference dominates a whole-task run. ``depth`` and ``width`` scale it (a layer
    ``width -> width`` costs ``9 * width^2`` multiply-adds per pixel).
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        options = dict(options or {})
        apply_threads(options)
        colours = _colours(options.get("colours", COLOURS))
        if labels:
            colours = {name: rgb for name, rgb in colours.items() if name in labels}
            if not colours:
                raise ModelError(
                    f"the colour detector knows none of the labels {labels}; "
                    f"it finds {sorted(_colours(options.get('colours', COLOURS)))}"
                )
        self.labels: list[str] = list(colours)
        width = option_int(options, "width", 16, minimum=len(colours))
        depth = option_int(options, "depth", 2, minimum=0)
        self.min_area = option_int(options, "min_area", 64, minimum=1)
        self.device = torch.device(to_device(device))
        half = options.get("half", self.device.type == "cuda")
        if not isinstance(half, bool):
            raise ModelError(f"option 'half' must be true or false, got {half!r}")
        self.dtype = torch.float16 if half else torch.float32
        # CUDA: frames go up and class maps come back through reused page-locked buffers
        self._pinned = PinnedBuffers(self.device) if self.device.type == "cuda" else None
        # On CUDA the staging pool serialises the device's part: batches overlap the rest.
        self.concurrent_infer = self._pinned is not None
        rgb = [(r / 255.0, g / 255.0, b / 255.0) for r, g, b in colours.values()]
        self.net = ColourNet(rgb, width, depth).eval()
        self.net.mean.to(self.device, self.dtype)
        # the colour distance stays float32 (it subtracts large terms)
        self.net.evidence.to(self.device)

    def preprocess(self, image: Image) -> np.ndarray:
        """HWC uint8 RGB -> CHW float32 in 0..1; on CUDA the uint8 pixels as they are (the
        device transposes and scales them: a quarter of the bytes cross the bus)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ModelError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        if self._pinned is not None:
            return np.ascontiguousarray(image, dtype=np.uint8)
        out = np.empty((3, image.shape[0], image.shape[1]), dtype=np.float32)
        # OpenCV splits the channels in one pass (numpy's strided copy of a transposed view
        # is slower); each plane goes to float and is scaled in one more.
        for channel, plane in enumerate(cv2.split(np.ascontiguousarray(image))):
            np.divide(plane, np.float32(255), out=out[channel], dtype=np.float32)
        return out

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """One ``(2, H, W)`` uint8 array per frame (class index + 1, evidence * 255);
        frames of different sizes run as separate sub-batches."""
        out: list[np.ndarray] = [np.empty(0, np.uint8)] * len(batch)
        for group in shape_groups([a.shape for a in batch]):
            frames = [batch[i] for i in group]
            if self._pinned is not None:
                maps = self._pinned.run(frames, self.classify_pixels)
            else:
                maps = self.classify(torch.from_numpy(np.stack(frames))).numpy()
            for j, i in enumerate(group):
                out[i] = maps[j]
        return out

    @torch.inference_mode()
    def classify_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`classify` on a device batch of ``[N, H, W, 3]`` uint8 pixels."""
        return self.classify(x.permute(0, 3, 1, 2).float().div_(255))

    @torch.inference_mode()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The inference core on a device tensor ``[N, 3, H, W]`` (0..1): ``[N, 2, H, W]``
        uint8 on the same device (class index + 1 or 0, evidence * 255).

        On CPU the frames go through one at a time: a frame's activations (20 MB at
        640x480, width 16) stay in cache, where a batch of 8 runs at half the speed. An
        accelerator gets the whole batch at once."""
        if self.device.type == "cpu" and x.shape[0] > 1:
            return torch.cat([self._classify(x[i : i + 1]) for i in range(x.shape[0])])
        return self._classify(x)

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.net(x, self.dtype)
        best, index = evidence.max(dim=1)
        keep = best >= THRESHOLD
        cls = torch.where(keep, index + 1, 0).to(torch.uint8)
        level = (best.float().clamp(0, 1) * 255).round_().to(torch.uint8)
        return torch.stack([cls, torch.where(keep, level, 0)], dim=1)

    def postprocess(self, output: np.ndarray, threshold: float) -> list[Detection]:
        """Boxes of the 4-connected components of each class, confidence >= ``threshold``.

        The frame is mostly background, so the windows holding its non-background pixels
        are found first: bands of consecutive rows that have any, then, within each band,
        runs of consecutive columns that have any. A component lies in one window (its
        rows and columns are runs without a gap), so labelling each class inside the
        windows only finds exactly the components of labelling it over the whole frame:
        0.95 ms for a synthetic 640x480 frame, where labelling the 8-connected blobs of the
        whole frame first took 1.5."""
        cls, level = output[0], output[1]
        found: list[Detection] = []
        for y0, y1 in _runs(cls.max(axis=1)):
            band = cls[y0:y1]
            for x0, x1 in _runs(band.max(axis=0)):
                window = (slice(y0, y1), slice(x0, x1))
                found.extend(self._components(cls[window], level[window], (x0, y0), threshold))
        return found

    def _components(
        self, classes: np.ndarray, level: np.ndarray, origin: tuple[int, int], threshold: float
    ) -> list[Detection]:
        """The detections of each class's 4-connected components in a window of the frame
        whose top-left corner is at ``origin``; a component's confidence is the mean
        evidence over its pixels."""
        x0, y0 = origin
        counts = np.bincount(classes.ravel(), minlength=len(self.labels) + 1)
        found: list[Detection] = []
        for k in np.flatnonzero(counts[1:] >= self.min_area).tolist():
            count, components, stats, _ = cv2.connectedComponentsWithStats(
                (classes == k + 1).view(np.uint8), connectivity=4, ltype=cv2.CV_32S
            )
            kept = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= self.min_area) + 1
            if not kept.size:
                continue
            sums = np.bincount(components.ravel(), weights=level.ravel(), minlength=count)
            for i in kept.tolist():
                x, y, w, h, area = (int(v) for v in stats[i])
                confidence = float(sums[i] / area) / 255.0
                if confidence < threshold:
                    continue
                box = [float(x0 + x), float(y0 + y), float(x0 + x + w), float(y0 + y + h)]
                found.append(Detection(self.labels[k], "rectangle", box, round(confidence, 4)))
        return found


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive non-zero entries of a 1-D array."""
    at = np.flatnonzero(values)
    if not at.size:
        return []
    gaps = np.flatnonzero(np.diff(at) > 1)
    starts = [int(at[0]), *(at[gaps + 1]).tolist()]
    stops = [*(at[gaps] + 1).tolist(), int(at[-1]) + 1]
    return list(zip(starts, stops, strict=True))


def _colours(value: Any) -> dict[str, tuple[int, int, int]]:
    """The ``colours`` option, checked: ``{name: [r, g, b]}`` with 0..255 integers."""
    if not isinstance(value, Mapping) or not value:
        raise ModelError("option 'colours' must be a non-empty mapping {name: [r, g, b]}")
    out: dict[str, tuple[int, int, int]] = {}
    for name, rgb in value.items():
        if (
            not isinstance(rgb, list | tuple)
            or len(rgb) != 3
            or not all(isinstance(v, int) and 0 <= v <= 255 for v in rgb)
        ):
            raise ModelError(f"colour {name!r} must be [r, g, b] with 0..255 integers, got {rgb!r}")
        out[str(name)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return out

"""Detectors that run users' exported models: TorchScript (``torch.jit.save``) and ONNX.

Both follow one contract, which the user's model must meet:

- input: one float32 tensor ``[N, 3, H, W]``, RGB, values in 0..1 (no mean/std
  normalisation: put it inside the model);
- output: one float32 tensor ``[N, K, 6]``, rows ``(xtl, ytl, xbr, ybr, score,
  class_index)`` in the input's pixels; rows with ``score <= 0`` are padding; scores above 1
  are reported as 1; ``class_index`` indexes the function's labels, in spec order.

Frames are resized to ``input_size`` ``(height, width)`` when it is set (bilinear, aspect
ratio not kept) and the boxes are scaled back to the frame and clipped to it. Without
``input_size`` a frame keeps its size, and a batch of frames of different sizes runs as
one sub-batch per size (no padding, so the model sees no artificial borders). An ONNX
model whose input has a fixed height and width gets those as ``input_size``; one with a
fixed batch size gets sub-batches of that size (the last one filled up by repeating its
last frame).

On a CUDA device a TorchScript model's frames stay ``uint8`` and channels-last until they
are on the GPU: a batch is stacked into reused page-locked memory and copied up at a
quarter of float32's size, then transposed and scaled there. The model sees the same
float32 ``[N, 3, H, W]`` input in 0..1 either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cvat_ray.actors.functions.base import Detection, Image, ModelError, to_device
from cvat_ray.actors.functions.builtin.common import apply_threads, option_int, shape_groups

if TYPE_CHECKING:
    from cvat_ray.actors.functions.staging import PinnedBuffers


@dataclass(frozen=True)
class Prepared:
    """A preprocessed frame: ``array`` is ``[3, H, W]`` float32 in 0..1, or, for a model on
    a CUDA device, the ``[H, W, 3]`` uint8 pixels (converted on the device); ``frame`` is the
    original ``(height, width)``."""

    array: np.ndarray
    frame: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """The model input's ``(height, width)``."""
        shape = self.array.shape
        return (int(shape[0]), int(shape[1])) if self.array.dtype == np.uint8 else shape[1:]


@dataclass(frozen=True)
class Rows:
    """A frame's raw model output ``[K, 6]`` and the factors from input to frame pixels."""

    rows: np.ndarray
    scale: tuple[float, float]  # x, y
    frame: tuple[int, int]  # height, width


class FileDetector:
    """The shared part of the TorchScript and ONNX detectors; subclasses load the file and
    implement ``_run`` (``[n, 3, H, W]`` float32 -> the raw output as numpy)."""

    batch_size: int | None = None  # a fixed batch size the model requires
    # Frames stay uint8 HWC for the model (set by a subclass that converts on its device).
    uint8_input = False
    concurrent_infer = False  # see actors.functions.base.Detector

    def __init__(self, path: str, labels: list[str] | None, input_size: Any) -> None:
        self.name = Path(path).name
        if not labels:
            raise ModelError(f"{self.name}: the function needs labels (class_index indexes them)")
        self.labels: list[str] = list(labels)
        self.input_size = _input_size(input_size, self.name)
        if not Path(path).is_file():
            raise ModelError(f"{self.name}: file not found ({path})")

    def preprocess(self, image: Image) -> Prepared:
        """Resize to ``input_size`` if set; HWC uint8 RGB -> CHW float32 in 0..1."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ModelError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        frame = (int(image.shape[0]), int(image.shape[1]))
        if self.input_size and self.input_size != frame:
            image = cv2.resize(image, self.input_size[::-1], interpolation=cv2.INTER_LINEAR)
        if self.uint8_input:
            return Prepared(np.ascontiguousarray(image, dtype=np.uint8), frame)
        array = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        return Prepared(array / np.float32(255), frame)

    def infer(self, batch: list[Prepared]) -> list[Rows]:
        out: list[Rows | None] = [None] * len(batch)
        for group in shape_groups([p.array.shape for p in batch]):
            step = self.batch_size or len(group)
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                arrays = [batch[i].array for i in chunk]
                arrays += arrays[-1:] * (step - len(chunk))
                result = self._checked(self._run(arrays), len(arrays))
                for j, i in enumerate(chunk):
                    (h, w), (fh, fw) = batch[i].size, batch[i].frame
                    out[i] = Rows(result[j], (fw / w, fh / h), batch[i].frame)
        return [r for r in out if r is not None]

    def postprocess(self, output: Rows, threshold: float) -> list[Detection]:
        found = []
        sx, sy = output.scale
        height, width = output.frame
        for xtl, ytl, xbr, ybr, score, index in output.rows.tolist():
            if (
                not score > 0
                or score < threshold
                or not np.isfinite([xtl, ytl, xbr, ybr, index]).all()
            ):
                continue
            k = round(index)
            if not 0 <= k < len(self.labels):
                raise ModelError(
                    f"{self.name}: class_index {index:g} is out of range for "
                    f"{len(self.labels)} labels"
                )
            box = [
                min(max(xtl * sx, 0.0), width),
                min(max(ytl * sy, 0.0), height),
                min(max(xbr * sx, 0.0), width),
                min(max(ybr * sy, 0.0), height),
            ]
            found.append(Detection(self.labels[k], "rectangle", box, min(float(score), 1.0)))
        return found

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The model on a batch of preprocessed arrays of one shape."""
        raise NotImplementedError

    def _checked(self, out: np.ndarray, n: int) -> np.ndarray:
        if out.ndim != 3 or out.shape[0] != n or out.shape[2] != 6:
            raise ModelError(
                f"{self.name}: output must be [N,K,6] with N={n}, got {list(out.shape)}"
            )
        return out.astype(np.float32, copy=False)


class TorchScriptDetector(FileDetector):
    """A ``torch.jit.save`` file that meets the module docstring's contract."""

    def __init__(
        self,
        path: str,
        labels: list[str] | None,
        device: str = "cpu",
        input_size: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path, labels, input_size)
        import torch

        apply_threads(dict(options or {}))
        self.device = torch.device(to_device(device))
        self._pinned: PinnedBuffers | None = None
        if self.device.type == "cuda":
            from cvat_ray.actors.functions.staging import PinnedBuffers

            self._pinned = PinnedBuffers(self.device)
            self.uint8_input = True
            self.concurrent_infer = True  # the staging pool serialises the device's part
        try:
            with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; files still load
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(path, map_location=self.device).eval()  # type: ignore[no-untyped-call]
        except Exception as exc:  # torch raises RuntimeError, ValueError, pickle errors...
            raise ModelError(f"{self.name}: not a TorchScript file ({_first_line(exc)})") from None

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self._pinned is not None:
                return self._pinned.run(arrays, self.forward_pixels)
            result: np.ndarray = self._forward(torch.from_numpy(np.stack(arrays))).cpu().numpy()
            return result

    def forward_pixels(self, x: Any) -> Any:
        """The model on a device batch of ``[N, H, W, 3]`` uint8 pixels."""
        return self._forward(x.permute(0, 3, 1, 2).float().div_(255))

    def _forward(self, x: Any) -> Any:
        import torch

        try:
            y = self.module(x)
        except Exception as exc:
            raise ModelError(
                f"{self.name}: the model failed on a batch {list(x.shape)}: {_first_line(exc)}"
            ) from None
        if not isinstance(y, torch.Tensor):
            raise ModelError(
                f"{self.name}: output must be one tensor [N,K,6], got {type(y).__name__}"
            )
        return y.float()


class OnnxDetector(FileDetector):
    """A ``.onnx`` file that meets the module docstring's contract, run by onnxruntime
    (CUDA when the device is ``cuda`` and the CUDA provider is installed, else CPU; option
    ``threads`` sets intra-op threads)."""

    def __init__(
        self,
        path: str,
        labels: list[str] | None,
        device: str = "cpu",
        input_size: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path, labels, input_size)
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = dict(options or {})
        session_options = ort.SessionOptions()
        if "threads" in options:
            session_options.intra_op_num_threads = option_int(options, "threads", 1, minimum=1)
        providers = ["CPUExecutionProvider"]
        if (
            to_device(device).startswith("cuda")
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(path, session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own InvalidProtobuf, Fail, ...
            raise ModelError(
                f"{self.name}: not an ONNX model onnxruntime can run ({_first_line(exc)})"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            got = [(i.name, i.shape, i.type) for i in inputs]
            raise ModelError(f"{self.name}: input must be one float32 [N,3,H,W] tensor, got {got}")
        shape = outputs[0].shape
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != 6):
            raise ModelError(f"{self.name}: output must be [N,K,6], got {list(shape)}")
        self.input_name = inputs[0].name
        n, _, h, w = inputs[0].shape
        if isinstance(n, int) and n > 0:
            self.batch_size = n
        if self.input_size is None and isinstance(h, int) and isinstance(w, int):
            self.input_size = (h, w)

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        x = np.stack(arrays)
        try:
            result = self.session.run(None, {self.input_name: x})
        except Exception as exc:
            raise ModelError(
                f"{self.name}: the model failed on a batch {list(x.shape)}: {_first_line(exc)}"
            ) from None
        return np.asarray(result[0])


def _input_size(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ModelError(f"{name}: input_size must be [height, width] in pixels, got {value!r}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

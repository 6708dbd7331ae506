"""A detector-sized TorchScript model for benchmarks, written at run time (no download).

Real detectors cost tens of GFLOPs per frame (YOLOv8s about 29 at 640x640, YOLOv8m about
79). This model pays a comparable cost with a real convolutional backbone, and still gives
answers a benchmark can check on the generated scenes of
:mod:`cvat_ray.actors.functions.synthetic`:

- the backbone: a 3x3 stem at stride 2, then four stages (stride 4, 8, 16, 32), each a
  strided 3x3 convolution followed by more 3x3 convolutions, ReLU after each, channels
  ``[32, 64, 128, 256, 512] * width`` (fixed pseudo-random weights, seeded); on CUDA it runs
  in float16, channels-last, as an exported detector would;
- a colour head: for each colour of the palette, the box around all of a frame's pixels
  within the colour's distance (one box per colour present, the union of that colour's
  rectangles);
- the score of every box: ``0.6 + 0.4 * sigmoid(mean of a 1x1 conv over the backbone's
  last features)``, so every answer depends on the whole backbone (no part of it can be
  skipped) and stays above the default threshold.

It meets the contract of :mod:`cvat_ray.actors.functions.builtin.exported`: input
``[N, 3, H, W]`` float32 RGB in 0..1, output ``[N, K, 6]`` rows ``(xtl, ytl, xbr, ybr, score,
class_index)``, a colour that is absent scoring 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from cvat_ray.actors.functions.synthetic import COLOURS, Truth

CHANNELS = (32, 64, 128, 256, 512)
# 3x3 convolutions after the strided one of each stage (stride 4, 8, 16, 32)
DEPTHS = (2, 3, 3, 2)
TAU = 0.1  # squared RGB distance (0..1 units) of a colour's pixels


class HeavyDetector(torch.nn.Module):
    def __init__(self, width: float = 1.5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        chans = [max(8, round(c * width)) for c in CHANNELS]
        layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, chans[0], 3, 2, 1), torch.nn.ReLU()]
        for stage, depth in enumerate(DEPTHS):
            cin, cout = chans[stage], chans[stage + 1]
            layers += [torch.nn.Conv2d(cin, cout, 3, 2, 1), torch.nn.ReLU()]
            for _ in range(depth):
                layers += [torch.nn.Conv2d(cout, cout, 3, 1, 1), torch.nn.ReLU()]
        self.backbone = torch.nn.Sequential(*layers)
        self.objectness = torch.nn.Conv2d(chans[-1], 1, 1)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, torch.nn.Conv2d):
                    # variance-preserving weights keep float16 activations finite
                    fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                    module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                    assert module.bias is not None
                    module.bias.zero_()
        colours = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255.0
        self.register_buffer("colours", colours)
        self.tau = TAU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dtype = self.objectness.weight.dtype
        features = self.backbone(x.to(dtype).contiguous(memory_format=torch.channels_last))
        level = self.objectness(features).float().mean(dim=(1, 2, 3))  # [N]
        score = 0.6 + 0.4 * torch.sigmoid(level)
        colours = self.colours  # [K, 3] RGB in 0..1, a buffer
        assert isinstance(colours, torch.Tensor)
        k = colours.shape[0]
        distance = ((x.float().unsqueeze(1) - colours.view(1, k, 3, 1, 1)) ** 2).sum(dim=2)
        inside = distance < self.tau  # [N, K, H, W]
        rows = inside.any(dim=3)  # [N, K, H]
        cols = inside.any(dim=2)  # [N, K, W]
        ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, 1, h)
        xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
        far = float(h + w)
        ytl = torch.where(rows, ys, far).amin(dim=2)
        ybr = torch.where(rows, ys, -1.0).amax(dim=2) + 1
        xtl = torch.where(cols, xs, far).amin(dim=2)
        xbr = torch.where(cols, xs, -1.0).amax(dim=2) + 1
        present = rows.any(dim=2).float()
        scores = score.view(n, 1) * present
        index = torch.arange(k, device=x.device, dtype=torch.float32).view(1, k).expand(n, k)
        return torch.stack([xtl, ytl, xbr, ybr, scores, index], dim=2)


def write_model(path: Path, *, width: float = 1.5, device: str = "cpu") -> float:
    """Save the model as TorchScript (float16 backbone when ``device`` is CUDA); returns
    its GFLOPs per 640x480 frame (2 x multiply-adds of the convolutions)."""
    model = HeavyDetector(width).eval()
    if device.startswith("cuda"):
        model.backbone.half()
        model.objectness.half()
        model.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; files still load
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(path))  # type: ignore[no-untyped-call]
    return gflops(model)


def gflops(model: HeavyDetector, height: int = 480, width: int = 640) -> float:
    total = 0
    h, w = height, width
    for module in [*model.backbone, model.objectness]:
        if isinstance(module, torch.nn.Conv2d):
            stride = module.stride[0]
            h, w = -(-h // stride), -(-w // stride)
            total += module.weight.numel() * h * w
    return 2 * total / 1e9


def union_truth(truth: Truth) -> dict[str, tuple[int, int, int, int]]:
    """The boxes the model gives a scene: per colour, the box around all its rectangles."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for name, (x0, y0, x1, y1) in truth:
        a = out.get(name)
        out[name] = (
            (x0, y0, x1, y1)
            if a is None
            else (min(a[0], x0), min(a[1], y0), max(a[2], x1), max(a[3], y1))
        )
    return out

"""Page-locked host buffers that a CUDA model reuses from batch to batch.

A batch of frames copied to the GPU from ordinary (pageable) memory goes through a staging
copy in the driver, and a batch that is stacked into a fresh numpy array pays for new pages
on every call (a 32-frame 640x480 float32 batch is 118 MB: above glibc's mmap threshold, so
each one is mapped, zeroed and unmapped). Stacking into one page-locked buffer kept by the
model and copying it asynchronously avoids both; the same holds for the results coming back.

One :class:`PinnedBuffers` belongs to one model and serves one batch at a time (it holds a
lock while a batch uses its buffers). CUDA only: page-locked memory needs a GPU driver.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch


class PinnedBuffers:
    """Grow-only page-locked host buffers, one per role (frames in, results out)."""

    def __init__(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise ValueError(f"page-locked staging is for CUDA devices, not {device}")
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def _view(self, role: str, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        need = math.prod(shape)
        held = self._buffers.get(role)
        if held is None or held.dtype != dtype or held.numel() < need:
            held = torch.empty(need, dtype=dtype, pin_memory=True)
            self._buffers[role] = held
        return held[:need].view(*shape)

    def run(
        self, frames: Sequence[np.ndarray], fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> np.ndarray:
        """``fn`` on the frames stacked into one device batch; its result as a numpy array
        of the host (a copy: the buffers are reused by the next batch)."""
        first = frames[0]
        with self._lock, torch.inference_mode():
            host_in = self._view("in", (len(frames), *first.shape), torch.from_numpy(first).dtype)
            np.stack(frames, out=host_in.numpy())
            result = fn(host_in.to(self.device, non_blocking=True))
            host_out = self._view("out", tuple(result.shape), result.dtype)
            host_out.copy_(result, non_blocking=True)
            # Both copies are queued on the current stream: when it is done, the frames'
            # buffer is free again and the results are in host memory.
            torch.cuda.current_stream(self.device).synchronize()
            return host_out.numpy().copy()

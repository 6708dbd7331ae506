"""Page-locked host buffers that a CUDA model reuses from batch to batch.

A batch of frames copied to the GPU from ordinary (pageable) memory goes through a staging
copy in the driver, and a batch that is stacked into a fresh numpy array pays for new pages
on every call (a 32-frame 640x480 float32 batch is 118 MB: above glibc's mmap threshold, so
each one is mapped, zeroed and unmapped). Stacking into page-locked buffers kept by the
model and copying them asynchronously avoids both; the same holds for the results coming
back.

One :class:`PinnedBuffers` belongs to one model. The calls a Serve replica has in flight
use it from several threads at once: each takes a free pair of buffers (frames in, results
out) from a small pool, stacks its frames and copies its results out in its own thread, and
holds the device only from the upload to the download. So while one batch is on the GPU the
next is being stacked and the previous one copied out, and the GPU does not wait for the
host's memory copies (a 32-frame uint8 batch is 30 MB to stack). CUDA only: page-locked
memory needs a GPU driver.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

# Buffer pairs per model: one batch being stacked, one on the device, one being copied out,
# one spare. More would only hold page-locked memory: the device runs one batch at a time.
PAIRS = 4


class _Pair:
    """Grow-only page-locked buffers of one batch, one per role (frames in, results out)."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def view(self, role: str, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        need = math.prod(shape)
        held = self.buffers.get(role)
        if held is None or held.dtype != dtype or held.numel() < need:
            held = torch.empty(need, dtype=dtype, pin_memory=True)
            self.buffers[role] = held
        return held[:need].view(*shape)


class PinnedBuffers:
    """A pool of :data:`PAIRS` buffer pairs and the lock that gives one batch at a time the
    device."""

    def __init__(self, device: torch.device, pairs: int = PAIRS) -> None:
        if device.type != "cuda":
            raise ValueError(f"page-locked staging is for CUDA devices, not {device}")
        self.device = device
        self._free = [_Pair() for _ in range(pairs)]
        self._available = threading.Semaphore(pairs)
        self._pool_lock = threading.Lock()
        self._device_lock = threading.Lock()

    def _take(self) -> _Pair:
        self._available.acquire()
        with self._pool_lock:
            return self._free.pop()

    def _give_back(self, pair: _Pair) -> None:
        with self._pool_lock:
            self._free.append(pair)
        self._available.release()

    def run(
        self, frames: Sequence[np.ndarray], fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> np.ndarray:
        """``fn`` on the frames stacked into one device batch; its result as a numpy array
        of the host (a copy: the buffers serve later batches)."""
        first = frames[0]
        pair = self._take()
        try:
            host_in = pair.view("in", (len(frames), *first.shape), torch.from_numpy(first).dtype)
            np.stack(frames, out=host_in.numpy())
            with self._device_lock, torch.inference_mode():
                result = fn(host_in.to(self.device, non_blocking=True))
                host_out = pair.view("out", tuple(result.shape), result.dtype)
                host_out.copy_(result, non_blocking=True)
                # Both copies are queued on the current stream: when it is done, the frames'
                # buffer is free again and the results are in host memory.
                torch.cuda.current_stream(self.device).synchronize()
            return host_out.numpy().copy()
        finally:
            self._give_back(pair)

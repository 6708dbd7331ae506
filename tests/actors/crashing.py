"""A model whose process dies on a marked frame (pixel (0, 0) with red = 1): how a replica
that crashes or runs out of memory looks from the API."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class Crasher:
    labels = ["red"]

    def __init__(self, **_: Any) -> None:
        pass

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if any(int(x[0, 0, 0]) == 1 for x in batch):
            os._exit(1)  # as the kernel's OOM killer would end it
        return [np.zeros(1) for _ in batch]

    def postprocess(self, output: np.ndarray, threshold: float) -> list[Any]:
        return []


class Staller(Crasher):
    """Hangs on a marked frame instead: a run that is certainly mid-way when the test kills
    the process that runs it."""

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if any(int(x[0, 0, 0]) == 1 for x in batch):
            time.sleep(3600)
        return [np.zeros(1) for _ in batch]

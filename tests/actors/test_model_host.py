"""``ModelHost``: the calls a replica has in flight run preprocess and postprocess at the
same time, and ``infer`` one at a time unless the model says ``concurrent_infer``.

The probe model meets the other call at a barrier in each step: a step that two calls can
be in at once lets both through; one that is serialised breaks the barrier (after a
short wait), which the probe records."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import numpy as np
import pytest

from cvat_ray.actors.functions.base import Detection, ModelError
from cvat_ray.actors.functions.host import ModelHost
from cvat_ray.storage.functions.spec import FunctionSpec, parse_spec


class Probe:
    """A detector whose steps report whether two calls were in them at once."""

    labels = ["red"]

    def __init__(self, options: dict[str, Any], labels: list[str], device: str, **_: Any) -> None:
        self.concurrent_infer = bool(options.get("concurrent_infer"))
        self.barriers = {step: threading.Barrier(2, timeout=2) for step in ("pre", "infer", "post")}
        self.together: dict[str, bool] = {}

    def _meet(self, step: str) -> None:
        try:
            self.barriers[step].wait()
            self.together[step] = True
        except threading.BrokenBarrierError:
            self.together.setdefault(step, False)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        self._meet("pre")
        return image

    def infer(self, batch: list[Any]) -> list[Any]:
        self._meet("infer")
        return [float(b.mean()) for b in batch]

    def postprocess(self, output: Any, threshold: float) -> list[Detection]:
        self._meet("post")
        return [Detection("red", "rectangle", [0, 0, 1, 1], 0.9)] if output >= threshold else []


def _spec(**options: Any) -> FunctionSpec:
    return parse_spec(
        {
            "id": "probe",
            "name": "Probe",
            "kind": "detector",
            "labels": [{"name": "red"}],
            "runtime": {"class": f"{__name__}:Probe", "options": options},
        }
    )


def _two_calls(host: ModelHost) -> list[list[list[dict[str, Any]]]]:
    bright, dark = np.full((4, 4, 3), 200, np.uint8), np.zeros((4, 4, 3), np.uint8)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(host.detect, [im], [100.0], [False]) for im in (bright, dark)]
        return [c.result(timeout=60) for c in calls]


def test_only_infer_is_serialised() -> None:
    host = ModelHost(_spec())
    bright, dark = _two_calls(host)
    assert [d["label"] for d in bright[0]] == ["red"] and dark == [[]]
    assert host.model.together == {"pre": True, "infer": False, "post": True}  # type: ignore[union-attr]


def test_concurrent_infer_is_not_serialised() -> None:
    host = ModelHost(_spec(concurrent_infer=True))
    _two_calls(host)
    assert host.model.together == {"pre": True, "infer": True, "post": True}  # type: ignore[union-attr]


def test_call_answers_as_the_replica_does() -> None:
    """``call`` is the one dispatch of CVAT's calls (the in-process runner, the CLI)."""
    host = ModelHost(_spec())
    host.model.barriers = {s: threading.Barrier(1) for s in ("pre", "infer", "post")}  # type: ignore[union-attr]
    found = host.call("detect", np.full((4, 4, 3), 200, np.uint8), 100.0, False)
    assert [d["label"] for d in found] == ["red"]
    with pytest.raises(ModelError, match="not an interactor"):
        host.call("interact", np.zeros((4, 4, 3), np.uint8), [(1, 1)], [], None)
    with pytest.raises(ModelError, match="unknown function call"):
        host.call("explode")

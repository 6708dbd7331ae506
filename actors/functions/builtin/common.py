"""Small helpers the built-in runtimes share: option parsing with readable errors, batch
grouping by frame size, and the confidence squashing functions."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from cvat_ray.actors.functions.base import ModelError


def option_int(
    options: Mapping[str, Any], name: str, default: int, minimum: int | None = None
) -> int:
    """``options[name]`` as an int (``default`` when absent); ModelError when it is not one
    or is below ``minimum``."""
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ModelError(f"option {name!r} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ModelError(f"option {name!r} must be >= {minimum}, got {value!r}")
    return int(value)


def option_float(
    options: Mapping[str, Any], name: str, default: float, minimum: float | None = None
) -> float:
    """``options[name]`` as a float (``default`` when absent), checked like option_int."""
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ModelError(f"option {name!r} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ModelError(f"option {name!r} must be >= {minimum}, got {value!r}")
    return float(value)


def apply_threads(options: Mapping[str, Any]) -> None:
    """``torch.set_num_threads(options["threads"])`` when the option is given (the process
    default stays otherwise: a Serve replica or actor sets it from its resources)."""
    if "threads" in options:
        import torch

        torch.set_num_threads(option_int(options, "threads", 1, minimum=1))


def shape_groups(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indexes of equal keys (e.g. array shapes), in first-seen order: a batch of frames of
    different sizes runs as one sub-batch per size, with no padding."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def margin_to_confidence(value: float) -> float:
    """A non-negative SVM margin ``m`` as ``m / (1 + m)``: 0 -> 0, 1 -> 0.5, large -> 1."""
    m = max(0.0, value)
    return m / (1.0 + m)

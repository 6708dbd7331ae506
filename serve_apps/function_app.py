"""A function (model) as a Ray Serve application: a module-level deployment and its typed
builder.

Each function is its own application (``cvat-fn-<id>``) with one deployment,
:class:`FunctionDeployment`: the model loads once per replica; detector calls are batched
with ``@serve.batch`` (the spec's ``batching``); replicas get the spec's CPUs, GPUs and
memory and scale between its ``min_replicas`` (0 allowed: scale to zero) and
``max_replicas`` on ongoing requests (:func:`function_deployment_options`).

``cvat_ray.serve_apps.function_app:build_function_app`` is the application's ``import_path``
in the Serve config (``cvat_ray.serve_apps.deploy.serve_config``); its ``args`` are the
spec, which holds no secret. The API calls a function through
``cvat_ray.serve_apps.functions``.
"""

# No ``from __future__ import annotations`` here: Serve reads the builder's parameter
# annotation as a class to validate the config's ``args`` into it.

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from cvat_ray.actors.functions.host import ModelHost, model_process_options
from cvat_ray.cluster.names import FUNCTION_DEPLOYMENT
from cvat_ray.storage.functions.spec import FunctionSpec, parse_spec


@serve.deployment(name=FUNCTION_DEPLOYMENT)
class FunctionDeployment:
    """One replica of a function: the model, loaded once."""

    def __init__(self, spec_json: dict[str, Any]) -> None:
        self.spec = parse_spec(spec_json, source="function")
        self.host = ModelHost(self.spec, owns_process=True)
        # imported now rather than on the first whole-task batch (it decodes files)
        from cvat_ray.actors.stages import frame_array

        self.frame_array = frame_array
        batching = self.spec.batching
        batcher: Any = self._detect_batch
        batcher.set_max_batch_size(batching.max_batch_size)
        batcher.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _detect_batch(
        self, items: list[tuple[Any, float, bool]]
    ) -> list[list[dict[str, Any]]]:
        images = [i[0] for i in items]
        thresholds = [i[1] for i in items]
        conv = [i[2] for i in items]
        result: list[list[dict[str, Any]]] = await asyncio.to_thread(
            self.host.detect, images, thresholds, conv
        )
        return result

    async def detect(self, image: Any, threshold: float, conv: bool) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._detect_batch((image, threshold, conv))
        return result

    async def detect_many(
        self, images: list[Any], threshold: float, conv: bool
    ) -> list[list[dict[str, Any]]]:
        """A whole batch at once (the whole-task pipeline batches already): a list of
        frames (RGB arrays or stored image files, decoded here), or one stacked array."""
        result: list[list[dict[str, Any]]] = await asyncio.to_thread(
            self._detect_frames, images, threshold, conv
        )
        return result

    def _detect_frames(
        self, images: Any, threshold: float, conv: bool
    ) -> list[list[dict[str, Any]]]:
        frames = [self.frame_array(f) for f in images]
        n = len(frames)
        return self.host.detect(frames, [threshold] * n, [conv] * n)

    async def interact(self, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(self.host.interact, *args)
        return result

    async def track(self, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(self.host.track, *args)
        return result

    def check_health(self) -> None:
        pass


class FunctionAppArgs(BaseModel):
    """A function application's arguments: its spec (validated as at registration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    spec: FunctionSpec


def build_function_app(args: FunctionAppArgs) -> Application:
    """Serve's application builder (``import_path``): the deployment as the code declares
    it; Serve applies the config's ``deployments`` options on top."""
    return function_app(args)


def function_app(
    args: FunctionAppArgs | Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> Application:
    """The function's application with ``options`` (a config ``deployments`` entry without
    its name) applied, as ``cvat-ray up`` and ``cvat-ray functions deploy`` deploy it."""
    parsed = args if isinstance(args, FunctionAppArgs) else FunctionAppArgs.model_validate(args)
    app: Application = function_deployment(options).bind(
        parsed.spec.model_dump(mode="json", by_alias=True)
    )
    return app


def function_deployment(options: Mapping[str, Any] | None = None) -> Any:
    """:class:`FunctionDeployment` (a ``serve.Deployment``) with ``options`` applied."""
    deployment: Any = FunctionDeployment  # the decorator's type is lost to mypy
    return deployment.options(**options) if options else deployment


def function_app_args(spec: FunctionSpec) -> dict[str, Any]:
    """The config's ``args`` of a function's application: its spec, without the fields
    left at their defaults."""
    return {"spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)}


def function_deployment_options(spec: FunctionSpec, cpus: float) -> dict[str, Any]:
    """The function deployment's options from its spec (Serve's deployment config keys),
    for a cluster of ``cpus`` CPUs."""
    scaling = spec.autoscaling
    initial = scaling.initial_replicas
    if initial is None:
        initial = scaling.min_replicas
    return {
        "max_ongoing_requests": max_ongoing_requests(spec, cpus),
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": initial,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "downscale_delay_s": scaling.downscale_delay_s,
        },
        "ray_actor_options": model_process_options(spec),
    }


def max_ongoing_requests(spec: FunctionSpec, cpus: float) -> int:
    """Requests a replica takes at once: a whole-task run's share and one more (for an
    online call), or the autoscaling target when that is higher. A GPU replica's share
    comes from :func:`~cvat_ray.actors.stages.run_shape` for the cluster's ``cpus``.

    Each task of a run's pipeline routes through a Serve router of its own, which learns a
    replica's queue only when it sends there; with room for 16 requests, the routers piled
    a run's batches on one replica while the other stood idle (4-9 s of idle replica per
    2,000-frame run on two cores). A full replica refuses a request and the router tries
    another, so with this cap neither replica runs dry while the run lasts."""
    from cvat_ray.actors.stages import RUN_REQUESTS_PER_REPLICA, run_shape

    share = RUN_REQUESTS_PER_REPLICA
    if spec.resources.num_gpus > 0:
        tasks, in_flight = run_shape(spec, cpus)
        share = -(-tasks * in_flight // max(1, spec.autoscaling.max_replicas))
    return max(share + 1, math.ceil(spec.autoscaling.target_ongoing_requests))

"""Functions (models) on Ray Serve, and the runner the API uses to call them.

Each function is its own Serve application (``cvat-fn-<id>``) with one deployment,
:class:`FunctionDeployment`: the model loads once per replica; detector calls are batched
with ``@serve.batch`` (the spec's ``batching``); replicas get the spec's CPUs, GPUs and
memory and scale between its ``min_replicas`` (0 allowed: scale to zero) and
``max_replicas`` on ongoing requests.

The API calls a function through a :class:`FunctionRunner`: :class:`ServeRunner` (a handle to
the function's application) inside Ray, :class:`InProcessRunner` (the model loaded in the API
process, in a thread) otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import threading
from typing import Any, Protocol

from cvat_ray.cluster.errors import AppError
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.functions.spec import FunctionSpec, parse_spec
from cvat_ray.storage.services.lambda_functions import app_name

DEPLOYMENT = "function"


class FunctionUnavailable(AppError):
    """The function could not answer (its replica crashed, ran out of memory, or the model
    raised); the message says why."""

    status = 503
    default_detail = "The function is not available."


class FunctionTimeout(AppError):
    status = 504
    default_detail = "The function did not answer in time."


class FunctionRunner(Protocol):
    async def call(self, spec: FunctionSpec, method: str, *args: Any) -> Any: ...

    def close(self) -> None: ...


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # Ray wraps the remote traceback; its last line names the real error.
    return (lines[-1] if lines else type(exc).__name__)[:500]


class InProcessRunner:
    """Loads each function in this process (tests, a plain uvicorn) and runs it in threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts: dict[tuple[str, int, str], Any] = {}
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def _host(self, spec: FunctionSpec) -> Any:
        from cvat_ray.actors.functions.host import ModelHost

        key = (spec.id, spec.version, spec.model_dump_json())
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = self._hosts[key] = ModelHost(spec, device="cpu")
            return host

    def _run(self, spec: FunctionSpec, method: str, args: tuple[Any, ...]) -> Any:
        host = self._host(spec)
        if method == "detect":
            image, threshold, conv = args
            return host.detect([image], [threshold], [conv])[0]
        return getattr(host, method)(*args)

    async def call(self, spec: FunctionSpec, method: str, *args: Any) -> Any:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="cvat-fn")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._run, spec, method, args)
        try:
            return await asyncio.wait_for(future, self.settings.functions.call_timeout_s)
        except TimeoutError:
            raise FunctionTimeout(f"The function {spec.id!r} did not answer in time.") from None
        except AppError:
            raise
        except Exception as exc:
            raise FunctionUnavailable(f"The function {spec.id!r} failed: {_reason(exc)}") from exc

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


class ServeRunner:
    """Calls the function's Serve application; a crashed replica fails only its calls, and
    Serve replaces it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One handle per application, made on its first call (a lookup in the controller).
        self._handles: dict[str, Any] = {}

    def _handle(self, spec: FunctionSpec) -> Any:
        from ray import serve
        from ray.serve.exceptions import RayServeException

        name = app_name(spec.id)
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = serve.get_app_handle(name)
            except (RayServeException, ValueError, KeyError) as exc:
                raise FunctionUnavailable(
                    f"The function {spec.id!r} is registered but not deployed ({_reason(exc)})."
                ) from exc
            self._handles[name] = handle
        return handle

    async def call(self, spec: FunctionSpec, method: str, *args: Any) -> Any:
        handle = self._handle(spec)
        try:
            response = getattr(handle, method).remote(*args)
            return await asyncio.wait_for(response, self.settings.functions.call_timeout_s)
        except TimeoutError:
            raise FunctionTimeout(f"The function {spec.id!r} did not answer in time.") from None
        except Exception as exc:
            raise FunctionUnavailable(f"The function {spec.id!r} failed: {_reason(exc)}") from exc

    def close(self) -> None:
        self._handles.clear()


def make_runner(settings: Settings, *, on_ray: bool) -> FunctionRunner:
    """``functions.runner``; ``auto``: Serve when the app runs its background work on Ray."""
    mode = settings.functions.runner
    if mode == "auto":
        mode = "serve" if on_ray else "inprocess"
    return ServeRunner(settings) if mode == "serve" else InProcessRunner(settings)


# ---------------------------------------------------------------------------------- Serve


def _deployment_class() -> Any:
    from ray import serve

    @serve.deployment(name=DEPLOYMENT)
    class FunctionDeployment:
        """One replica of a function: the model, loaded once."""

        def __init__(self, spec_json: dict[str, Any]) -> None:
            from cvat_ray.actors.functions.host import ModelHost

            self.spec = parse_spec(spec_json, source="function")
            threads = self.spec.threads
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            with contextlib.suppress(Exception):
                import torch

                torch.set_num_threads(threads)
            with contextlib.suppress(Exception):
                import cv2

                cv2.setNumThreads(threads)
            self.host = ModelHost(self.spec)
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

    return FunctionDeployment


def function_application(spec: FunctionSpec) -> Any:
    """The Serve application of a function, from its spec."""
    from cvat_ray.actors.functions.host import model_process_options

    scaling = spec.autoscaling
    initial = scaling.initial_replicas
    if initial is None:
        initial = scaling.min_replicas
    options: dict[str, Any] = {
        "ray_actor_options": model_process_options(spec),
        "max_ongoing_requests": max_ongoing_requests(spec),
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": initial,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "downscale_delay_s": scaling.downscale_delay_s,
        },
    }
    return _deployment_class().options(**options).bind(spec.model_dump(mode="json", by_alias=True))


def max_ongoing_requests(spec: FunctionSpec, cpus: float | None = None) -> int:
    """Requests a replica takes at once: a whole-task run's share and one more (for an
    online call), or the autoscaling target when that is higher. A GPU replica's share
    comes from :func:`~cvat_ray.actors.stages.run_shape` for the cluster's ``cpus`` (the
    connected cluster's when not given).

    Each task of a run's pipeline routes through a Serve router of its own, which learns a
    replica's queue only when it sends there; with room for 16 requests, the routers piled
    a run's batches on one replica while the other stood idle (4-9 s of idle replica per
    2,000-frame run on two cores). A full replica refuses a request and the router tries
    another, so with this cap neither replica runs dry while the run lasts."""
    from cvat_ray.actors.stages import RUN_REQUESTS_PER_REPLICA, run_shape

    share = RUN_REQUESTS_PER_REPLICA
    if spec.resources.num_gpus > 0:
        if cpus is None:
            import ray

            resources = ray.cluster_resources() if ray.is_initialized() else {}  # type: ignore[no-untyped-call]
            cpus = resources.get("CPU", 1.0)
        tasks, in_flight = run_shape(spec, cpus)
        share = -(-tasks * in_flight // max(1, spec.autoscaling.max_replicas))
    return max(share + 1, math.ceil(spec.autoscaling.target_ongoing_requests))


def deploy(spec: FunctionSpec, *, wait: bool = True) -> None:
    """Deploy (or update) a function on the connected cluster; ``wait`` until its
    application is running (its first replicas are up, none when it scales to zero)."""
    from ray import serve

    # serve.run always waits; serve._run is the same call with the wait optional.
    serve._run(
        function_application(spec), name=app_name(spec.id), route_prefix=None, _blocking=wait
    )


def undeploy(function_id: str) -> None:
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(app_name(function_id), _blocking=True)


def deployed() -> dict[str, str]:
    """Function id -> Serve status of the applications on the cluster."""
    from ray import serve

    from cvat_ray.storage.services.lambda_functions import APP_PREFIX

    status = serve.status()
    return {
        name.removeprefix(APP_PREFIX): str(app.status)
        for name, app in status.applications.items()
        if name.startswith(APP_PREFIX)
    }

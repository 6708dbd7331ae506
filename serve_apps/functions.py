"""How the API calls a function (model): a :class:`FunctionRunner`.

:class:`ServeRunner` (a handle to the function's Serve application,
``cvat_ray.serve_apps.function_app``) inside Ray, :class:`InProcessRunner` (the model loaded
in the API process, in a thread) otherwise. Imports no Ray at module level: the app built
without Ray (tests, a plain uvicorn) imports this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Protocol

from cvat_ray.cluster.errors import AppError
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.services.lambda_functions import app_name


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
        return self._host(spec).call(method, *args)

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

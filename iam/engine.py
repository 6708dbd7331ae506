"""The Rego policy engine, in-process.

Policies are the ``.rego`` files of a rules directory (``iam/rules`` by default; operators can
point ``CVAT_RAY_IAM__RULES_DIR`` at their own copy and restart), with their permission tables
as data in ``tables/<package>.json`` (available to the policies as ``data.tables.<package>``;
tables are data rather than Rego literals because the interpreter rebuilds literals on every
query, which made a decision five times slower). Everything is compiled once per process into
a bundle with an entrypoint per package (``tasks/allow``, ``tasks/filter``, ...) and evaluated
with regopy, an OPA-compatible interpreter: no policy server, no network hop.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_RULES_DIR = Path(__file__).parent / "rules"
_MAX_ANSWERS = 50_000
_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_FILTER = re.compile(r"^filter\s*:=", re.MULTILINE)


def _interpreter_class() -> Any:
    """regopy's Interpreter, imported on first use.

    Native-library clash: when regopy is loaded before Ray in a process, a later ``ray.init``
    aborts with "double free or corruption". Loading Ray first is harmless, so it is done here
    (only the import; nothing of Ray is used), and regopy is not imported by processes that
    never decide anything, such as the ``cvat-ray up`` driver.
    """
    import ray  # noqa: F401
    from regopy import Interpreter

    return Interpreter


class PolicyError(RuntimeError):
    """The policies could not be loaded or evaluated (a server misconfiguration)."""


class PolicyEngine:
    """Compiled policies; ``allow`` and ``filter`` are safe to call from any thread."""

    def __init__(self, rules_dir: Path = DEFAULT_RULES_DIR) -> None:
        files = sorted(rules_dir.glob("*.rego"))
        if not files:
            raise PolicyError(f"No .rego files in {rules_dir}")
        interpreter_class = _interpreter_class()
        self._interpreter_class = interpreter_class
        builder = interpreter_class()
        tables: dict[str, Any] = {}
        for table in sorted((rules_dir / "tables").glob("*.json")):
            try:
                tables[table.stem] = json.loads(table.read_text())
            except json.JSONDecodeError as exc:
                raise PolicyError(f"{table} is not valid JSON: {exc}") from exc
        builder.add_data({"tables": tables})
        entrypoints: list[str] = []
        self.packages: set[str] = set()
        self.filters: set[str] = set()
        for path in files:
            text = path.read_text()
            builder.add_module(path.name, text)
            match = _PACKAGE.search(text)
            if match is None:
                raise PolicyError(f"{path} has no package declaration")
            package = match.group(1)
            if package == "utils":
                continue
            self.packages.add(package)
            entrypoints.append(f"{package}/allow")
            if _FILTER.search(text):
                self.filters.add(package)
                entrypoints.append(f"{package}/filter")
        try:
            self._bundle = builder.build(None, entrypoints)
        except Exception as exc:  # regopy raises RegoError with the compiler's message
            raise PolicyError(f"Cannot compile the policies in {rules_dir}: {exc}") from exc
        self._local = threading.local()
        # Decisions are pure functions of the input and the policies do not change while the
        # process runs, so answers are memoised (bounded LRU): a repeated decision costs a
        # dictionary lookup instead of an evaluation.
        self._answers: OrderedDict[str, Any] = OrderedDict()
        self._answers_lock = threading.Lock()

    def _interpreter(self) -> Any:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            interpreter = self._interpreter_class()
            self._local.interpreter = interpreter
        return interpreter

    def _query(self, entrypoint: str, data: Mapping[str, Any]) -> Any:
        key = entrypoint + json.dumps(data, sort_keys=True, separators=(",", ":"))
        with self._answers_lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        interpreter = self._interpreter()
        interpreter.set_input(dict(data))
        output = interpreter.query_bundle_entrypoint(self._bundle, entrypoint)
        answer = output.results[0].expressions[0] if output.results else None
        with self._answers_lock:
            self._answers[key] = answer
            if len(self._answers) > _MAX_ANSWERS:
                self._answers.popitem(last=False)
        return answer

    def allow(self, package: str, data: Mapping[str, Any]) -> bool:
        if package not in self.packages:
            raise PolicyError(f"No policy package {package!r}")
        return self._query(f"{package}/allow", data) is True

    def filter(self, package: str, data: Mapping[str, Any]) -> Any:
        if package not in self.filters:
            raise PolicyError(f"Policy package {package!r} defines no filter")
        return self._query(f"{package}/filter", data)


@lru_cache(maxsize=4)
def load_engine(rules_dir: Path) -> PolicyEngine:
    return PolicyEngine(rules_dir)

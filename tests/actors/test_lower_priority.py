"""The sender actor's process yields the CPU: ``lower_priority`` renices every thread of the
process (Linux keeps a niceness per thread), never lowers a niceness, and 0 changes nothing.
Run in a child process, so the test process keeps its priority."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_CHILD = """
import os, threading
from cvat_ray.actors.runners import lower_priority

started, done = threading.Event(), threading.Event()
native = []

def park():
    native.append(threading.get_native_id())
    started.set()
    done.wait()

before = threading.Thread(target=park)
before.start()
started.wait()
lower_priority(int(os.environ["NICE"]))
after = threading.Thread(target=lambda: native.append(os.getpriority(os.PRIO_PROCESS, 0)))
after.start()
after.join()
print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, native[0]), native[1])
done.set()
"""


def _nice_of_threads(nice: int, start: int = 0) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", f"import os; os.nice({start})\n" + _CHILD],
        env={**os.environ, "NICE": str(nice)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_every_thread_gets_the_niceness_and_new_threads_inherit_it() -> None:
    assert _nice_of_threads(10) == [10, 10, 10]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_zero_or_a_lower_niceness_changes_nothing() -> None:
    assert _nice_of_threads(0) == [0, 0, 0]
    assert _nice_of_threads(5, start=12) == [12, 12, 12]

"""The collector scopes of bulk work: paused (a request's decode) and relaxed (an export or
import), nested and from several threads, always restored."""

from __future__ import annotations

import gc
import threading

from cvat_ray.storage.schemas.annotations import gc_paused, gc_relaxed


def test_relaxed_raises_the_threshold_while_held_and_restores_it() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with gc_relaxed():
            relaxed = gc.get_threshold()
            assert relaxed[0] > 700 and gc.isenabled()
            with gc_relaxed():  # nested: still relaxed
                assert gc.get_threshold() == relaxed
            assert gc.get_threshold() == relaxed
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_overlapping_holders_in_threads_restore_once_all_left() -> None:
    saved = gc.get_threshold()
    entered, leave = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with gc_relaxed():
            entered.wait()
            leave.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert gc.get_threshold() != saved
    leave.set()
    for t in threads:
        t.join()
    assert gc.get_threshold() == saved


def test_paused_inside_relaxed_resumes_collecting() -> None:
    assert gc.isenabled()
    with gc_relaxed():
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
    assert gc.isenabled()

"""The test helpers themselves: a helper that hides a failure makes every test that uses it pass wrongly."""
from __future__ import annotations

import threading

import pytest

from helpers import run_in_threads


def test_run_in_threads_reraises_what_a_thread_raised():
    ran: list[int] = []

    def work(k: int) -> None:
        ran.append(k)
        if k == 2:
            raise ValueError(f"thread {k} failed")

    with pytest.raises(ValueError, match="thread 2 failed"):
        run_in_threads(work, [(k,) for k in range(4)])
    assert sorted(ran) == [0, 1, 2, 3]  # the others still ran to the end


def test_run_in_threads_fails_when_a_thread_outlives_its_timeout():
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="1 of 2 threads still running"):
            run_in_threads(lambda wait: release.wait(10) if wait else None, [(True,), (False,)], timeout=0.05)
    finally:
        release.set()


def test_run_in_threads_passes_when_every_thread_does():
    done: list[int] = []
    run_in_threads(done.append, [(k,) for k in range(3)], timeout=10)
    assert sorted(done) == [0, 1, 2]

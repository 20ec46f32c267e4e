from __future__ import annotations

import asyncio
import os
import select
import threading
import time

import pytest

from dataplane.overlay.datapath import DatapathThread, Waker


class FakePump:
    """Counts rounds and records which thread ran them."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.rounds = 0
        self.threads: set[int] = set()
        self.fail_after = fail_after

    def run_once(self, timeout: float) -> int:
        self.rounds += 1
        self.threads.add(threading.get_ident())
        if self.fail_after is not None and self.rounds > self.fail_after:
            raise OSError(9, "Bad file descriptor")
        time.sleep(timeout)
        return 0


def test_calls_run_on_the_datapath_thread_between_rounds() -> None:
    pump = FakePump()
    datapath = DatapathThread(pump, poll_interval=0.005)
    datapath.start()
    try:
        where = datapath.submit(threading.get_ident).result(timeout=2)
        assert where != threading.get_ident()
        assert where in pump.threads
        assert pump.rounds >= 1
    finally:
        datapath.stop()
    assert not datapath.alive


def test_async_call_returns_the_result_and_raises_the_error() -> None:
    datapath = DatapathThread(FakePump(), poll_interval=0.005)
    datapath.start()

    def boom() -> int:
        raise ValueError("bad peer")

    async def scenario() -> int:
        with pytest.raises(ValueError, match="bad peer"):
            await datapath.call(boom)
        return await datapath.call(lambda: 41 + 1)

    try:
        assert asyncio.run(scenario()) == 42
    finally:
        datapath.stop()


def test_before_start_and_after_stop_calls_run_inline() -> None:
    datapath = DatapathThread(FakePump())
    assert datapath.submit(lambda: "inline").result(timeout=1) == "inline"
    datapath.start()
    datapath.stop()
    assert datapath.submit(lambda: "after").result(timeout=1) == "after"


def test_a_dying_pump_is_reported_and_answers_queued_calls() -> None:
    datapath = DatapathThread(FakePump(fail_after=2), poll_interval=0.001)
    datapath.start()
    deadline = time.monotonic() + 2
    while datapath.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not datapath.alive
    assert isinstance(datapath.error, OSError)
    assert datapath.submit(lambda: 7).result(timeout=1) == 7


def test_cpu_pins_the_datapath_thread_only() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    datapath = DatapathThread(FakePump(), poll_interval=0.005, cpu=cpu)
    assert datapath.affinity is None
    datapath.start()
    try:
        datapath.submit(lambda: None).result(timeout=2)  # the thread is past its start-up
        assert datapath.affinity == {cpu}
        assert sorted(os.sched_getaffinity(0)) == allowed  # the calling thread is not pinned
    finally:
        datapath.stop()
    assert datapath.affinity is None


def test_an_unusable_cpu_is_logged_and_the_thread_runs(caplog: pytest.LogCaptureFixture) -> None:
    datapath = DatapathThread(FakePump(), poll_interval=0.005, cpu=4095)
    datapath.start()
    try:
        assert datapath.submit(lambda: 5).result(timeout=2) == 5
    finally:
        datapath.stop()
    assert "cannot pin the data-path thread to CPU 4095" in caplog.text


class WakeablePump(FakePump):
    """Waits on the waker's eventfd for up to ``timeout``, as the real pump's epoll does."""

    def __init__(self, waker: Waker) -> None:
        super().__init__()
        self.waker = waker
        self.timeouts: list[float] = []

    def run_once(self, timeout: float) -> int:
        self.rounds += 1
        self.timeouts.append(timeout)
        ready, _, _ = select.select([self.waker.fd], [], [], timeout)
        if ready:
            os.eventfd_read(self.waker.fd)
        return 0


def test_with_a_waker_a_call_wakes_the_thread_and_an_idle_one_sleeps() -> None:
    waker = Waker()
    pump = WakeablePump(waker)
    datapath = DatapathThread(pump, waker=waker)
    datapath.start()
    try:
        started = time.monotonic()
        assert datapath.submit(lambda: 42).result(timeout=2) == 42
        assert time.monotonic() - started < 1.0  # woken, not polled
        assert max(pump.timeouts) >= 60  # no deadline: it would sleep until woken
    finally:
        datapath.stop()
        waker.close()
    assert not datapath.alive


def test_the_deadline_bounds_the_wait_and_runs_when_due() -> None:
    waker = Waker()
    pump = WakeablePump(waker)
    due = [time.monotonic() + 0.05]
    fired: list[float] = []

    def on_deadline(now: float) -> None:
        fired.append(now)
        due[0] = now + 3600.0

    datapath = DatapathThread(pump, waker=waker, deadline=lambda now: due[0], on_deadline=on_deadline)
    datapath.start()
    try:
        limit = time.monotonic() + 2
        while not fired and time.monotonic() < limit:
            time.sleep(0.01)
        assert len(fired) == 1
        assert pump.timeouts[0] <= 0.06  # waited for the deadline, not the idle bound
    finally:
        datapath.stop()
        waker.close()

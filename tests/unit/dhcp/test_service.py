"""The service sleeps until the core's next deadline: one loop timer, re-armed after each batch and tick."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dataplane.dhcp.service import MAX_SLEEP, Service


class FakeCore:
    def __init__(self) -> None:
        self.deadline: float | None = None
        self.ticks: list[float] = []

    def next_deadline(self, now: float) -> float | None:
        return None if self.deadline is None else max(self.deadline, now)

    def tick(self, now: float) -> list[Any]:
        self.ticks.append(now)
        self.deadline = None
        return []


class FakeStore:
    commits = 0

    def commit(self) -> None:
        self.commits += 1


def service() -> tuple[Service, FakeCore, FakeStore]:
    svc = Service(None)  # type: ignore[arg-type]  # the timer needs no configuration
    core, store = FakeCore(), FakeStore()
    svc.server, svc.store = core, store
    return svc, core, store


def test_no_deadline_arms_no_timer() -> None:
    async def scenario() -> None:
        svc, _, _ = service()
        svc._asyncio_loop = asyncio.get_running_loop()
        svc._schedule()
        assert svc._timer is None

    asyncio.run(scenario())


def test_the_tick_comes_at_the_deadline_and_is_committed() -> None:
    async def scenario() -> None:
        svc, core, store = service()
        svc._asyncio_loop = asyncio.get_running_loop()
        deadline = core.deadline = time.time() + 0.05
        svc._schedule()
        assert svc._timer is not None
        await asyncio.sleep(0.02)
        assert core.ticks == []
        await asyncio.sleep(0.15)
        assert len(core.ticks) == 1 and core.ticks[0] >= deadline - 0.01
        assert store.commits == 1
        assert svc._timer is None  # nothing left to run out

    asyncio.run(scenario())


def test_an_earlier_deadline_rearms_a_later_one_does_not() -> None:
    async def scenario() -> None:
        svc, core, _ = service()
        loop = asyncio.get_running_loop()
        svc._asyncio_loop = loop
        core.deadline = time.time() + 30
        svc._schedule()
        first = svc._timer
        assert first is not None
        core.deadline = time.time() + 40
        svc._schedule()
        assert svc._timer is first
        core.deadline = time.time() + 5
        svc._schedule()
        assert svc._timer is not first and first.cancelled()
        assert svc._timer is not None and svc._timer.when() - loop.time() < 6
        core.deadline = time.time() + 10 * MAX_SLEEP  # far away: woken at most MAX_SLEEP from now
        svc._unschedule()
        svc._asyncio_loop = loop
        svc._schedule()
        assert svc._timer is not None and svc._timer.when() - loop.time() <= MAX_SLEEP
        svc._unschedule()

    asyncio.run(scenario())

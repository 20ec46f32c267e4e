"""The data-path thread: runs the pump, and is the only thread that touches the VTEP.

Theory of operation. The pump moves frames between the TAP and the underlay socket in batches,
calling the VTEP for every frame; the control side (peer discovery, health and metrics)
runs on asyncio in the main thread. Rather than lock the VTEP on every batch, every control
operation is a closure queued to this thread and run between two pump rounds, so the VTEP is
never seen half-updated and the hot path takes no lock. A queued call's result comes back
through a future.

Sleeping. With a :class:`Waker` (an eventfd the pump also waits on, ``Pump(wake_fd=...)``), the
thread waits in the pump until a frame arrives, the control side queues a call or stops the thread
(both write the eventfd), or the handler's next deadline (``deadline(now)``, e.g.
``Vtep.next_deadline``) comes, when it runs ``on_deadline(now)`` (``Vtep.expire``): no fixed tick,
and an idle agent does not wake at all. Under traffic the deadline is read once every
``BUSY_ROUNDS`` rounds, so the per-round cost of the loop is what it was. Without a waker (a pump
that cannot be woken), each wait lasts at most ``poll_interval``, so a queued call waits at most
one round. The pump's busy-polling is the pump's own and unchanged by either.

``cpu`` pins this thread (only this one: the asyncio side stays wherever the kernel puts it) to
one CPU with ``sched_setaffinity`` when it starts; a refusal is logged and the thread runs unpinned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Pumping(Protocol):
    def run_once(self, timeout: float) -> int: ...


# The longest wait with a waker and no deadline: long enough never to matter, short enough for the
# pump's int milliseconds.
IDLE_WAIT = 3600.0
# Added to a deadline's wait, so the pump's millisecond rounding never wakes it a little early.
DEADLINE_SLACK = 0.001
# Under traffic the deadline is read every BUSY_ROUNDS pump rounds, not every round (the hot loop
# stays as it was), and a wait after a round that moved frames lasts at most RECHECK_WAIT, so the
# first quiet moment reads it again: a deadline is run at most about that late.
BUSY_ROUNDS = 64
RECHECK_WAIT = 1.0


class Waker:
    """An eventfd the data-path thread waits on (through its pump) and the control side writes."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def wake(self) -> None:
        # A full counter is a wake-up already due; a closed descriptor, a thread already gone.
        with contextlib.suppress(OSError):
            os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DatapathThread:
    def __init__(
        self,
        pump: Pumping,
        *,
        poll_interval: float = 0.02,
        name: str = "datapath",
        cpu: int | None = None,
        waker: Waker | None = None,
        deadline: Callable[[float], float | None] | None = None,
        on_deadline: Callable[[float], object] | None = None,
    ) -> None:
        self._pump = pump
        self._poll = poll_interval
        self._cpu = cpu
        self._waker = waker
        self._deadline = deadline
        self._on_deadline = on_deadline
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._waker is not None:
            self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._drain()  # anything queued after the last round still gets an answer

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``call`` on the data-path thread between two pump rounds."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if not self._thread.is_alive() or self._stop.is_set():
            # Not started yet, or stopped: nothing else touches the VTEP, so run it here.
            try:
                future.set_result(call())
            except Exception as exc:  # handed to the caller through the future
                future.set_exception(exc)
            return future
        self._calls.put((call, future))  # type: ignore[arg-type]
        if self._waker is not None:
            self._waker.wake()
        return future

    async def call(self, call: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(call))

    @property
    def affinity(self) -> set[int] | None:
        """The CPUs the running thread may use (None before it starts or after it ends)."""
        tid = self._thread.native_id
        if tid is None or not self._thread.is_alive():
            return None
        try:
            return os.sched_getaffinity(tid)
        except OSError:
            return None

    def _drain(self) -> None:
        if self._calls.empty():  # the common case, without raising queue.Empty every round
            return
        while True:
            try:
                call, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except Exception as exc:  # handed to the caller through the future
                future.set_exception(exc)

    def _pin(self) -> None:
        if self._cpu is None:
            return
        try:
            os.sched_setaffinity(0, {self._cpu})  # 0: the calling thread
        except OSError as exc:
            log.warning("cpu: cannot pin the data-path thread to CPU %d: %s", self._cpu, exc.strerror)

    def _run(self) -> None:
        self._pin()
        run_once, drain, stopped = self._pump.run_once, self._drain, self._stop.is_set
        deadline, on_deadline, clock = self._deadline, self._on_deadline, time.monotonic
        wait = IDLE_WAIT if self._waker is not None else self._poll
        timeout = short = wait
        busy = BUSY_ROUNDS  # read the deadline before the first wait
        try:
            while not stopped():
                if busy >= BUSY_ROUNDS and deadline is not None:
                    busy = 0
                    now = clock()
                    due = deadline(now)
                    if due is not None and now >= due and on_deadline is not None:
                        on_deadline(now)
                        due = deadline(now)
                    timeout = wait if due is None else min(wait, max(due - now, 0.0) + DEADLINE_SLACK)
                    short = min(timeout, RECHECK_WAIT)
                moved = run_once(short if busy else timeout)
                drain()
                busy = busy + 1 if moved else BUSY_ROUNDS
        except Exception as exc:
            # The pump counts and drops bad frames itself; reaching here is a bug or a dead fd.
            self.error = exc
            log.exception("data path stopped")  # the agent sees .error and exits non-zero
        finally:
            self._stop.set()
            self._drain()

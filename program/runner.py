"""The program runner and lifecycle every long-running program shares.

:func:`run_program` is what a subcommand does: load the configuration (a mistake exits 2 with its
message), set up logging at the configured level, run the program (an error it raises on purpose
exits 1 with its message). :func:`run_until_signalled` is the lifecycle of a program object:
``open()`` (where operator errors surface, before anything serves), ``run()`` until SIGTERM or
SIGINT, then ``close()`` whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .logs import setup_logging


class Program(Protocol):
    def open(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> int: ...

    def close(self) -> None: ...


class Component(Protocol):
    """A part of a program running as a task of its loop (:class:`program.http.EmbeddedServer`)."""

    name: str

    @property
    def task(self) -> asyncio.Task[None] | None: ...

    def failure(self) -> str | None: ...


async def until_stopped(stop: asyncio.Event, *components: Component) -> str | None:
    """Wait, without polling, until ``stop`` is set (None) or a started component ends on its own
    (why it did, for the log)."""
    stopper = asyncio.ensure_future(stop.wait())
    tasks = {component.task for component in components if component.task is not None}
    try:
        while True:
            done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                return None
            for component in components:
                if component.task in done:
                    return component.failure() or f"{component.name}: stopped"
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper


def run_until_signalled(
    program: Program, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> int:
    """``open()``, then ``run()`` until SIGTERM or SIGINT, then ``close()`` whatever happened.

    ``run()`` runs on a new loop from ``loop_factory`` (``uvloop.new_event_loop``), asyncio's own
    by default. Returns ``run()``'s exit status; an exception from ``open()`` propagates after
    ``close()``.
    """
    try:
        program.open()
    except BaseException:
        program.close()
        raise

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await program.run(stop)

    try:
        # asyncio.run(), with the loop's factory chosen (asyncio.run takes none before Python 3.12)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve())
    finally:
        program.close()


def run_program(
    name: str,
    load: Callable[[], Any],
    config_errors: tuple[type[Exception], ...],
    main: Callable[[Any], int],
    run_errors: tuple[type[Exception], ...],
    *,
    quiet: Sequence[str] = (),
) -> int:
    """Configuration (exit 2 on a mistake), logging to stderr at the configuration's ``log_level``
    (``quiet`` loggers at warnings at least), then ``main(config)`` (exit 1 with its message when
    it raises one of ``run_errors``). Messages start with ``name`` (``webspaces dhcp``)."""
    try:
        config = load()
    except config_errors as exc:
        print(f"{name}: bad configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, quiet=quiet)
    try:
        return main(config)
    except run_errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


__all__ = ["Component", "Program", "run_program", "run_until_signalled", "until_stopped"]

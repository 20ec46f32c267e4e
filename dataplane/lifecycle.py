"""Run a node program until SIGTERM/SIGINT: open (operator errors surface here), serve, close."""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol


class NodeProgram(Protocol):
    def open(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> int: ...

    def close(self) -> None: ...


def run_until_signalled(program: NodeProgram) -> int:
    """``open()``, then ``run()`` until SIGTERM or SIGINT, then ``close()`` whatever happened.

    Returns ``run()``'s exit status; an exception from ``open()`` propagates after ``close()``.
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
        return asyncio.run(serve())
    finally:
        program.close()

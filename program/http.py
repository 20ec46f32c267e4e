"""HTTP inside a program: health, metrics and management apps served from the program's own loop.

A program owns SIGTERM/SIGINT (:func:`program.runner.run_until_signalled`), so the embedded uvicorn
installs no signal handlers of its own and stops when the program says so. The listening socket is
bound before the server task starts, so an address in use is an :class:`HttpListenError` naming the
address at start-up, not a ``SystemExit`` from inside a task. Metrics are computed from a snapshot
at scrape time (no per-packet updates) and rendered in Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
STOP_TIMEOUT = 5.0  # seconds a stopping server may take to finish the requests in flight


class HttpListenError(OSError):
    """The embedded server cannot listen on its address; the message names it and says why."""


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the program owns SIGTERM/SIGINT and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(address: str, name: str) -> socket.socket:
    """A socket bound to ``HOST:PORT``; HttpListenError (``<name>: cannot listen on ...``) if it cannot be."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise HttpListenError(exc.errno, f"{name}: cannot listen on {address}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


class EmbeddedServer:
    """An ASGI app served on ``address`` by a task of the running loop (``start``), until ``stop``."""

    def __init__(self, app: Any, address: str, name: str) -> None:
        self.address = address
        self.name = name
        self._socket = listen(address, name)
        self.server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.server.serve(sockets=[self._socket]), name=self.name)
        return self.task

    def failure(self) -> str | None:
        """Why the server task ended before it was asked to (None while it runs or after ``stop``)."""
        if self.task is None or not self.task.done() or self.server.should_exit:
            return None
        if self.task.cancelled():
            return f"{self.name}: cancelled"
        exc = self.task.exception()
        if exc is not None:
            return f"{self.name} failed: {exc}"
        if not self.server.started:
            return f"{self.name}: cannot listen on {self.address}"
        return f"{self.name}: stopped"

    async def stop(self) -> None:
        """Ask the server to finish (requests in flight get up to STOP_TIMEOUT), then close the socket."""
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, STOP_TIMEOUT)
        self._socket.close()


# -- Prometheus text ---------------------------------------------------------------------------------


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def prometheus_text(families: Iterable[Metric]) -> bytes:
    """Metric families (computed from one snapshot) in Prometheus' text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def metrics_response(families: Iterable[Metric]) -> Response:
    """A ``GET /metrics`` answer of ``families``."""
    return Response(prometheus_text(families), media_type=PROMETHEUS_TEXT)


__all__ = [
    "PROMETHEUS_TEXT",
    "EmbeddedServer",
    "HttpListenError",
    "QuietServer",
    "listen",
    "metrics_response",
    "prometheus_text",
]

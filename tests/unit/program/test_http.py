"""The embedded HTTP server: serves on its address, a clear error when it cannot, Prometheus text."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from program.http import PROMETHEUS_TEXT, EmbeddedServer, HttpListenError, metrics_response, prometheus_text


def families() -> list[CounterMetricFamily | GaugeMetricFamily]:
    drops = CounterMetricFamily("test_drops", "Drops by reason", labels=["reason"])
    drops.add_metric(["short"], 2)
    return [drops, GaugeMetricFamily("test_level", "A level", value=5)]


def app() -> Starlette:
    async def metrics(request: Request) -> Response:
        return metrics_response(families())

    return Starlette(routes=[Route("/metrics", metrics)])


def test_prometheus_text() -> None:
    text = prometheus_text(families()).decode()
    assert 'test_drops_total{reason="short"} 2.0' in text
    assert "test_level 5.0" in text


def test_serves_until_stopped() -> None:
    async def scenario() -> None:
        server = EmbeddedServer(app(), "127.0.0.1:0", "metrics")
        port = server._socket.getsockname()[1]
        server.start()
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                if server.server.started:
                    break
                await asyncio.sleep(0.02)
            answer = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == PROMETHEUS_TEXT
        assert server.failure() is None
        await server.stop()
        assert server.task is not None and server.task.done() and server.failure() is None

    asyncio.run(scenario())


def test_an_address_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HttpListenError, match=f"health: cannot listen on 127.0.0.1:{port}: "):
            EmbeddedServer(app(), f"127.0.0.1:{port}", "health")

"""The overlay agent's HTTP surface: ``/health``, ``/config`` and ``/metrics``.

kubelan answered ``/health`` with 204 as soon as its device existed, saying nothing about peers, so
a pod could be "healthy" while flooding to nobody. Here ``/health`` is 2xx only when the device is
up **and** every configured peer source has delivered and applied a complete list (spec 2.6.3);
until then it is 503. Either way the JSON body says why: peers per source, last sync, FDB size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from program.http import metrics_response

GAUGES = ("fdb_size", "fdb_static", "peers")  # VTEP counters that are levels, exported as gauges


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    synced: bool
    peers: int
    last_sync: float | None  # Unix time of the last complete list applied
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the agent, taken at request time."""

    device: str
    device_up: bool
    sources: tuple[SourceStatus, ...]
    peers: tuple[str, ...]
    fdb_entries: int
    counters: Mapping[str, int] = field(default_factory=dict)  # vtep counters: rx_frames, drop_wrong_vni ...
    pump: Mapping[str, Any] = field(default_factory=dict)  # data-path stats, nested mappings allowed

    @property
    def healthy(self) -> bool:
        return self.device_up and all(source.synced for source in self.sources)

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "device": {"name": self.device, "up": self.device_up},
            "sources": [
                {
                    "name": s.name,
                    "synced": s.synced,
                    "peers": s.peers,
                    "lastSync": s.last_sync,
                    **({"error": s.error} if s.error else {}),
                }
                for s in self.sources
            ],
            "peers": list(self.peers),
            "learnedMacs": self.fdb_entries,
        }


def flatten(stats: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested mappings as ``outer.inner`` names (the pump nests drops by reason)."""
    flat: dict[str, float] = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class StatusCollector(Collector):
    """Prometheus metrics computed from a status snapshot at scrape time (no per-packet updates)."""

    def __init__(self, status: Callable[[], Status]) -> None:
        self._status = status

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        status = self._status()
        counters = dict(status.counters)
        frames = CounterMetricFamily(
            "webspaces_overlay_frames", "Frames through the VTEP", labels=["direction"]
        )
        octets = CounterMetricFamily(
            "webspaces_overlay_bytes", "Bytes through the VTEP", labels=["direction"]
        )
        for direction in ("rx", "tx"):
            frames.add_metric([direction], counters.pop(f"{direction}_frames", 0))
            octets.add_metric([direction], counters.pop(f"{direction}_bytes", 0))
        yield frames
        yield octets
        drops = CounterMetricFamily("webspaces_overlay_drops", "Frames dropped, by reason", labels=["reason"])
        for key, value in sorted(counters.items()):
            if key.startswith("drop_"):
                drops.add_metric([key.removeprefix("drop_")], value)
        yield drops
        other = CounterMetricFamily("webspaces_overlay_events", "Other VTEP counters", labels=["event"])
        for key, value in sorted(counters.items()):
            if not key.startswith("drop_") and key not in GAUGES:
                other.add_metric([key], value)
        yield other
        yield GaugeMetricFamily(
            "webspaces_overlay_fdb_entries", "Learned and static FDB entries", value=status.fdb_entries
        )
        yield GaugeMetricFamily(
            "webspaces_overlay_fdb_static", "Static FDB entries", value=status.counters.get("fdb_static", 0)
        )
        peers = GaugeMetricFamily("webspaces_overlay_peers", "Peers per discovery source", labels=["source"])
        for source in status.sources:
            peers.add_metric([source.name], source.peers)
        yield peers
        yield GaugeMetricFamily(
            "webspaces_overlay_peers_total", "Distinct peer VTEPs", value=len(status.peers)
        )
        pump = GaugeMetricFamily("webspaces_overlay_datapath", "Data-path statistics", labels=["stat"])
        for stat, reading in sorted(flatten(status.pump).items()):
            pump.add_metric([stat], reading)
        yield pump
        yield GaugeMetricFamily(
            "webspaces_overlay_healthy", "1 when /health is 2xx", value=int(status.healthy)
        )


def create_app(
    status: Callable[[], Awaitable[Status]], config_view: Callable[[], Mapping[str, Any]]
) -> Starlette:
    """``status`` takes a fresh snapshot (from the data-path thread) for every request."""

    async def health(request: Request) -> Response:
        snapshot = await status()
        return JSONResponse(snapshot.as_json(), status_code=200 if snapshot.healthy else 503)

    async def config(request: Request) -> Response:
        return JSONResponse(dict(config_view()))

    async def metrics(request: Request) -> Response:
        snapshot = await status()
        return metrics_response(StatusCollector(lambda: snapshot).collect())

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/config", config, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)

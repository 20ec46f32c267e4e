"""``webspaces dhcp``: the DHCP server core on a plain Linux interface, as a process.

Theory of operation. Start-up checks what an operator can get wrong, before anything runs: the
interface exists and holds ``--server-address`` (its prefix is the subnet when none was given), the
pools fit that subnet, the lease store opens (restoring every committed lease), and the DHCP sockets
bind (:class:`~.io.DhcpPort`: port 67 free on that interface, privileges). Then an asyncio loop
runs the :class:`~.io.GroupCommitLoop` whenever the packet socket is readable, calls
``server.tick`` when the core's next deadline (``server.next_deadline``: the earliest end of an
offer, a lease or a quarantine) comes (expired offers and leases reclaimed, quarantines ended;
committed like a batch) — one timer, re-armed after every batch and tick, none while nothing can run
out — and serves ``/metrics`` when asked. SIGTERM/SIGINT commit and close the store; SIGKILL
loses nothing that was ACKed, because no ACK leaves before its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane.io.errors import IoError
from program.runner import run_until_signalled, until_stopped

from . import DhcpServer, ServerConfig, events, open_store
from . import Reservation as CoreReservation
from .config import ConfigError, DhcpConfig, with_prefix
from .io import BATCH_BUCKETS, DhcpPort, GroupCommitLoop

log = logging.getLogger(__name__)

# The core's deadlines are wall-clock times, the loop's timers monotonic: the timer never sleeps
# longer than this, so a wall clock stepped forward delays an expiry by at most this much.
MAX_SLEEP = 60.0
MESSAGE_TYPES = {
    1: "discover",
    2: "offer",
    3: "request",
    4: "decline",
    5: "ack",
    6: "nak",
    7: "release",
    8: "inform",
}


class ServiceError(Exception):
    """Start-up failed for a reason the operator can fix; the message says which."""


def interface_addresses(interface: str) -> list[tuple[str, int]]:
    """IPv4 addresses (address, prefix length) of ``interface``; ServiceError when it is missing."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only when the server starts

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            raise ServiceError(f"interface: no interface {interface!r} in this network namespace")
        return [
            (str(message.get_attr("IFA_ADDRESS")), int(message["prefixlen"]))
            for message in ipr.get_addr(family=2, index=found[0])
        ]


def server_config(config: DhcpConfig) -> ServerConfig:
    """The core's view of a checked configuration."""
    assert config.server_address is not None and config.prefix is not None
    return ServerConfig(
        server_address=config.server_address,
        pools=list(config.pools),
        prefix_len=config.prefix,
        exclude=list(config.exclude),
        lease_time=config.lease_time,
        router=config.router,
        dns_servers=list(config.dns),
        domain=config.domain,
        mtu=config.mtu or None,
        reservations=[
            CoreReservation(bytes.fromhex(r.mac.replace(":", "")), r.address, r.hostname)
            for r in config.reserve
        ],
    )


def _pool_contains(config: DhcpConfig) -> Callable[[str], bool]:
    ranges = [(int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b))) for a, b in config.pools]
    excluded = set(config.exclude)

    def contains(address: str) -> bool:
        value = int(ipaddress.IPv4Address(address))
        return address not in excluded and any(low <= value <= high for low, high in ranges)

    return contains


@dataclass
class Snapshot:
    """What ``/metrics`` reports, taken at scrape time from the loop, the port and the core."""

    leases: dict[str, int]
    pool_size: int
    pool_free: int
    core: dict[str, int]
    port_drops: dict[str, int]
    received: int
    sent: int
    send_errors: int
    replies: dict[int, int]
    commits: int
    commit_failures: int
    commit_seconds: float
    withheld: int
    batch_buckets: dict[int, int]
    batch_sum: int
    batch_count: int


class Service:
    def __init__(self, config: DhcpConfig) -> None:
        self.config = config
        self.store: Any = None
        self.server: Any = None
        self.port: DhcpPort | None = None
        self.loop: GroupCommitLoop | None = None
        self._exhausted_logged = False
        self._asyncio_loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- start-up ----------------------------------------------------------------------------

    def open(self) -> None:
        config = self.config
        assert config.interface is not None and config.server_address is not None
        interface, server_address = config.interface, config.server_address
        addresses = interface_addresses(config.interface)
        prefixes = [prefix for address, prefix in addresses if address == config.server_address]
        if not prefixes:
            cidr = f"{config.server_address}/{config.prefix or 24}"
            raise ServiceError(
                f"server_address: {config.server_address} is not an address of {config.interface} "
                f"(add it first, e.g. ip addr add {cidr} dev {config.interface})"
            )
        if config.prefix is None:
            try:
                config = with_prefix(config, prefixes[0])
            except ConfigError as exc:
                raise ServiceError(
                    f"{exc} (subnet {config.server_address}/{prefixes[0]} of {config.interface})"
                ) from None
        elif config.prefix not in prefixes:
            log.warning(
                "server_address: %s/%d, but %s has it as /%d; serving /%d",
                config.server_address,
                config.prefix,
                config.interface,
                prefixes[0],
                config.prefix,
            )
        self.config = config
        path = Path(config.leases)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.store = open_store(str(path))
        except (OSError, ValueError) as exc:
            raise ServiceError(f"leases: cannot open the lease store {path}: {exc}") from None
        try:
            self.server = DhcpServer(server_config(config), self.store, time.time())
        except ValueError as exc:
            self.close()
            raise ServiceError(f"configuration refused by the server: {exc}") from None
        try:
            self.port = DhcpPort(interface, server_address)
        except IoError as exc:
            self.close()
            raise ServiceError(f"interface: {exc.message}") from None
        self.loop = GroupCommitLoop(self.port, self.server, self.store, on_commit_error=self._commit_error)
        self._in_pool = _pool_contains(config)
        restored = sum(1 for lease in self.server.leases() if lease.state == events.LeaseState.BOUND)
        log.info(
            "dhcp on %s (%s): %s/%d, pools %s (%d addresses), lease %s s, %d bound leases restored from %s",
            config.interface,
            self.port.mac.hex(":"),
            config.server_address,
            config.prefix,
            ",".join(f"{a}-{b}" for a, b in config.pools),
            config.pool_size(),
            config.lease_time,
            restored,
            config.leases,
        )

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None
        if self.store is not None:
            try:
                self.store.close()
            except OSError as exc:
                log.error("leases: closing the store failed: %s", exc)
            self.store = None

    def _commit_error(self, exc: OSError) -> None:
        log.error("leases: commit failed, ACKs withheld: %s", exc)

    # -- running -----------------------------------------------------------------------------

    def _readable(self) -> None:
        assert self.loop is not None
        try:
            self.loop.run_once()
        except Exception:  # a bug in the core must not stop the service; it is logged with its trace
            log.exception("dhcp: batch failed")
        self._log_events(self.server.drain_events())
        self._schedule()

    def _tick(self) -> None:
        self._timer = None
        now = time.time()
        self._log_events(self.server.tick(now))
        try:
            self.store.commit()
        except OSError as exc:
            self._commit_error(exc)
        self._schedule()

    def _schedule(self) -> None:
        """Arm the timer for the core's next deadline, unless one is armed as early already."""
        loop = self._asyncio_loop
        if loop is None:
            return
        now = time.time()
        deadline = self.server.next_deadline(now)
        timer = self._timer
        if deadline is None:  # nothing can run out until a packet comes (which schedules again)
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        when = loop.time() + min(deadline - now, MAX_SLEEP)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = loop.call_at(when, self._tick)

    def _unschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._asyncio_loop = None

    def _log_events(self, happened: Iterable[events.Event]) -> None:
        for event in happened:
            if isinstance(event, events.PoolExhausted):
                log.warning("pool exhausted: no free address among %d; DISCOVERs go unanswered", event.size)
            elif isinstance(event, events.PoolReplenished):
                log.info("pool: %d addresses free again", event.free)
            elif isinstance(event, events.AddressDeclined):
                log.warning("address %s declined (in use on the network); quarantined", event.address)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("%s", event)

    def snapshot(self) -> Snapshot:
        assert self.loop is not None and self.port is not None
        now = time.time()
        by_state: dict[str, int] = {state.name.lower(): 0 for state in events.LeaseState}
        held = 0
        for lease in self.server.leases():
            by_state[lease.state.name.lower()] += 1
            if lease.active(now) and self._in_pool(lease.address):
                held += 1
        size = self.config.pool_size()
        stats = self.loop.stats
        port = self.port.stats
        return Snapshot(
            leases=by_state,
            pool_size=size,
            pool_free=max(size - held, 0),
            core=dict(self.server.counters()),
            port_drops=dict(port.drops),
            received=port.received,
            sent=port.sent,
            send_errors=port.send_errors,
            replies=dict(stats.replies),
            commits=stats.commits,
            commit_failures=stats.commit_failures,
            commit_seconds=stats.commit_seconds,
            withheld=stats.withheld,
            batch_buckets=dict(stats.batch_sizes),
            batch_sum=stats.batch_sum,
            batch_count=stats.batch_count,
        )

    async def run(self, stop: asyncio.Event) -> int:
        assert self.port is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(self.port.fileno(), self._readable)
        self._asyncio_loop = loop
        self._schedule()
        server = None
        try:
            if self.config.metrics:
                # uvicorn only when /metrics is asked for
                from program.http import EmbeddedServer, HttpListenError  # noqa: PLC0415

                try:
                    server = EmbeddedServer(create_app(self.snapshot), self.config.metrics, "metrics")
                except HttpListenError as exc:
                    log.error("%s", exc)
                    return 1
                server.start()
            # The core's deadlines and the packets are callbacks of the loop: this only waits.
            failure = await until_stopped(stop, *([server] if server is not None else []))
            if failure is not None:
                log.error("%s", failure)
                return 1
            return 0
        finally:
            loop.remove_reader(self.port.fileno())
            self._unschedule()
            if server is not None:
                await server.stop()


# -- reading a store --------------------------------------------------------------------------

COPY_ATTEMPTS = 20


def _fingerprint(path: Path) -> list[tuple[str, int, int, int]]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path, *path.parent.glob(path.name + "-*")]
    result = []
    for item in files:
        with contextlib.suppress(FileNotFoundError):
            info = item.stat()
            result.append((str(item), info.st_ino, info.st_size, info.st_mtime_ns))
    return result


def read_leases(path: str) -> list[events.Lease]:
    """Every lease record of the store at ``path``, read-only, also while a server writes it.

    The store's files are copied into a temporary directory and the copy is opened, so neither a
    lock nor a write (recovery, compaction) touches the live store; a copy taken while the files
    changed under it (a compaction renamed a snapshot) is taken again. A torn journal tail in the
    copy is an uncommitted batch, which the store's loader drops, as after a crash.
    """
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    source = Path(path)
    if not source.exists():
        raise ServiceError(f"no lease store at {source} (give --leases PATH of a server's store)")
    with tempfile.TemporaryDirectory(prefix="wsdhcp-") as tmp:
        for _ in range(COPY_ATTEMPTS):
            copy = Path(tmp) / "copy" / source.name
            shutil.rmtree(copy.parent, ignore_errors=True)
            copy.parent.mkdir()
            before = _fingerprint(source)
            try:
                if source.is_dir():
                    shutil.copytree(source, copy)
                else:
                    for item in [source, *source.parent.glob(source.name + "-*")]:  # SQLite -wal, -shm
                        with contextlib.suppress(FileNotFoundError):
                            shutil.copy2(item, copy.parent / item.name)
            except FileNotFoundError:
                continue  # a file went away while copying (compaction): again
            except OSError as exc:
                raise ServiceError(f"cannot read the lease store {source}: {exc}") from None
            if _fingerprint(source) == before or _growing_only(before, _fingerprint(source)):
                break
        else:
            raise ServiceError(f"the lease store {source} kept changing while being read; try again")
        try:
            store = open_store(str(copy))
            try:
                leases = sorted(store.load(), key=lambda lease: ipaddress.IPv4Address(lease.address))
            finally:
                store.close()
        except (OSError, ValueError) as exc:
            raise ServiceError(f"{source} is not a readable lease store: {exc}") from None
    return leases


def _growing_only(before: list[tuple[str, int, int, int]], after: list[tuple[str, int, int, int]]) -> bool:
    """Only appends happened (same files, same inodes, sizes not smaller): the copy holds a prefix
    of each file, which is a consistent state of an append-only journal."""
    if [(name, inode) for name, inode, _, _ in before] != [(name, inode) for name, inode, _, _ in after]:
        return False
    return all(b[2] <= a[2] for b, a in zip(before, after, strict=True))


def _client_id(lease: events.Lease) -> str | None:
    kind, value = lease.client
    if kind == "client-id" and value:
        return value.hex(":")
    return None


def _expires(lease: events.Lease) -> str:
    if lease.expires == events.INFINITE:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lease.expires))


def lease_row(lease: events.Lease) -> dict[str, Any]:
    """One lease as ``webspaces dhcp leases`` prints it (and as its ``--json`` objects)."""
    return {
        "address": lease.address,
        "mac": lease.mac.hex(":") if lease.mac else None,
        "client_id": _client_id(lease),
        "hostname": lease.hostname,
        "state": lease.state.name.lower(),
        "expires": _expires(lease),
        "expires_epoch": None if lease.expires == events.INFINITE else lease.expires,
        "lease_time": lease.lease_time,
    }


# -- /metrics -----------------------------------------------------------------------------------


def collect(snapshot: Snapshot) -> list[Any]:
    """Prometheus metric families from one snapshot (computed at scrape time, not per packet)."""
    from prometheus_client.core import (  # noqa: PLC0415
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    families: list[Any] = []
    leases = GaugeMetricFamily("webspaces_dhcp_leases", "Lease records by state", labels=["state"])
    for state, count in sorted(snapshot.leases.items()):
        leases.add_metric([state], count)
    families.append(leases)
    families.append(
        GaugeMetricFamily("webspaces_dhcp_pool_size", "Addresses in the pools", value=snapshot.pool_size)
    )
    families.append(
        GaugeMetricFamily(
            "webspaces_dhcp_pool_free", "Pool addresses no lease holds", value=snapshot.pool_free
        )
    )
    packets = CounterMetricFamily(
        "webspaces_dhcp_packets", "DHCP messages by direction and type", labels=["direction", "type"]
    )
    core = dict(snapshot.core)
    received_types = {key: value for key, value in core.items() if _received_type(key) is not None}
    for key, value in sorted(received_types.items()):
        packets.add_metric(["rx", _received_type(key) or key], value)
    for code, count in sorted(snapshot.replies.items()):
        packets.add_metric(["tx", MESSAGE_TYPES.get(code, str(code))], count)
    families.append(packets)
    frames = CounterMetricFamily(
        "webspaces_dhcp_frames", "Frames on the interface socket", labels=["direction"]
    )
    frames.add_metric(["rx"], snapshot.received)
    frames.add_metric(["tx"], snapshot.sent)
    frames.add_metric(["tx_error"], snapshot.send_errors)
    families.append(frames)
    drops = CounterMetricFamily("webspaces_dhcp_drops", "Requests dropped, by reason", labels=["reason"])
    for key, value in sorted(core.items()):
        if key.startswith("drop_"):
            drops.add_metric([key.removeprefix("drop_")], value)
    for reason, value in sorted(snapshot.port_drops.items()):
        drops.add_metric([f"io_{reason}"], value)
    if snapshot.withheld:
        drops.add_metric(["commit_failed"], snapshot.withheld)
    families.append(drops)
    other = CounterMetricFamily(
        "webspaces_dhcp_server_events", "Other counters of the server core", labels=["event"]
    )
    for key, value in sorted(core.items()):
        if not key.startswith("drop_") and key not in received_types:
            other.add_metric([key], value)
    families.append(other)
    families.append(
        CounterMetricFamily(
            "webspaces_dhcp_commits", "Lease store commits (one per batch)", value=snapshot.commits
        )
    )
    families.append(
        CounterMetricFamily(
            "webspaces_dhcp_commit_failures", "Commits that failed", value=snapshot.commit_failures
        )
    )
    families.append(
        CounterMetricFamily(
            "webspaces_dhcp_commit_seconds",
            "Time spent in lease store commits",
            value=snapshot.commit_seconds,
        )
    )
    buckets = [(str(bound), float(count)) for bound, count in sorted(snapshot.batch_buckets.items())]
    buckets.append(("+Inf", float(snapshot.batch_count)))
    families.append(
        HistogramMetricFamily(
            "webspaces_dhcp_batch_size",
            "Requests handled per batch (per wake-up, per commit)",
            buckets=buckets,
            sum_value=float(snapshot.batch_sum),
        )
    )
    return families


def _received_type(key: str) -> str | None:
    """``rx_discover``, ``received_discover``, ``discover`` ... -> ``discover``; None otherwise."""
    name = key.lower()
    for prefix in ("rx_", "received_", "in_", "msg_"):
        if name.startswith(prefix):
            name = name.removeprefix(prefix)
            break
    return name if name in MESSAGE_TYPES.values() else None


def create_app(snapshot: Callable[[], Snapshot]) -> Any:
    """A Starlette app answering ``GET /metrics`` (and ``/health``: 204 while the loop runs)."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from program.http import metrics_response  # noqa: PLC0415

    async def metrics(request: Request) -> Response:
        return metrics_response(collect(snapshot()))

    async def health(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"]), Route("/health", health, methods=["GET"])]
    )


def main(config: DhcpConfig) -> int:
    """Run until SIGTERM/SIGINT; the exit status for the command line. ServiceError on start-up."""
    return run_until_signalled(Service(config))


__all__ = [
    "BATCH_BUCKETS",
    "MESSAGE_TYPES",
    "Service",
    "ServiceError",
    "Snapshot",
    "lease_row",
    "main",
    "read_leases",
]

"""The overlay node agent (``webspaces overlay``): TAP <-> VXLAN on every node of the LAN.

Theory of operation. Start-up opens (or adopts) the persistent TAP and sets its link, binds the
underlay sockets (the receive socket on the VXLAN port, and the pool of send sockets whose ports
carry the RFC 7348 §5 inner-flow hash, with the outer checksum ``--udp-checksum`` asks for), builds
the VTEP and starts the data-path thread; then the peer sources run on
asyncio and every complete list they publish is applied to the VTEP by difference, on the
data-path thread (see :mod:`.datapath`). ``/health`` turns 2xx once the device is up and every
source has been applied. Stopping (SIGTERM/SIGINT) stops the pump and closes our descriptors but
leaves the TAP, its addresses and its bridge membership in place: a restarted agent adopts it and
open TCP connections through it survive (kubelan deleted the device, detaching LXD nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from dataplane.io.errors import AddressNotAvailable, IoError, PermissionDenied, PortInUse
from dataplane.io.tap import Tap
from dataplane.io.udp import SendPool, open_send_pool, open_udp, set_no_check
from dataplane.wire import _select
from program.http import EmbeddedServer, HttpListenError
from program.runner import run_until_signalled

from . import discovery
from .config import OverlayConfig
from .datapath import DatapathThread, Waker
from .http import SourceStatus, Status, create_app

log = logging.getLogger(__name__)

CAP_NET_ADMIN = 12


class AgentError(Exception):
    """Start-up failed for a reason the operator can fix; the message says which."""


def has_net_admin() -> bool:
    """CAP_NET_ADMIN in the effective set (root normally has it; a container may not)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def underlay_mtu(local: str) -> int | None:
    """MTU of the interface holding ``local``; None if no interface holds it."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only when the agent starts

    with IPRoute() as ipr:
        for message in ipr.get_addr(family=2):
            if message.get_attr("IFA_ADDRESS") == local or message.get_attr("IFA_LOCAL") == local:
                links = ipr.get_links(message["index"])
                if links:
                    mtu = links[0].get_attr("IFLA_MTU")
                    return int(mtu) if mtu else None
    return None


def link_is_up(name: str) -> bool:
    from pyroute2 import IPRoute  # noqa: PLC0415

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        flags = int(ipr.get_links(found[0])[0]["flags"])
        return bool(flags & 1)  # IFF_UP


@dataclass
class Agent:
    config: OverlayConfig
    compiled: bool | None = None  # None: whatever the twin selector picks for the pump
    sources: list[discovery.PeerSource] = field(default_factory=list)
    _tap: Tap | None = None
    _datapath: DatapathThread | None = None
    _vtep: Any = None
    _pump: Any = None
    _peerset: Any = None
    _pool: SendPool | None = None
    _waker: Waker | None = None

    # -- start-up ----------------------------------------------------------------------------

    def open(self) -> None:
        """Everything that can fail with an operator's error, before anything runs."""
        config = self.config
        if not has_net_admin():
            raise AgentError(
                "permission denied: the overlay agent needs root or CAP_NET_ADMIN (TAP, netlink)"
            )
        assert config.local is not None
        measured = underlay_mtu(config.local)
        if measured is None:
            raise AgentError(
                f"local: {config.local} is not an address of any interface in this network namespace"
            )
        mtu = config.underlay_mtu_default(measured)
        if config.cpu is not None and config.cpu not in os.sched_getaffinity(0):
            allowed = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
            raise AgentError(f"cpu: CPU {config.cpu} is not one this process may run on ({allowed})")
        pump_module, vtep_module = self._modules()
        try:
            udp = open_udp(config.local, config.port)
        except PortInUse as exc:
            raise AgentError(f"port: {exc.message}") from None
        except AddressNotAvailable as exc:
            raise AgentError(f"local: {exc.message}") from None
        zero = config.udp_checksum == "zero"
        try:
            pool = (
                open_send_pool(config.local, config.source_ports, checksum_zero=zero)
                if config.source_ports
                else SendPool([], config.local, [], False, False, 0)
            )
        except IoError as exc:
            udp.close()
            raise AgentError(f"source_ports: {exc.message}") from None
        if pool.skipped:
            log.warning(
                "source_ports: %d of %d send ports left out (ports in use)%s",
                pool.skipped,
                config.source_ports,
                "; sending from the VXLAN port" if not pool.socks else "",
            )
        if zero and not pool.socks and not set_no_check(udp.sock):
            log.warning("udp_checksum: the kernel refused SO_NO_CHECK; the outer checksum stays on")
        try:
            tap = Tap.open(config.interface, persist=True)
        except IoError as exc:
            pool.close()
            udp.close()
            raise AgentError(f"interface: {exc.message}") from None
        try:
            tap.configure(
                mtu=mtu,
                mac=config.mac,
                up=True,
                addresses=[config.address] if config.address else None,
                bridge=config.bridge,
            )
        except IoError as exc:
            if tap.adopted:
                tap.close()  # someone's persistent device: leave it as it was
            else:
                tap.destroy()  # made by this failed start: do not leave a half-configured device
            pool.close()
            udp.close()
            key = "bridge" if config.bridge and config.bridge in exc.message else "interface"
            raise AgentError(f"{key}: {exc.message}") from None
        self._tap = tap
        self._udp = udp
        self._pool = pool
        self._mtu = mtu
        self._vtep = vtep_module.Vtep(
            config.vni,
            config.local,
            port=config.port,
            mtu=mtu,
            ageing=config.ageing,
            peers_only=config.peers_only,
        )
        self._waker = Waker()
        self._pump = pump_module.Pump(
            tap.fd,
            udp.sock,
            self._vtep,
            vnet_hdr_size=tap.vnet_hdr_size,
            gso=False if zero else (pool.gso if pool.socks else udp.gso),
            send_socks=pool.socks,
            busy_poll=config.busy_poll,
            wake_fd=self._waker.fd,
        )
        # The data-path thread sleeps until a frame, a control call or the VTEP's next FDB expiry.
        self._datapath = DatapathThread(
            self._pump,
            cpu=config.cpu,
            waker=self._waker,
            deadline=self._vtep.next_deadline,
            on_deadline=self._vtep.expire,
        )
        if not self.sources:
            try:
                self.sources = discovery.sources_from_config(config)
            except discovery.DiscoveryError as exc:
                self.close()
                raise AgentError(f"peers: {exc}") from None
        log.info(
            "overlay %s up (%s): vni %d, udp %s:%d, mtu %d, offloads %s, udp gso=%s gro=%s, "
            "source ports %s, outer checksum %s, busy poll %s, data-path CPU %s, %s data path",
            tap.name,
            "adopted the existing persistent TAP" if tap.adopted else "created a persistent TAP",
            config.vni,
            config.local,
            udp.port,
            mtu,
            ",".join(tap.offload_names) or "none",
            bool(self._pump.gso),
            udp.gro,
            f"{len(pool)} in {min(pool.ports)}-{max(pool.ports)}" if pool.socks else f"{udp.port} only",
            "zero" if self._pump.checksum_zero else "on",
            f"{config.busy_poll} us" if config.busy_poll else "off",
            "any" if config.cpu is None else config.cpu,
            "compiled" if _select.is_compiled(pump_module) else "pure-Python",
        )

    def _modules(self) -> tuple[Any, Any]:
        """The pump and VTEP twins: both compiled or both pure (the compiled pump takes only a
        compiled handler, a ``dataplane.pump._handler.FrameHandler``)."""
        compiled = (
            _select.is_compiled(_select.load("tunnel", "dataplane.pump"))
            if self.compiled is None
            else self.compiled
        )
        select = _select.compiled if compiled else _select.pure
        pump_module, vtep_module = select("tunnel", "dataplane.pump"), select("vtep", "dataplane.overlay")
        if pump_module is None or vtep_module is None:
            raise AgentError(
                "the compiled data path (dataplane.pump._tunnel, dataplane.overlay._vtep) is not built"
            )
        return pump_module, vtep_module

    def close(self) -> None:
        if self._datapath is not None:
            self._datapath.stop()
        if self._waker is not None:
            self._waker.close()
        if self._tap is not None:
            self._tap.close()  # persistent: the device, its addresses and bridge port stay
        if getattr(self, "_udp", None) is not None:
            self._udp.close()
        if self._pool is not None:
            self._pool.close()

    # -- status ------------------------------------------------------------------------------

    async def status(self) -> Status:
        assert self._datapath is not None and self._tap is not None
        # Sources first: a source counts as synced only once its list is in the VTEP, so the VTEP
        # read after it holds every list reported synced (the other order could answer 200 while
        # listing no peers, when a list lands between the two reads).
        sources = tuple(self._peerset_status())

        def snapshot() -> tuple[tuple[str, ...], int, dict[str, int], dict[str, float]]:
            return (
                tuple(self._vtep.peers),
                int(self._vtep.counters()["fdb_size"]),
                dict(self._vtep.counters()),
                dict(self._pump.stats()),
            )

        peers, fdb, counters, pump = await self._datapath.call(snapshot)
        up = await asyncio.to_thread(link_is_up, self._tap.name)
        return Status(
            device=self._tap.name,
            device_up=up and self._datapath.alive,
            sources=sources,
            peers=peers,
            fdb_entries=fdb,
            counters=counters,
            pump=pump,
        )

    def _peerset_status(self) -> list[SourceStatus]:
        if self._peerset is None:
            return []
        return [
            SourceStatus(s.name, s.synced, s.peers, s.last_sync, s.error)
            for s in self._peerset.health().sources
        ]

    # -- running -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        assert self._datapath is not None and self._tap is not None
        config = self.config
        self._datapath.start()
        await discovery.run_hook(config.hook_up, {"IFACE": self._tap.name}, what="up hook")
        datapath = self._datapath
        self._peerset = discovery.PeerSet(
            self.sources,
            apply=lambda source, peers: datapath.call(lambda: self._vtep.set_peers(source, peers)),
            on_change=self._on_change,
            hook=config.hook_change,
            interface=self._tap.name,
        )
        tasks = [asyncio.create_task(self._peerset.run(), name="discovery")]
        server: EmbeddedServer | None = None
        cannot_listen: HttpListenError | None = None
        if config.health:
            try:
                server = EmbeddedServer(create_app(self.status, config.kubelan_view), config.health, "health")
                tasks.append(server.start())
            except HttpListenError as exc:
                cannot_listen = exc
        stopper = asyncio.create_task(stop.wait())
        try:
            if cannot_listen is not None:
                log.error("%s", cannot_listen)
                return 1
            while True:
                done, _ = await asyncio.wait(
                    {stopper, *tasks}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done:
                    return 0
                if self._datapath.error is not None:
                    log.error("data path failed: %s", self._datapath.error)
                    return 1
                for task in done:
                    if task.exception() is not None:
                        log.error("%s failed: %s", task.get_name(), task.exception())
                        return 1
                    if server is not None and task is server.task and server.failure() is not None:
                        log.error("%s", server.failure())
                        return 1
        finally:
            if server is not None:
                await server.stop()
            for task in (*tasks, stopper):
                task.cancel()
            for task in (*tasks, stopper):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _on_change(self, source: str, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        log.info("peers from %s: +%s -%s", source, ",".join(added) or "none", ",".join(removed) or "none")


def main(config: OverlayConfig, *, compiled: bool | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; the exit status for the command line."""
    return run_until_signalled(Agent(config, compiled=compiled))


__all__ = ["Agent", "AgentError", "PermissionDenied", "main"]

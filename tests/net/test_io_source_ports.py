"""RFC 7348 §5 on the send side, with real sockets: the source-port pool and the pump using it.

Everything runs inside a network namespace the module creates (192.0.2.1 on its loopback device;
a VTEP refuses 127/8 peers), so every port is free and no packet can leave it: the "peer" is a UDP
socket there that the pump sends to, and what arrives (source port, datagram boundaries) is what a
remote VTEP would see.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from dataplane.io.udp import DYNAMIC_PORTS, SO_NO_CHECK, SendPool, open_send_pool, pool_ports
from dataplane.pump import tunnel as pure_pump
from dataplane.wire import _select
from dataplane.wire.vxlan import source_port_for
from tests.conftest import require
from tests.unit.pump.conftest import partial, pump_modules, tcp4, udp4, vnet

pytestmark = pytest.mark.net

NEEDS_CSUM, TCPV4 = 1, 1
LOW, HIGH = DYNAMIC_PORTS
ADDRESS = "192.0.2.1"


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return pure_pump
    modules = pump_modules()
    require(len(modules) == 2, "dataplane.pump._tunnel is not built")
    return modules[1]


@pytest.fixture(scope="module", autouse=True)
def private_namespace() -> Iterator[str]:
    """Enter a fresh network namespace for the whole module; leave and delete it afterwards."""
    require(os.geteuid() == 0, "needs root (a network namespace of its own)")
    from pyroute2 import IPRoute, netns  # noqa: PLC0415

    name = f"wsp{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        netns.pushns(name)
        try:
            with IPRoute() as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
                ipr.addr("add", index=lo, address=ADDRESS, prefixlen=32)
            yield name
        finally:
            netns.popns()
    finally:
        netns.remove(name)


# -- the pool ------------------------------------------------------------------------------------


def test_send_pool_binds_in_range_with_minimal_receive_buffer() -> None:
    with open_send_pool(ADDRESS, 8, checksum_zero=False) as pool:
        assert 1 <= len(pool) <= 8 and len(pool) + pool.skipped == 8
        assert pool.ports == sorted(pool.ports)
        stripes = [p - (p - LOW) % 2048 for p in pool.ports]
        assert len(set(stripes)) == len(pool)  # one socket per stripe
        for sock, port in zip(pool.socks, pool.ports, strict=True):
            assert LOW <= port <= HIGH
            assert sock.getsockname() == (ADDRESS, port)
            assert sock.getblocking() is False
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4608
            assert sock.getsockopt(socket.SOL_SOCKET, SO_NO_CHECK) == 0
        assert pool.checksum_zero is False


def test_checksum_zero_pool_has_no_check_and_no_gso() -> None:
    with open_send_pool(ADDRESS, 2, checksum_zero=True) as pool:
        assert pool.checksum_zero is True and pool.gso is False
        assert all(s.getsockopt(socket.SOL_SOCKET, SO_NO_CHECK) == 1 for s in pool.socks)


def test_a_port_in_use_is_skipped_within_its_stripe() -> None:
    first = pool_ports(4)[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((ADDRESS, first))  # free: nothing else runs in this namespace
        with open_send_pool(ADDRESS, 4, checksum_zero=False) as pool:
            assert first not in pool.ports
            assert any(first < p < first + 64 for p in pool.ports)


# -- the pump sends each flow from its pool port -------------------------------------------------


def make_vtep(module: ModuleType, peer: str) -> Any:
    if module is pure_pump:
        vtep = _select.pure("vtep", "dataplane.overlay").Vtep(4242, "198.51.100.254")
    else:
        compiled = _select.compiled("vtep", "dataplane.overlay")
        require(compiled is not None, "dataplane.overlay._vtep is not built")
        assert compiled is not None
        vtep = compiled.Vtep(4242, "198.51.100.254")
    vtep.set_peers("static", [peer])
    return vtep


Rig = tuple[Any, socket.socket, socket.socket, SendPool]


def rig_for(module: ModuleType, *, checksum_zero: bool) -> Iterator[Rig]:
    host = ADDRESS
    tap_side, pump_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pump_side.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, 0))
    udp.setblocking(False)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((host, 0))
    sink.settimeout(2.0)
    pool = open_send_pool(host, 8, checksum_zero=checksum_zero)
    assert len(pool) == 8  # nothing else binds ports in this namespace
    gso = False if checksum_zero else None
    pump = module.Pump(
        pump_side.fileno(),
        udp,
        make_vtep(module, host),
        batch=8,
        port=sink.getsockname()[1],
        gso=gso,
        send_socks=pool.socks,
    )
    try:
        yield pump, tap_side, sink, pool
    finally:
        pump.close()
        pool.close()
        for sock in (tap_side, pump_side, udp, sink):
            sock.close()


@pytest.fixture(params=[False, True], ids=["checksum-on", "checksum-zero"])
def rig(impl: ModuleType, request: pytest.FixtureRequest) -> Iterator[Rig]:
    yield from rig_for(impl, checksum_zero=request.param)


def received(sink: socket.socket, count: int) -> list[tuple[bytes, int]]:
    out = []
    for _ in range(count):
        data, (_host, port) = sink.recvfrom(65536)
        out.append((data, port))
    sink.setblocking(False)
    with pytest.raises(BlockingIOError):
        sink.recvfrom(65536)
    sink.settimeout(2.0)
    return out


def drain(pump: Any) -> None:
    for _ in range(20):
        if not pump.run_once(0.01) and not pump.run_once(0.0):
            break


def test_each_flow_leaves_from_its_pool_port(rig: Rig) -> None:
    pump, tap, sink, pool = rig
    frames = [bytes(udp4(os.urandom(40), sport=2000 + i)) for i in range(24)]
    for frame in frames:
        tap.send(vnet() + frame)
    drain(pump)
    got = received(sink, len(frames))
    # One sendmmsg per socket: flows on different sockets may arrive in another order.
    by_frame = {data[8:]: port for data, port in got}
    assert sorted(by_frame) == sorted(frames)
    for frame, port in by_frame.items():
        assert port == pool.ports[pure_pump.source_slot(source_port_for(frame), len(pool))]
        assert LOW <= port <= HIGH
    assert len({port for _, port in got}) >= 2
    stats = pump.stats()
    assert stats["send_sockets"] == len(pool)
    assert stats["checksum_zero"] is pool.checksum_zero
    assert stats["udp_tx_datagrams"] == len(frames) and not stats["drops"]


def test_a_tso_super_frame_leaves_from_one_port(rig: Rig) -> None:
    pump, tap, sink, pool = rig
    payload = os.urandom(20000)
    frame, start, offset = partial(tcp4(payload))
    tap.send(vnet(NEEDS_CSUM, TCPV4, 66, 1398, start, offset) + frame)
    drain(pump)
    count = -(-len(payload) // 1398)
    got = received(sink, count)
    ports = {port for _, port in got}
    assert ports == {pool.ports[pure_pump.source_slot(source_port_for(frame), len(pool))]}
    assert b"".join(data[8 + 66 :] for data, _ in got) == payload
    stats = pump.stats()
    assert stats["udp_tx_datagrams"] == count and not stats["drops"]
    if pool.checksum_zero:
        assert stats["gso"] is False  # the kernel refuses UDP GSO with SO_NO_CHECK


def test_twins_send_the_same_datagrams_from_the_same_ports() -> None:
    modules = pump_modules()
    require(len(modules) == 2, "dataplane.pump._tunnel is not built")
    payload = os.urandom(6000)
    big, start, offset = partial(tcp4(payload))
    inputs = [vnet() + bytes(udp4(os.urandom(30), sport=3000 + i)) for i in range(10)]
    inputs.append(vnet(NEEDS_CSUM, TCPV4, 66, 1398, start, offset) + big)
    seen = []
    for module in modules:
        for pump, tap, sink, pool in rig_for(module, checksum_zero=False):
            for data in inputs:
                tap.send(data)
            drain(pump)
            got = received(sink, 10 + 5)
            seen.append(sorted((pool.ports.index(port), data) for data, port in got))
    assert seen[0] == seen[1]

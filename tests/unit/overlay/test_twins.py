"""The two VTEP twins are one VTEP: the same random operations give the same results, counters,
forwarding database and events; and the package serves the implementation the build promises.
"""

from __future__ import annotations

import importlib.machinery
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataplane.overlay
from dataplane.overlay import vtep as pure_vtep
from dataplane.wire import (
    BROADCAST,
    ETHERTYPE_ARP,
    ETHERTYPE_VLAN,
    EthernetHeader,
    Frame,
    IPv4Header,
    UdpHeader,
    _select,
    arp_request,
    encode_frame,
    icmp_echo_request,
)
from tests.conftest import IN_CI, require
from tests.unit.overlay.conftest import STRANGER, VNI, A, B, C, compiled_twin, vxlan

ADDRESSES = (A, B, C, "192.0.2.4", STRANGER)
MACS = (
    *(bytes((0x02, 0, 0, 0, 0, n)) for n in range(1, 6)),
    BROADCAST,
    bytes.fromhex("01005e000001"),
    bytes(6),
)


def _ip(mac: bytes) -> bytes:
    return bytes((172, 24, 0, mac[5]))


@st.composite
def inner_frames(draw: st.DrawFn) -> bytes:
    src = draw(st.sampled_from(MACS[:3] * 4 + MACS))
    dst = draw(st.sampled_from(MACS))
    kind = draw(st.sampled_from(("arp", "arp", "udp", "udp", "ping", "vlan", "raw")))
    size = draw(st.sampled_from((0, 10, 60, 86, 1422, 1500)))
    if kind == "raw":
        return draw(st.binary(max_size=40))
    ethernet = EthernetHeader(dst, src)
    if kind == "arp":
        ethernet.ethertype = ETHERTYPE_ARP
        return encode_frame(Frame(ethernet, arp=arp_request(src, _ip(src), _ip(dst)), padding=bytes(18)))
    if kind == "vlan":
        ethernet.ethertype = ETHERTYPE_VLAN
        return encode_frame(Frame(ethernet, payload=b"\x00\x0a\x08\x00" + bytes(size)))
    ip = IPv4Header(src=_ip(src), dst=_ip(dst), dont_fragment=draw(st.booleans()))
    if kind == "ping":
        return encode_frame(Frame(ethernet, ipv4=ip, icmp=icmp_echo_request(7, 1, bytes(size))))
    return encode_frame(Frame(ethernet, ipv4=ip, udp=UdpHeader(1000, 2000, checksum=1), payload=bytes(size)))


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    # mostly good payloads, so that learning, moves and ageing get exercised too
    payload = vxlan(
        draw(inner_frames()),
        vni=draw(st.sampled_from((VNI, VNI, VNI, VNI + 1))),
        flags=draw(st.sampled_from((0x08, 0x08, 0x08, 0x00, 0x0C))),
    )
    if draw(st.integers(0, 5)) == 0:
        payload = payload[: draw(st.integers(0, 30))]
    return payload


operations = st.one_of(
    st.tuples(st.just("receive"), payloads(), st.sampled_from(ADDRESSES[1:3] * 3 + ADDRESSES)),
    st.tuples(st.just("receive"), payloads(), st.sampled_from(ADDRESSES[1:3])),
    st.tuples(st.just("send"), inner_frames()),
    st.tuples(
        st.just("set_peers"),
        st.sampled_from(("dns", "kubernetes")),
        st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=4),
    ),
    st.tuples(st.just("remove_source"), st.sampled_from(("dns", "kubernetes"))),
    st.tuples(st.just("advance"), st.sampled_from((0.0, 0.01, 1.0, 60.0, 150.0, 301.0))),
    st.tuples(st.just("expire")),
    st.tuples(st.just("add_static"), st.sampled_from(MACS), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("remove_static"), st.sampled_from(MACS)),
    st.tuples(st.just("lookup"), st.sampled_from(MACS)),
    st.tuples(st.just("drain")),
)

configurations = st.fixed_dictionaries(
    {
        "mtu": st.sampled_from((100, 1450)),
        "ageing": st.sampled_from((0.0, 100.0, 300.0)),
        "learning": st.booleans(),
        "peers_only": st.booleans(),
        "fdb_capacity": st.sampled_from((2, 4, 64)),
        "event_capacity": st.sampled_from((3, 1000)),
    }
)


def apply(vtep: Any, operation: tuple[Any, ...], now: float) -> object:
    name, *arguments = operation
    try:
        if name == "receive":
            return vtep.receive(arguments[0], arguments[1], now)
        if name == "send":
            return vtep.send(arguments[0], now)
        if name == "set_peers":
            return vtep.set_peers(arguments[0], arguments[1])
        if name == "remove_source":
            return vtep.remove_source(arguments[0])
        if name == "expire":
            return vtep.expire(now)
        if name == "add_static":
            return vtep.add_static(arguments[0], arguments[1])
        if name == "remove_static":
            return vtep.remove_static(arguments[0])
        if name == "lookup":
            return vtep.lookup(arguments[0], now)
        if name == "drain":
            return vtep.drain_events()
    except ValueError as exc:
        return ("ValueError", str(exc))
    raise AssertionError(name)


def state(vtep: Any) -> tuple[object, ...]:
    return (vtep.counters(), vtep.fdb_entries(), vtep.peers, vtep.last_drop, vtep.peers_by_source())


@settings(max_examples=75, deadline=None)
@given(configuration=configurations, script=st.lists(operations, max_size=40))
def test_twins_agree_on_any_sequence(configuration: dict[str, Any], script: list[tuple[Any, ...]]) -> None:
    compiled = compiled_twin()
    ours = pure_vtep.Vtep(VNI, A, **configuration)
    theirs = compiled.Vtep(VNI, A, **configuration)
    now = 1000.0
    for operation in script:
        if operation[0] == "advance":
            now += operation[1]
            continue
        assert apply(ours, operation, now) == apply(theirs, operation, now), operation
        assert state(ours) == state(theirs), operation
    assert ours.drain_events() == theirs.drain_events()


@pytest.mark.parametrize("seed", range(4))
def test_twins_agree_on_a_busy_table(seed: int) -> None:
    """Thousands of MACs through a small table: hash collisions, deletions and evictions."""
    compiled = compiled_twin()
    rng = random.Random(seed)
    options: dict[str, Any] = {"fdb_capacity": rng.choice((16, 100)), "ageing": 50.0, "event_capacity": 64}
    twins = (pure_vtep.Vtep(VNI, A, **options), compiled.Vtep(VNI, A, **options))
    now = 0.0
    for twin in twins:
        twin.set_peers("dns", [B, C])
    for step in range(4000):
        mac = bytes((0x02, 0, 0, 0)) + rng.randrange(1, 400).to_bytes(2, "big")
        roll = rng.random()
        now += rng.choice((0.0, 0.1, 1.0))
        if roll < 0.6:
            frame = vxlan(
                encode_frame(Frame(EthernetHeader(BROADCAST, mac, ETHERTYPE_ARP), payload=bytes(46)))
            )
            source = rng.choice((B, C))
            results = [twin.receive(frame, source, now) for twin in twins]
        elif roll < 0.8:
            frame = encode_frame(Frame(EthernetHeader(mac, MACS[0], ETHERTYPE_ARP), payload=bytes(46)))
            results = [twin.send(frame, now) for twin in twins]
        elif roll < 0.84:
            peer = rng.choice((B, C))
            results = [apply(twin, ("add_static", mac, peer), now) for twin in twins]
        elif roll < 0.88:
            results = [twin.remove_static(mac) for twin in twins]
        elif roll < 0.95:
            results = [twin.expire(now) for twin in twins]
        else:
            peers = rng.sample((B, C, "192.0.2.4"), rng.randrange(0, 3))
            results = [twin.set_peers("dns", peers) for twin in twins]
        assert results[0] == results[1], step
        if step % 50 == 0:
            assert twins[0].fdb_entries() == twins[1].fdb_entries(), step
            assert twins[0].drain_events() == twins[1].drain_events(), step
    assert state(twins[0]) == state(twins[1])


# -- the implementation in use is the one the build promises ----------------------------------------


def test_package_serves_the_selected_twin() -> None:
    package_dir = Path(dataplane.overlay.__file__).parent
    built = any(
        (package_dir / f"_vtep{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )
    if _select.EXTENSIONS_DISABLED:
        assert dataplane.overlay.Vtep is pure_vtep.Vtep
        assert dataplane.overlay.implementation() == "python"
        return
    if IN_CI:
        assert built, "dataplane.overlay._vtep was not built"
    else:
        require(built, "dataplane.overlay._vtep is not built (pure-Python install)")
    assert dataplane.overlay.Vtep is compiled_twin().Vtep, "_vtep was built but the pure twin was loaded"
    assert dataplane.overlay.implementation() == "cython"


def test_twins_share_one_public_api() -> None:
    compiled = compiled_twin()
    assert sorted(pure_vtep.__all__) == sorted(compiled.__all__)
    public = {name for name in dir(pure_vtep.Vtep) if not name.startswith("_")}
    assert public <= set(dir(compiled.Vtep))

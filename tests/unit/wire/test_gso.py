"""Software TSO/USO, checksum completion and delivery headers (dataplane.wire.gso), with scapy as the
oracle and the twins compared."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from dataplane.wire import MalformedPacket, _select
from dataplane.wire import gso as pure_gso
from tests.conftest import require
from tests.unit.pump.conftest import partial, tcp4, tcp6, udp4, vnet

NEEDS_CSUM, DATA_VALID = 1, 2
TCPV4, TCPV6, UDP_L4, ECN = 1, 4, 5, 0x80


def gso_modules() -> list[ModuleType]:
    compiled = _select.compiled("gso")
    return [pure_gso] + ([compiled] if compiled is not None else [])


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return pure_gso
    compiled = _select.compiled("gso")
    require(compiled is not None, "dataplane.wire._gso is not built")
    assert compiled is not None
    return compiled


def rechecked(frame: bytes) -> Packet:
    """``frame`` re-parsed after scapy recomputed every checksum and length."""
    packet = Ether(frame)
    for layer in (IP, TCP, UDP):
        if layer in packet:
            del packet[layer].chksum
            if layer is IP:
                del packet[IP].len
            if layer is UDP:
                del packet[UDP].len
    if IPv6 in packet:
        del packet[IPv6].plen
    return Ether(bytes(packet))


def assert_checksums_match_scapy(frame: bytes) -> None:
    ours, oracle = Ether(frame), rechecked(frame)
    for layer in (IP, TCP, UDP):
        if layer in ours:
            mine, theirs = ours[layer].chksum, oracle[layer].chksum
            assert mine == theirs or {mine, theirs} == {0, 0xFFFF}, (layer.__name__, mine, theirs)
    assert bytes(ours) == bytes(oracle) or len(ours) == len(oracle)


@pytest.mark.parametrize("size", [10, 12])
@pytest.mark.parametrize("length", [1, 1398, 1399, 5000, 65000])
def test_tcpv4_tso_matches_scapy(impl: ModuleType, size: int, length: int) -> None:
    payload = os.urandom(length)
    original = tcp4(payload, flags="FPAC" if length > 1398 else "PA")
    frame, start, offset = partial(original)
    hlen = 14 + 20 + 32
    segments = impl.segment(vnet(NEEDS_CSUM, TCPV4 | ECN, hlen, 1398, start, offset, size) + frame, size)
    assert len(segments) == max(1, -(-length // 1398))
    joined = b""
    for i, seg in enumerate(segments):
        assert_checksums_match_scapy(seg)
        packet = Ether(seg)
        assert packet[IP].len == len(seg) - 14
        assert packet[IP].id == (original[IP].id + i) & 0xFFFF
        assert packet[TCP].seq == original[TCP].seq + i * 1398
        assert packet[TCP].options == original[TCP].options
        last, first = i == len(segments) - 1, i == 0
        assert bool(packet[TCP].flags & 0x01) == (last and bool(original[TCP].flags & 0x01))  # FIN
        assert bool(packet[TCP].flags & 0x08) == (last and bool(original[TCP].flags & 0x08))  # PSH
        assert bool(packet[TCP].flags & 0x80) == (first and bool(original[TCP].flags & 0x80))  # CWR
        assert packet[TCP].flags & 0x10  # ACK everywhere
        joined += bytes(packet[TCP].payload)
    assert joined == payload


def test_tcpv6_tso_matches_scapy(impl: ModuleType) -> None:
    payload = os.urandom(4000)
    frame, start, offset = partial(tcp6(payload))
    segments = impl.segment(vnet(NEEDS_CSUM, TCPV6, 74, 1000, start, offset) + frame)
    assert len(segments) == 4
    for seg in segments:
        assert_checksums_match_scapy(seg)
        assert Ether(seg)[IPv6].plen == len(seg) - 54
    assert b"".join(bytes(Ether(s)[TCP].payload) for s in segments) == payload


def test_udp_uso_matches_scapy(impl: ModuleType) -> None:
    payload = os.urandom(5600)
    frame, start, offset = partial(udp4(payload))
    segments = impl.segment(vnet(NEEDS_CSUM, UDP_L4, 42, 1400, start, offset) + frame)
    assert len(segments) == 4
    for seg in segments:
        assert_checksums_match_scapy(seg)
        assert Ether(seg)[UDP].len == 1408
    assert b"".join(bytes(Ether(s)[UDP].payload) for s in segments) == payload


@pytest.mark.parametrize("packet", [tcp4(b"hello world"), udp4(b"odd length!"), tcp6(b"xy")])
def test_needs_csum_is_completed(impl: ModuleType, packet: Packet) -> None:
    frame, start, offset = partial(packet)
    (out,) = impl.segment(vnet(NEEDS_CSUM, 0, 0, 0, start, offset) + frame)
    assert_checksums_match_scapy(out)
    assert out == bytes(packet) or Ether(out).payload.payload.chksum in (0, 0xFFFF)


def test_plain_frame_is_unchanged(impl: ModuleType) -> None:
    packet = bytes(tcp4(b"as is"))
    assert impl.segment(vnet() + packet) == [packet]


MALFORMED = [
    (b"\x00" * 5, "vnet.header"),
    (vnet(flags=0x10) + bytes(tcp4(b"x")), "vnet.flags"),
    (vnet() + b"\x00" * 10, "ethernet"),
    (vnet(NEEDS_CSUM, 3, 0, 1000, 34, 16) + bytes(tcp4(b"x" * 3000)), "vnet.gso_type"),
    (vnet(0, TCPV4, 0, 1000, 34, 16) + bytes(tcp4(b"x" * 3000)), "vnet.flags"),
    (vnet(NEEDS_CSUM, TCPV4, 0, 0, 34, 16) + bytes(tcp4(b"x" * 3000)), "vnet.gso_size"),
    (vnet(NEEDS_CSUM, TCPV4, 0, 1000, 30, 16) + bytes(tcp4(b"x" * 3000)), "vnet.csum_start"),
    (vnet(NEEDS_CSUM, TCPV4, 0, 1000, 34, 6) + bytes(tcp4(b"x" * 3000)), "vnet.csum_offset"),
    (vnet(NEEDS_CSUM, TCPV6, 0, 1000, 34, 16) + bytes(tcp4(b"x" * 3000)), "ethernet.type"),
    (vnet(NEEDS_CSUM, TCPV4, 0, 1, 34, 16) + bytes(tcp4(b"x" * 3000)), "vnet.gso_size"),
    (vnet(NEEDS_CSUM, 0, 0, 0, 4000, 16) + bytes(tcp4(b"x")), "vnet.csum_start"),
    (vnet(NEEDS_CSUM, 0, 0, 0, 34, 4000) + bytes(tcp4(b"x")), "vnet.csum_offset"),
]


@pytest.mark.parametrize(("data", "field"), MALFORMED)
def test_malformed_is_refused_naming_the_field(impl: ModuleType, data: bytes, field: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        impl.segment(data)
    assert caught.value.field == field


def _outcome(module: ModuleType, data: bytes) -> list[bytes] | str:
    try:
        result: list[bytes] = module.segment(data)
    except MalformedPacket as exc:
        return exc.field
    return result


@st.composite
def super_frames(draw: st.DrawFn) -> bytes:
    length = draw(st.integers(0, 9000))
    payload = draw(st.binary(min_size=length, max_size=length)) if length < 64 else os.urandom(length)
    kind = draw(st.sampled_from(["tcp4", "tcp6", "udp4"]))
    if kind == "tcp4":
        packet = tcp4(
            payload,
            flags=draw(st.sampled_from(["A", "PA", "FPA", "CEA"])),
            seq=draw(st.integers(0, 2**32 - 1)),
            options=draw(st.booleans()),
            ip_id=draw(st.integers(0, 65535)),
        )
        gso = TCPV4
    elif kind == "tcp6":
        packet, gso = tcp6(payload, seq=draw(st.integers(0, 2**32 - 1))), TCPV6
    else:
        packet, gso = udp4(payload), UDP_L4
    frame, start, offset = partial(packet)
    gso_size = draw(st.integers(1, 2000))
    header = vnet(NEEDS_CSUM, draw(st.sampled_from([gso, 0])), 0, gso_size, start, offset)
    data = bytearray(header + frame)
    for _ in range(draw(st.integers(0, 2))):  # now and then corrupt a byte of the headers
        where = draw(st.integers(0, min(len(data) - 1, 80)))
        data[where] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=150, deadline=None)
@given(super_frames())
def test_twins_segment_alike(data: bytes) -> None:
    modules = gso_modules()
    require(len(modules) == 2, "dataplane.wire._gso is not built")
    assert _outcome(modules[0], data) == _outcome(modules[1], data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_malformed(data: bytes) -> None:
    for module in gso_modules():
        _outcome(module, data)


def test_vnet_hdr_size_is_checked() -> None:
    for module in gso_modules():
        with pytest.raises(ValueError, match="10 or 12"):
            module.segment(vnet() + bytes(tcp4(b"x")), 11)
    assert pure_gso.IMPLEMENTATION == "python"


def test_deliver_header_marks_verified_and_seeded(impl: ModuleType) -> None:
    good = bytes(tcp4(b"payload"))
    assert impl.deliver_header(good)[0] == DATA_VALID
    seeded, start, offset = partial(tcp4(b"payload"))
    header = impl.deliver_header(seeded, 12)
    assert len(header) == 12
    assert header == vnet(NEEDS_CSUM, 0, 0, 0, start, offset, 12)
    broken = bytearray(good)
    broken[-1] ^= 0xFF  # bad, and not the seed: left for the end host to drop
    assert impl.deliver_header(bytes(broken)) == bytes(10)
    no_checksum = bytearray(bytes(udp4(b"x")))
    no_checksum[40:42] = b"\x00\x00"
    assert impl.deliver_header(bytes(no_checksum)) == bytes(10)
    assert impl.deliver_header(b"") == bytes(10)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 3))
def test_twins_choose_the_same_deliver_header(tail: bytes, which: int) -> None:
    modules = gso_modules()
    require(len(modules) == 2, "dataplane.wire._gso is not built")
    base = [bytes(tcp4(tail)), bytes(partial(tcp4(tail))[0]), bytes(udp4(tail)), tail][which]
    assert modules[0].deliver_header(base) == modules[1].deliver_header(base)

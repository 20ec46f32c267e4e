from __future__ import annotations

import logging
import socket
import struct
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dataplane import wire
from dataplane.wire import Buffer, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.vectors import load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

CAPTURE = "wire/test_vxlan_capture.pcap"
# Made by capture_overlay.sh on the underlay veth between two kernel VXLAN devices.
# `tshark -r test_vxlan_capture.pcap -V` decodes every frame as
#   "Virtual eXtensible Local Area Network, Flags: 0x0800, VXLAN Network ID (VNI)" with
#   "VXLAN Network Identifier (VNI): 7331"; the summary lines (`tshark -r`) begin
#   1 0.000000 02:00:00:00:02:01 -> Broadcast ARP 92 Who has 198.51.100.2? Tell 198.51.100.1
#   3 0.001245 198.51.100.1 -> 198.51.100.2 ICMP 148 Echo (ping) request id=0x1bc2, seq=1/256, ttl=64
#   7 0.312198 198.51.100.1 -> 198.51.100.2 TCP 124 58490 -> 7000 [SYN] Seq=0 Win=64240 Len=0 MSS=1460 ...
#  17 0.409514 198.51.100.1 -> 198.51.100.2 UDP 105 38547 -> 7001 Len=13
#  18 0.409593 198.51.100.2 -> 198.51.100.1 ICMP 133 Destination unreachable (Port unreachable)
OUTER = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP

# Flags scapy reads as VXLAN-GPE (NextProtocol, 0x04) or VXLAN-GBP (G, 0x80) change its layout.
plain_flags = st.integers(0, 0xFF).filter(lambda f: not f & 0x84)


def encode(header: wire.VxlanHeader) -> bytes:
    out = Buffer()
    wire.push_vxlan(out, header)
    return out.data


def fnv1a(key: bytes) -> int:
    h = 0x811C9DC5
    for byte in key:
        h = ((h ^ byte) * 0x01000193) % 2**32
    return h


def reference_key(inner: bytes) -> bytes:
    """The flow key of the module docstring, built from scapy's reading of the frame."""
    frame = Ether(inner)
    if IP in frame and len(inner) >= 14 + frame[IP].ihl * 4:
        ip = frame[IP]
        key = socket.inet_aton(ip.src) + socket.inet_aton(ip.dst) + bytes([ip.proto])
        if ip.proto in (6, 17) and not ip.flags.MF and ip.frag == 0 and len(bytes(ip.payload)) >= 4:
            key += bytes(ip.payload)[:4]
        return key
    return inner[:12]


def test_capture() -> None:
    frames = load_pcap(CAPTURE)
    assert len(frames) == 18
    for raw in frames:
        theirs = Ether(raw)[VXLAN]
        buf = Buffer(raw[OUTER:])
        header = wire.pull_vxlan(buf)
        assert header == wire.VxlanHeader(vni=7331)
        assert header.valid
        assert (theirs.vni, int(theirs.flags)) == (header.vni, header.flags)
        assert encode(header) == raw[OUTER : OUTER + 8]
        assert buf.remaining() == len(raw) - wire.VXLAN_OVERHEAD
        assert struct.unpack_from("!H", raw, 14 + 20 + 2)[0] == wire.VXLAN_PORT


@settings(max_examples=200)
@given(
    flags=plain_flags,
    reserved1=st.integers(0, 0xFFFFFF),
    vni=st.integers(0, 0xFFFFFF),
    reserved2=st.integers(0, 0xFF),
)
def test_scapy_agrees(flags: int, reserved1: int, vni: int, reserved2: int) -> None:
    raw = bytes(VXLAN(flags=flags, reserved1=reserved1, vni=vni, reserved2=reserved2))
    ours = wire.pull_vxlan(Buffer(raw))
    assert ours == wire.VxlanHeader(vni=vni, flags=flags, reserved1=reserved1, reserved2=reserved2)
    assert ours.valid == bool(flags & 0x08)
    assert encode(ours) == raw
    parsed = VXLAN(encode(ours))
    assert (int(parsed.flags), parsed.reserved1, parsed.vni, parsed.reserved2) == (
        flags,
        reserved1,
        vni,
        reserved2,
    )


def test_defaults_are_rfc_7348() -> None:
    assert encode(wire.VxlanHeader(vni=0x123456)) == bytes.fromhex("08000000 12345600")
    assert bytes(VXLAN(vni=0x123456)) == bytes.fromhex("08000000 12345600")


def test_clear_i_flag_is_read_not_dropped() -> None:
    # RFC 7348 §5 has the receiver drop it; that is the receiver's policy, not the codec's.
    header = wire.pull_vxlan(Buffer(bytes.fromhex("00000000 00000100")))
    assert header.vni == 1
    assert not header.valid


@pytest.mark.parametrize(
    "header",
    [
        wire.VxlanHeader(vni=1 << 24),
        wire.VxlanHeader(vni=-1),
        wire.VxlanHeader(vni=1, flags=0x100),
        wire.VxlanHeader(vni=1, reserved1=1 << 24),
        wire.VxlanHeader(vni=1, reserved2=0x100),
    ],
)
def test_push_refuses_out_of_range(header: wire.VxlanHeader) -> None:
    with pytest.raises(wire.BufferWriteError):
        encode(header)


@pytest.mark.parametrize("size", [0, 1, 7])
def test_truncated(size: int) -> None:
    buf = Buffer(b"\x08" * size)
    with pytest.raises(MalformedPacket) as info:
        wire.pull_vxlan(buf)
    assert info.value.field == "vxlan.header"
    assert buf.tell() == 0


def test_source_port_matches_the_definition_on_captured_flows() -> None:
    ports = set()
    for raw in load_pcap(CAPTURE):
        inner = raw[wire.VXLAN_OVERHEAD :]
        port = wire.source_port_for(inner)
        assert port == 49152 + fnv1a(reference_key(inner)) % 16384
        assert 49152 <= port <= 65535
        ports.add(port)
    # ARP request and reply, ping each way, TCP each way, UDP, ICMP error: distinct keys.
    assert len(ports) >= 6


def test_source_port_keys() -> None:
    a = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tcp = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80) / b"data")
    more = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80, flags="A") / b"other")
    other_port = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1001, dport=80))
    # One flow, one port, whatever the segment says.
    assert wire.source_port_for(tcp) == wire.source_port_for(more)
    assert (
        wire.source_port_for(tcp)
        == 49152 + fnv1a(bytes([10, 0, 0, 1, 10, 0, 0, 2, 6, 3, 0xE8, 0, 80])) % 16384
    )
    assert wire.source_port_for(tcp) != wire.source_port_for(other_port)
    # Fragments carry no ports after the first, so none of them hash the ports.
    first = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=5, dport=6) / (b"x" * 16))
    later = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2", frag=3, proto=17) / (b"y" * 16))
    assert wire.source_port_for(first) == wire.source_port_for(later)
    assert wire.source_port_for(first) == 49152 + fnv1a(bytes([10, 0, 0, 1, 10, 0, 0, 2, 17])) % 16384
    ping = bytes(a / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    assert wire.source_port_for(ping) == 49152 + fnv1a(bytes([10, 0, 0, 1, 10, 0, 0, 2, 1])) % 16384
    arp = bytes(a / ARP())
    assert wire.source_port_for(arp) == 49152 + fnv1a(arp[:12]) % 16384
    truncated_ip = tcp[:30]
    assert wire.source_port_for(truncated_ip) == 49152 + fnv1a(tcp[:12]) % 16384
    assert wire.source_port_for(b"") == 49152 + 0x811C9DC5 % 16384
    assert (
        wire.source_port_for(bytearray(tcp))
        == wire.source_port_for(memoryview(tcp))
        == wire.source_port_for(tcp)
    )


@settings(max_examples=200)
@given(st.binary(max_size=80))
def test_source_port_any_bytes(data: bytes) -> None:
    port = wire.source_port_for(data)
    assert 49152 <= port <= 65535
    pure, compiled = twins("vxlan")
    assert pure.source_port_for(data) == compiled.source_port_for(data) == port


@settings(max_examples=200)
@given(st.binary(max_size=16))
def test_twins_agree_on_any_bytes(data: bytes) -> None:
    pure, compiled = twins("vxlan")
    _, cbuffer = twins("buffer")
    outcomes: list[tuple[str, object]] = []
    for module, buffer_type in ((pure, PureBuffer), (compiled, cbuffer.Buffer)):
        try:
            outcomes.append(("ok", astuple(module.pull_vxlan(buffer_type(data)))))
        except MalformedPacket as exc:
            outcomes.append(("error", exc.field))
    assert outcomes[0] == outcomes[1]


def test_overhead() -> None:
    assert wire.VXLAN_OVERHEAD == 14 + 20 + 8 + wire.VXLAN_HEADER_LENGTH == 50

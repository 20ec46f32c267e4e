from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP

from dataplane import wire
from dataplane.wire import Buffer, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.unit.wire.conftest import ip_packets, mutated, outcome

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

CAPTURE = ip_packets("wire/test_udp_capture.pcap")
SEGMENTS = [raw[(raw[0] & 0x0F) * 4 :] for raw in CAPTURE]
SRC = wire.parse_ipv4("192.0.2.1")
DST = wire.parse_ipv4("192.0.2.66")
addresses = st.binary(min_size=4, max_size=4)
ports = st.integers(0, 0xFFFF)


def test_capture_round_trips_with_checksums() -> None:
    assert [(h.dst_port, p) for h, p in ((wire.pull_udp(Buffer(s)), s[8:]) for s in SEGMENTS)] == [
        (7001, b"udp to a listener"),
        (7002, b"udp to nobody"),
    ]
    for raw in CAPTURE:
        buf = Buffer(raw)
        ip = wire.pull_ipv4(buf)
        start = buf.tell()
        header = wire.pull_udp(buf)
        payload = buf.pull_bytes(wire.udp_payload_length(header))
        assert buf.eof()
        assert header.length == wire.ipv4_payload_length(ip)
        assert wire.udp_checksum(ip.src, ip.dst, header, payload) == header.checksum
        assert wire.verify_udp_checksum(ip.src, ip.dst, raw[start:])
        assert not wire.verify_udp_checksum(ip.dst, ip.dst, raw[start:])
        out = Buffer()
        wire.push_udp(out, header)
        assert out.data + payload == raw[start:]


def test_zero_checksum_means_none() -> None:
    segment = SEGMENTS[0][:6] + b"\x00\x00" + SEGMENTS[0][8:]
    assert wire.verify_udp_checksum(SRC, DST, segment)


def test_computed_zero_is_sent_as_all_ones() -> None:
    # Choose the last payload word so the segment sums to all ones: the checksum computes to 0.
    header = wire.UdpHeader(src_port=1000, dst_port=2000, length=12)
    partial = wire.ones_sum(
        b"\x03\xe8\x07\xd0\x00\x0c\x00\x00", 0, -1, wire.pseudo_header_sum(SRC, DST, 17, 12)
    )
    payload = (~partial & 0xFFFF).to_bytes(2, "big") + b"\x00\x00"
    assert wire.transport_checksum(SRC, DST, 17, b"\x03\xe8\x07\xd0\x00\x0c\x00\x00" + payload) == 0
    assert wire.udp_checksum(SRC, DST, header, payload) == 0xFFFF
    header.checksum = 0xFFFF
    out = Buffer()
    wire.push_udp(out, header)
    assert wire.verify_udp_checksum(SRC, DST, out.data + payload)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (SEGMENTS[0][:7], "udp.header"),
        (SEGMENTS[0][:4] + b"\x00\x07" + SEGMENTS[0][6:], "udp.length"),
        (SEGMENTS[0][:-1], "udp.length"),
    ],
)
def test_malformed_names_the_field_and_leaves_the_buffer(raw: bytes, field: str) -> None:
    buf = Buffer(b"\xee" + raw)
    buf.pull_uint8()
    with pytest.raises(MalformedPacket) as info:
        wire.pull_udp(buf)
    assert info.value.field == field
    assert buf.tell() == 1
    with pytest.raises(MalformedPacket):
        wire.verify_udp_checksum(SRC, DST, raw[:7])


@settings(max_examples=150, deadline=None)
@given(src=addresses, dst=addresses, sport=ports, dport=ports, payload=st.binary(max_size=64))
def test_scapy_agrees_both_ways(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
    raw = bytes(
        IP(src=wire.format_ipv4(src), dst=wire.format_ipv4(dst)) / UDP(sport=sport, dport=dport) / payload
    )
    segment = raw[20:]
    buf = Buffer(segment)
    header = wire.pull_udp(buf)
    scapy_udp = UDP(segment)
    assert (header.src_port, header.dst_port, header.length) == (sport, dport, 8 + len(payload))
    assert header.checksum == scapy_udp.chksum
    assert buf.pull_bytes(wire.udp_payload_length(header)) == payload

    ours = wire.UdpHeader(src_port=sport, dst_port=dport, length=8 + len(payload))
    ours.checksum = wire.udp_checksum(src, dst, ours, payload)
    out = Buffer()
    wire.push_udp(out, ours)
    assert out.data + payload == segment
    parsed = UDP(out.data + payload)
    assert (parsed.sport, parsed.dport, parsed.len, parsed.chksum) == (
        sport,
        dport,
        8 + len(payload),
        ours.checksum,
    )


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=40), mutated(SEGMENTS)))
def test_any_bytes_give_a_header_or_malformed(data: bytes) -> None:
    buf = Buffer(data)
    try:
        wire.pull_udp(buf)
    except MalformedPacket:
        assert buf.tell() == 0
    try:
        wire.verify_udp_checksum(SRC, DST, data)
    except MalformedPacket as exc:
        assert exc.field == "udp.header"


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=40), mutated(SEGMENTS)))
def test_twins_agree(data: bytes) -> None:
    pure, compiled = twins("udp")
    _, cbuffer = twins("buffer")
    assert outcome(pure.pull_udp, PureBuffer, data) == outcome(compiled.pull_udp, cbuffer.Buffer, data)
    if len(data) >= 8:
        header = pure.UdpHeader(1, 2, len(data))
        assert pure.udp_checksum(SRC, DST, header, data) == compiled.udp_checksum(SRC, DST, header, data)
        assert pure.verify_udp_checksum(SRC, DST, data) == compiled.verify_udp_checksum(SRC, DST, data)

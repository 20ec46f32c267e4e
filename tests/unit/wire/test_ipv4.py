from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, IPOption_NOP, IPOption_Router_Alert, IPOption_RR

from dataplane import wire
from dataplane.wire import Buffer, BufferWriteError, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.unit.wire.conftest import ip_packets, mutated, outcome

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

CAPTURE = ip_packets("wire/test_ipv4_capture.pcap")
addresses = st.binary(min_size=4, max_size=4)


def test_capture_round_trips_byte_exact() -> None:
    assert len(CAPTURE) >= 20
    for raw in CAPTURE:
        buf = Buffer(raw)
        header = wire.pull_ipv4(buf)
        assert buf.tell() == header.ihl * 4
        assert wire.ipv4_payload_length(header) == len(raw) - header.ihl * 4
        assert wire.verify_ipv4_checksum(raw)
        out = Buffer()
        wire.push_ipv4(out, header)
        assert out.data == raw[: header.ihl * 4]
        out = Buffer()
        wire.push_ipv4(out, header, compute_checksum=False)
        assert out.data == raw[: header.ihl * 4]


def test_capture_fields() -> None:
    first = wire.pull_ipv4(Buffer(CAPTURE[0]))  # ping's first echo request, A -> B
    assert (first.version, first.ihl, first.protocol, first.ttl) == (4, 5, wire.PROTO_ICMP, 64)
    assert first.dont_fragment and not first.more_fragments and first.fragment_offset == 0
    assert not first.is_fragment
    assert wire.format_ipv4(first.src) == "192.0.2.1"
    assert wire.format_ipv4(first.dst) == "192.0.2.66"
    protocols = {wire.pull_ipv4(Buffer(raw)).protocol for raw in CAPTURE}
    assert protocols == {wire.PROTO_ICMP, wire.PROTO_TCP, wire.PROTO_UDP}


def test_record_route_option_from_ping_r() -> None:
    with_options = [wire.pull_ipv4(Buffer(raw)) for raw in CAPTURE if raw[0] & 0x0F > 5]
    request, reply = with_options
    assert request.ihl == 15 and len(request.options) == 40
    nop, rr = wire.ipv4_options(request)
    assert nop.kind == wire.IPV4_OPT_NOP
    assert rr.kind == wire.IPV4_OPT_RR
    assert rr.data[0] == 8  # pointer past the one recorded address (RFC 791 §3.1, record route)
    assert rr.data[1:5] == wire.parse_ipv4("192.0.2.1")
    options = wire.ipv4_options(reply)
    assert [o.kind for o in options] == [wire.IPV4_OPT_RR, wire.IPV4_OPT_EOL]
    recorded = [wire.format_ipv4(options[0].data[i : i + 4]) for i in range(1, 21, 4)]
    assert recorded == ["192.0.2.1", "192.0.2.65", "192.0.2.66", "192.0.2.66", "192.0.2.2"]
    assert wire.encode_ipv4_options(wire.ipv4_options(request)) == request.options


def _packet(options: bytes = b"", payload: bytes = b"abcd", **fields: int) -> bytes:
    header = wire.IPv4Header(
        total_length=20 + len(options) + len(payload),
        protocol=wire.PROTO_UDP,
        src=wire.parse_ipv4("192.0.2.1"),
        dst=wire.parse_ipv4("192.0.2.2"),
        options=options,
    )
    for name, value in fields.items():
        setattr(header, name, value)
    out = Buffer()
    wire.push_ipv4(out, header)
    return out.data + payload


def _patch(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (_packet()[:19], "ipv4.header"),
        (_patch(_packet(), 0, b"\x65"), "ipv4.version"),
        (_patch(_packet(), 0, b"\x44"), "ipv4.ihl"),
        (_patch(_packet(), 0, b"\x47"), "ipv4.ihl"),  # 28 header bytes, 24 present
        (_patch(_packet(), 2, b"\x00\x13"), "ipv4.total_length"),  # shorter than the header
        (_packet()[:-1], "ipv4.total_length"),  # datagram truncated
        (_packet(options=b"\x07\x09\x04\x00"), "ipv4.option.length"),  # RR overruns the options
        (_packet(options=b"\x01\x07\x01\x00"), "ipv4.option.length"),  # length below 2
        (_packet(options=b"\x01\x01\x01\x07"), "ipv4.option.length"),  # no length octet
    ],
)
def test_malformed_names_the_field_and_leaves_the_buffer(raw: bytes, field: str) -> None:
    buf = Buffer(b"\xee" + raw)
    buf.pull_uint8()
    with pytest.raises(MalformedPacket) as info:
        wire.pull_ipv4(buf)
    assert info.value.field == field
    assert buf.tell() == 1


def test_quoted_datagram_may_be_truncated() -> None:
    raw = _packet(payload=bytes(100))[:28]
    with pytest.raises(MalformedPacket):
        wire.pull_ipv4(Buffer(raw))
    buf = Buffer(raw)
    header = wire.pull_ipv4_quoted(buf)
    assert header.total_length == 120
    assert buf.remaining() == 8


def test_trailing_padding_is_left_unread() -> None:
    raw = _packet(payload=b"xy") + bytes(24)
    buf = Buffer(raw)
    header = wire.pull_ipv4(buf)
    assert wire.ipv4_payload_length(header) == 2
    assert buf.remaining() == 26


def test_fragment_fields_and_reserved_flag_round_trip() -> None:
    raw = _packet(more_fragments=True, fragment_offset=0x1ABC, reserved_flag=True, dont_fragment=False)
    header = wire.pull_ipv4(Buffer(raw))
    assert header.more_fragments and header.reserved_flag and not header.dont_fragment
    assert header.fragment_offset == 0x1ABC
    assert header.is_fragment
    assert raw[6:8] == b"\xba\xbc"


def test_push_refuses_unpadded_or_oversized_options() -> None:
    for options in (b"\x01", bytes(44)):
        with pytest.raises(BufferWriteError):
            wire.push_ipv4(Buffer(), wire.IPv4Header(options=options))
    with pytest.raises(BufferWriteError):
        wire.encode_ipv4_options([wire.IPv4Option(wire.IPV4_OPT_RR, bytes(39))])


def test_bad_checksum_is_detected_and_kept_when_asked() -> None:
    raw = _patch(_packet(), 10, b"\x12\x34")
    assert not wire.verify_ipv4_checksum(raw)
    header = wire.pull_ipv4(Buffer(raw))
    out = Buffer()
    wire.push_ipv4(out, header, compute_checksum=False)
    assert out.data == raw[:20]
    with pytest.raises(MalformedPacket):
        wire.verify_ipv4_checksum(raw[:12])


def test_format_and_parse() -> None:
    assert wire.parse_ipv4("192.0.2.255") == b"\xc0\x00\x02\xff"
    assert wire.format_ipv4(b"\xc0\x00\x02\xff") == "192.0.2.255"


@pytest.mark.parametrize("text", ["", "10.1", "1.2.3.256", "1.2.3.4.5", "a.b.c.d", "1.2.3.-4", "1.2.3.٣"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4"):
        wire.parse_ipv4(text)


ip_fields = {
    "src": addresses,
    "dst": addresses,
    "tos": st.integers(0, 255),
    "ident": st.integers(0, 0xFFFF),
    "flags": st.integers(0, 7),
    "frag": st.integers(0, 0x1FFF),
    "ttl": st.integers(0, 255),
    "proto": st.integers(0, 255),
    "payload": st.binary(max_size=64),
    "options": st.lists(
        st.one_of(
            st.just(IPOption_NOP()),
            st.just(IPOption_Router_Alert()),
            st.lists(addresses, min_size=1, max_size=4).map(
                lambda rs: IPOption_RR(routers=[wire.format_ipv4(r) for r in rs])
            ),
        ),
        max_size=2,
    ),
}


@settings(max_examples=150, deadline=None)
@given(**ip_fields)
def test_scapy_builds_we_parse(
    *,
    src: bytes,
    dst: bytes,
    tos: int,
    ident: int,
    flags: int,
    frag: int,
    ttl: int,
    proto: int,
    payload: bytes,
    options: list[object],
) -> None:
    packet = IP(
        src=wire.format_ipv4(src),
        dst=wire.format_ipv4(dst),
        tos=tos,
        id=ident,
        flags=flags,
        frag=frag,
        ttl=ttl,
        proto=proto,
        options=options,
    )
    raw = bytes(packet / payload)
    parsed = IP(raw)
    buf = Buffer(raw)
    header = wire.pull_ipv4(buf)
    assert (header.src, header.dst, header.tos, header.identification) == (src, dst, tos, ident)
    assert (header.ttl, header.protocol, header.fragment_offset) == (ttl, proto, frag)
    assert (header.reserved_flag, header.dont_fragment, header.more_fragments) == (
        bool(flags & 4),
        bool(flags & 2),
        bool(flags & 1),
    )
    assert (header.ihl, header.total_length, header.checksum) == (parsed.ihl, parsed.len, parsed.chksum)
    assert buf.pull_bytes(wire.ipv4_payload_length(header)) == payload
    assert header.options == raw[20 : header.ihl * 4]
    out = Buffer()
    wire.push_ipv4(out, header)
    assert out.data + payload == raw


@settings(max_examples=150, deadline=None)
@given(**ip_fields)
def test_we_build_scapy_parses(
    *,
    src: bytes,
    dst: bytes,
    tos: int,
    ident: int,
    flags: int,
    frag: int,
    ttl: int,
    proto: int,
    payload: bytes,
    options: list[object],
) -> None:
    encoded = b"".join(bytes(o) for o in options)  # type: ignore[call-overload]
    encoded += bytes(-len(encoded) % 4)
    header = wire.IPv4Header(
        tos=tos,
        total_length=20 + len(encoded) + len(payload),
        identification=ident,
        reserved_flag=bool(flags & 4),
        dont_fragment=bool(flags & 2),
        more_fragments=bool(flags & 1),
        fragment_offset=frag,
        ttl=ttl,
        protocol=proto,
        src=src,
        dst=dst,
        options=encoded,
    )
    out = Buffer()
    wire.push_ipv4(out, header)
    raw = out.data + payload
    parsed = IP(raw)
    assert (parsed.src, parsed.dst) == (wire.format_ipv4(src), wire.format_ipv4(dst))
    assert (parsed.tos, parsed.id, int(parsed.flags), parsed.frag) == (tos, ident, flags, frag)
    assert (parsed.ttl, parsed.proto, parsed.len, parsed.ihl) == (ttl, proto, len(raw), 5 + len(encoded) // 4)
    # scapy recomputes the checksum when the field is cleared: ours must match it.
    parsed.chksum = None
    assert bytes(parsed)[:20] == raw[:20]


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=80), mutated(CAPTURE)))
def test_any_bytes_give_a_header_or_malformed(data: bytes) -> None:
    for pull in (wire.pull_ipv4, wire.pull_ipv4_quoted):
        buf = Buffer(data)
        try:
            header = pull(buf)
        except MalformedPacket:
            assert buf.tell() == 0
            continue
        wire.ipv4_options(header)
        wire.verify_ipv4_checksum(data)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=80), mutated(CAPTURE)))
def test_twins_agree(data: bytes) -> None:
    pure, compiled = twins("ipv4")
    _, cbuffer = twins("buffer")
    for name in ("pull_ipv4", "pull_ipv4_quoted"):
        assert outcome(getattr(pure, name), PureBuffer, data) == outcome(
            getattr(compiled, name), cbuffer.Buffer, data
        )


def test_twins_take_any_bytes_like_input() -> None:
    # Cython would otherwise turn a ``bytes`` annotation into a type check the pure twin lacks.
    request = CAPTURE[0]
    calls: list[tuple[str, Callable[[Any, Callable[[bytes], Any]], Any]]] = [
        ("ipv4", lambda m, conv: m.verify_ipv4_checksum(conv(request))),
        ("ipv4", lambda m, conv: m.format_ipv4(conv(request[12:16]))),
        (
            "udp",
            lambda m, conv: m.udp_checksum(
                conv(request[12:16]), conv(request[16:20]), m.UdpHeader(1, 2, 9), conv(b"x")
            ),
        ),
        (
            "tcp",
            lambda m, conv: m.verify_tcp_checksum(conv(request[12:16]), conv(request[16:20]), conv(request)),
        ),
        ("icmp", lambda m, conv: m.icmp_time_exceeded(0, conv(request)).checksum),
        ("icmp", lambda m, conv: m.icmp_echo_request(1, 2, conv(b"data")).checksum),
    ]
    for module_name, call in calls:
        pure, compiled = twins(module_name)
        for conv in (bytes, bytearray, memoryview):
            assert call(pure, conv) == call(compiled, conv)

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from dataplane import wire
from dataplane.wire import Buffer, BufferWriteError, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.unit.wire.conftest import ip_packets, mutated, outcome

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

CAPTURE = ip_packets("wire/test_tcp_capture.pcap")
SEGMENTS = [raw[(raw[0] & 0x0F) * 4 :] for raw in CAPTURE]
SRC = wire.parse_ipv4("192.0.2.1")
DST = wire.parse_ipv4("192.0.2.66")
addresses = st.binary(min_size=4, max_size=4)
u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)


def test_capture_round_trips_with_checksums() -> None:
    assert len(CAPTURE) >= 8  # handshake, data both ways, two FINs, their ACKs
    for raw in CAPTURE:
        buf = Buffer(raw)
        ip = wire.pull_ipv4(buf)
        start = buf.tell()
        header = wire.pull_tcp(buf)
        payload = buf.pull_bytes(wire.ipv4_payload_length(ip) - header.data_offset * 4)
        assert buf.eof()
        assert wire.tcp_checksum(ip.src, ip.dst, header, payload) == header.checksum
        assert wire.verify_tcp_checksum(ip.src, ip.dst, raw[start:])
        out = Buffer()
        wire.push_tcp(out, header)
        assert out.data + payload == raw[start:]


def test_syn_options_from_linux() -> None:
    syn = wire.pull_tcp(Buffer(SEGMENTS[0]))
    assert syn.flags == wire.TCP_SYN
    assert syn.data_offset == 10
    assert [o.kind for o in syn.options] == [
        wire.TCPOPT_MSS,
        wire.TCPOPT_SACK_PERMITTED,
        wire.TCPOPT_TIMESTAMPS,
        wire.TCPOPT_NOP,
        wire.TCPOPT_WINDOW_SCALE,
    ]
    assert wire.tcp_mss(syn) == 1240  # the M-B link's MTU 1280 less 40
    assert wire.tcp_window_scale(syn) == 10
    assert wire.tcp_sack_permitted(syn)
    timestamps = wire.tcp_timestamps(syn)
    assert timestamps is not None and timestamps[1] == 0
    assert wire.tcp_sack_blocks(syn) == []
    synack = wire.pull_tcp(Buffer(SEGMENTS[1]))
    assert synack.flags == wire.TCP_SYN | wire.TCP_ACK
    assert synack.ack == syn.seq + 1
    echoed = wire.tcp_timestamps(synack)
    assert echoed is not None and echoed[1] == timestamps[0]  # TSecr echoes the SYN's TSval
    headers = [wire.pull_tcp(Buffer(segment)) for segment in SEGMENTS]
    pushed = [i for i, h in enumerate(headers) if h.flags == wire.TCP_PSH | wire.TCP_ACK]
    data = headers[pushed[0]]
    assert SEGMENTS[pushed[0]][data.data_offset * 4 :] == b"hello webspaces"
    assert SEGMENTS[pushed[1]][data.data_offset * 4 :] == b"HELLO WEBSPACES"
    assert wire.tcp_mss(data) is None and wire.tcp_window_scale(data) is None
    assert not wire.tcp_sack_permitted(data)
    assert sum(h.flags == wire.TCP_FIN | wire.TCP_ACK for h in headers) == 2


def test_typed_constructors_match_linux_bytes() -> None:
    syn = wire.pull_tcp(Buffer(SEGMENTS[0]))
    tsval, tsecr = wire.tcp_timestamps(syn) or (0, 0)
    built = [
        wire.tcp_mss_option(1240),
        wire.tcp_sack_permitted_option(),
        wire.tcp_timestamps_option(tsval, tsecr),
        wire.TcpOption(wire.TCPOPT_NOP),
        wire.tcp_window_scale_option(10),
    ]
    assert built == syn.options
    assert wire.encode_tcp_options(built) == SEGMENTS[0][20:40]


def test_sack_blocks() -> None:
    blocks = [(1, 2), (0xFFFFFFF0, 5)]
    header = wire.TcpHeader(
        1, 2, options=[wire.TcpOption(1), wire.TcpOption(1), wire.tcp_sack_option(blocks)]
    )
    out = Buffer()
    wire.push_tcp(out, header)
    assert out.data[20:24] == b"\x01\x01\x05\x12"
    parsed = wire.pull_tcp(Buffer(out.data))
    assert parsed.data_offset == 10
    assert wire.tcp_sack_blocks(parsed) == blocks
    for bad in ([], [(1, 2)] * 5):
        with pytest.raises(BufferWriteError):
            wire.tcp_sack_option(bad)


def test_eol_padding_is_kept_as_parsed() -> None:
    # MSS, then EOL followed by non-minimal padding: 12 option bytes where 8 would do.
    options = b"\x02\x04\x05\xb4\x00" + bytes(7)
    raw = b"\x00\x01\x00\x02" + bytes(8) + b"\x80\x02\xff\xff\x00\x00\x00\x00" + options
    header = wire.pull_tcp(Buffer(raw))
    assert header.options[-1] == wire.TcpOption(wire.TCPOPT_EOL, bytes(7))
    out = Buffer()
    wire.push_tcp(out, header)
    assert out.data == raw


def test_push_pads_and_recomputes_data_offset() -> None:
    header = wire.TcpHeader(1, 2, data_offset=15, options=[wire.tcp_mss_option(1410)])
    header.options.append(wire.tcp_window_scale_option(7))
    out = Buffer()
    wire.push_tcp(out, header)
    assert out.data[12] >> 4 == 7
    assert out.data[20:] == b"\x02\x04\x05\x82\x03\x03\x07\x00"
    with pytest.raises(BufferWriteError):
        wire.push_tcp(Buffer(), wire.TcpHeader(1, 2, options=[wire.TcpOption(99, bytes(40))]))
    with pytest.raises(BufferWriteError):
        wire.push_tcp(Buffer(), wire.TcpHeader(1, 2, options=[wire.TcpOption(wire.TCPOPT_NOP, b"x")]))
    with pytest.raises(BufferWriteError):
        wire.push_tcp(Buffer(), wire.TcpHeader(1, 2, flags=0x200))


def _segment(options: bytes, data_offset: int | None = None) -> bytes:
    offset = 5 + len(options) // 4 if data_offset is None else data_offset
    return b"\x00\x01\x00\x02" + bytes(8) + bytes((offset << 4, 0x02)) + bytes(6) + options


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (SEGMENTS[0][:19], "tcp.header"),
        (_segment(b"", 4), "tcp.data_offset"),
        (_segment(b"", 6), "tcp.data_offset"),
        (_segment(b"\x02\x05\x05\xb4\x00\x00\x00\x00"), "tcp.option.mss"),
        (_segment(b"\x03\x04\x07\x00"), "tcp.option.window_scale"),
        (_segment(b"\x04\x03\x00\x00"), "tcp.option.sack_permitted"),
        (_segment(b"\x08\x08" + bytes(6)), "tcp.option.timestamps"),
        (_segment(b"\x05\x06" + bytes(6)), "tcp.option.sack"),
        (_segment(b"\x01\x05\x02\x00"), "tcp.option.sack"),
        (_segment(b"\x01\x01\x01\x02"), "tcp.option.length"),  # no length octet
        (_segment(b"\x1e\x01\x00\x00"), "tcp.option.length"),  # length below 2
        (_segment(b"\x1e\x08\x00\x00"), "tcp.option.length"),  # overruns the options
    ],
)
def test_malformed_names_the_field_and_leaves_the_buffer(raw: bytes, field: str) -> None:
    buf = Buffer(b"\xee" + raw)
    buf.pull_uint8()
    with pytest.raises(MalformedPacket) as info:
        wire.pull_tcp(buf)
    assert info.value.field == field
    assert buf.tell() == 1


def test_typed_accessors_refuse_bad_option_data() -> None:
    header = wire.TcpHeader(1, 2)
    for option, accessor, field in (
        (wire.TcpOption(wire.TCPOPT_MSS, b"\x05"), wire.tcp_mss, "tcp.option.mss"),
        (wire.TcpOption(wire.TCPOPT_WINDOW_SCALE), wire.tcp_window_scale, "tcp.option.window_scale"),
        (wire.TcpOption(wire.TCPOPT_TIMESTAMPS, bytes(9)), wire.tcp_timestamps, "tcp.option.timestamps"),
        (wire.TcpOption(wire.TCPOPT_SACK, bytes(7)), wire.tcp_sack_blocks, "tcp.option.sack"),
    ):
        header.options = [option]
        with pytest.raises(MalformedPacket) as info:
            accessor(header)
        assert info.value.field == field


scapy_options = st.lists(
    st.one_of(
        st.tuples(st.just("MSS"), u16),
        st.tuples(st.just("WScale"), st.integers(0, 14)),
        st.tuples(st.just("SAckOK"), st.just(b"")),
        st.tuples(st.just("Timestamp"), st.tuples(u32, u32)),
        st.tuples(
            st.just("SAck"), st.lists(u32, min_size=2, max_size=6).map(lambda v: tuple(v[: len(v) & ~1]))
        ),
        st.tuples(st.just("NOP"), st.none()),
    ),
    max_size=3,
)


def _fits(options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    sizes = {"MSS": 4, "WScale": 3, "SAckOK": 2, "Timestamp": 10, "NOP": 1}
    kept: list[tuple[str, Any]] = []
    total = 0
    for name, value in options:
        size = sizes.get(name, 2 + 4 * len(value) if name == "SAck" else 0)
        if total + size <= 40:
            kept.append((name, value))
            total += size
    return kept


def _expected(options: list[tuple[str, Any]]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for name, value in options:
        if name == "MSS":
            out.append((2, value.to_bytes(2, "big")))
        elif name == "WScale":
            out.append((3, bytes((value,))))
        elif name == "SAckOK":
            out.append((4, b""))
        elif name == "Timestamp":
            out.append((8, value[0].to_bytes(4, "big") + value[1].to_bytes(4, "big")))
        elif name == "SAck":
            out.append((5, b"".join(v.to_bytes(4, "big") for v in value)))
        else:
            out.append((1, b""))
    return out


tcp_fields = {
    "src": addresses,
    "dst": addresses,
    "sport": u16,
    "dport": u16,
    "seq": u32,
    "ack": u32,
    "flags": st.integers(0, 0x1FF),
    "window": u16,
    "urgent": u16,
    "options": scapy_options.map(_fits),
    "payload": st.binary(max_size=48),
}


@settings(max_examples=150, deadline=None)
@given(**tcp_fields)
def test_scapy_builds_we_parse(
    *,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: list[tuple[str, Any]],
    payload: bytes,
) -> None:
    tcp = TCP(
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window, urgptr=urgent, options=options
    )
    raw = bytes(IP(src=wire.format_ipv4(src), dst=wire.format_ipv4(dst)) / tcp / payload)
    segment = raw[20:]
    buf = Buffer(segment)
    header = wire.pull_tcp(buf)
    assert (header.src_port, header.dst_port, header.seq, header.ack) == (sport, dport, seq, ack)
    assert (header.flags, header.window, header.urgent, header.reserved) == (flags, window, urgent, 0)
    assert header.checksum == TCP(segment).chksum == wire.tcp_checksum(src, dst, header, payload)
    parsed = [(o.kind, o.data) for o in header.options]
    # scapy pads with zero octets, which parse as one EOL holding the rest as padding.
    if parsed and parsed[-1][0] == wire.TCPOPT_EOL:
        assert not any(parsed[-1][1])
        parsed = parsed[:-1]
    assert parsed == _expected(options)
    assert buf.pull_bytes(buf.remaining()) == payload
    out = Buffer()
    wire.push_tcp(out, header)
    assert out.data + payload == segment


@settings(max_examples=150, deadline=None)
@given(**tcp_fields)
def test_we_build_scapy_parses(
    *,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: list[tuple[str, Any]],
    payload: bytes,
) -> None:
    ours = [wire.TcpOption(kind, data) for kind, data in _expected(options)]
    header = wire.TcpHeader(sport, dport, seq, ack, flags=flags, window=window, urgent=urgent, options=ours)
    header.checksum = wire.tcp_checksum(src, dst, header, payload)
    out = Buffer()
    wire.push_tcp(out, header)
    parsed = TCP(out.data + payload)
    assert (parsed.sport, parsed.dport, parsed.seq, parsed.ack) == (sport, dport, seq, ack)
    assert (int(parsed.flags), parsed.window, parsed.urgptr) == (flags, window, urgent)
    assert parsed.dataofs == 5 + len(wire.encode_tcp_options(ours)) // 4
    assert [name for name, _ in parsed.options if name != "EOL"] == [name for name, _ in options]
    assert bytes(parsed.payload) == payload
    # scapy's own checksum over the same segment, recomputed from scratch.
    rebuilt = IP(src=wire.format_ipv4(src), dst=wire.format_ipv4(dst)) / parsed
    rebuilt[TCP].chksum = None
    assert TCP(bytes(rebuilt)[20:]).chksum == header.checksum


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=64), mutated(SEGMENTS)))
def test_any_bytes_give_a_header_or_malformed(data: bytes) -> None:
    buf = Buffer(data)
    try:
        header = wire.pull_tcp(buf)
    except MalformedPacket:
        assert buf.tell() == 0
        return
    # A parsed header re-encodes exactly and its typed options read without surprises.
    out = Buffer()
    wire.push_tcp(out, header)
    assert out.data == data[: buf.tell()]
    wire.tcp_mss(header)
    wire.tcp_window_scale(header)
    wire.tcp_sack_permitted(header)
    wire.tcp_sack_blocks(header)
    wire.tcp_timestamps(header)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=64), mutated(SEGMENTS)))
def test_twins_agree(data: bytes) -> None:
    pure, compiled = twins("tcp")
    _, cbuffer = twins("buffer")
    assert outcome(pure.pull_tcp, PureBuffer, data) == outcome(compiled.pull_tcp, cbuffer.Buffer, data)
    if len(data) >= 20:
        assert pure.verify_tcp_checksum(SRC, DST, data) == compiled.verify_tcp_checksum(SRC, DST, data)

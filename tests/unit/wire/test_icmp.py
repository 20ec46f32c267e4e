from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP

from dataplane import wire
from dataplane.wire import Buffer, BufferWriteError, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.unit.wire.conftest import ip_packets, mutated, outcome

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# capture_l4.sh, seen from A: echo request/reply x2, echo with record route and its reply, a TTL 1
# request and M's time exceeded, a 1428-byte DF request and M's fragmentation needed (MTU 1280),
# B's port unreachable for a UDP datagram.
CAPTURE = ip_packets("wire/test_icmp_capture.pcap")
MESSAGES = [raw[(raw[0] & 0x0F) * 4 :] for raw in CAPTURE]
ECHO, ECHO_REPLY, RR_REQUEST, TTL1_REQUEST, TIME_EXCEEDED = 0, 1, 4, 6, 7
BIG_REQUEST, FRAG_NEEDED, PORT_UNREACHABLE = 8, 9, 10
addresses = st.binary(min_size=4, max_size=4)
u16 = st.integers(0, 0xFFFF)


def _message(index: int) -> wire.IcmpMessage:
    return wire.pull_icmp(Buffer(MESSAGES[index]))


def test_capture_round_trips_with_checksums() -> None:
    assert len(CAPTURE) == 11
    for raw in CAPTURE:
        buf = Buffer(raw + b"\x00" * 6)  # Ethernet-style padding past the datagram
        ip = wire.pull_ipv4(buf)
        assert ip.protocol == wire.PROTO_ICMP
        start = buf.tell()
        message = wire.pull_icmp(buf, wire.ipv4_payload_length(ip))
        assert buf.remaining() == 6
        assert wire.verify_icmp_checksum(raw[start:])
        assert wire.icmp_checksum(message) == message.checksum
        out = Buffer()
        wire.push_icmp(out, message)
        assert out.data == raw[start:]
        out = Buffer()
        wire.push_icmp(out, message, compute_checksum=False)
        assert out.data == raw[start:]


def test_echo_fields_and_constructors() -> None:
    request, reply = _message(ECHO), _message(ECHO_REPLY)
    assert (request.type, reply.type) == (wire.ICMP_ECHO_REQUEST, wire.ICMP_ECHO_REPLY)
    assert request.identifier == reply.identifier
    assert (request.sequence, reply.sequence) == (1, 1)
    assert request.payload[16:] == b"WS" * 4  # ping -p 5753 -s 24, after its 16-byte timeval
    assert not wire.icmp_is_error(request)
    assert wire.icmp_echo_request(request.identifier, 1, request.payload) == request
    assert wire.icmp_echo_reply(reply.identifier, 1, reply.payload) == reply
    with pytest.raises(MalformedPacket) as info:
        wire.embedded_ipv4(request)
    assert info.value.field == "icmp.type"


def test_time_exceeded_matches_linux() -> None:
    message = _message(TIME_EXCEEDED)
    assert (message.type, message.code) == (wire.ICMP_TIME_EXCEEDED, wire.ICMP_EXC_TTL)
    assert wire.icmp_time_exceeded(wire.ICMP_EXC_TTL, CAPTURE[TTL1_REQUEST]) == message
    header, quoted = wire.embedded_ipv4(message)
    assert (header.ttl, header.total_length) == (1, len(CAPTURE[TTL1_REQUEST]))
    assert quoted == MESSAGES[TTL1_REQUEST]


def test_frag_needed_matches_linux_and_quotes_a_truncated_datagram() -> None:
    message = _message(FRAG_NEEDED)
    assert (message.type, message.code, message.next_hop_mtu) == (3, wire.ICMP_FRAG_NEEDED, 1280)
    assert len(message.payload) == 548  # RFC 1812 §4.3.2.3: the error fits in 576 bytes
    assert wire.icmp_frag_needed(1280, CAPTURE[BIG_REQUEST]) == message
    header, quoted = wire.embedded_ipv4(message)
    assert header.total_length == 1428 > len(message.payload)
    assert header.dont_fragment
    assert len(quoted) == 528
    inner = wire.pull_icmp(Buffer(quoted))
    assert inner.identifier == _message(BIG_REQUEST).identifier
    minimal = wire.icmp_frag_needed(1280, CAPTURE[BIG_REQUEST], max_quote=0)
    assert len(minimal.payload) == 28  # RFC 792: the header and 64 bits of data


def test_port_unreachable_matches_linux_after_our_ttl_decrement() -> None:
    message = _message(PORT_UNREACHABLE)
    assert (message.type, message.code) == (wire.ICMP_DEST_UNREACH, wire.ICMP_PORT_UNREACH)
    _, quoted = wire.embedded_ipv4(message)
    udp = wire.pull_udp(Buffer(quoted))
    assert udp.dst_port == 7002
    # Rebuild what B received from what A sent (test_udp's capture): M decremented the TTL and
    # updated the header checksum incrementally (RFC 1624).
    sent = ip_packets("wire/test_udp_capture.pcap")[1]
    routed = wire.pull_ipv4(Buffer(sent))
    old_word = routed.ttl << 8 | routed.protocol
    routed.ttl -= 1
    routed.checksum = wire.update16(routed.checksum, old_word, routed.ttl << 8 | routed.protocol)
    out = Buffer()
    wire.push_ipv4(out, routed, compute_checksum=False)
    received = out.data + sent[20:]
    assert wire.verify_ipv4_checksum(received)
    assert wire.icmp_destination_unreachable(wire.ICMP_PORT_UNREACH, received) == message


def test_parameter_problem_pointer() -> None:
    message = wire.icmp_parameter_problem(9, CAPTURE[ECHO])
    assert (message.type, message.pointer) == (wire.ICMP_PARAMETER_PROBLEM, 9)
    assert wire.icmp_is_error(message)
    with pytest.raises(BufferWriteError):
        wire.icmp_parameter_problem(256, CAPTURE[ECHO])


def test_constructors_refuse_a_datagram_that_is_not_ipv4() -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.icmp_time_exceeded(0, b"\x60" + bytes(39))
    assert info.value.field == "icmp.embedded"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "icmp.embedded"),
        (b"\x65" + bytes(27), "icmp.embedded"),
        (b"\x46" + bytes(22), "icmp.embedded"),
    ],
)
def test_embedded_malformed(payload: bytes, field: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.embedded_ipv4(wire.IcmpMessage(wire.ICMP_DEST_UNREACH, 3, 0, bytes(4), payload))
    assert info.value.field == field


def test_pull_malformed_names_the_field_and_leaves_the_buffer() -> None:
    for raw, length, field in ((MESSAGES[ECHO][:7], -1, "icmp.header"), (MESSAGES[ECHO], 100, "icmp.length")):
        buf = Buffer(b"\xee" + raw)
        buf.pull_uint8()
        with pytest.raises(MalformedPacket) as info:
            wire.pull_icmp(buf, length)
        assert info.value.field == field
        assert buf.tell() == 1
    with pytest.raises(MalformedPacket):
        wire.verify_icmp_checksum(b"\x08\x00")
    with pytest.raises(BufferWriteError):
        wire.push_icmp(Buffer(), wire.IcmpMessage(8, 0, 0, b"\x00"))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([0, 8]), ident=u16, seq=u16, data=st.binary(max_size=64))
def test_scapy_agrees_on_echo(kind: int, ident: int, seq: int, data: bytes) -> None:
    raw = bytes(ICMP(type=kind, id=ident, seq=seq) / data)
    message = wire.pull_icmp(Buffer(raw))
    assert (message.type, message.identifier, message.sequence, message.payload) == (kind, ident, seq, data)
    assert message.checksum == ICMP(raw).chksum
    make = wire.icmp_echo_request if kind == 8 else wire.icmp_echo_reply
    out = Buffer()
    wire.push_icmp(out, make(ident, seq, data))
    assert out.data == raw


@settings(max_examples=150, deadline=None)
@given(
    src=addresses,
    dst=addresses,
    ttl=st.integers(0, 255),
    sport=u16,
    dport=u16,
    mtu=u16,
    data=st.binary(max_size=600),
    max_quote=st.sampled_from([0, 64, 548]),
)
def test_scapy_agrees_on_errors(
    *, src: bytes, dst: bytes, ttl: int, sport: int, dport: int, mtu: int, data: bytes, max_quote: int
) -> None:
    datagram = bytes(
        IP(src=wire.format_ipv4(src), dst=wire.format_ipv4(dst), ttl=ttl)
        / UDP(sport=sport, dport=dport)
        / data
    )
    quoted = datagram[: max(28, max_quote)]
    for ours, theirs in (
        (wire.icmp_frag_needed(mtu, datagram, max_quote=max_quote), ICMP(type=3, code=4, nexthopmtu=mtu)),
        (wire.icmp_destination_unreachable(3, datagram, max_quote=max_quote), ICMP(type=3, code=3)),
        (wire.icmp_time_exceeded(0, datagram, max_quote=max_quote), ICMP(type=11, code=0)),
    ):
        raw = bytes(theirs / quoted)
        out = Buffer()
        wire.push_icmp(out, ours)
        assert out.data == raw
        parsed = ICMP(out.data)
        assert (parsed.type, parsed.code, parsed.chksum) == (ours.type, ours.code, ours.checksum)
        header, rest = wire.embedded_ipv4(ours)
        assert (header.src, header.dst, header.ttl, header.total_length) == (src, dst, ttl, len(datagram))
        assert rest == quoted[20:]
        assert wire.pull_udp(Buffer(rest[:8] + bytes(len(data)))).dst_port == dport


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=64), mutated(MESSAGES)))
def test_any_bytes_give_a_message_or_malformed(data: bytes) -> None:
    buf = Buffer(data)
    try:
        message = wire.pull_icmp(buf)
    except MalformedPacket:
        assert buf.tell() == 0
        return
    try:
        wire.embedded_ipv4(message)
    except MalformedPacket as exc:
        assert exc.field in ("icmp.type", "icmp.embedded")
    wire.verify_icmp_checksum(data)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=64), mutated(MESSAGES)))
def test_twins_agree(data: bytes) -> None:
    pure, compiled = twins("icmp")
    _, cbuffer = twins("buffer")
    assert outcome(pure.pull_icmp, PureBuffer, data) == outcome(compiled.pull_icmp, cbuffer.Buffer, data)
    results: list[tuple[object, ...]] = []
    for module in (pure, compiled):
        message = module.IcmpMessage(3, 4, 0, bytes(4), data)
        try:
            header, rest = module.embedded_ipv4(message)
            results.append(
                ("ok", wire.format_ipv4(header.src), header.total_length, rest, module.icmp_checksum(message))
            )
        except MalformedPacket as exc:
            results.append(("error", exc.field, exc.reason))
    assert results[0] == results[1]

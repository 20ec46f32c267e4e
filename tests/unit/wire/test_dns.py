"""DNS messages: a real capture (glibc stub resolver and dnsmasq), scapy as oracle, malformed input.

The capture is made by ``tests/data/wire/capture_dns.sh``.
"""

from __future__ import annotations

import logging
from typing import Any

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane import wire
from dataplane.wire import Buffer, DnsMessage, DnsQuestion, DnsRecord, MalformedPacket, pull_dns, push_dns
from tests.conftest import twins
from tests.unit.wire.conftest import mutated, outcome
from tests.vectors import load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.layers.dns import DNS, DNSQR, DNSRR  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
A = wire.TYPE_A


def udp_payloads() -> list[bytes]:
    payloads = []
    for frame in load_pcap("wire/test_dns_capture.pcap"):
        udp = dpkt.ethernet.Ethernet(frame).data.data
        assert wire.DNS_PORT in (udp.sport, udp.dport)
        payloads.append(bytes(udp.data))
    return payloads


CAPTURED = udp_payloads()


def parse(raw: bytes) -> DnsMessage:
    return pull_dns(Buffer(raw))


def build(msg: DnsMessage, *, compress: bool = True) -> bytes:
    buf = Buffer()
    push_dns(buf, msg, compress=compress)
    return buf.data


def scapy_compress(msg: Any) -> Any:
    return msg.compress()  # untyped in scapy


def addresses(msg: DnsMessage) -> list[tuple[str, int]]:
    return [(".".join(map(str, address)), ttl) for address, ttl in wire.a_records(msg)]


# -- real capture -------------------------------------------------------------------------


def test_capture_round_trips_byte_for_byte() -> None:
    assert len(CAPTURED) == 6
    for raw in CAPTURED:
        assert build(parse(raw)) == raw


def test_capture_exchanges() -> None:
    messages = [parse(raw) for raw in CAPTURED]
    queries, answers = messages[0::2], messages[1::2]
    for query, answer in zip(queries, answers, strict=True):
        assert not query.is_response and answer.is_response
        assert query.id == answer.id
        assert query.questions == answer.questions
        assert query.flags & wire.FLAG_RD and answer.flags & wire.FLAG_RD  # RD is copied back
        # glibc asked with EDNS (options edns0): one OPT pseudo-record for the root, both ways.
        assert [(r.name, r.type) for r in query.additionals] == [("", wire.TYPE_OPT)]
        assert [(r.name, r.type) for r in answer.additionals] == [("", wire.TYPE_OPT)]
    assert [q.questions for q in queries] == [
        [DnsQuestion("ws.lab.example", A, wire.CLASS_IN)],
        [DnsQuestion("alias.lab.example", A, wire.CLASS_IN)],
        [DnsQuestion("gone.lab.example", A, wire.CLASS_IN)],
    ]

    direct, via_cname, missing = answers
    assert direct.rcode == wire.RCODE_NOERROR and direct.flags & wire.FLAG_AA
    assert sorted(addresses(direct)) == [("192.0.2.11", 7), ("192.0.2.12", 7), ("192.0.2.13", 7)]
    # dnsmasq points every owner name back at the question (offset 12).
    assert CAPTURED[1].count(b"\xc0\x0c") == 3

    assert via_cname.answers[0].type == wire.TYPE_CNAME
    assert via_cname.answers[0].name == "alias.lab.example"
    assert via_cname.answers[0].data == b"\x02ws\x03lab\x07example\x00"
    # dnsmasq writes the CNAME target in full and points the A owners at it.
    assert CAPTURED[3].count(b"\xc0\x2f") == 3
    assert {r.name for r in via_cname.answers[1:]} == {"ws.lab.example"}
    assert sorted(addresses(via_cname)) == sorted(addresses(direct))

    assert missing.rcode == wire.RCODE_NXDOMAIN and missing.answers == []
    assert wire.a_records(missing) == []


def test_capture_agrees_with_scapy() -> None:
    for raw in CAPTURED:
        ours = parse(raw)
        theirs = DNS(raw)
        assert ours.id == theirs.id and ours.is_response == bool(theirs.qr)
        assert ours.rcode == theirs.rcode and ours.opcode == theirs.opcode
        assert [q.name + "." for q in ours.questions] == [q.qname.decode() for q in theirs.qd]
        assert len(ours.answers) == theirs.ancount
        for record, rr in zip(ours.answers, theirs.an, strict=True):
            assert record.name + "." == rr.rrname.decode()
            assert (record.type, record.ttl) == (rr.type, rr.ttl)
            if record.type == A:
                assert ".".join(map(str, record.data)) == rr.rdata


# -- building -----------------------------------------------------------------------------


def test_build_query_is_what_scapy_sends() -> None:
    raw = wire.build_query(0x1234, "ws.default.svc.cluster.local")
    expected = bytes(DNS(id=0x1234, rd=1, qd=[DNSQR(qname="ws.default.svc.cluster.local", qtype="A")]))
    assert raw == expected
    assert parse(raw).questions == [DnsQuestion("ws.default.svc.cluster.local")]
    assert wire.build_query(1, "ws.example.") == wire.build_query(1, "ws.example")
    assert parse(wire.build_query(7, "ws.example", recursion_desired=False)).flags == 0


@pytest.mark.parametrize(
    ("query_id", "name"),
    [(-1, "a"), (0x10000, "a"), (1, "a" * 64), (1, "a..b"), (1, "é.example"), (1, ".".join(["a" * 63] * 4))],
)
def test_build_refuses_bad_input(query_id: int, name: str) -> None:
    with pytest.raises(ValueError):
        wire.build_query(query_id, name)


def test_compression_matches_scapy() -> None:
    msg = DnsMessage(
        id=9,
        flags=wire.FLAG_QR | wire.FLAG_AA,
        questions=[DnsQuestion("ws.lab.example")],
        answers=[
            DnsRecord("ws.lab.example", A, wire.CLASS_IN, 30, bytes((192, 0, 2, 5))),
            DnsRecord("db.lab.example", A, wire.CLASS_IN, 30, bytes((192, 0, 2, 6))),
        ],
    )
    scapy_msg = DNS(
        id=9,
        qr=1,
        aa=1,
        rd=0,
        qd=[DNSQR(qname="ws.lab.example")],
        an=[
            DNSRR(rrname="ws.lab.example", rdata="192.0.2.5", ttl=30),
            DNSRR(rrname="db.lab.example", rdata="192.0.2.6", ttl=30),
        ],
    )
    assert build(msg, compress=False) == bytes(scapy_msg)
    compressed = build(msg)
    assert compressed == bytes(scapy_compress(scapy_msg))
    assert parse(compressed) == msg
    assert len(compressed) < len(build(msg, compress=False))


labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
records = st.builds(
    DnsRecord,
    names,
    st.just(A),
    st.just(wire.CLASS_IN),
    st.integers(0, 0x7FFFFFFF),
    st.binary(min_size=4, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), names, st.lists(records, max_size=6), st.booleans())
def test_scapy_reads_what_we_write_and_we_read_what_it_writes(
    ident: int, qname: str, answers: list[DnsRecord], compress: bool
) -> None:
    msg = DnsMessage(id=ident, flags=wire.FLAG_QR, questions=[DnsQuestion(qname)], answers=answers)
    raw = build(msg, compress=compress)
    theirs = DNS(raw)
    assert theirs.id == ident and theirs.qd[0].qname.decode() == qname + "."
    assert [(rr.rrname.decode(), rr.ttl, rr.rdata) for rr in (theirs.an or [])] == [
        (r.name + ".", r.ttl, ".".join(map(str, r.data))) for r in answers
    ]
    assert parse(raw) == msg
    scapy_raw = bytes(scapy_compress(theirs)) if compress else bytes(theirs)
    assert parse(scapy_raw) == msg


# -- malformed input ------------------------------------------------------------------------

HEADER_1Q = bytes.fromhex("0001 0100 0001 0000 0000 0000")
HEADER_1A = bytes.fromhex("0001 8100 0000 0001 0000 0000")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "dns.header"),
        (bytes(11), "dns.header"),
        (bytes.fromhex("0001 0100 ffff 0000 0000 0000") + bytes(20), "dns.header"),  # counts too big
        (HEADER_1Q + b"\x09wsxyz", "dns.name"),  # label runs off the end
        (HEADER_1Q + b"\x02ws\x00\x00", "dns.question"),  # qtype/qclass cut short
        (HEADER_1Q + b"\xc0\x0c\x00\x01\x00\x01", "dns.name"),  # pointer to itself: a loop
        (HEADER_1Q + b"\xc0\x10\x00\x01\x00\x01", "dns.name"),  # pointer forwards
        (HEADER_1Q + b"\x01a\x01b\xc0", "dns.name"),  # pointer cut short
        (HEADER_1Q + b"\x42ab\x00\x00\x01\x00\x01", "dns.name"),  # label type 0x40 (RFC 6891 §5)
        (HEADER_1Q + b"\x03a.b\x00\x00\x01\x00\x01", "dns.name"),  # a dot inside a label
        (HEADER_1Q + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
         + b"\x00\x00\x01\x00\x01", "dns.name"),  # 257 bytes: longer than 255
        (HEADER_1A + b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x05" + bytes(5), "dns.answer"),  # A of 5
        (HEADER_1A + b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04" + bytes(3), "dns.answer"),  # rdlength
        (HEADER_1A + b"\x03abc\x00\x00\x01\x00\x01\x00\x00", "dns.answer"),  # record cut short
    ],
)  # fmt: skip
def test_malformed_input_names_the_field_and_keeps_the_position(raw: bytes, field: str) -> None:
    buf = Buffer(raw)
    with pytest.raises(MalformedPacket) as info:
        pull_dns(buf)
    assert info.value.field == field
    assert buf.tell() == 0


def test_pointer_chain_backwards_is_followed_and_ttl_top_bit_means_zero() -> None:
    # Question "b.a" then an answer whose owner is "c" + pointer to the question's "b.a".
    raw = (
        HEADER_1Q[:6]
        + b"\x00\x01\x00\x00\x00\x00"
        + b"\x01b\x01a\x00\x00\x01\x00\x01"
        + b"\x01c\xc0\x0c\x00\x01\x00\x01\x80\x00\x00\x00\x00\x04\xc0\x00\x02\x01"
    )
    raw = raw[:2] + b"\x81\x00" + raw[4:]
    msg = parse(raw)
    assert msg.answers[0].name == "c.b.a"
    assert msg.answers[0].ttl == 0x80000000
    assert wire.a_records(msg) == [(bytes((192, 0, 2, 1)), 0)]


def test_trailing_bytes_are_ignored() -> None:
    raw = CAPTURED[1]
    buf = Buffer(raw + b"\x00\x01")
    assert pull_dns(buf) == parse(raw)
    assert buf.eof()


def test_pull_at_an_offset_resolves_pointers_from_the_message_start() -> None:
    raw = CAPTURED[1]
    buf = Buffer(b"\xaa" * 7 + raw)
    buf.seek(7)
    assert pull_dns(buf) == parse(raw)


# -- fuzz and twins -------------------------------------------------------------------------

fuzz_inputs = st.one_of(st.binary(max_size=120), mutated(CAPTURED))


@FUZZ
@given(fuzz_inputs)
def test_bad_bytes_raise_only_malformed_packet(data: bytes) -> None:
    buf = Buffer(data)
    try:
        msg = pull_dns(buf)
    except MalformedPacket:
        assert buf.tell() == 0
        return
    # Whatever parses re-encodes (with and without compression) to a message that parses the same.
    assert parse(build(msg)) == msg
    assert parse(build(msg, compress=False)) == msg


@FUZZ
@given(fuzz_inputs)
def test_twins_agree(data: bytes) -> None:
    pure, compiled = twins("dns")
    pure_buffer, compiled_buffer = twins("buffer")
    ours: Any = outcome(pure.pull_dns, pure_buffer.Buffer, data)
    theirs: Any = outcome(compiled.pull_dns, compiled_buffer.Buffer, data)
    assert ours == theirs


def test_twins_build_the_same_query() -> None:
    pure, compiled = twins("dns")
    assert pure.build_query(5, "ws.lab.example") == compiled.build_query(5, "ws.lab.example")

# cython: annotation_typing=False
"""DNS messages (RFC 1035 §4.1): header, questions and resource records, enough to resolve A records.

The same source is compiled by Cython into ``_dns`` (see ``setup.py``); this file is the
pure-Python twin and the reference for behaviour.

Names are decoded by :func:`read_dns_name` (also used by :mod:`.dhcp` for option 119, which uses
the same encoding), with compression pointers resolved against the start of the message: every pointer must
aim below every offset already visited for the name, so a loop is impossible and a walk ends within
one jump per byte. Names come back without the trailing dot (the root is ``""``); a label holding a
dot or a non-ASCII byte is refused, which no host name has.

Record data is raw bytes, except that the names inside the types RFC 1035 lets a server compress
(NS, CNAME, SOA, PTR, MX) are kept uncompressed, so the data means the same wherever it is written.
A records (type 1, class IN) must carry exactly 4 bytes. Bytes after the last record are not part of
the message (RFC 1035 defines none) and are ignored.

Round trips: :func:`push_dns` ends every question and owner name with a pointer to the longest
suffix written before it (exact bytes) and writes names inside record data in full, though later
names may point into them; that is what dnsmasq does, so a parsed dnsmasq answer re-encodes byte for
byte. Bad network input to ``pull_dns`` raises only :class:`MalformedPacket`, naming
``dns.header``, ``dns.name``, ``dns.question``, ``dns.answer``, ``dns.authority`` or
``dns.additional``; bad input to ``push_*``/``build_*`` (a caller bug) raises ``ValueError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import _select
from .errors import MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from .buffer import Buffer
else:
    from ._buffer import Buffer

__all__ = [
    "CLASS_IN",
    "DNS_HEADER_LENGTH",
    "DNS_PORT",
    "FLAG_AA",
    "FLAG_QR",
    "FLAG_RA",
    "FLAG_RD",
    "FLAG_TC",
    "RCODE_NOERROR",
    "RCODE_NXDOMAIN",
    "RCODE_SERVFAIL",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_CNAME",
    "TYPE_OPT",
    "DnsMessage",
    "DnsQuestion",
    "DnsRecord",
    "a_records",
    "build_query",
    "pull_dns",
    "push_dns",
    "read_dns_name",
]

DNS_PORT = 53

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_OPT = 41  # RFC 6891 EDNS pseudo-record
CLASS_IN = 1

# Header flag bits (RFC 1035 §4.1.1): QR, Opcode (4 bits), AA, TC, RD, RA, Z (3 bits), RCODE (4 bits)
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080

RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

# DNS header, RFC 1035 §4.1.1
# field     format  default
# id        H       0          query id, copied into the response
# flags     H       0x0100     QR | Opcode | AA | TC | RD | RA | Z | RCODE (RD set: recursion desired)
# qdcount   H       (derived)  entries in the question section
# ancount   H       (derived)  resource records in the answer section
# nscount   H       (derived)  resource records in the authority section
# arcount   H       (derived)  resource records in the additional section
HEADER = struct.Struct("!HHHHHH")
DNS_HEADER_LENGTH = HEADER.size  # 12

# Question, RFC 1035 §4.1.2: QNAME (a name), then
# field     format  default
# qtype     H       1 (A)
# qclass    H       1 (IN)
QUESTION = struct.Struct("!HH")

# Resource record, RFC 1035 §4.1.3: NAME (a name), then
# field     format  default
# type      H       1 (A)
# class     H       1 (IN)
# ttl       I       0          seconds; RFC 2181 §8: a value with the top bit set means 0
# rdlength  H       (derived)  length of rdata
# rdata     (rdlength bytes)
RECORD = struct.Struct("!HHIH")

# Record data that holds names which RFC 1035 §4.1.4 lets a server compress (RFC 3597 §4 freezes the
# list: later types are never compressed). Such data is kept with its names uncompressed, so it
# means the same wherever it is written, and re-compressed on output. Layout: 0 = a name, n = n bytes.
_RDATA_NAMES: dict[int, tuple[int, ...]] = {
    2: (0,),  # NS
    5: (0,),  # CNAME
    6: (0, 0, 20),  # SOA: MNAME, RNAME, SERIAL REFRESH RETRY EXPIRE MINIMUM
    12: (0,),  # PTR
    15: (2, 0),  # MX: PREFERENCE, EXCHANGE
}

# RFC 1035 §4.1.4: a pointer carries a 14-bit offset, so only names starting below it can be targets.
_MAX_POINTER = 0x3FFF
# RFC 1035 §2.3.4
_MAX_NAME = 255
_MAX_LABEL = 63


@dataclass(slots=True)
class DnsQuestion:
    name: str
    qtype: int = TYPE_A
    qclass: int = CLASS_IN


@dataclass(slots=True)
class DnsRecord:
    name: str
    type: int = TYPE_A
    rclass: int = CLASS_IN
    ttl: int = 0
    data: bytes = b""


@dataclass(slots=True)
class DnsMessage:
    id: int = 0
    flags: int = FLAG_RD
    questions: list[DnsQuestion] = field(default_factory=list)
    answers: list[DnsRecord] = field(default_factory=list)
    authorities: list[DnsRecord] = field(default_factory=list)
    additionals: list[DnsRecord] = field(default_factory=list)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TC)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


# -- names (RFC 1035 §3.1, §4.1.4) ------------------------------------------------------------


def _label(raw: bytes, field: str) -> str:
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPacket(field, "a name label is not ASCII") from None
    if "." in text:
        raise MalformedPacket(field, "a name label contains a dot")
    return text


def read_dns_name(raw: bytes, start: int, field: str = "dns.name", unit: str = "message") -> tuple[str, int]:
    """One RFC 1035 §4.1.4 name at ``start`` of ``raw``; returns it and the offset after it.

    Compression pointers are offsets into ``raw``: the whole DNS message, or the whole value of
    DHCP option 119 (RFC 3397 §2, which calls ``unit`` "option"). Each pointer must aim below every
    offset already visited for this name, so a loop is impossible and the walk ends within
    ``len(raw)`` jumps. Errors are :class:`MalformedPacket` naming ``field``.
    """
    labels: list[str] = []
    n = len(raw)
    i = start
    lowest = start
    after = -1
    size = 1
    while True:
        if i >= n:
            raise MalformedPacket(field, f"name runs past the end of the {unit}")
        length = raw[i]
        if length == 0:
            if after < 0:
                after = i + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if i + 1 >= n:
                raise MalformedPacket(field, "compression pointer cut short")
            target = ((length & 0x3F) << 8) | raw[i + 1]
            if after < 0:
                after = i + 2
            if target >= lowest:
                raise MalformedPacket(field, f"compression pointer to {target} does not point backwards")
            lowest = target
            i = target
            continue
        if kind:
            raise MalformedPacket(field, f"label type 0x{kind:02x} is not defined")
        if i + 1 + length > n:
            raise MalformedPacket(field, f"label length {length} overruns the {unit}")
        size += 1 + length
        if size > 255:
            raise MalformedPacket(field, "name longer than 255 bytes")
        labels.append(_label(raw[i + 1 : i + 1 + length], field))
        i += 1 + length
    return ".".join(labels), after


# -- parsing --------------------------------------------------------------------------------


def _pull_name(buf: Buffer, start: int, message: bytes, where: str) -> str:
    offset = buf.tell() - start
    try:
        name, after = read_dns_name(message, offset)
    except MalformedPacket as exc:
        raise MalformedPacket("dns.name", f"{where} at offset {offset}: {exc.reason}") from None
    buf.seek(start + after)
    return name


def _pull_rdata(buf: Buffer, start: int, message: bytes, header: tuple[int, int], where: str) -> bytes:
    rtype, rdlength = header
    layout = _RDATA_NAMES.get(rtype)
    if layout is None:
        return buf.pull_bytes(rdlength, where)
    buf.require(rdlength, where)
    end = buf.tell() + rdlength
    out = bytearray()
    for part in layout:
        if part:
            out += buf.pull_bytes(part, where)
        else:
            name = _pull_name(buf, start, message, f"{where[4:]} rdata")
            out += _wire_name(name)
        if buf.tell() > end:
            raise MalformedPacket(where, f"type {rtype} data runs past its rdlength {rdlength}")
    if buf.tell() != end:
        raise MalformedPacket(where, f"type {rtype} data ends before its rdlength {rdlength}")
    return bytes(out)


def _pull_records(buf: Buffer, start: int, message: bytes, count: int, section: str) -> list[DnsRecord]:
    where = f"dns.{section}"
    records: list[DnsRecord] = []
    for _ in range(count):
        name = _pull_name(buf, start, message, section)
        rtype, rclass, ttl, rdlength = buf.pull_struct(RECORD, where)
        if rtype == TYPE_A and rclass == CLASS_IN and rdlength != 4:
            raise MalformedPacket(where, f"A record for {name!r} has {rdlength} bytes of data, not 4")
        data = _pull_rdata(buf, start, message, (rtype, rdlength), where)
        records.append(DnsRecord(name, rtype, rclass, ttl, data))
    return records


def pull_dns(buf: Buffer) -> DnsMessage:
    """Parse one DNS message taking the rest of ``buf``; on error the position is left unchanged."""
    start = buf.tell()
    try:
        return _pull_dns(buf, start)
    except MalformedPacket:
        buf.seek(start)
        raise


def _pull_dns(buf: Buffer, start: int) -> DnsMessage:
    message = buf.data_slice(start, len(buf))
    ident, flags, qdcount, ancount, nscount, arcount = buf.pull_struct(HEADER, "dns.header")
    # Each question takes at least 5 bytes and each record 11: refuse counts the message cannot
    # hold before building anything for them.
    needed = qdcount * 5 + (ancount + nscount + arcount) * 11
    if needed > len(message) - DNS_HEADER_LENGTH:
        raise MalformedPacket(
            "dns.header",
            f"counts {qdcount}/{ancount}/{nscount}/{arcount} need at least {needed} bytes, "
            f"{len(message) - DNS_HEADER_LENGTH} follow the header",
        )
    questions: list[DnsQuestion] = []
    for _ in range(qdcount):
        name = _pull_name(buf, start, message, "question")
        qtype, qclass = buf.pull_struct(QUESTION, "dns.question")
        questions.append(DnsQuestion(name, qtype, qclass))
    answers = _pull_records(buf, start, message, ancount, "answer")
    authorities = _pull_records(buf, start, message, nscount, "authority")
    additionals = _pull_records(buf, start, message, arcount, "additional")
    buf.seek(len(buf))  # trailing bytes belong to no section
    return DnsMessage(ident, flags, questions, answers, authorities, additionals)


# -- building -------------------------------------------------------------------------------


def _labels(name: str) -> list[bytes]:
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped:
        return []
    try:
        labels = [label.encode("ascii") for label in stripped.split(".")]
    except UnicodeEncodeError:
        raise ValueError(f"DNS name {name!r} is not ASCII") from None
    size = 1
    for label in labels:
        if not 1 <= len(label) <= _MAX_LABEL:
            raise ValueError(f"label {label!r} in DNS name {name!r} is not 1..{_MAX_LABEL} bytes")
        size += 1 + len(label)
    if size > _MAX_NAME:
        raise ValueError(f"DNS name {name!r} is {size} bytes on the wire, at most {_MAX_NAME}")
    return labels


def _push_name(
    buf: Buffer, start: int, name: str, table: dict[tuple[bytes, ...], int] | None, point: bool = True
) -> None:
    """Write ``name``; with a ``table``, record where each suffix starts and, when ``point``, end
    the name with a pointer to the longest suffix already written."""
    labels = _labels(name)
    for i in range(len(labels)):
        suffix = tuple(labels[i:])
        if table is not None:
            target = table.get(suffix) if point else None
            if target is not None:
                buf.push_uint16(0xC000 | target)
                return
            offset = buf.tell() - start
            if offset <= _MAX_POINTER:
                table[suffix] = offset
        buf.push_uint8(len(labels[i]))
        buf.push_bytes(labels[i])
    buf.push_uint8(0)


def _wire_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split(".") if name else ():
        out.append(len(label))
        out += label.encode("ascii")
    out.append(0)
    return bytes(out)


def _plain_name(data: bytes, pos: int, record: DnsRecord) -> tuple[str, int]:
    """A name in uncompressed wire form inside caller-supplied record data."""
    try:
        name, after = read_dns_name(data, pos)
    except MalformedPacket as exc:
        raise ValueError(f"type {record.type} data for {record.name!r}: {exc.reason}") from None
    if after - pos != len(_wire_name(name)):
        raise ValueError(f"type {record.type} data for {record.name!r} holds a compressed name")
    return name, after


def push_dns(buf: Buffer, msg: DnsMessage, *, compress: bool = True) -> None:
    """Write ``msg`` at the position of ``buf``; counts come from the section lengths, and with
    ``compress`` each name ends in a pointer to the longest suffix already written (RFC 1035 §4.1.4)."""
    start = buf.tell()
    table: dict[tuple[bytes, ...], int] | None = {} if compress else None
    counts = (len(msg.questions), len(msg.answers), len(msg.authorities), len(msg.additionals))
    if max(counts) > 0xFFFF:
        raise ValueError(f"DNS section counts {counts} exceed 65535")
    buf.push_struct(HEADER, msg.id, msg.flags, *counts)
    for question in msg.questions:
        _push_name(buf, start, question.name, table)
        buf.push_struct(QUESTION, question.qtype, question.qclass)
    for section in (msg.answers, msg.authorities, msg.additionals):
        for record in section:
            _push_record(buf, start, record, table)


def _push_record(
    buf: Buffer, start: int, record: DnsRecord, table: dict[tuple[bytes, ...], int] | None
) -> None:
    _push_name(buf, start, record.name, table)
    data = bytes(record.data)
    layout = _RDATA_NAMES.get(record.type)
    if layout is None:
        if len(data) > 0xFFFF:
            raise ValueError(f"record data for {record.name!r} is {len(data)} bytes, at most 65535")
        buf.push_struct(RECORD, record.type, record.rclass, record.ttl, len(data))
        buf.push_bytes(data)
        return
    buf.push_struct(RECORD, record.type, record.rclass, record.ttl, 0)
    rdata_at = buf.tell()
    pos = 0
    for part in layout:
        if part:
            if pos + part > len(data):
                raise ValueError(f"type {record.type} data for {record.name!r} is cut short")
            buf.push_bytes(data[pos : pos + part])
            pos += part
            continue
        name, pos = _plain_name(data, pos, record)
        # Written in full, as dnsmasq does (old parsers mishandle pointers in record data), but
        # later names may point into it.
        _push_name(buf, start, name, table, point=False)
    if pos != len(data):
        raise ValueError(f"type {record.type} data for {record.name!r} has {len(data) - pos} extra bytes")
    end = buf.tell()
    if end - rdata_at > 0xFFFF:
        raise ValueError(f"record data for {record.name!r} is {end - rdata_at} bytes, at most 65535")
    buf.seek(rdata_at - 2)
    buf.push_uint16(end - rdata_at)
    buf.seek(end)


def build_query(query_id: int, name: str, qtype: int = TYPE_A, *, recursion_desired: bool = True) -> bytes:
    """One standard query (opcode 0) for ``name``: what a stub resolver sends."""
    if not 0 <= query_id <= 0xFFFF:
        raise ValueError(f"DNS query id {query_id} outside 0..65535")
    msg = DnsMessage(
        id=query_id,
        flags=FLAG_RD if recursion_desired else 0,
        questions=[DnsQuestion(name, qtype, CLASS_IN)],
    )
    buf = Buffer()
    push_dns(buf, msg)
    return buf.data


def a_records(msg: DnsMessage) -> list[tuple[bytes, int]]:
    """(address, TTL) of every A/IN record in the answer section, in order.

    A resolver's answer section holds only the question's chain (CNAMEs, then the A records of the
    final name), so every A record there answers the question. A TTL with the top bit set counts as
    0 (RFC 2181 §8).
    """
    return [
        (record.data, record.ttl if record.ttl < 0x80000000 else 0)
        for record in msg.answers
        if record.type == TYPE_A and record.rclass == CLASS_IN
    ]

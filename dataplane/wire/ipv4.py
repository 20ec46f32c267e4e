# cython: annotation_typing=False
"""IPv4 headers (RFC 791 §3.1), with options kept raw and parsed on demand.

The same source is compiled by Cython into ``_ipv4`` (see ``setup.py``); this file is the
pure-Python twin and the reference for behaviour.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _select
from .errors import BufferWriteError, MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from . import checksum
    from .buffer import Buffer
else:
    from . import _checksum as checksum
    from ._buffer import Buffer

__all__ = [
    "IPV4_OPT_EOL",
    "IPV4_OPT_LSRR",
    "IPV4_OPT_NOP",
    "IPV4_OPT_RA",
    "IPV4_OPT_RR",
    "IPV4_OPT_SSRR",
    "IPV4_OPT_TS",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "IPv4Header",
    "IPv4Option",
    "encode_ipv4_options",
    "format_ipv4",
    "ipv4_options",
    "ipv4_payload_length",
    "parse_ipv4",
    "pull_ipv4",
    "pull_ipv4_quoted",
    "push_ipv4",
    "verify_ipv4_checksum",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# Option types (RFC 791 §3.1; router alert RFC 2113). The type octet already holds the copied flag.
IPV4_OPT_EOL = 0
IPV4_OPT_NOP = 1
IPV4_OPT_RR = 7
IPV4_OPT_TS = 68
IPV4_OPT_LSRR = 131
IPV4_OPT_SSRR = 137
IPV4_OPT_RA = 148

# IPv4 header, RFC 791 §3.1
# field            format  default
# version | ihl    B       4 | 5        ihl counts 32-bit words, options included
# tos              B       0            DSCP | ECN (RFC 2474, RFC 3168)
# total_length     H       (required)   header + payload, in bytes
# identification   H       0
# flags | offset   H       0            reserved, DF, MF | fragment offset in 8-byte units
# ttl              B       64
# protocol         B       (required)   PROTO_ICMP, PROTO_TCP, PROTO_UDP, ...
# checksum         H       (computed)   RFC 1071 over the header only
# src              4s      (required)
# dst              4s      (required)
# options          ...     b""          up to 40 bytes, padded to a multiple of 4
HEADER = struct.Struct("!BBHHHBBH4s4s")
HEADER_LENGTH = HEADER.size  # 20
MAX_OPTIONS = 40  # ihl is 4 bits: at most 15 words

_FLAG_RESERVED = 0x8000
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF
_ZERO_ADDRESS = b"\x00\x00\x00\x00"


@dataclass(slots=True)
class IPv4Header:
    version: int = 4
    ihl: int = 5
    tos: int = 0
    total_length: int = HEADER_LENGTH
    identification: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    fragment_offset: int = 0
    ttl: int = 64
    protocol: int = 0
    checksum: int = 0
    src: bytes = _ZERO_ADDRESS
    dst: bytes = _ZERO_ADDRESS
    options: bytes = b""
    # RFC 791 says the first flag bit "must be zero"; kept so parse -> build is byte-exact anyway.
    reserved_flag: bool = False

    @property
    def header_length(self) -> int:
        return self.ihl * 4

    @property
    def is_fragment(self) -> bool:
        """True for every fragment, the first one (MF set, offset 0) included."""
        return self.more_fragments or self.fragment_offset != 0


@dataclass(slots=True)
class IPv4Option:
    """One option: ``kind`` is the whole type octet; ``data`` excludes the type and length octets."""

    kind: int
    data: bytes = b""


def _pull(buf: Buffer, quoted: bool) -> IPv4Header:
    available = buf.remaining()
    vihl, tos, total_length, identification, frag, ttl, protocol, csum, src, dst = buf.pull_struct(
        HEADER, "ipv4.header"
    )
    version = vihl >> 4
    ihl = vihl & 0x0F
    if version != 4:
        raise MalformedPacket("ipv4.version", f"version {version}, expected 4")
    if ihl < 5:
        raise MalformedPacket("ipv4.ihl", f"{ihl} words, below the minimum of 5")
    header_length = ihl * 4
    if header_length > available:
        raise MalformedPacket("ipv4.ihl", f"{header_length} header bytes, {available} available")
    # A datagram quoted inside an ICMP error (RFC 792, RFC 1812 §4.3.2.3) is cut short on purpose:
    # its total_length describes the original datagram, not the bytes quoted, so neither bound holds.
    if not quoted:
        if total_length < header_length:
            raise MalformedPacket("ipv4.total_length", f"{total_length} is shorter than the header")
        if total_length > available:
            raise MalformedPacket("ipv4.total_length", f"{total_length} bytes, {available} available")
    options = buf.pull_bytes(header_length - HEADER_LENGTH, "ipv4.options")
    if options:
        _walk_options(options)
    return IPv4Header(
        version=version,
        ihl=ihl,
        tos=tos,
        total_length=total_length,
        identification=identification,
        dont_fragment=bool(frag & _FLAG_DF),
        more_fragments=bool(frag & _FLAG_MF),
        fragment_offset=frag & _OFFSET_MASK,
        ttl=ttl,
        protocol=protocol,
        checksum=csum,
        src=src,
        dst=dst,
        options=options,
        reserved_flag=bool(frag & _FLAG_RESERVED),
    )


def pull_ipv4(buf: Buffer) -> IPv4Header:
    """Read a header and leave ``buf`` at the payload (``ipv4_payload_length`` bytes of it).

    The whole datagram must be present; bytes past ``total_length`` (Ethernet padding) are left
    unread. On failure ``buf`` is where it was.
    """
    start = buf.tell()
    try:
        return _pull(buf, False)
    except MalformedPacket:
        buf.seek(start)
        raise


def pull_ipv4_quoted(buf: Buffer) -> IPv4Header:
    """:func:`pull_ipv4` for a datagram quoted in an ICMP error, which may be truncated."""
    start = buf.tell()
    try:
        return _pull(buf, True)
    except MalformedPacket:
        buf.seek(start)
        raise


def push_ipv4(buf: Buffer, header: IPv4Header, *, compute_checksum: bool = True) -> None:
    """Write ``header``; ``ihl`` follows from ``options``, the checksum is computed unless told not to.

    ``compute_checksum=False`` writes ``header.checksum`` as it is (byte-exact replay, or a
    checksum already updated incrementally).
    """
    options = header.options
    if len(options) % 4 or len(options) > MAX_OPTIONS:
        raise BufferWriteError(
            f"IPv4 options must be a multiple of 4 up to {MAX_OPTIONS} bytes, not {len(options)}"
        )
    if not 0 <= header.fragment_offset <= _OFFSET_MASK:
        raise BufferWriteError(f"fragment offset out of range: {header.fragment_offset}")
    ihl = 5 + len(options) // 4
    frag = header.fragment_offset
    if header.dont_fragment:
        frag |= _FLAG_DF
    if header.more_fragments:
        frag |= _FLAG_MF
    if header.reserved_flag:
        frag |= _FLAG_RESERVED
    start = buf.tell()
    buf.push_struct(
        HEADER,
        (header.version & 0x0F) << 4 | ihl,
        header.tos,
        header.total_length,
        header.identification,
        frag,
        header.ttl,
        header.protocol,
        0 if compute_checksum else header.checksum,
        header.src,
        header.dst,
    )
    if options:
        buf.push_bytes(options)
    if compute_checksum:
        end = buf.tell()
        value = checksum.internet_checksum(buf.data_slice(start, end))
        buf.seek(start + 10)
        buf.push_uint16(value)
        buf.seek(end)


def ipv4_payload_length(header: IPv4Header) -> int:
    return header.total_length - header.ihl * 4


def verify_ipv4_checksum(raw: bytes | bytearray | memoryview) -> bool:
    """True when the header at the start of ``raw`` sums to zero (RFC 1071 §1, check on receipt)."""
    if len(raw) < HEADER_LENGTH:
        raise MalformedPacket("ipv4.header", f"needs {HEADER_LENGTH} bytes, {len(raw)} given")
    header_length = (raw[0] & 0x0F) * 4
    if header_length < HEADER_LENGTH or header_length > len(raw):
        raise MalformedPacket("ipv4.ihl", f"{header_length} header bytes, {len(raw)} given")
    return checksum.ones_sum(raw, 0, header_length) == 0xFFFF


def _walk_options(options: bytes) -> list[IPv4Option]:
    # RFC 791 §3.1: EOL and NOP are one octet; every other option is type, length (counting
    # both octets), data. Anything after EOL is padding.
    found: list[IPv4Option] = []
    size = len(options)
    pos = 0
    while pos < size:
        kind = options[pos]
        if kind == IPV4_OPT_EOL:
            found.append(IPv4Option(kind))
            break
        if kind == IPV4_OPT_NOP:
            found.append(IPv4Option(kind))
            pos += 1
            continue
        if pos + 1 >= size:
            raise MalformedPacket("ipv4.option.length", f"option {kind} at {pos} has no length octet")
        length = options[pos + 1]
        if length < 2:
            raise MalformedPacket("ipv4.option.length", f"option {kind} claims {length} bytes, below 2")
        if pos + length > size:
            raise MalformedPacket(
                "ipv4.option.length",
                f"option {kind} of {length} bytes at {pos} overruns {size} bytes of options",
            )
        found.append(IPv4Option(kind, options[pos + 2 : pos + length]))
        pos += length
    return found


def ipv4_options(header: IPv4Header) -> list[IPv4Option]:
    """The options of ``header`` in order, up to and including an EOL."""
    return _walk_options(header.options)


def encode_ipv4_options(options: list[IPv4Option]) -> bytes:
    """Options as they go in :attr:`IPv4Header.options`, padded with EOL octets to 4 bytes."""
    out = bytearray()
    for option in options:
        if option.kind in (IPV4_OPT_EOL, IPV4_OPT_NOP):
            out.append(option.kind)
            continue
        if len(option.data) > 253:
            raise BufferWriteError(f"IPv4 option {option.kind} data too long: {len(option.data)}")
        out.append(option.kind)
        out.append(len(option.data) + 2)
        out += option.data
    out += bytes(-len(out) % 4)
    if len(out) > MAX_OPTIONS:
        raise BufferWriteError(f"IPv4 options take {len(out)} bytes, at most {MAX_OPTIONS} fit")
    return bytes(out)


def format_ipv4(address: bytes) -> str:
    return ".".join(str(b) for b in address)


def parse_ipv4(text: str) -> bytes:
    """``"192.0.2.1"`` to 4 bytes; strict dotted quad (no ``inet_aton`` shorthands like ``"10.1"``)."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() and len(p) <= 3 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    values = [int(p) for p in parts]
    if any(v > 255 for v in values):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(values)

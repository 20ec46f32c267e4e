# cython: annotation_typing=False
"""ICMP messages (RFC 792), with Fragmentation Needed's next-hop MTU (RFC 1191 §4) and the datagram
that error messages quote (RFC 792, RFC 1812 §4.3.2.3).

The same source is compiled by Cython into ``_icmp`` (see ``setup.py``); this file is the
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
    from . import checksum, ipv4
    from .buffer import Buffer
else:
    from . import _checksum as checksum
    from . import _ipv4 as ipv4
    from ._buffer import Buffer

if TYPE_CHECKING:
    from .ipv4 import IPv4Header

__all__ = [
    "ICMP_DEST_UNREACH",
    "ICMP_ECHO_REPLY",
    "ICMP_ECHO_REQUEST",
    "ICMP_ERROR_TYPES",
    "ICMP_EXC_FRAGTIME",
    "ICMP_EXC_TTL",
    "ICMP_FRAG_NEEDED",
    "ICMP_HOST_UNREACH",
    "ICMP_NET_UNREACH",
    "ICMP_PARAMETER_PROBLEM",
    "ICMP_PKT_FILTERED",
    "ICMP_PORT_UNREACH",
    "ICMP_PROT_UNREACH",
    "ICMP_REDIRECT",
    "ICMP_SOURCE_QUENCH",
    "ICMP_TIME_EXCEEDED",
    "IcmpMessage",
    "embedded_ipv4",
    "icmp_checksum",
    "icmp_destination_unreachable",
    "icmp_echo_reply",
    "icmp_echo_request",
    "icmp_frag_needed",
    "icmp_is_error",
    "icmp_parameter_problem",
    "icmp_time_exceeded",
    "pull_icmp",
    "push_icmp",
    "verify_icmp_checksum",
]

# Types (RFC 792)
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4  # deprecated by RFC 6633, still an error type for translation
ICMP_REDIRECT = 5
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETER_PROBLEM = 12
# Types whose payload quotes the datagram that caused them.
ICMP_ERROR_TYPES = frozenset(
    (ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED, ICMP_PARAMETER_PROBLEM)
)

# Destination Unreachable codes (RFC 792; 13 from RFC 1812 §5.2.7.1)
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_PKT_FILTERED = 13
# Time Exceeded codes (RFC 792)
ICMP_EXC_TTL = 0
ICMP_EXC_FRAGTIME = 1

# ICMP message, RFC 792
# field     format  default
# type      B       (required)
# code      B       0
# checksum  H       (computed)  RFC 1071 over the whole message, no pseudo-header
# rest      4s      zeros       echo: identifier H, sequence H; 3/4: unused H, next-hop MTU H
#                               (RFC 1191 §4); 12: pointer B, unused 3s; other errors: unused
# payload   ...     b""         echo data, or the quoted datagram of an error
HEADER = struct.Struct("!BBH4s")
HEADER_LENGTH = HEADER.size  # 8
_ZERO_REST = b"\x00\x00\x00\x00"
_PAIR = struct.Struct("!HH")

# RFC 1812 §4.3.2.3: quote as much as fits in a 576-byte ICMP datagram (20 IP + 8 ICMP = 28).
DEFAULT_MAX_QUOTE = 576 - 28
# RFC 792: at least the IP header and the first 64 bits of the datagram's data.
_MIN_QUOTED_DATA = 8


@dataclass(slots=True)
class IcmpMessage:
    type: int
    code: int = 0
    checksum: int = 0
    rest: bytes = _ZERO_REST
    payload: bytes = b""

    @property
    def identifier(self) -> int:
        """Echo identifier (types 0 and 8)."""
        return self.rest[0] << 8 | self.rest[1]

    @property
    def sequence(self) -> int:
        """Echo sequence number (types 0 and 8)."""
        return self.rest[2] << 8 | self.rest[3]

    @property
    def next_hop_mtu(self) -> int:
        """Fragmentation Needed (3/4) next-hop MTU (RFC 1191 §4); 0 from pre-RFC 1191 routers."""
        return self.rest[2] << 8 | self.rest[3]

    @property
    def pointer(self) -> int:
        """Parameter Problem (12) octet offset of the error in the quoted header."""
        return self.rest[0]


def pull_icmp(buf: Buffer, length: int = -1) -> IcmpMessage:
    """Read a message of ``length`` bytes (by default, all that remains: pass the IP payload length
    when padding may follow). On failure ``buf`` is where it was.
    """
    if length < 0:
        length = buf.remaining()
    buf.require(length, "icmp.length")
    if length < HEADER_LENGTH:
        raise MalformedPacket("icmp.header", f"needs {HEADER_LENGTH} bytes, {length} given")
    type_, code, csum, rest = buf.pull_struct(HEADER, "icmp.header")
    payload = buf.pull_bytes(length - HEADER_LENGTH, "icmp.payload")
    return IcmpMessage(type=type_, code=code, checksum=csum, rest=rest, payload=payload)


def _encode(message: IcmpMessage, csum: int) -> bytes:
    if len(message.rest) != 4:
        raise BufferWriteError(f"ICMP rest of header is 4 bytes, not {len(message.rest)}")
    out = Buffer()
    out.push_struct(HEADER, message.type, message.code, csum, message.rest)
    out.push_bytes(message.payload)
    return out.data


def icmp_checksum(message: IcmpMessage) -> int:
    """The checksum of ``message`` (its own ``checksum`` ignored)."""
    return checksum.internet_checksum(_encode(message, 0))


def push_icmp(buf: Buffer, message: IcmpMessage, *, compute_checksum: bool = True) -> None:
    """Write ``message``; ``compute_checksum=False`` writes ``message.checksum`` as it is."""
    raw = _encode(message, 0 if compute_checksum else message.checksum)
    if compute_checksum:
        value = checksum.internet_checksum(raw)
        raw = raw[:2] + bytes((value >> 8, value & 0xFF)) + raw[4:]
    buf.push_bytes(raw)


def verify_icmp_checksum(raw: bytes | bytearray | memoryview) -> bool:
    """True when the whole message in ``raw`` sums to zero."""
    if len(raw) < HEADER_LENGTH:
        raise MalformedPacket("icmp.header", f"needs {HEADER_LENGTH} bytes, {len(raw)} given")
    return checksum.ones_sum(raw) == 0xFFFF


def icmp_is_error(message: IcmpMessage) -> bool:
    return message.type in ICMP_ERROR_TYPES


def _finish(message: IcmpMessage) -> IcmpMessage:
    message.checksum = icmp_checksum(message)
    return message


def _pair(first: int, second: int) -> bytes:
    try:
        return _PAIR.pack(first, second)
    except struct.error as exc:
        raise BufferWriteError(f"cannot pack {first!r}, {second!r}: {exc}") from None


def icmp_echo_request(identifier: int, sequence: int, data: bytes = b"") -> IcmpMessage:
    return _finish(IcmpMessage(ICMP_ECHO_REQUEST, 0, 0, _pair(identifier, sequence), bytes(data)))


def icmp_echo_reply(identifier: int, sequence: int, data: bytes = b"") -> IcmpMessage:
    return _finish(IcmpMessage(ICMP_ECHO_REPLY, 0, 0, _pair(identifier, sequence), bytes(data)))


def _quote(datagram: bytes, max_quote: int) -> bytes:
    try:
        header = ipv4.pull_ipv4_quoted(Buffer(datagram))
    except MalformedPacket as exc:
        raise MalformedPacket("icmp.embedded", f"{exc.field}: {exc.reason}") from None
    wanted = max(header.ihl * 4 + _MIN_QUOTED_DATA, max_quote)
    return bytes(datagram[: min(wanted, len(datagram), max(header.total_length, header.ihl * 4))])


def icmp_destination_unreachable(
    code: int, datagram: bytes, *, next_hop_mtu: int = 0, max_quote: int = DEFAULT_MAX_QUOTE
) -> IcmpMessage:
    """Type 3 quoting ``datagram`` (the offending IPv4 datagram, from its header on).

    ``next_hop_mtu`` fills the low half of the rest of header, as RFC 1191 §4 has it for code 4.
    """
    return _finish(
        IcmpMessage(ICMP_DEST_UNREACH, code, 0, _pair(0, next_hop_mtu), _quote(datagram, max_quote))
    )


def icmp_frag_needed(
    next_hop_mtu: int, datagram: bytes, *, max_quote: int = DEFAULT_MAX_QUOTE
) -> IcmpMessage:
    """3/4: ``datagram`` had DF set and exceeds ``next_hop_mtu`` (RFC 1191 §4)."""
    return icmp_destination_unreachable(
        ICMP_FRAG_NEEDED, datagram, next_hop_mtu=next_hop_mtu, max_quote=max_quote
    )


def icmp_time_exceeded(code: int, datagram: bytes, *, max_quote: int = DEFAULT_MAX_QUOTE) -> IcmpMessage:
    return _finish(IcmpMessage(ICMP_TIME_EXCEEDED, code, 0, _ZERO_REST, _quote(datagram, max_quote)))


def icmp_parameter_problem(
    pointer: int, datagram: bytes, *, max_quote: int = DEFAULT_MAX_QUOTE
) -> IcmpMessage:
    if not 0 <= pointer <= 0xFF:
        raise BufferWriteError(f"parameter problem pointer out of range: {pointer}")
    rest = bytes((pointer, 0, 0, 0))
    return _finish(IcmpMessage(ICMP_PARAMETER_PROBLEM, 0, 0, rest, _quote(datagram, max_quote)))


def embedded_ipv4(message: IcmpMessage) -> tuple[IPv4Header, bytes]:
    """The header of the datagram an error quotes, and the quoted bytes of its payload.

    The quote is usually cut short (RFC 792 asks only for 8 bytes of data), so the header's
    ``total_length`` may exceed what is here: it is parsed with :func:`pull_ipv4_quoted`, which
    checks everything but that bound. The payload returned is what was quoted, at most
    ``total_length - ihl * 4`` bytes.
    """
    if message.type not in ICMP_ERROR_TYPES:
        raise MalformedPacket("icmp.type", f"type {message.type} quotes no datagram")
    buf = Buffer(message.payload)
    try:
        header = ipv4.pull_ipv4_quoted(buf)
    except MalformedPacket as exc:
        raise MalformedPacket("icmp.embedded", f"{exc.field}: {exc.reason}") from None
    quoted = buf.pull_bytes(buf.remaining(), "icmp.embedded")
    original = header.total_length - header.ihl * 4
    if 0 <= original < len(quoted):
        quoted = quoted[:original]
    return header, quoted

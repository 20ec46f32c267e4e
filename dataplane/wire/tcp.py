# cython: annotation_typing=False
"""TCP headers (RFC 9293 §3.1) and options (RFC 9293 §3.2 MSS; RFC 7323 window scale and
timestamps; RFC 2018 SACK-permitted and SACK).

Options are kept as parsed, padding included, so bytes -> object -> bytes is exact; the typed
accessors and constructors below read and make the common ones. The same source is compiled by
Cython into ``_tcp`` (see ``setup.py``); this file is the pure-Python twin and the reference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
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
    "TCPOPT_EOL",
    "TCPOPT_MSS",
    "TCPOPT_NOP",
    "TCPOPT_SACK",
    "TCPOPT_SACK_PERMITTED",
    "TCPOPT_TIMESTAMPS",
    "TCPOPT_WINDOW_SCALE",
    "TCP_ACK",
    "TCP_CWR",
    "TCP_ECE",
    "TCP_FIN",
    "TCP_NS",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "TcpHeader",
    "TcpOption",
    "encode_tcp_options",
    "pull_tcp",
    "push_tcp",
    "tcp_checksum",
    "tcp_mss",
    "tcp_mss_option",
    "tcp_sack_blocks",
    "tcp_sack_option",
    "tcp_sack_permitted",
    "tcp_sack_permitted_option",
    "tcp_timestamps",
    "tcp_timestamps_option",
    "tcp_window_scale",
    "tcp_window_scale_option",
    "verify_tcp_checksum",
]

_PROTO_TCP = 6

# Control bits, low to high (RFC 9293 §3.1; ECE and CWR RFC 3168 §6.1; NS RFC 3540, historic).
TCP_FIN = 0x001
TCP_SYN = 0x002
TCP_RST = 0x004
TCP_PSH = 0x008
TCP_ACK = 0x010
TCP_URG = 0x020
TCP_ECE = 0x040
TCP_CWR = 0x080
TCP_NS = 0x100

# Option kinds and their total lengths (type and length octets included).
TCPOPT_EOL = 0  # 1 octet; what follows is padding
TCPOPT_NOP = 1  # 1 octet
TCPOPT_MSS = 2  # 4: MSS (RFC 9293 §3.2), SYN only
TCPOPT_WINDOW_SCALE = 3  # 3: shift count (RFC 7323 §2.2), SYN only
TCPOPT_SACK_PERMITTED = 4  # 2 (RFC 2018 §2), SYN only
TCPOPT_SACK = 5  # 2 + 8n: n (left, right) edge pairs (RFC 2018 §3)
TCPOPT_TIMESTAMPS = 8  # 10: TSval, TSecr (RFC 7323 §3.2)

_FIXED_LENGTHS = {
    TCPOPT_MSS: (4, "tcp.option.mss"),
    TCPOPT_WINDOW_SCALE: (3, "tcp.option.window_scale"),
    TCPOPT_SACK_PERMITTED: (2, "tcp.option.sack_permitted"),
    TCPOPT_TIMESTAMPS: (10, "tcp.option.timestamps"),
}

# TCP header, RFC 9293 §3.1
# field                     format  default
# src_port                  H       (required)
# dst_port                  H       (required)
# seq                       I       0
# ack                       I       0
# offset | reserved | flags H       5 | 0 | 0   offset in 32-bit words (4 bits), 3 reserved, 9 flags
# window                    H       0
# checksum                  H       (computed)  over the IPv4 pseudo-header, header and data
# urgent                    H       0
# options                   ...     []          up to 40 bytes, padded to a multiple of 4
HEADER = struct.Struct("!HHIIHHHH")
HEADER_LENGTH = HEADER.size  # 20
MAX_OPTIONS = 40
_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")


@dataclass(slots=True)
class TcpOption:
    """One option as on the wire, without its type and length octets.

    An EOL parsed from the wire keeps the padding that follows it in ``data``, so that re-encoding
    reproduces the exact bytes; a NOP has no data.
    """

    kind: int
    data: bytes = b""


@dataclass(slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    data_offset: int = 5
    flags: int = 0
    window: int = 0
    checksum: int = 0
    urgent: int = 0
    options: list[TcpOption] = field(default_factory=list)
    # Bits 4-6 of the offset octet are reserved (RFC 9293 §3.1); kept so round trips are exact.
    reserved: int = 0

    @property
    def header_length(self) -> int:
        return self.data_offset * 4


def _parse_options(data: bytes) -> list[TcpOption]:
    options: list[TcpOption] = []
    size = len(data)
    pos = 0
    while pos < size:
        kind = data[pos]
        if kind == TCPOPT_EOL:
            options.append(TcpOption(kind, data[pos + 1 :]))
            break
        if kind == TCPOPT_NOP:
            options.append(TcpOption(kind))
            pos += 1
            continue
        if pos + 1 >= size:
            raise MalformedPacket("tcp.option.length", f"option {kind} at {pos} has no length octet")
        length = data[pos + 1]
        if length < 2:
            raise MalformedPacket("tcp.option.length", f"option {kind} claims {length} bytes, below 2")
        if pos + length > size:
            raise MalformedPacket(
                "tcp.option.length",
                f"option {kind} of {length} bytes at {pos} overruns {size} bytes of options",
            )
        fixed = _FIXED_LENGTHS.get(kind)
        if fixed is not None and length != fixed[0]:
            raise MalformedPacket(fixed[1], f"length {length}, expected {fixed[0]}")
        if kind == TCPOPT_SACK and (length == 2 or (length - 2) % 8):
            raise MalformedPacket("tcp.option.sack", f"length {length} is not 2 + 8n with n >= 1")
        options.append(TcpOption(kind, data[pos + 2 : pos + length]))
        pos += length
    return options


def pull_tcp(buf: Buffer) -> TcpHeader:
    """Read a header, options included, and leave ``buf`` at the payload.

    The payload's length comes from the IP layer. On failure ``buf`` is where it was.
    """
    start = buf.tell()
    available = buf.remaining()
    src_port, dst_port, seq, ack, word, window, csum, urgent = buf.pull_struct(HEADER, "tcp.header")
    data_offset = word >> 12
    header_length = data_offset * 4
    if data_offset < 5 or header_length > available:
        buf.seek(start)
        if data_offset < 5:
            raise MalformedPacket("tcp.data_offset", f"{data_offset} words, below the minimum of 5")
        raise MalformedPacket("tcp.data_offset", f"{header_length} header bytes, {available} available")
    raw = buf.pull_bytes(header_length - HEADER_LENGTH, "tcp.options")
    try:
        options = _parse_options(raw) if raw else []
    except MalformedPacket:
        buf.seek(start)
        raise
    return TcpHeader(
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        data_offset=data_offset,
        flags=word & 0x1FF,
        window=window,
        checksum=csum,
        urgent=urgent,
        options=options,
        reserved=word >> 9 & 0x7,
    )


def encode_tcp_options(options: list[TcpOption]) -> bytes:
    """The options area: each option in order, then zero (EOL) octets up to a multiple of 4."""
    out = bytearray()
    for option in options:
        kind = option.kind
        if kind == TCPOPT_EOL:
            out.append(kind)
            out += option.data
        elif kind == TCPOPT_NOP:
            if option.data:
                raise BufferWriteError("a TCP NOP option carries no data")
            out.append(kind)
        else:
            if not 0 <= kind <= 0xFF or len(option.data) > 253:
                raise BufferWriteError(
                    f"TCP option {kind} with {len(option.data)} bytes of data cannot be encoded"
                )
            out.append(kind)
            out.append(len(option.data) + 2)
            out += option.data
    out += bytes(-len(out) % 4)
    if len(out) > MAX_OPTIONS:
        raise BufferWriteError(f"TCP options take {len(out)} bytes, at most {MAX_OPTIONS} fit")
    return bytes(out)


def push_tcp(buf: Buffer, header: TcpHeader) -> None:
    """Write ``header``; ``data_offset`` follows from the options, ``checksum`` is written as it is."""
    _push(buf, header, header.checksum)


def _push(buf: Buffer, header: TcpHeader, csum: int) -> None:
    options = encode_tcp_options(header.options)
    data_offset = 5 + len(options) // 4
    if not 0 <= header.flags <= 0x1FF or not 0 <= header.reserved <= 0x7:
        raise BufferWriteError(f"TCP flags 0x{header.flags:x} / reserved {header.reserved} out of range")
    buf.push_struct(
        HEADER,
        header.src_port,
        header.dst_port,
        header.seq,
        header.ack,
        data_offset << 12 | header.reserved << 9 | header.flags,
        header.window,
        csum,
        header.urgent,
    )
    if options:
        buf.push_bytes(options)


def tcp_checksum(src: bytes, dst: bytes, header: TcpHeader, payload: bytes | bytearray | memoryview) -> int:
    """The checksum of ``header`` (its own ``checksum`` ignored) + ``payload`` from ``src`` to ``dst``."""
    out = Buffer()
    _push(out, header, 0)
    out.push_bytes(payload)
    return checksum.transport_checksum(src, dst, _PROTO_TCP, out.data)


def verify_tcp_checksum(src: bytes, dst: bytes, segment: bytes | bytearray | memoryview) -> bool:
    """True when ``segment`` (header + payload) sums to zero under the pseudo-header."""
    if len(segment) < HEADER_LENGTH:
        raise MalformedPacket("tcp.header", f"needs {HEADER_LENGTH} bytes, {len(segment)} given")
    seed = checksum.pseudo_header_sum(src, dst, _PROTO_TCP, len(segment))
    return checksum.ones_sum(segment, 0, -1, seed) == 0xFFFF


# -- typed options --------------------------------------------------------------------------


def _find(header: TcpHeader, kind: int) -> TcpOption | None:
    for option in header.options:
        if option.kind == kind:
            return option
    return None


def _check_length(option: TcpOption, length: int, name: str) -> None:
    if len(option.data) != length:
        raise MalformedPacket(name, f"{len(option.data)} bytes of data, expected {length}")


def tcp_mss(header: TcpHeader) -> int | None:
    option = _find(header, TCPOPT_MSS)
    if option is None:
        return None
    _check_length(option, 2, "tcp.option.mss")
    value: int = _U16.unpack(option.data)[0]
    return value


def tcp_window_scale(header: TcpHeader) -> int | None:
    """The shift count as sent; RFC 7323 §2.3 caps its use at 14, which is the receiver's job."""
    option = _find(header, TCPOPT_WINDOW_SCALE)
    if option is None:
        return None
    _check_length(option, 1, "tcp.option.window_scale")
    return option.data[0]


def tcp_sack_permitted(header: TcpHeader) -> bool:
    return _find(header, TCPOPT_SACK_PERMITTED) is not None


def tcp_sack_blocks(header: TcpHeader) -> list[tuple[int, int]]:
    """(left edge, right edge) pairs of the SACK option, or an empty list without one."""
    option = _find(header, TCPOPT_SACK)
    if option is None:
        return []
    data = option.data
    if not data or len(data) % 8:
        raise MalformedPacket("tcp.option.sack", f"{len(data)} bytes of data is not 8n with n >= 1")
    blocks: list[tuple[int, int]] = []
    for pos in range(0, len(data), 8):
        left, right = _U32X2.unpack_from(data, pos)
        blocks.append((left, right))
    return blocks


def tcp_timestamps(header: TcpHeader) -> tuple[int, int] | None:
    """(TSval, TSecr), or None without the option."""
    option = _find(header, TCPOPT_TIMESTAMPS)
    if option is None:
        return None
    _check_length(option, 8, "tcp.option.timestamps")
    tsval, tsecr = _U32X2.unpack(option.data)
    return tsval, tsecr


def _pack(fmt: struct.Struct, *values: int) -> bytes:
    try:
        return fmt.pack(*values)
    except struct.error as exc:
        raise BufferWriteError(f"cannot pack {values!r}: {exc}") from None


def tcp_mss_option(mss: int) -> TcpOption:
    return TcpOption(TCPOPT_MSS, _pack(_U16, mss))


def tcp_window_scale_option(shift: int) -> TcpOption:
    if not 0 <= shift <= 0xFF:
        raise BufferWriteError(f"window scale shift out of range: {shift}")
    return TcpOption(TCPOPT_WINDOW_SCALE, bytes((shift,)))


def tcp_sack_permitted_option() -> TcpOption:
    return TcpOption(TCPOPT_SACK_PERMITTED)


def tcp_sack_option(blocks: list[tuple[int, int]]) -> TcpOption:
    """At most 4 blocks fit in 40 bytes of options (3 beside timestamps, RFC 2018 §3)."""
    if not 1 <= len(blocks) <= 4:
        raise BufferWriteError(f"a SACK option holds 1 to 4 blocks, not {len(blocks)}")
    return TcpOption(TCPOPT_SACK, b"".join(_pack(_U32X2, left, right) for left, right in blocks))


def tcp_timestamps_option(tsval: int, tsecr: int) -> TcpOption:
    return TcpOption(TCPOPT_TIMESTAMPS, _pack(_U32X2, tsval, tsecr))

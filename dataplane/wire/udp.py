# cython: annotation_typing=False
"""UDP headers (RFC 768) and their checksum over the IPv4 pseudo-header.

The same source is compiled by Cython into ``_udp`` (see ``setup.py``); this file is the
pure-Python twin and the reference for behaviour.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _select
from .errors import MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from . import checksum
    from .buffer import Buffer
else:
    from . import _checksum as checksum
    from ._buffer import Buffer

__all__ = ["UdpHeader", "pull_udp", "push_udp", "udp_checksum", "udp_payload_length", "verify_udp_checksum"]

_PROTO_UDP = 17

# UDP header, RFC 768 ("Format")
# field      format  default
# src_port   H       (required)
# dst_port   H       (required)
# length     H       8            header + data, in bytes
# checksum   H       0            0 means "no checksum" over IPv4; a computed 0 is sent as 0xFFFF
HEADER = struct.Struct("!HHHH")
HEADER_LENGTH = HEADER.size  # 8


@dataclass(slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int = HEADER_LENGTH
    checksum: int = 0


def pull_udp(buf: Buffer) -> UdpHeader:
    """Read a header and leave ``buf`` at the payload (``udp_payload_length`` bytes of it).

    The whole datagram must be present; trailing bytes past ``length`` are left unread. On failure
    ``buf`` is where it was.
    """
    available = buf.remaining()
    src_port, dst_port, length, csum = buf.pull_struct(HEADER, "udp.header")
    if length < HEADER_LENGTH or length > available:
        buf.seek(buf.tell() - HEADER_LENGTH)
        if length < HEADER_LENGTH:
            raise MalformedPacket("udp.length", f"{length} is shorter than the header")
        raise MalformedPacket("udp.length", f"{length} bytes, {available} available")
    return UdpHeader(src_port=src_port, dst_port=dst_port, length=length, checksum=csum)


def push_udp(buf: Buffer, header: UdpHeader) -> None:
    """Write ``header`` as it is; compute ``checksum`` first with :func:`udp_checksum`."""
    buf.push_struct(HEADER, header.src_port, header.dst_port, header.length, header.checksum)


def udp_payload_length(header: UdpHeader) -> int:
    return header.length - HEADER_LENGTH


def udp_checksum(src: bytes, dst: bytes, header: UdpHeader, payload: bytes | bytearray | memoryview) -> int:
    """The checksum to send for ``header`` + ``payload`` between ``src`` and ``dst`` (never 0)."""
    out = Buffer()
    out.push_struct(HEADER, header.src_port, header.dst_port, header.length, 0)
    out.push_bytes(payload)
    segment = out.data
    return checksum.udp_wire_checksum(checksum.transport_checksum(src, dst, _PROTO_UDP, segment))


def verify_udp_checksum(src: bytes, dst: bytes, segment: bytes | bytearray | memoryview) -> bool:
    """True when ``segment`` (header + payload) carries no checksum or a correct one."""
    if len(segment) < HEADER_LENGTH:
        raise MalformedPacket("udp.header", f"needs {HEADER_LENGTH} bytes, {len(segment)} given")
    if segment[6] == 0 and segment[7] == 0:
        return True
    return (
        checksum.ones_sum(segment, 0, -1, checksum.pseudo_header_sum(src, dst, _PROTO_UDP, len(segment)))
        == 0xFFFF
    )

"""VXLAN (RFC 7348 §5): an 8-byte header in UDP carrying an Ethernet frame without its FCS.

:func:`pull_vxlan` reads any 8 bytes and keeps the reserved bits, so a header round-trips byte for
byte; it does not drop packets. Policy stays with the receiver: RFC 7348 §5 says to drop a packet
whose I flag is clear (see :attr:`VxlanHeader.valid`) or whose VNI is foreign, and to ignore the
reserved bits.

Source port (RFC 7348 §5 "Source Port": SHOULD be a hash of the inner headers, in the dynamic range)
-------------------------------------------------------------------------------------------------
:func:`source_port_for` is the definition; the batched sender in ``_batch.pyx`` must match it
exactly, so that a flow keeps one outer source port whichever path sent it:

* **key**: if the inner frame is Ethernet II with EtherType 0x0800, its IPv4 header has version 4,
  IHL >= 5 and fits in the frame: the 9 bytes source address (4), destination address (4),
  protocol (1), in wire order; then, if protocol is 6 (TCP) or 17 (UDP), the datagram is not a
  fragment (MF clear and fragment offset 0, so every fragment of a flow hashes alike) and 4 bytes
  follow the IPv4 header, those 4 bytes (source port, destination port) too: 13 bytes.
  Otherwise the first 12 bytes of the frame (destination MAC, source MAC), or the whole frame when
  it is shorter.
* **hash**: FNV-1a, 32 bits: ``h = 0x811C9DC5``; per key byte ``h = ((h ^ byte) * 0x01000193) mod 2**32``.
* **port**: ``49152 + h % 16384`` (the low 14 bits), in 49152-65535.

The same source is compiled by Cython into ``_vxlan`` (see ``setup.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _select
from .errors import BufferWriteError

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from .buffer import Buffer
else:
    from ._buffer import Buffer

__all__ = [
    "VXLAN_FLAG_I",
    "VXLAN_HEADER_LENGTH",
    "VXLAN_OVERHEAD",
    "VXLAN_PORT",
    "VxlanHeader",
    "pull_vxlan",
    "push_vxlan",
    "source_port_for",
    "vxlan_header",
]

VXLAN_PORT = 4789  # IANA, RFC 7348 §5 "Destination Port"
VXLAN_FLAG_I = 0x08
# Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: VTEPs must not fragment (RFC 7348 §4.3), so the
# overlay MTU is the underlay MTU less this.
VXLAN_OVERHEAD = 50
OVERHEAD = VXLAN_OVERHEAD  # module-qualified spelling: ``vxlan.OVERHEAD``

# VXLAN header (RFC 7348 §5, "VXLAN Header")
# field      format  default
# flags      B       0x08        I (0x08): the VNI is valid; the other 7 bits are reserved, sent 0
# reserved1  3 bytes 0           reserved, sent 0, ignored on receipt
# vni        3 bytes (required)  VXLAN Network Identifier (24 bits)
# reserved2  B       0           reserved, sent 0, ignored on receipt
# Read as two 32-bit words: flags << 24 | reserved1, then vni << 8 | reserved2.
HEADER = struct.Struct("!II")
VXLAN_HEADER_LENGTH = HEADER.size  # 8

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_PORT_BASE = 49152
_PORT_SPAN = 16384


@dataclass(slots=True)
class VxlanHeader:
    vni: int
    flags: int = VXLAN_FLAG_I
    reserved1: int = 0
    reserved2: int = 0

    @property
    def valid(self) -> bool:
        """The I flag is set; RFC 7348 §5 has receivers drop packets where it is not."""
        return bool(self.flags & VXLAN_FLAG_I)


def pull_vxlan(buf: Buffer) -> VxlanHeader:
    first, second = buf.pull_struct(HEADER, "vxlan.header")
    return VxlanHeader(
        vni=second >> 8, flags=first >> 24, reserved1=first & 0xFFFFFF, reserved2=second & 0xFF
    )


def push_vxlan(buf: Buffer, header: VxlanHeader) -> None:
    if not 0 <= header.vni <= 0xFFFFFF:
        raise BufferWriteError(f"VNI {header.vni} does not fit in 24 bits")
    if (
        not 0 <= header.flags <= 0xFF
        or not 0 <= header.reserved1 <= 0xFFFFFF
        or not 0 <= header.reserved2 <= 0xFF
    ):
        raise BufferWriteError(f"VXLAN flags or reserved fields out of range: {header!r}")
    buf.push_struct(HEADER, header.flags << 24 | header.reserved1, header.vni << 8 | header.reserved2)


def vxlan_header(vni: int) -> bytes:
    """The 8-byte header a VTEP sends: the I flag, ``vni``, every reserved field 0 (RFC 7348 §5)."""
    if not 0 <= vni <= 0xFFFFFF:
        raise BufferWriteError(f"VNI {vni} does not fit in 24 bits")
    return HEADER.pack(VXLAN_FLAG_I << 24, vni << 8)


def _flow_key(frame: bytes | bytearray | memoryview) -> bytes:
    size = len(frame)
    if size >= 34 and frame[12] == 0x08 and frame[13] == 0x00 and frame[14] >> 4 == 4:
        ihl = (frame[14] & 0x0F) * 4
        if ihl >= 20 and size >= 14 + ihl:
            protocol = frame[23]
            key = bytes(frame[26:34]) + bytes((protocol,))
            fragment = (frame[20] << 8 | frame[21]) & 0x3FFF  # MF flag and fragment offset
            l4 = 14 + ihl
            if protocol in (6, 17) and fragment == 0 and size >= l4 + 4:
                key += bytes(frame[l4 : l4 + 4])
            return key
    return bytes(frame[:12])


def source_port_for(inner_frame: bytes | bytearray | memoryview) -> int:
    """The outer UDP source port for ``inner_frame``: FNV-1a of its flow key, in 49152-65535.

    The key and hash are defined in the module docstring; ``_batch.pyx`` implements the same.
    """
    h = _FNV_OFFSET
    for byte in _flow_key(inner_frame):
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return _PORT_BASE + h % _PORT_SPAN

"""The virtio-net header a TAP opened with ``IFF_VNET_HDR`` puts before every frame.

It carries offload metadata (linux/virtio_net.h, ``struct virtio_net_hdr`` and
``virtio_net_hdr_mrg_rxbuf``): a partial L4 checksum still to finish (``NEEDS_CSUM`` with
``csum_start``/``csum_offset``, dataplane spec §5.3), a checksum already verified (``DATA_VALID``),
and GSO super-frames up to 64 KiB (``gso_type``/``gso_size``). The header is 10 bytes, or 12 once
``TUNSETVNETHDRSZ`` asked for ``num_buffers``; the size is device configuration, so it is a
parameter here, not something the bytes say.

Byte order: a legacy (pre-virtio-1.0) header is in host order, which is what a TAP uses unless
``TUNSETVNETLE``/``TUNSETVNETBE`` says otherwise (drivers/net/tun.c ``tun_is_little_endian``), so the
fields are read in native order.

The same source is compiled by Cython into ``_vnet`` (see ``setup.py``).
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
    "VNET_F_DATA_VALID",
    "VNET_F_NEEDS_CSUM",
    "VNET_F_RSC_INFO",
    "VNET_GSO_ECN",
    "VNET_GSO_NONE",
    "VNET_GSO_TCPV4",
    "VNET_GSO_TCPV6",
    "VNET_GSO_UDP",
    "VNET_GSO_UDP_L4",
    "VNET_HDR_LEN",
    "VNET_HDR_MRG_LEN",
    "VnetHeader",
    "finish_checksum",
    "pull_vnet",
    "push_vnet",
]

VNET_F_NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
VNET_F_DATA_VALID = 2  # VIRTIO_NET_HDR_F_DATA_VALID
VNET_F_RSC_INFO = 4  # VIRTIO_NET_HDR_F_RSC_INFO (coalescing info in csum_*; only from a device)
_KNOWN_FLAGS = VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID | VNET_F_RSC_INFO

VNET_GSO_NONE = 0  # VIRTIO_NET_HDR_GSO_NONE
VNET_GSO_TCPV4 = 1
VNET_GSO_UDP = 3  # UFO (IPv4 fragmentation offload), kept for older peers
VNET_GSO_TCPV6 = 4
VNET_GSO_UDP_L4 = 5  # USO: UDP segmentation (Linux 6.2)
VNET_GSO_ECN = 0x80  # flag bit: the TCP super-frame had CWR set
_KNOWN_GSO = (VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_UDP, VNET_GSO_TCPV6, VNET_GSO_UDP_L4)

# virtio-net header (linux/virtio_net.h struct virtio_net_hdr{,_mrg_rxbuf}; virtio 1.x §5.1.6)
# field        format  default
# flags        B       0      NEEDS_CSUM 1, DATA_VALID 2, RSC_INFO 4
# gso_type     B       0      NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5; | ECN 0x80
# hdr_len      H       0      bytes of headers in a GSO frame (Ethernet + IP + L4)
# gso_size     H       0      payload bytes per segment (MSS) when gso_type is not NONE
# csum_start   H       0      offset, from the Ethernet header, where checksumming starts
# csum_offset  H       0      offset, from csum_start, of the checksum field
# num_buffers  H       0      only in the 12-byte form (mergeable receive buffers)
# Native order, standard sizes, no padding ("="): see the module docstring.
HEADER = struct.Struct("=BBHHHH")
HEADER_MRG = struct.Struct("=BBHHHHH")
VNET_HDR_LEN = HEADER.size  # 10
VNET_HDR_MRG_LEN = HEADER_MRG.size  # 12


@dataclass(slots=True)
class VnetHeader:
    flags: int = 0
    gso_type: int = VNET_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & VNET_F_NEEDS_CSUM)

    @property
    def is_gso(self) -> bool:
        return (self.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE


def _size_struct(size: int) -> struct.Struct:
    if size == VNET_HDR_LEN:
        return HEADER
    if size == VNET_HDR_MRG_LEN:
        return HEADER_MRG
    raise ValueError(f"a virtio-net header is {VNET_HDR_LEN} or {VNET_HDR_MRG_LEN} bytes, not {size}")


def pull_vnet(buf: Buffer, size: int = VNET_HDR_LEN) -> VnetHeader:
    """Read a header of ``size`` bytes (10, or 12 after ``TUNSETVNETHDRSZ``)."""
    fmt = _size_struct(size)
    start = buf.tell()
    values = buf.pull_struct(fmt, "vnet.header")
    num_buffers = values[6] if size == VNET_HDR_MRG_LEN else 0
    header = VnetHeader(values[0], values[1], values[2], values[3], values[4], values[5], num_buffers)
    # The kernel refuses these too (include/linux/virtio_net.h virtio_net_hdr_to_skb): -EINVAL.
    if header.flags & ~_KNOWN_FLAGS:
        buf.seek(start)
        raise MalformedPacket("vnet.flags", f"unknown flag bits 0x{header.flags:02x}")
    if (header.gso_type & ~VNET_GSO_ECN) not in _KNOWN_GSO:
        buf.seek(start)
        raise MalformedPacket("vnet.gso_type", f"unknown GSO type 0x{header.gso_type:02x}")
    if header.is_gso and header.gso_size == 0:
        buf.seek(start)
        raise MalformedPacket("vnet.gso_size", "a GSO frame needs a segment size")
    return header


def push_vnet(buf: Buffer, header: VnetHeader, size: int = VNET_HDR_LEN) -> None:
    fmt = _size_struct(size)
    values = [
        header.flags,
        header.gso_type,
        header.hdr_len,
        header.gso_size,
        header.csum_start,
        header.csum_offset,
    ]
    if size == VNET_HDR_MRG_LEN:
        values.append(header.num_buffers)
    try:
        packed = fmt.pack(*values)
    except struct.error as exc:
        raise BufferWriteError(f"virtio-net header field out of range: {header!r}: {exc}") from None
    buf.push_bytes(packed)


def finish_checksum(frame: bytearray, header: VnetHeader) -> None:
    """Complete the partial L4 checksum of ``frame`` (an Ethernet frame) in place if ``NEEDS_CSUM``.

    The field at ``csum_start + csum_offset`` holds the uncomplemented pseudo-header sum; the result
    is the complement of the sum from ``csum_start`` to the end (checksum.complete_partial). The flag
    is then cleared in ``header``, because finishing twice would corrupt the checksum. A GSO
    super-frame must be segmented first: each segment has its own checksum.
    """
    if not header.flags & VNET_F_NEEDS_CSUM:
        return
    size = len(frame)
    if header.csum_start >= size:
        raise MalformedPacket(
            "vnet.csum_start", f"checksum start {header.csum_start} outside frame of {size}"
        )
    if header.csum_start + header.csum_offset + 2 > size:
        raise MalformedPacket(
            "vnet.csum_offset",
            f"checksum field at {header.csum_start + header.csum_offset} outside frame of {size}",
        )
    checksum.complete_partial(frame, header.csum_start, header.csum_offset)
    header.flags &= ~VNET_F_NEEDS_CSUM

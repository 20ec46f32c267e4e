"""Software GSO for virtio-net frames: TSO/USO segmentation, partial checksums, delivery flags.

A TAP with ``IFF_VNET_HDR`` and offloads hands us super-frames: one virtio-net header
(:mod:`.vnet`) and up to 64 KiB of TCP or UDP payload behind one set of headers, with the L4
checksum left as the pseudo-header seed (``NEEDS_CSUM``). Before such a frame can go into a tunnel
it must be cut into wire-sized frames (software TSO/USO, as the kernel's ``skb_segment``), and on
the way back a decapsulated frame is written behind a vnet header that tells the kernel what is
left to check. This module is those frame builders, for every data path:

* :func:`segment` cuts one TAP read (vnet header + frame) into its frames: ``gso_size`` payload
  bytes each, each with its own IP total length, identification and header checksum (IPv4), TCP
  sequence number and flags (FIN/PSH on the last only, CWR on the first only, RFC 3168 §6.1.2) or
  UDP length, and a complete TCP/UDP checksum. A plain frame with ``NEEDS_CSUM`` gets its checksum
  finished (:func:`finish_checksum`). Bad input raises :class:`MalformedPacket` naming the field.
* :func:`deliver_header` is the vnet header for a decapsulated IPv4 TCP/UDP frame: ``DATA_VALID``
  when its checksum verifies, ``NEEDS_CSUM`` when it is the pseudo-header seed a kernel VXLAN
  sender over veth left unfinished (``spec/dataplane.md`` §5.3), else all zero.

``_gso.pyx`` is the compiled twin; its C functions (``_gso.pxd``: ``build``, ``deliver_flags``) are
what the compiled tunnel pump (``dataplane.pump._tunnel``) runs on its raw buffers, and what the
Python-level functions here and there call, so the ``wire`` benchmark times the product's code.
"""

from __future__ import annotations

import struct

from .errors import MalformedPacket
from .ethernet import ETHERTYPE_IPV4 as ETH_IPV4
from .ethernet import ETHERTYPE_IPV6 as ETH_IPV6
from .ethernet import HEADER_LENGTH as ETH_LEN
from .ipv4 import PROTO_TCP as TCP
from .ipv4 import PROTO_UDP as UDP
from .tcp import TCP_CWR, TCP_FIN, TCP_PSH
from .vnet import HEADER as _VNET10
from .vnet import HEADER_MRG as _VNET12
from .vnet import (
    VNET_F_DATA_VALID,
    VNET_F_NEEDS_CSUM,
    VNET_GSO_ECN,
    VNET_GSO_NONE,
    VNET_GSO_TCPV4,
    VNET_GSO_TCPV6,
    VNET_GSO_UDP_L4,
)

__all__ = ["deliver_header", "segment"]  # finish_checksum too, not re-exported: wire.vnet has its own

IMPLEMENTATION = "python"

GSO_NONE = VNET_GSO_NONE
GSO_TCPV4 = VNET_GSO_TCPV4
GSO_TCPV6 = VNET_GSO_TCPV6
GSO_UDP_L4 = VNET_GSO_UDP_L4
GSO_ECN = VNET_GSO_ECN
_KNOWN_FLAGS = 7  # NEEDS_CSUM | DATA_VALID | RSC_INFO

MAX_HEADERS = 256  # Ethernet + IP (+ extension headers) + L4 header of a GSO frame
MAX_SEGMENTS = 256  # segments per super-frame (64 KiB at gso_size 256)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _vnet_struct(size: int) -> struct.Struct:
    if size == 10:
        return _VNET10
    if size == 12:
        return _VNET12
    raise ValueError(f"vnet_hdr_size must be 10 or 12, not {size}")


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum(data: bytes | bytearray | memoryview) -> int:
    """Folded RFC 1071 sum (not complemented); an odd last byte is padded with zero."""
    raw = bytes(data)
    if len(raw) & 1:
        raw += b"\x00"
    number = int.from_bytes(raw, "big")
    if not number:
        return 0
    folded = number % 0xFFFF
    return folded if folded else 0xFFFF


def _pseudo(frame: bytes | bytearray, l3: int, v6: bool, proto: int, length: int) -> int:
    if v6:
        total = _sum(frame[l3 + 8 : l3 + 40]) + (length >> 16) + (length & 0xFFFF) + proto
    else:
        total = _sum(frame[l3 + 12 : l3 + 20]) + proto + length
    return _fold(total)


def finish_checksum(frame: bytearray, csum_start: int, csum_offset: int) -> None:
    """Complete a partial checksum in place, as the kernel's ``skb_checksum_help`` does (0 -> 0xFFFF)."""
    where = csum_start + csum_offset
    if csum_start >= len(frame):
        raise MalformedPacket("vnet.csum_start", f"{csum_start} outside frame of {len(frame)}")
    if where + 2 > len(frame):
        raise MalformedPacket("vnet.csum_offset", f"field at {where} outside frame of {len(frame)}")
    value = ~_sum(frame[csum_start:]) & 0xFFFF
    frame[where : where + 2] = _U16.pack(value or 0xFFFF)


def segment(data: bytes | bytearray, vnet_hdr_size: int = 10) -> list[bytes]:
    """The wire-ready inner frames of one TAP read (vnet header + frame).

    A GSO super-frame yields its segments (software TSO/USO), anything else one frame; every
    partial checksum is finished. Raises :class:`MalformedPacket` naming the bad field.
    """
    fmt = _vnet_struct(vnet_hdr_size)
    if len(data) < vnet_hdr_size:
        raise MalformedPacket("vnet.header", f"{len(data)} bytes")
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = fmt.unpack_from(data)[:6]
    frame = bytearray(data[vnet_hdr_size:])
    n = len(frame)
    if flags & ~_KNOWN_FLAGS:
        raise MalformedPacket("vnet.flags", f"unknown flag bits 0x{flags:02x}")
    if n < ETH_LEN:
        raise MalformedPacket("ethernet", f"frame of {n} bytes")
    kind = gso_type & ~GSO_ECN
    if kind == GSO_NONE:
        if flags & VNET_F_NEEDS_CSUM:
            finish_checksum(frame, csum_start, csum_offset)
        return [bytes(frame)]
    if kind not in (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4):
        raise MalformedPacket("vnet.gso_type", f"unsupported GSO type 0x{gso_type:02x}")
    if not flags & VNET_F_NEEDS_CSUM:
        raise MalformedPacket("vnet.flags", "a GSO frame without NEEDS_CSUM")
    if gso_size == 0:
        raise MalformedPacket("vnet.gso_size", "a GSO frame needs a segment size")
    ethertype = (frame[12] << 8) | frame[13]
    l3 = ETH_LEN
    l4 = csum_start
    if ethertype == ETH_IPV4 and kind != GSO_TCPV6:
        v6 = False
        if n < l3 + 20 or frame[l3] >> 4 != 4:
            raise MalformedPacket("ipv4.version", "GSO frame without an IPv4 header")
        if l4 != l3 + (frame[l3] & 0x0F) * 4 or l4 < l3 + 20:
            raise MalformedPacket("vnet.csum_start", f"{l4} is not the end of the IPv4 header")
    elif ethertype == ETH_IPV6 and kind != GSO_TCPV4:
        v6 = True
        if n < l3 + 40 or frame[l3] >> 4 != 6:
            raise MalformedPacket("ipv6.version", "GSO frame without an IPv6 header")
        if l4 < l3 + 40:
            raise MalformedPacket("vnet.csum_start", f"{l4} inside the IPv6 header")
    else:
        raise MalformedPacket("ethernet.type", f"GSO type 0x{gso_type:02x} over EtherType 0x{ethertype:04x}")
    if kind == GSO_UDP_L4:
        proto, want_offset, l4_len = UDP, 6, 8
    else:
        proto, want_offset = TCP, 16
        if n < l4 + 20:
            raise MalformedPacket("tcp.header", "truncated")
        l4_len = (frame[l4 + 12] >> 4) * 4
        if l4_len < 20:
            raise MalformedPacket("tcp.offset", f"data offset {l4_len}")
    if csum_offset != want_offset:
        raise MalformedPacket("vnet.csum_offset", f"{csum_offset} for {'TCP' if proto == TCP else 'UDP'}")
    hlen = l4 + l4_len
    if hlen > n or hlen > MAX_HEADERS:
        raise MalformedPacket("vnet.hdr_len", f"headers of {hlen} bytes in a frame of {n}")
    payload = n - hlen
    count = max(1, -(-payload // gso_size))
    if count > MAX_SEGMENTS:
        raise MalformedPacket("vnet.gso_size", f"{count} segments of {gso_size}")
    header = bytearray(frame[:hlen])
    ip_id = 0 if v6 else (header[l3 + 4] << 8) | header[l3 + 5]
    seq = _U32.unpack_from(header, l4 + 4)[0] if proto == TCP else 0
    tcp_flags = header[l4 + 13] if proto == TCP else 0
    out: list[bytes] = []
    for i in range(count):
        chunk = frame[hlen + i * gso_size : min(n, hlen + (i + 1) * gso_size)]
        seg = bytearray(header)
        l4_total = l4_len + len(chunk)
        if v6:
            seg[l3 + 4 : l3 + 6] = _U16.pack(l4 - l3 - 40 + l4_total)
        else:
            seg[l3 + 2 : l3 + 4] = _U16.pack(l4 - l3 + l4_total)
            seg[l3 + 4 : l3 + 6] = _U16.pack((ip_id + i) & 0xFFFF)
            seg[l3 + 10 : l3 + 12] = b"\x00\x00"
            seg[l3 + 10 : l3 + 12] = _U16.pack(~_sum(seg[l3:l4]) & 0xFFFF)
        if proto == TCP:
            seg[l4 + 4 : l4 + 8] = _U32.pack((seq + i * gso_size) & 0xFFFFFFFF)
            f = tcp_flags
            if i != count - 1:
                f &= ~(TCP_FIN | TCP_PSH)
            if i:
                f &= ~TCP_CWR
            seg[l4 + 13] = f
        else:
            seg[l4 + 4 : l4 + 6] = _U16.pack(l4_total)
        seg[l4 + want_offset : l4 + want_offset + 2] = b"\x00\x00"
        total = _pseudo(seg, l3, v6, proto, l4_total) + _sum(seg[l4:]) + _sum(chunk)
        value = ~_fold(total) & 0xFFFF
        if proto == UDP and value == 0:
            value = 0xFFFF
        seg[l4 + want_offset : l4 + want_offset + 2] = _U16.pack(value)
        seg += chunk
        out.append(bytes(seg))
    return out


def deliver_header(frame: bytes | bytearray, vnet_hdr_size: int = 10) -> bytes:
    """The vnet header to write before a decapsulated inner ``frame`` on the TAP.

    IPv4 TCP/UDP (not a fragment, lengths consistent): if the L4 checksum verifies, ``DATA_VALID``
    (the kernel need not check it again); if it fails and equals the pseudo-header seed (left
    unfinished by a kernel VXLAN sender over veth, ``spec/dataplane.md`` §5.3), ``NEEDS_CSUM`` with
    ``csum_start``/``csum_offset`` so the kernel finishes it; a UDP checksum of 0 ("none") and
    anything else get an all-zero header (other bad checksums are left for the end host to drop).
    """
    fmt = _vnet_struct(vnet_hdr_size)
    zero = bytes(vnet_hdr_size)
    n = len(frame)
    if n < ETH_LEN + 20 or frame[12] != 0x08 or frame[13] != 0x00:
        return zero
    l3 = ETH_LEN
    if frame[l3] >> 4 != 4:
        return zero
    ihl = (frame[l3] & 0x0F) * 4
    total_len = (frame[l3 + 2] << 8) | frame[l3 + 3]
    proto = frame[l3 + 9]
    if ihl < 20 or total_len < ihl or l3 + total_len > n or (frame[l3 + 6] & 0x3F) or frame[l3 + 7]:
        return zero
    l4 = l3 + ihl
    l4_total = total_len - ihl
    if proto == TCP:
        offset = 16
        if l4_total < 20:
            return zero
    elif proto == UDP:
        offset = 6
        if l4_total < 8:
            return zero
    else:
        return zero
    field = (frame[l4 + offset] << 8) | frame[l4 + offset + 1]
    if proto == UDP and field == 0:
        return zero
    seed = _pseudo(frame, l3, False, proto, l4_total)
    total = _fold(seed + _sum(frame[l4 : l4 + l4_total]))
    if total == 0xFFFF:
        flags, start, off = VNET_F_DATA_VALID, 0, 0
    elif field == seed:
        flags, start, off = VNET_F_NEEDS_CSUM, l4, offset
    else:
        return zero
    values: tuple[int, ...] = (flags, 0, 0, 0, start, off)
    if vnet_hdr_size == 12:
        values += (0,)
    return fmt.pack(*values)

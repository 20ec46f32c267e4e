"""A UDP datagram in an Ethernet II frame, built or checked in one call: the fast path's framing.

The codecs (:mod:`.ethernet`, :mod:`.ipv4`, :mod:`.udp`, :mod:`.frame`) read and write one header
object per layer, which is the right shape for tests, tools and the slow path, and costs several
microseconds per frame. A port that only sends and receives UDP datagrams (the DHCP server's) wants
the same headers, packed from the same layouts (each codec's ``HEADER``, under its RFC table) with
the same checksums, in one call and without an object per layer:

* :func:`build_udp_frame`: Ethernet II (EtherType 0x0800) + IPv4 (IHL 5, no options, not
  fragmented; RFC 791 §3.1) + UDP (RFC 768) around ``payload``; the IPv4 header checksum (RFC 1071)
  and the UDP checksum over the pseudo-header are computed, a computed UDP checksum of 0 sent as
  0xFFFF (RFC 768: 0 means "none").
* :func:`parse_udp_frame`: the reverse for a received frame: a :data:`UdpFrame` tuple, or the reason it
  is not a well-formed unfragmented IPv4/UDP frame (``short_frame``, ``not_ipv4``, ``bad_ipv4``,
  ``bad_checksum``, ``bad_udp``). The IPv4 header checksum is verified; the UDP checksum is not: a
  frame sent by a local socket over veth (or a virtio NIC) arrives ``CHECKSUM_PARTIAL``, its field
  holding only the pseudo-header sum (``spec/dataplane.md`` §5.3), and a packet socket cannot tell
  those apart without ``PACKET_AUXDATA``.

The same source is compiled by Cython into ``_datagram`` (see ``setup.py``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import _select

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from . import ethernet, ipv4, udp
    from .checksum import internet_checksum, transport_checksum, udp_wire_checksum
else:
    from . import _ethernet as ethernet
    from . import _ipv4 as ipv4
    from . import _udp as udp
    from ._checksum import internet_checksum, transport_checksum, udp_wire_checksum

__all__ = ["build_udp_frame", "parse_udp_frame"]

_ETH = ethernet.HEADER
_IP = ipv4.HEADER
_UDP = udp.HEADER
_ETH_LENGTH = _ETH.size
_IP_LENGTH = _IP.size
_UDP_LENGTH = _UDP.size
_ETHERTYPE_IPV4 = ethernet.ETHERTYPE_IPV4
_PROTO_UDP = ipv4.PROTO_UDP
_MF_AND_OFFSET = 0x3FFF  # RFC 791 §3.1: the more-fragments flag and the fragment offset
_CHECKSUM = struct.Struct("!H")


# What parse_udp_frame found: (payload, src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port). A plain
# tuple: a named one costs more to make than the rest of the parse.
UdpFrame = tuple[bytes, bytes, bytes, bytes, bytes, int, int]


def build_udp_frame(  # noqa: PLR0917 - the headers' fields, in wire order
    dst_mac: bytes,
    src_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    payload: bytes,
    ident: int = 0,
    tos: int = 0,
    ttl: int = 64,
) -> bytes:
    """Ethernet II + IPv4 + UDP around ``payload``, both checksums computed (see the module docstring)."""
    udp_length = _UDP_LENGTH + len(payload)
    ip_header = bytearray(
        _IP.pack(0x45, tos, _IP_LENGTH + udp_length, ident & 0xFFFF, 0, ttl, _PROTO_UDP, 0, src_ip, dst_ip)
    )
    _CHECKSUM.pack_into(ip_header, 10, internet_checksum(ip_header))
    segment = bytearray(_UDP.pack(src_port, dst_port, udp_length, 0))
    segment += payload
    _CHECKSUM.pack_into(
        segment, 6, udp_wire_checksum(transport_checksum(src_ip, dst_ip, _PROTO_UDP, segment))
    )
    return _ETH.pack(dst_mac, src_mac, _ETHERTYPE_IPV4) + bytes(ip_header) + bytes(segment)


def parse_udp_frame(frame: bytes) -> UdpFrame | str:
    """The UDP datagram in ``frame``, or why there is none (see the module docstring)."""
    if len(frame) < _ETH_LENGTH + _IP_LENGTH + _UDP_LENGTH:
        return "short_frame"
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame, 0)
    if ethertype != _ETHERTYPE_IPV4:
        return "not_ipv4"
    version_ihl, _, total_length, _, fragment, _, protocol, _, src_ip, dst_ip = _IP.unpack_from(
        frame, _ETH_LENGTH
    )
    ihl = (version_ihl & 0x0F) * 4
    if (
        version_ihl >> 4 != 4
        or ihl < _IP_LENGTH
        or total_length < ihl + _UDP_LENGTH
        or _ETH_LENGTH + total_length > len(frame)
    ):
        return "bad_ipv4"
    if protocol != _PROTO_UDP or fragment & _MF_AND_OFFSET:
        return "bad_ipv4"
    if internet_checksum(frame, _ETH_LENGTH, _ETH_LENGTH + ihl) != 0:  # RFC 1071 §1: sums to zero
        return "bad_checksum"
    at = _ETH_LENGTH + ihl
    src_port, dst_port, length, _ = _UDP.unpack_from(frame, at)
    if length < _UDP_LENGTH or length > total_length - ihl:
        return "bad_udp"
    return (frame[at + _UDP_LENGTH : at + length], src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port)

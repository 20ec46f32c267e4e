"""Whole frames, layer by layer: the slow path's view of a packet, and a builder for tests and tools.

:func:`decode_frame` reads Ethernet II, then ARP or IPv4, then (for an unfragmented datagram) UDP,
TCP or ICMP, then VXLAN when the UDP destination port is 4789 (the inner frame decoded recursively
when the I flag is set), or DHCP when both UDP ports are 67 or 68. What no layer claims is
:attr:`Frame.payload`; bytes after the datagram or ARP packet (Ethernet padding) are
:attr:`Frame.padding`.

:func:`encode_frame` writes the layers back, recomputing what follows from the content: the IPv4
total length and header checksum, the UDP length and checksum (a UDP checksum of 0 stays 0, "none"
over IPv4 per RFC 768; any other is recomputed), the TCP checksum, the ICMP checksum, the EtherType
and the IPv4 protocol. So decode -> encode is byte-exact for a well-formed frame, and it finishes
checksums a sender left partial (dataplane spec §5.3).

Layers and their order
----------------------
field      present when                                        codec
ethernet   always                                              :mod:`.ethernet` (IEEE 802.3)
arp        EtherType 0x0806                                    :mod:`.arp` (RFC 826)
ipv4       EtherType 0x0800                                    :mod:`.ipv4` (RFC 791)
udp        protocol 17, not a fragment                         :mod:`.udp` (RFC 768)
tcp        protocol 6, not a fragment                          :mod:`.tcp` (RFC 9293)
icmp       protocol 1, not a fragment                          :mod:`.icmp` (RFC 792)
vxlan      UDP destination port 4789                           :mod:`.vxlan` (RFC 7348)
inner      vxlan.valid and fewer than MAX_NESTING levels deep  this module
dhcp       UDP ports both in (67, 68)                          :mod:`.dhcp` (RFC 2131)

ICMP data (echo data, the datagram an error quotes) stays in ``icmp.payload``, under its checksum, so
``payload`` is empty with ICMP, VXLAN with an inner frame, and DHCP. Fragments are not reassembled:
their L4 bytes stay in ``payload``. A UDP length that disagrees with the IPv4 payload length is
refused (``frame.udp``) rather than guessed at; an error inside a VXLAN inner frame is reported as
``frame.inner`` with the inner field in its reason.

The same source is compiled by Cython into ``_frame`` (see ``setup.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import _select
from .errors import BufferWriteError, MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from . import arp, dhcp, ethernet, icmp, ipv4, tcp, udp, vxlan
    from .buffer import Buffer
else:
    from . import _arp as arp
    from . import _dhcp as dhcp
    from . import _ethernet as ethernet
    from . import _icmp as icmp
    from . import _ipv4 as ipv4
    from . import _tcp as tcp
    from . import _udp as udp
    from . import _vxlan as vxlan
    from ._buffer import Buffer

if TYPE_CHECKING:
    from .arp import ArpPacket
    from .dhcp import DhcpMessage
    from .ethernet import EthernetHeader
    from .icmp import IcmpMessage
    from .ipv4 import IPv4Header
    from .tcp import TcpHeader
    from .udp import UdpHeader
    from .vxlan import VxlanHeader

__all__ = ["MAX_NESTING", "Frame", "decode_frame", "encode_frame"]

# VXLAN in VXLAN is legal but each level is a recursive call; past this depth the inner bytes stay
# in ``payload`` so that a crafted frame cannot exhaust the stack.
MAX_NESTING = 4

_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_DHCP_PORTS = (67, 68)
# Large enough for any DHCP message a frame can hold: never overload options when re-encoding.
_DHCP_MAX_SIZE = 65535


@dataclass(slots=True)
class Frame:
    ethernet: EthernetHeader
    arp: ArpPacket | None = None
    ipv4: IPv4Header | None = None
    udp: UdpHeader | None = None
    tcp: TcpHeader | None = None
    icmp: IcmpMessage | None = None
    vxlan: VxlanHeader | None = None
    inner: Frame | None = None
    dhcp: DhcpMessage | None = None
    payload: bytes = b""
    padding: bytes = b""


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode every layer of ``data`` (an Ethernet frame without FCS); MalformedPacket otherwise."""
    return _decode(data, 0)


def _decode(data: bytes | bytearray | memoryview, depth: int) -> Frame:
    buf = Buffer(data)
    frame = Frame(ethernet.pull_ethernet(buf))
    ethertype = frame.ethernet.ethertype
    if ethertype == ethernet.ETHERTYPE_ARP:
        frame.arp = arp.pull_arp(buf)
        frame.padding = buf.pull_bytes(buf.remaining(), "frame.padding")
    elif ethertype == ethernet.ETHERTYPE_IPV4:
        header = ipv4.pull_ipv4(buf)
        frame.ipv4 = header
        body = buf.pull_bytes(ipv4.ipv4_payload_length(header), "ipv4.payload")
        frame.padding = buf.pull_bytes(buf.remaining(), "frame.padding")
        protocol = header.protocol
        if header.is_fragment:
            frame.payload = body
        elif protocol == _PROTO_UDP:
            _decode_udp(frame, body, depth)
        elif protocol == _PROTO_TCP:
            segment = Buffer(body)
            frame.tcp = tcp.pull_tcp(segment)
            frame.payload = segment.pull_bytes(segment.remaining(), "tcp.payload")
        elif protocol == _PROTO_ICMP:
            frame.icmp = icmp.pull_icmp(Buffer(body))
        else:
            frame.payload = body
    else:
        frame.payload = buf.pull_bytes(buf.remaining(), "frame.payload")
    return frame


def _decode_udp(frame: Frame, body: bytes, depth: int) -> None:
    datagram = Buffer(body)
    header = udp.pull_udp(datagram)
    frame.udp = header
    if header.length != len(body):
        raise MalformedPacket("frame.udp", f"UDP length {header.length}, IPv4 payload {len(body)} bytes")
    if header.dst_port == vxlan.VXLAN_PORT:
        frame.vxlan = vxlan.pull_vxlan(datagram)
        rest = datagram.pull_bytes(datagram.remaining(), "vxlan.payload")
        if frame.vxlan.valid and depth < MAX_NESTING:
            try:
                frame.inner = _decode(rest, depth + 1)
            except MalformedPacket as exc:
                raise MalformedPacket("frame.inner", f"{exc.field}: {exc.reason}") from None
        else:
            frame.payload = rest
    elif header.src_port in _DHCP_PORTS and header.dst_port in _DHCP_PORTS:
        frame.dhcp = dhcp.pull_dhcp(datagram)
    else:
        frame.payload = datagram.pull_bytes(datagram.remaining(), "udp.payload")


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame``, lengths and checksums recomputed (see the module docstring).

    ``frame`` is not modified. Layers that cannot go together (ARP and IPv4, two transports,
    VXLAN and DHCP, a transport without IPv4) raise BufferWriteError.
    """
    out = Buffer()
    _encode(out, frame)
    return out.data


def _encode(out: Buffer, frame: Frame) -> None:
    header = frame.ethernet
    if frame.arp is not None:
        if frame.ipv4 is not None:
            raise BufferWriteError("a frame carries ARP or IPv4, not both")
        _check_no_transport(frame)
        ethernet.push_ethernet(out, replace(header, ethertype=ethernet.ETHERTYPE_ARP))
        arp.push_arp(out, frame.arp)
        out.push_bytes(frame.padding)
        return
    if frame.ipv4 is None:
        _check_no_transport(frame)
        ethernet.push_ethernet(out, header)
        out.push_bytes(frame.payload)
        out.push_bytes(frame.padding)
        return
    ip = frame.ipv4
    protocol, body = _transport(frame, ip)
    ethernet.push_ethernet(out, replace(header, ethertype=ethernet.ETHERTYPE_IPV4))
    total_length = ipv4.HEADER_LENGTH + len(ip.options) + len(body)
    if total_length > 0xFFFF:
        raise BufferWriteError(f"IPv4 datagram of {total_length} bytes exceeds 65535")
    ipv4.push_ipv4(out, replace(ip, total_length=total_length, protocol=protocol))
    out.push_bytes(body)
    out.push_bytes(frame.padding)


def _check_no_transport(frame: Frame) -> None:
    if (
        frame.udp is not None
        or frame.tcp is not None
        or frame.icmp is not None
        or frame.vxlan is not None
        or frame.inner is not None
        or frame.dhcp is not None
    ):
        raise BufferWriteError("UDP, TCP, ICMP, VXLAN and DHCP need an IPv4 layer")


def _transport(frame: Frame, ip: IPv4Header) -> tuple[int, bytes]:
    """The IPv4 protocol number and payload bytes of ``frame``, checksums computed."""
    present = (frame.udp is not None) + (frame.tcp is not None) + (frame.icmp is not None)
    if present > 1:
        raise BufferWriteError("a frame carries at most one of UDP, TCP and ICMP")
    if frame.udp is None and (frame.vxlan is not None or frame.inner is not None or frame.dhcp is not None):
        raise BufferWriteError("VXLAN and DHCP need a UDP layer")
    out = Buffer()
    if frame.udp is not None:
        data = _udp_data(frame)
        header = replace(frame.udp, length=udp.HEADER_LENGTH + len(data))
        if header.length > 0xFFFF:
            raise BufferWriteError(f"UDP datagram of {header.length} bytes exceeds 65535")
        # RFC 768: 0 means the sender computed none; keep it so rather than invent one.
        if header.checksum != 0:
            header.checksum = udp.udp_checksum(ip.src, ip.dst, header, data)
        udp.push_udp(out, header)
        out.push_bytes(data)
        return _PROTO_UDP, out.data
    if frame.tcp is not None:
        segment = replace(frame.tcp, checksum=tcp.tcp_checksum(ip.src, ip.dst, frame.tcp, frame.payload))
        tcp.push_tcp(out, segment)
        out.push_bytes(frame.payload)
        return _PROTO_TCP, out.data
    if frame.icmp is not None:
        if frame.payload:
            raise BufferWriteError("ICMP data goes in icmp.payload, where the checksum covers it")
        icmp.push_icmp(out, frame.icmp)
        return _PROTO_ICMP, out.data
    return ip.protocol, frame.payload


def _udp_data(frame: Frame) -> bytes:
    if frame.vxlan is not None:
        if frame.dhcp is not None:
            raise BufferWriteError("a UDP datagram carries VXLAN or DHCP, not both")
        out = Buffer()
        vxlan.push_vxlan(out, frame.vxlan)
        if frame.inner is not None:
            if frame.payload:
                raise BufferWriteError("a VXLAN frame carries an inner Frame or raw payload, not both")
            _encode(out, frame.inner)
        else:
            out.push_bytes(frame.payload)
        return out.data
    if frame.inner is not None:
        raise BufferWriteError("an inner frame needs a VXLAN layer")
    if frame.dhcp is not None:
        if frame.payload:
            raise BufferWriteError("a DHCP message fills its UDP datagram: payload must be empty")
        out = Buffer()
        dhcp.push_dhcp(out, frame.dhcp, max_size=_DHCP_MAX_SIZE)
        return out.data
    return frame.payload

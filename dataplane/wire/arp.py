"""ARP for IPv4 over Ethernet (RFC 826), the only hardware/protocol pair the overlay carries.

Gratuitous ARP and probes (RFC 5227 §2.1, §3) are ordinary requests with particular addresses, so
they need nothing here beyond :func:`arp_request`. An ARP packet is 28 bytes; the Ethernet padding
that brings the frame to 60 bytes is left in the buffer for the caller (:mod:`.frame` keeps it).

The same source is compiled by Cython into ``_arp`` (see ``setup.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _select
from .errors import BufferWriteError, MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from .buffer import Buffer
else:
    from ._buffer import Buffer

__all__ = [
    "ARP_HTYPE_ETHERNET",
    "ARP_HTYPE_IEEE802",
    "ARP_LENGTH",
    "ARP_OP_REPLY",
    "ARP_OP_REQUEST",
    "ArpPacket",
    "arp_reply",
    "arp_request",
    "pull_arp",
    "push_arp",
]

ARP_HTYPE_ETHERNET = 1
# RFC 1042 networks announce IEEE 802 hardware; Linux answers both on an Ethernet device (arp_rcv).
ARP_HTYPE_IEEE802 = 6
ARP_OP_REQUEST = 1
ARP_OP_REPLY = 2
_PTYPE_IPV4 = 0x0800
_ZERO_MAC = b"\x00" * 6

# ARP packet (RFC 826, "Packet format")
# field       format  default
# htype       H       1            ar$hrd: hardware address space (1 Ethernet, 6 IEEE 802)
# ptype       H       0x0800       ar$pro: protocol address space (an EtherType: IPv4)
# hlen        B       6            ar$hln: hardware address length
# plen        B       4            ar$pln: protocol address length
# op          H       (required)   ar$op: 1 request, 2 reply
# sender_mac  6s      (required)   ar$sha
# sender_ip   4s      (required)   ar$spa
# target_mac  6s      (required)   ar$tha (zero in a request: it is what is asked for)
# target_ip   4s      (required)   ar$tpa
HEADER = struct.Struct("!HHBBH6s4s6s4s")
ARP_LENGTH = HEADER.size  # 28


@dataclass(slots=True)
class ArpPacket:
    # Required fields come first (a dataclass rule); the wire order is in the table above.
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes
    htype: int = ARP_HTYPE_ETHERNET
    ptype: int = _PTYPE_IPV4
    hlen: int = 6
    plen: int = 4

    @property
    def is_gratuitous(self) -> bool:
        """An announcement of the sender's own binding (RFC 5227 §3): sender and target IP agree."""
        return self.sender_ip == self.target_ip

    @property
    def is_probe(self) -> bool:
        """An address-conflict probe (RFC 5227 §2.1.1): a request from the unspecified address."""
        return self.op == ARP_OP_REQUEST and self.sender_ip == b"\x00\x00\x00\x00"


def pull_arp(buf: Buffer) -> ArpPacket:
    """Read the 28-byte packet; on failure ``buf`` is where it was."""
    start = buf.tell()
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = buf.pull_struct(HEADER, "arp.header")
    # With other lengths the address fields sit elsewhere, so the fixed layout would misread them.
    field = ""
    if hlen != 6:
        field, reason = "arp.hlen", f"hardware address length {hlen}, only Ethernet (6) is spoken"
    elif plen != 4:
        field, reason = "arp.plen", f"protocol address length {plen}, only IPv4 (4) is spoken"
    elif htype not in (ARP_HTYPE_ETHERNET, ARP_HTYPE_IEEE802):
        field, reason = "arp.htype", f"hardware type {htype} is not Ethernet"
    elif ptype != _PTYPE_IPV4:
        field, reason = "arp.ptype", f"protocol type 0x{ptype:04x} is not IPv4"
    elif op not in (ARP_OP_REQUEST, ARP_OP_REPLY):
        # RARP (3, 4; RFC 903) has its own EtherType and InARP (8, 9; RFC 2390) is for frame relay.
        field, reason = "arp.op", f"operation {op} is neither request nor reply"
    if field:
        buf.seek(start)
        raise MalformedPacket(field, reason)
    return ArpPacket(
        op=op,
        sender_mac=sha,
        sender_ip=spa,
        target_mac=tha,
        target_ip=tpa,
        htype=htype,
        ptype=ptype,
        hlen=hlen,
        plen=plen,
    )


def push_arp(buf: Buffer, packet: ArpPacket) -> None:
    # struct's "6s" would silently pad or cut a wrong-sized address.
    for name, value, size in (
        ("sender_mac", packet.sender_mac, 6),
        ("sender_ip", packet.sender_ip, 4),
        ("target_mac", packet.target_mac, 6),
        ("target_ip", packet.target_ip, 4),
    ):
        if len(value) != size:
            raise BufferWriteError(f"arp {name} must be {size} bytes, got {len(value)}")
    buf.push_struct(
        HEADER,
        packet.htype,
        packet.ptype,
        packet.hlen,
        packet.plen,
        packet.op,
        packet.sender_mac,
        packet.sender_ip,
        packet.target_mac,
        packet.target_ip,
    )


def arp_request(sender_mac: bytes, sender_ip: bytes, target_ip: bytes) -> ArpPacket:
    """Who has ``target_ip``? Pass ``target_ip == sender_ip`` for a gratuitous announcement."""
    return ArpPacket(
        op=ARP_OP_REQUEST,
        sender_mac=sender_mac,
        sender_ip=sender_ip,
        target_mac=_ZERO_MAC,
        target_ip=target_ip,
    )


def arp_reply(sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes) -> ArpPacket:
    """``sender_ip`` is at ``sender_mac``, told to the asker (``target_*``, the request's sender)."""
    return ArpPacket(
        op=ARP_OP_REPLY,
        sender_mac=sender_mac,
        sender_ip=sender_ip,
        target_mac=target_mac,
        target_ip=target_ip,
    )

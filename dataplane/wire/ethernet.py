# cython: annotation_typing=False
"""Ethernet II frames (IEEE 802.3 clause 3, DIX framing), without the FCS.

The same source is compiled by Cython into ``_ethernet`` (see ``setup.py``); this file is the
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
    from .buffer import Buffer
else:
    from ._buffer import Buffer

__all__ = [
    "BROADCAST",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_VLAN",
    "EthernetHeader",
    "format_mac",
    "parse_mac",
    "pull_ethernet",
    "push_ethernet",
]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

BROADCAST = b"\xff" * 6

# Ethernet II header
# field       format  default
# dst         6s      (required)   destination MAC
# src         6s      (required)   source MAC
# ethertype   H       0x0800       EtherType (>= 0x0600; smaller values are 802.3 lengths)
HEADER = struct.Struct("!6s6sH")
HEADER_LENGTH = HEADER.size  # 14


@dataclass(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int = ETHERTYPE_IPV4

    @property
    def is_broadcast(self) -> bool:
        return self.dst == BROADCAST

    @property
    def is_multicast(self) -> bool:
        """Group bit (I/G) of the destination: broadcast and multicast frames."""
        return bool(self.dst[0] & 1)


def pull_ethernet(buf: Buffer) -> EthernetHeader:
    start = buf.tell()
    dst, src, ethertype = buf.pull_struct(HEADER, "ethernet.header")
    if ethertype < 0x0600:
        # An 802.3 length field (LLC/SNAP frame): not Ethernet II, nothing here speaks it.
        buf.seek(start)
        raise MalformedPacket("ethernet.ethertype", f"0x{ethertype:04x} is an 802.3 length, not an EtherType")
    return EthernetHeader(dst=dst, src=src, ethertype=ethertype)


def push_ethernet(buf: Buffer, header: EthernetHeader) -> None:
    buf.push_struct(HEADER, header.dst, header.src, header.ethertype)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """``"00:16:3e:12:34:56"`` (or ``-`` separated) to 6 bytes; ValueError names the bad input."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None

"""Helpers for the pump and GSO tests: the two pump twins and super-frames built with scapy."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dataplane.pump import tunnel as pure_pump
from dataplane.wire import _select, checksum

MAC_A = "02:00:5e:10:00:01"
MAC_B = "02:00:5e:10:00:02"


def pump_modules() -> list[ModuleType]:
    compiled = _select.compiled("tunnel", "dataplane.pump")
    return [pure_pump] + ([compiled] if compiled is not None else [])


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return pure_pump
    from tests.conftest import require  # noqa: PLC0415

    compiled = _select.compiled("tunnel", "dataplane.pump")
    require(compiled is not None, "dataplane.pump._tunnel is not built")
    assert compiled is not None
    return compiled


def vnet(  # noqa: PLR0917 - the header fields in wire order
    flags: int = 0,
    gso_type: int = 0,
    hdr_len: int = 0,
    gso_size: int = 0,
    start: int = 0,
    offset: int = 0,
    size: int = 10,
) -> bytes:
    values = (flags, gso_type, hdr_len, gso_size, start, offset) + ((0,) if size == 12 else ())
    return struct.pack("=BBHHHH" + ("H" if size == 12 else ""), *values)


def partial(packet: Packet) -> tuple[bytearray, int, int]:
    """The frame of ``packet`` with its TCP/UDP checksum left as the pseudo-header seed, as a
    sender with checksum offload leaves it; returns (frame, csum_start, csum_offset)."""
    frame = bytearray(bytes(packet))
    if IP in packet:
        l3 = 14
        l4 = l3 + packet[IP].ihl * 4
        proto = packet[IP].proto
        length = len(frame) - l4
        seed = checksum.pseudo_header_sum(
            bytes(frame[l3 + 12 : l3 + 16]), bytes(frame[l3 + 16 : l3 + 20]), proto, length
        )
    else:
        l4 = 14 + 40
        proto = packet[IPv6].nh
        length = len(frame) - l4
        total = checksum.ones_sum(frame, 14 + 8, 14 + 40) + (length >> 16) + (length & 0xFFFF) + proto
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
        seed = total
    offset = 16 if proto == 6 else 6
    frame[l4 + offset : l4 + offset + 2] = seed.to_bytes(2, "big")
    return frame, l4, offset


def tcp4(
    payload: bytes, *, flags: str = "PA", seq: int = 1000, options: bool = True, ip_id: int = 7
) -> Packet:
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (11, 22))] if options else []
    packet: Packet = (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="198.51.100.1", dst="198.51.100.2", id=ip_id, flags="DF")
        / TCP(sport=40000, dport=5201, seq=seq, ack=99, flags=flags, options=opts)
        / Raw(payload)
    )
    return Ether(bytes(packet))


def tcp6(payload: bytes, *, flags: str = "PA", seq: int = 1000) -> Packet:
    packet: Packet = (
        Ether(src=MAC_A, dst=MAC_B)
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / TCP(sport=40000, dport=5201, seq=seq, ack=99, flags=flags)
        / Raw(payload)
    )
    return Ether(bytes(packet))


def udp4(payload: bytes, *, sport: int = 40000) -> Packet:
    packet: Packet = (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="198.51.100.1", dst="198.51.100.2", id=9)
        / UDP(sport=sport, dport=53)
        / Raw(payload)
    )
    return Ether(bytes(packet))

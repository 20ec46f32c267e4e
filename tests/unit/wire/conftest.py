"""Helpers shared by the wire codec tests (imported as ``tests.unit.wire.conftest``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from typing import Any

from hypothesis import strategies as st

from dataplane.wire import MalformedPacket
from tests.vectors import load_pcap

# -- IPv4/ICMP/TCP/UDP codecs (test_ipv4, test_udp, test_tcp, test_icmp) ------------------------


def ip_packets(relative: str) -> list[bytes]:
    """The IPv4 packets of an Ethernet capture, cut to their total length (padding dropped)."""
    packets: list[bytes] = []
    for frame in load_pcap(relative):
        if frame[12:14] != b"\x08\x00":
            continue
        packet = frame[14:]
        packets.append(packet[: int.from_bytes(packet[2:4], "big")])
    return packets


@st.composite
def mutated(draw: st.DrawFn, packets: list[bytes]) -> bytes:
    """A valid packet with some bytes flipped, then cut short or extended."""
    data = bytearray(draw(st.sampled_from(packets)))
    for _ in range(draw(st.integers(0, 4))):
        if data:
            where = draw(st.integers(0, len(data) - 1))
            data[where] ^= draw(st.integers(1, 255))
    action = draw(st.sampled_from(("keep", "truncate", "extend")))
    if action == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif action == "extend":
        data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def outcome(pull: Callable[[Any], Any], buffer_type: Callable[[bytes], Any], data: bytes) -> tuple[Any, ...]:
    """What ``pull`` makes of ``data``: the result as a tuple, or the field it failed on; and where
    the buffer was left. Comparable across the pure and compiled twins."""
    buf = buffer_type(data)
    try:
        result = pull(buf)
    except MalformedPacket as exc:
        return ("error", exc.field, buf.tell())
    return ("ok", astuple(result), buf.tell())

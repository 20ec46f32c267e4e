"""The DHCP port's framing (``dataplane.dhcp.io``): replies framed and requests unframed with
``dataplane.wire``'s codecs, byte-identical to the frames recorded before, checked by scapy."""

from __future__ import annotations

from types import ModuleType

import dpkt
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dataplane.dhcp import io
from dataplane.dhcp.events import Reply
from tests.unit.dhcp.conftest import SERVER_B, T0, Client, ip, mac_of, make
from tests.vectors import load_hex, load_pcap

SRC_MAC = bytes.fromhex("02005e000001")
REQUEST_SRC = bytes.fromhex("02005e0000fe")
IDENTS = (1, 2, 3, 0xFFFF, 0x10000)


def replies(impl: ModuleType) -> list[Reply]:
    """The replies of ``tests/data/dhcp/test_io_frames.hex``, in its order."""
    server = make(impl)
    out = []
    a = Client(server, mac_of(1))
    out.append(a.send(a.message(1, flags=0x8000), T0)[0])
    b = Client(server, mac_of(2))
    out.append(b.send(b.message(1), T0)[0])
    c = Client(server, mac_of(3))
    out.append(c.send(c.message(1, giaddr=ip("172.24.254.2"), hops=1), T0)[0])
    a.dora(T0)
    out.append(a.send(a.message(3, ciaddr=a.address), T0 + 10)[0])
    out.append(b.send(b.message(3, options={50: ip("172.24.9.9")}), T0)[0])
    return out


def test_reply_frames_are_the_recorded_ones(impl: ModuleType) -> None:
    recorded = load_hex("dhcp/test_io_frames.hex")
    built = [
        io.build_frame(SRC_MAC, SERVER_B, io.outgoing(reply, REQUEST_SRC), ident)
        for reply, ident in zip(replies(impl), IDENTS, strict=True)
    ]
    assert built == recorded


def test_reply_frames_decoded_by_scapy(impl: ModuleType) -> None:
    for reply, frame in zip(replies(impl), load_hex("dhcp/test_io_frames.hex"), strict=True):
        packet = Ether(frame)
        ours_ip, ours_udp = packet[IP].chksum, packet[UDP].chksum
        del packet[IP].chksum, packet[UDP].chksum
        again = Ether(bytes(packet))  # scapy recomputes both checksums
        assert (again[IP].chksum, again[UDP].chksum) == (ours_ip, ours_udp)
        assert (packet[IP].src, packet[IP].dst, packet[IP].ttl, packet[IP].proto) == (
            "172.24.254.1",
            reply.dst_ip,
            64,
            17,
        )
        assert (packet[UDP].sport, packet[UDP].dport) == (67, reply.dst_port)
        assert bytes(packet[UDP].payload) == reply.payload


def test_requests_in_a_real_capture_are_unframed() -> None:
    seen = 0
    for frame in load_pcap("wire/test_dhcp_capture.pcap"):
        udp = dpkt.ethernet.Ethernet(frame).data.data
        if not isinstance(udp, dpkt.udp.UDP) or udp.dport != 67:
            continue
        received = io.parse_frame(frame)
        assert received is not None
        assert received.payload == bytes(udp.data)
        assert (received.src_mac, received.dst_mac) == (frame[6:12], frame[0:6])
        assert received.src_port == udp.sport
        seen += 1
    assert seen


def request_frame(**changes: object) -> bytearray:
    """A DISCOVER from 0.0.0.0:68 to 255.255.255.255:67, as a client sends it."""
    frame = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
    frame = frame / UDP(sport=68, dport=changes.pop("dport", 67)) / (b"\x01" * 300)
    for field, value in changes.items():
        setattr(frame[IP], field, value)
    return bytearray(bytes(frame))


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (request_frame()[:41], "short_frame"),
        (request_frame()[:12] + b"\x86\xdd" + request_frame()[14:], "not_ipv4"),
        (request_frame()[:12] + b"\x05\xdc" + request_frame()[14:], "not_ipv4"),
        (request_frame(version=6), "bad_ipv4"),
        (request_frame(flags="MF"), "bad_ipv4"),
        (request_frame(frag=10), "bad_ipv4"),
        (request_frame(proto=6), "bad_ipv4"),
        (request_frame(len=24), "bad_ipv4"),
        (request_frame(len=2000), "bad_ipv4"),
        (request_frame(chksum=1), "bad_checksum"),
        (request_frame(dport=68), "bad_udp"),
    ],
)
def test_frames_that_are_not_requests_are_dropped_by_reason(frame: bytearray, reason: str) -> None:
    stats = io.PortStats()
    assert io.parse_frame(bytes(frame), stats) is None
    assert stats.drops == {reason: 1}


def test_udp_length_past_the_datagram_is_dropped() -> None:
    frame = request_frame()
    frame += bytes(40)  # Ethernet padding: inside the frame, outside the IPv4 datagram
    frame[38:40] = (8 + 300 + 20).to_bytes(2, "big")
    stats = io.PortStats()
    assert io.parse_frame(bytes(frame), stats) is None
    assert stats.drops == {"bad_udp": 1}
    assert io.parse_frame(bytes(request_frame() + bytes(40))) is not None  # padding alone is fine

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from dataplane import wire
from dataplane.wire import Frame, MalformedPacket
from tests.vectors import DATA, load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

VXLAN_CAPTURE = "wire/test_vxlan_capture.pcap"
# test_vnet.py explains these: the kernel left one checksum of each frame partial (spec §5.3).
OUTER_PARTIAL = {1, 2, 3, 4, 5, 6, 18}
A_MAC, B_MAC = bytes.fromhex("020000000201"), bytes.fromhex("020000000202")
A_IP, B_IP = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])


def all_captures() -> list[str]:
    return sorted(f"wire/{path.name}" for path in (DATA / "wire").glob("*.pcap"))


def checksums_ok(raw: bytes) -> list[bool]:
    """Scapy's verdict on every IPv4, TCP, UDP (unless 0) and ICMP checksum, outermost first.

    A datagram quoted inside an ICMP error is cut short, so the walk stops at ICMP.
    """
    verdicts: list[bool] = []
    layer: Any = Ether(raw)
    while layer:
        if isinstance(layer, IP):
            fresh: Any = layer.copy()
            fresh.chksum = None
            verdicts.append(layer.chksum == IP(bytes(fresh)).chksum)
        elif isinstance(layer, (TCP, UDP)) and not (isinstance(layer, UDP) and layer.chksum == 0):
            ip: Any = layer.underlayer
            fresh = layer.copy()
            fresh.chksum = None
            rebuilt = IP(src=ip.src, dst=ip.dst, proto=ip.proto) / fresh
            verdicts.append(layer.chksum == type(layer)(bytes(rebuilt)[20:]).chksum)
        elif isinstance(layer, ICMP):
            fresh = layer.copy()
            fresh.chksum = None
            verdicts.append(layer.chksum == ICMP(bytes(fresh)).chksum)
            break
        layer = layer.payload
    return verdicts


def finished(number: int, raw: bytes) -> bytes:
    """Capture frame ``number`` with the checksum the kernel left partial completed."""
    frame = bytearray(raw)
    if number in OUTER_PARTIAL:
        wire.complete_partial(frame, 34, 6)
    else:
        wire.complete_partial(frame, 84, 16 if frame[64 + 9] == 6 else 6)
    return bytes(frame)


def test_vxlan_capture_layers() -> None:
    frames = [wire.decode_frame(raw) for raw in load_pcap(VXLAN_CAPTURE)]
    for frame in frames:
        assert frame.ipv4 is not None
        assert frame.udp is not None
        assert frame.udp.dst_port == wire.VXLAN_PORT
        assert frame.vxlan == wire.VxlanHeader(vni=7331)
        assert frame.inner is not None
        assert frame.payload == frame.padding == b""
    inner = [frame.inner for frame in frames if frame.inner is not None]
    assert inner[0].arp == wire.arp_request(A_MAC, A_IP, B_IP)
    assert inner[0].ethernet == wire.EthernetHeader(wire.BROADCAST, A_MAC, wire.ETHERTYPE_ARP)
    assert inner[1].arp == wire.arp_reply(B_MAC, B_IP, A_MAC, A_IP)
    echo = inner[2].icmp
    assert echo is not None
    assert (echo.type, echo.sequence) == (wire.ICMP_ECHO_REQUEST, 1)
    tcp = inner[6].tcp
    assert tcp is not None
    assert tcp.flags == wire.TCP_SYN
    assert wire.tcp_mss(tcp) == 1460
    assert inner[9].payload == b"hello overlay"
    assert inner[11].payload == b"HELLO OVERLAY"
    assert inner[16].udp is not None
    assert inner[16].payload == b"ping over udp"
    error = inner[17].icmp
    assert error is not None
    assert (error.type, error.code) == (wire.ICMP_DEST_UNREACH, wire.ICMP_PORT_UNREACH)


@pytest.mark.parametrize("number", range(1, 19))
def test_vxlan_capture_encode_finishes_partial_checksums(number: int) -> None:
    raw = load_pcap(VXLAN_CAPTURE)[number - 1]
    fixed = finished(number, raw)
    assert not all(checksums_ok(raw))
    assert all(checksums_ok(fixed))
    # Re-encoding recomputes every checksum: the partial one comes out finished, the rest unchanged.
    assert wire.encode_frame(wire.decode_frame(raw)) == fixed
    assert wire.encode_frame(wire.decode_frame(fixed)) == fixed


@pytest.mark.parametrize("relative", all_captures())
def test_every_capture_round_trips(relative: str) -> None:
    """Byte-exact where the capture's checksums verify; otherwise only the checksums change."""
    for raw in load_pcap(relative):
        out = wire.encode_frame(wire.decode_frame(raw))
        assert len(out) == len(raw)
        if all(checksums_ok(raw)):
            assert out == raw
        else:
            assert all(checksums_ok(out))
            assert wire.decode_frame(out).ethernet == wire.decode_frame(raw).ethernet


def test_arp_capture() -> None:
    for raw in load_pcap("wire/test_arp_capture.pcap"):
        frame = wire.decode_frame(raw)
        assert frame.arp is not None
        assert frame.ipv4 is None
        assert wire.encode_frame(frame) == raw


def test_ethernet_padding_is_kept() -> None:
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="192.0.2.2") / (b"\x00" * 18))
    frame = wire.decode_frame(arp)
    assert (len(arp), frame.padding) == (60, b"\x00" * 18)
    assert wire.encode_frame(frame) == arp
    short_udp = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"hi")
    padded = short_udp + b"\xaa" * (60 - len(short_udp))
    frame = wire.decode_frame(padded)
    assert frame.payload == b"hi"
    assert frame.padding == b"\xaa" * (60 - len(short_udp))
    assert wire.encode_frame(frame) == padded


ports = st.integers(0, 0xFFFF)
addresses = st.ip_addresses(v=4).map(str)


@st.composite
def scapy_frames(draw: st.DrawFn) -> Packet:
    ip = IP(
        src=draw(addresses),
        dst=draw(addresses),
        ttl=draw(st.integers(1, 255)),
        id=draw(ports),
        tos=draw(st.integers(0, 255)),
        flags=draw(st.sampled_from(["", "DF"])),
    )
    if draw(st.booleans()):
        ip.options = [IPOption_Router_Alert()]
    data = draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["udp", "udp0", "tcp", "icmp", "vxlan", "dhcp", "other"]))
    transport: Packet
    if kind == "udp":
        transport = UDP(sport=draw(ports), dport=draw(ports.filter(lambda p: p not in (67, 68, 4789)))) / Raw(
            data
        )
    elif kind == "udp0":
        transport = UDP(sport=draw(ports), dport=draw(st.integers(1024, 4000)), chksum=0) / Raw(data)
    elif kind == "tcp":
        options = draw(
            st.sampled_from([[], [("MSS", 1410)], [("NOP", None), ("WScale", 7)], [("SAckOK", b"")]])
        )
        transport = TCP(
            sport=draw(ports),
            dport=draw(ports),
            seq=draw(st.integers(0, 2**32 - 1)),
            ack=draw(st.integers(0, 2**32 - 1)),
            flags=draw(st.integers(0, 0xFF)),
            window=draw(ports),
            options=options,
        ) / Raw(data)
    elif kind == "icmp":
        transport = ICMP(type=8, id=draw(ports), seq=draw(ports)) / Raw(data)
    elif kind == "vxlan":
        inner = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2")
        inner = inner / TCP(sport=draw(ports), dport=80) / Raw(data)
        transport = UDP(sport=draw(ports), dport=4789) / VXLAN(vni=draw(st.integers(0, 0xFFFFFF))) / inner
    elif kind == "dhcp":
        bootp = BOOTP(chaddr=draw(st.binary(min_size=6, max_size=6)), xid=draw(st.integers(0, 2**32 - 1)))
        dhcp = DHCP(options=[("message-type", draw(st.integers(1, 8))), "end"])
        # BOOTP's 300-byte minimum (RFC 951), which our encoder also pads to.
        transport = UDP(sport=68, dport=67) / bootp / dhcp / Raw(b"\x00" * 56)
    else:
        ip.proto = 47
        transport = Raw(data)
    packet: Packet = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / ip / transport
    return packet


@settings(max_examples=200)
@given(scapy_frames())
def test_scapy_frames_round_trip(packet: Packet) -> None:
    raw = bytes(packet)
    frame = wire.decode_frame(raw)
    assert wire.encode_frame(frame) == raw
    assert frame.ipv4 is not None
    ip = packet[IP]
    assert (wire.format_ipv4(frame.ipv4.src), wire.format_ipv4(frame.ipv4.dst)) == (ip.src, ip.dst)
    assert (frame.ipv4.ttl, frame.ipv4.identification, frame.ipv4.tos) == (ip.ttl, ip.id, ip.tos)
    if VXLAN in packet:
        assert frame.vxlan is not None
        assert frame.inner is not None
        assert frame.vxlan.vni == packet[VXLAN].vni
        assert frame.inner.tcp is not None
        assert frame.inner.payload == bytes(packet[VXLAN].payload[TCP].payload)
    elif BOOTP in packet:
        assert frame.dhcp is not None
        assert frame.dhcp.xid == packet[BOOTP].xid
        assert frame.dhcp.options[53] == bytes([packet[DHCP].options[0][1]])
    elif TCP in packet:
        assert frame.tcp is not None
        assert (frame.tcp.seq, frame.tcp.ack, frame.tcp.window) == (
            packet[TCP].seq,
            packet[TCP].ack,
            packet[TCP].window,
        )
        assert frame.payload == bytes(packet[TCP].payload)
    elif UDP in packet:
        assert frame.udp is not None
        assert (frame.udp.src_port, frame.udp.dst_port) == (packet[UDP].sport, packet[UDP].dport)
        assert frame.payload == bytes(packet[UDP].payload)
    elif ICMP in packet:
        assert frame.icmp is not None
        assert (frame.icmp.identifier, frame.icmp.sequence) == (packet[ICMP].id, packet[ICMP].seq)
    else:
        assert frame.payload == bytes(packet[IP].payload)


@settings(max_examples=200)
@given(scapy_frames())
def test_built_frames_have_what_scapy_computes(packet: Packet) -> None:
    """Lengths and checksums left at 0 come out as scapy computes them (UDP 0 stays "none")."""
    raw = bytes(packet)
    frame = wire.decode_frame(raw)
    assert frame.ipv4 is not None
    frame.ipv4.total_length = frame.ipv4.checksum = 0
    zero_udp = frame.udp is not None and frame.udp.checksum == 0
    if frame.udp is not None:
        frame.udp.length = 0
        frame.udp.checksum = 0 if zero_udp else 1
    if frame.tcp is not None:
        frame.tcp.checksum = 0
    if frame.icmp is not None:
        frame.icmp.checksum = 0
    assert wire.encode_frame(frame) == raw


def test_build_from_scratch() -> None:
    frame = Frame(
        ethernet=wire.EthernetHeader(dst=B_MAC, src=A_MAC),
        ipv4=wire.IPv4Header(src=A_IP, dst=B_IP, dont_fragment=True),
        tcp=wire.TcpHeader(src_port=40000, dst_port=80, seq=1, flags=wire.TCP_SYN, window=64240),
    )
    raw = wire.encode_frame(frame)
    theirs = Ether(raw)
    assert theirs[IP].proto == 6
    assert theirs[IP].len == 40
    assert theirs[TCP].dport == 80
    assert all(checksums_ok(raw))
    assert frame.ipv4 is not None
    assert frame.ipv4.total_length == 20  # the caller's frame is left alone
    vxlan = Frame(
        ethernet=wire.EthernetHeader(dst=B_MAC, src=A_MAC),
        ipv4=wire.IPv4Header(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2])),
        udp=wire.UdpHeader(src_port=wire.source_port_for(raw), dst_port=wire.VXLAN_PORT),
        vxlan=wire.VxlanHeader(vni=7331),
        inner=frame,
    )
    outer = wire.encode_frame(vxlan)
    assert len(outer) == len(raw) + wire.VXLAN_OVERHEAD
    assert outer[wire.VXLAN_OVERHEAD :] == raw
    assert Ether(outer)[VXLAN].vni == 7331
    assert Ether(outer)[UDP].chksum == 0
    assert wire.decode_frame(outer).inner == wire.decode_frame(raw)


def test_fragments_are_not_reassembled() -> None:
    first = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", flags="MF", proto=17) / (b"a" * 16))
    second = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", frag=2, proto=17) / (b"b" * 8))
    for raw in (first, second):
        frame = wire.decode_frame(raw)
        assert frame.udp is None
        assert frame.ipv4 is not None
        assert frame.ipv4.is_fragment
        assert len(frame.payload) in (16, 8)
        assert wire.encode_frame(frame) == raw


def test_other_ethertypes_are_payload() -> None:
    raw = bytes.fromhex("333300000001 020000000001 86dd") + b"\x60" + b"\x00" * 39
    frame = wire.decode_frame(raw)
    assert frame.ipv4 is None
    assert frame.payload == raw[14:]
    assert wire.encode_frame(frame) == raw


def test_vxlan_without_i_flag_is_not_decoded() -> None:
    inner = bytes(Ether() / ARP())
    raw = bytes(Ether() / IP() / UDP(sport=1, dport=4789) / VXLAN(flags=0, vni=5) / inner)
    frame = wire.decode_frame(raw)
    assert frame.vxlan is not None
    assert not frame.vxlan.valid
    assert frame.inner is None
    assert frame.payload == inner
    assert wire.encode_frame(frame) == raw


def test_nesting_is_bounded() -> None:
    raw = bytes(Ether() / ARP())
    for _ in range(wire.MAX_NESTING + 2):
        raw = bytes(Ether() / IP() / UDP(sport=1, dport=4789, chksum=0) / VXLAN(vni=1) / raw)
    frame: Frame | None = wire.decode_frame(raw)
    depth = 0
    while frame is not None and frame.inner is not None:
        frame = frame.inner
        depth += 1
    assert depth == wire.MAX_NESTING
    assert frame is not None
    assert frame.vxlan is not None
    assert frame.payload
    assert wire.encode_frame(wire.decode_frame(raw)) == raw


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\x00" * 13, "ethernet.header"),
        (bytes(Ether() / IP() / UDP(sport=1, dport=2, len=9) / b"ab"), "frame.udp"),
        (bytes(Ether() / IP() / UDP(sport=1, dport=4789) / b"\x08\x00"), "vxlan.header"),
        (bytes(Ether() / IP() / UDP(sport=1, dport=4789) / VXLAN(vni=1) / (b"\x00" * 10)), "frame.inner"),
        (bytes(Ether() / IP(len=60) / (b"x" * 10)), "ipv4.total_length"),
        (bytes(Ether() / IP() / UDP(sport=68, dport=67) / b"not bootp"), "dhcp.header"),
        (bytes(Ether() / ARP(hwlen=8)), "arp.hlen"),
    ],
)
def test_errors_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.decode_frame(raw)
    assert info.value.field == field


def test_inner_error_says_where() -> None:
    raw = bytes(Ether() / IP() / UDP(sport=1, dport=4789) / VXLAN(vni=1) / Ether() / IP(version=6))
    with pytest.raises(MalformedPacket) as info:
        wire.decode_frame(raw)
    assert info.value.field == "frame.inner"
    assert info.value.reason.startswith("ipv4.version:")


def ethernet() -> wire.EthernetHeader:
    return wire.EthernetHeader(dst=B_MAC, src=A_MAC)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(ethernet(), arp=wire.arp_request(A_MAC, A_IP, B_IP), ipv4=wire.IPv4Header()),
        Frame(ethernet(), udp=wire.UdpHeader(1, 2)),
        Frame(ethernet(), arp=wire.arp_request(A_MAC, A_IP, B_IP), udp=wire.UdpHeader(1, 2)),
        Frame(ethernet(), ipv4=wire.IPv4Header(), udp=wire.UdpHeader(1, 2), tcp=wire.TcpHeader(1, 2)),
        Frame(ethernet(), ipv4=wire.IPv4Header(), vxlan=wire.VxlanHeader(1)),
        Frame(ethernet(), ipv4=wire.IPv4Header(), udp=wire.UdpHeader(1, 2), inner=Frame(ethernet())),
        Frame(ethernet(), ipv4=wire.IPv4Header(), icmp=wire.icmp_echo_request(1, 1), payload=b"x"),
        Frame(
            ethernet(),
            ipv4=wire.IPv4Header(),
            udp=wire.UdpHeader(1, 4789),
            vxlan=wire.VxlanHeader(1),
            inner=Frame(ethernet()),
            payload=b"x",
        ),
        Frame(ethernet(), ipv4=wire.IPv4Header(), udp=wire.UdpHeader(1, 2), payload=b"x" * 65535),
    ],
)
def test_encode_refuses_impossible_frames(frame: Frame) -> None:
    with pytest.raises(wire.BufferWriteError):
        wire.encode_frame(frame)


def test_capture_script_is_kept() -> None:
    script = Path(DATA / "wire" / "capture_overlay.sh").read_text()
    assert "id 7331" in script
    assert "trap cleanup EXIT" in script

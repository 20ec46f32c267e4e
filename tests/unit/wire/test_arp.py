from __future__ import annotations

import logging
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from dataplane import wire
from dataplane.wire import Buffer, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.vectors import load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
ops = st.sampled_from([wire.ARP_OP_REQUEST, wire.ARP_OP_REPLY])


def ip_text(address: bytes) -> str:
    return ".".join(str(b) for b in address)


def encode(packet: wire.ArpPacket) -> bytes:
    out = Buffer()
    wire.push_arp(out, packet)
    return out.data


def test_capture_round_trip() -> None:
    # Made by capture_overlay.sh on the kernel VXLAN device vx0; `tshark -r test_arp_capture.pcap`:
    #   1 0.000000 02:00:00:00:02:01 -> Broadcast ARP 42 Who has 198.51.100.2? Tell 198.51.100.1
    #   2 0.002076 02:00:00:00:02:02 -> 02:00:00:00:02:01 ARP 42 198.51.100.2 is at 02:00:00:00:02:02
    frames = load_pcap("wire/test_arp_capture.pcap")
    packets = []
    for raw in frames:
        buf = Buffer(raw)
        ethernet = wire.pull_ethernet(buf)
        assert ethernet.ethertype == wire.ETHERTYPE_ARP
        packet = wire.pull_arp(buf)
        assert buf.eof()
        assert encode(packet) == raw[14:]
        packets.append(packet)
    request, reply = packets
    a, b = bytes.fromhex("020000000201"), bytes.fromhex("020000000202")
    a_ip, b_ip = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
    assert request == wire.arp_request(a, a_ip, b_ip)
    assert reply == wire.arp_reply(b, b_ip, a, a_ip)
    assert not request.is_gratuitous
    assert not request.is_probe


@settings(max_examples=200)
@given(op=ops, sha=macs, spa=ips, tha=macs, tpa=ips)
def test_scapy_agrees(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    theirs = ARP(
        op=op,
        hwsrc=wire.format_mac(sha),
        psrc=ip_text(spa),
        hwdst=wire.format_mac(tha),
        pdst=ip_text(tpa),
    )
    raw = bytes(theirs)
    ours = wire.pull_arp(Buffer(raw))
    assert ours == wire.ArpPacket(op, sha, spa, tha, tpa)
    assert encode(ours) == raw
    parsed = ARP(encode(ours))
    assert (parsed.hwtype, parsed.ptype, parsed.hwlen, parsed.plen, parsed.op) == (1, 0x0800, 6, 4, op)
    assert (parsed.hwsrc, parsed.psrc, parsed.hwdst, parsed.pdst) == (
        wire.format_mac(sha),
        ip_text(spa),
        wire.format_mac(tha),
        ip_text(tpa),
    )


def test_constructors_match_scapy() -> None:
    mac, ip, peer_ip = bytes.fromhex("00163e123456"), bytes([172, 24, 254, 1]), bytes([172, 24, 1, 9])
    peer_mac = bytes.fromhex("00163eabcdef")
    request = ARP(op="who-has", hwsrc="00:16:3e:12:34:56", psrc="172.24.254.1", pdst="172.24.1.9")
    assert encode(wire.arp_request(mac, ip, peer_ip)) == bytes(request)
    reply = ARP(
        op="is-at",
        hwsrc="00:16:3e:12:34:56",
        psrc="172.24.254.1",
        hwdst="00:16:3e:ab:cd:ef",
        pdst="172.24.1.9",
    )
    assert encode(wire.arp_reply(mac, ip, peer_mac, peer_ip)) == bytes(reply)
    announcement = wire.arp_request(mac, ip, ip)
    assert announcement.is_gratuitous
    probe = wire.arp_request(mac, b"\x00" * 4, peer_ip)
    assert probe.is_probe


def test_ieee802_hardware_type_is_accepted() -> None:
    # Scapy reads hardware type 6 addresses as something other than MACs, so no oracle here.
    raw = bytearray(bytes(ARP(op=2, hwsrc="02:00:00:00:00:01", psrc="192.0.2.1", pdst="192.0.2.2")))
    raw[1] = wire.ARP_HTYPE_IEEE802
    packet = wire.pull_arp(Buffer(bytes(raw)))
    assert packet.htype == wire.ARP_HTYPE_IEEE802
    assert packet.sender_mac == bytes.fromhex("020000000001")
    assert encode(packet) == raw


def test_ethernet_padding_is_left_in_the_buffer() -> None:
    raw = bytes(ARP(op=1, psrc="192.0.2.1", pdst="192.0.2.2")) + b"\x00" * 18
    buf = Buffer(raw)
    wire.pull_arp(buf)
    assert buf.tell() == wire.ARP_LENGTH == 28
    assert buf.remaining() == 18


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (4, 8, "arp.hlen"),
        (5, 16, "arp.plen"),
        (1, 0x20, "arp.htype"),
        (2, 0x86, "arp.ptype"),
        (7, 3, "arp.op"),
        (7, 0, "arp.op"),
    ],
)
def test_rejects(offset: int, value: int, field: str) -> None:
    raw = bytearray(bytes(ARP(op=1, psrc="192.0.2.1", pdst="192.0.2.2")))
    raw[offset] = value
    buf = Buffer(bytes(raw))
    with pytest.raises(MalformedPacket) as info:
        wire.pull_arp(buf)
    assert info.value.field == field
    assert buf.tell() == 0


@pytest.mark.parametrize("size", [0, 1, 8, 27])
def test_truncated(size: int) -> None:
    buf = Buffer(bytes(ARP())[:size])
    with pytest.raises(MalformedPacket) as info:
        wire.pull_arp(buf)
    assert info.value.field == "arp.header"
    assert buf.tell() == 0


def test_push_refuses_wrong_address_sizes() -> None:
    packet = wire.arp_request(b"\x02" * 6, b"\x0a\x00\x00\x01", b"\x0a\x00\x00")
    with pytest.raises(wire.BufferWriteError, match="target_ip"):
        encode(packet)


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_twins_agree_on_any_bytes(data: bytes) -> None:
    pure, compiled = twins("arp")
    _, cbuffer = twins("buffer")
    outcomes: list[tuple[str, object]] = []
    for module, buffer_type in ((pure, PureBuffer), (compiled, cbuffer.Buffer)):
        try:
            outcomes.append(("ok", astuple(module.pull_arp(buffer_type(data)))))
        except MalformedPacket as exc:
            outcomes.append(("error", exc.field))
    assert outcomes[0] == outcomes[1]

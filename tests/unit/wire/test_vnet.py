from __future__ import annotations

import logging
import struct
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from dataplane import wire
from dataplane.wire import Buffer, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.vectors import load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# See test_vxlan.py for the tshark reading of this capture. Which checksums the kernel left partial
# (dataplane spec §5.3; the sender's CHECKSUM_PARTIAL is visible because veth has no real offload):
#   frames 1-6, 18 (inner ARP, ICMP): the outer UDP checksum holds the pseudo-header seed;
#   frames 7-17 (inner TCP, UDP): the inner TCP/UDP checksum holds the seed, and the outer UDP
#     checksum is already final for the completed inner packet (local checksum offload,
#     Documentation/networking/checksum-offloads.rst), so finishing the inner one fixes both.
CAPTURE = "wire/test_vxlan_capture.pcap"
OUTER_PARTIAL = {1, 2, 3, 4, 5, 6, 18}
INNER_PARTIAL = set(range(7, 18))
INNER_L3 = wire.VXLAN_OVERHEAD + 14  # inner IPv4 header, without options here


def l4_checksums_ok(raw: bytes) -> list[bool]:
    """Scapy's verdict on every TCP, UDP (unless 0) and ICMP checksum in the frame, outer first.

    A datagram quoted inside an ICMP error is cut short, so the walk stops at ICMP.
    """
    verdicts: list[bool] = []
    layer: Any = Ether(raw)
    while layer:
        if isinstance(layer, ICMP):
            fresh: Any = layer.copy()
            fresh.chksum = None
            verdicts.append(layer.chksum == ICMP(bytes(fresh)).chksum)
            break
        if isinstance(layer, (TCP, UDP)) and not (isinstance(layer, UDP) and layer.chksum == 0):
            ip: Any = layer.underlayer
            fresh = layer.copy()
            fresh.chksum = None
            rebuilt = IP(src=ip.src, dst=ip.dst, proto=ip.proto) / fresh
            verdicts.append(layer.chksum == type(layer)(bytes(rebuilt)[20:]).chksum)
        layer = layer.payload
    return verdicts


def seed_of(raw: bytes, l3: int) -> int:
    ihl = (raw[l3] & 0x0F) * 4
    total = struct.unpack_from("!H", raw, l3 + 2)[0]
    return wire.pseudo_header_sum(raw[l3 + 12 : l3 + 16], raw[l3 + 16 : l3 + 20], raw[l3 + 9], total - ihl)


def captured() -> list[tuple[int, bytes]]:
    return list(enumerate(load_pcap(CAPTURE), 1))


def encode(header: wire.VnetHeader, size: int = wire.VNET_HDR_LEN) -> bytes:
    out = Buffer()
    wire.push_vnet(out, header, size)
    return out.data


def test_layout_is_struct_virtio_net_hdr() -> None:
    header = wire.VnetHeader(
        flags=wire.VNET_F_NEEDS_CSUM,
        gso_type=wire.VNET_GSO_TCPV4 | wire.VNET_GSO_ECN,
        hdr_len=66,
        gso_size=1398,
        csum_start=34,
        csum_offset=16,
        num_buffers=3,
    )
    assert encode(header) == struct.pack("=BBHHHH", 1, 0x81, 66, 1398, 34, 16)
    assert encode(header, 12) == struct.pack("=BBHHHHH", 1, 0x81, 66, 1398, 34, 16, 3)
    assert wire.pull_vnet(Buffer(encode(header, 12)), 12) == header
    short = wire.pull_vnet(Buffer(encode(header)))
    assert short.num_buffers == 0
    assert (wire.VNET_HDR_LEN, wire.VNET_HDR_MRG_LEN) == (10, 12)


@settings(max_examples=200)
@given(
    flags=st.integers(0, 7),
    gso=st.sampled_from([0, 1, 3, 4, 5]),
    ecn=st.booleans(),
    values=st.lists(st.integers(0, 0xFFFF), min_size=5, max_size=5),
    size=st.sampled_from([10, 12]),
)
def test_round_trip(flags: int, gso: int, ecn: bool, values: list[int], size: int) -> None:
    hdr_len, gso_size, csum_start, csum_offset, num_buffers = values
    if gso and not gso_size:
        gso_size = 1
    header = wire.VnetHeader(
        flags,
        gso | (0x80 if ecn else 0),
        hdr_len,
        gso_size,
        csum_start,
        csum_offset,
        num_buffers if size == 12 else 0,
    )
    raw = encode(header, size)
    buf = Buffer(raw + b"frame")
    assert wire.pull_vnet(buf, size) == header
    assert buf.tell() == size
    assert header.is_gso == bool(gso)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (struct.pack("=BBHHHH", 8, 0, 0, 0, 0, 0), "vnet.flags"),
        (struct.pack("=BBHHHH", 0, 2, 0, 0, 0, 0), "vnet.gso_type"),
        (struct.pack("=BBHHHH", 0, 6, 0, 0, 0, 0), "vnet.gso_type"),
        (struct.pack("=BBHHHH", 0, 0x41, 0, 100, 0, 0), "vnet.gso_type"),
        (struct.pack("=BBHHHH", 0, 1, 54, 0, 0, 0), "vnet.gso_size"),
        (b"\x00" * 9, "vnet.header"),
    ],
)
def test_rejects(raw: bytes, field: str) -> None:
    buf = Buffer(raw)
    with pytest.raises(MalformedPacket) as info:
        wire.pull_vnet(buf)
    assert info.value.field == field
    assert buf.tell() == 0


def test_header_size_is_10_or_12() -> None:
    with pytest.raises(ValueError, match="10 or 12"):
        wire.pull_vnet(Buffer(b"\x00" * 20), 11)
    with pytest.raises(ValueError, match="10 or 12"):
        encode(wire.VnetHeader(), 8)
    with pytest.raises(wire.BufferWriteError):
        encode(wire.VnetHeader(csum_start=1 << 16))


def test_capture_has_the_partial_checksums_the_spec_describes() -> None:
    for number, raw in captured():
        verdicts = l4_checksums_ok(raw)
        assert not all(verdicts), number
        if number in INNER_PARTIAL:
            inner_l4 = INNER_L3 + 20 + (16 if raw[INNER_L3 + 9] == 6 else 6)
            # Spec 5.3: the unfinished inner checksum equals the (uncomplemented) pseudo-header seed.
            assert struct.unpack_from("!H", raw, inner_l4)[0] == seed_of(raw, INNER_L3)
        else:
            assert number in OUTER_PARTIAL
            assert struct.unpack_from("!H", raw, 34 + 6)[0] == seed_of(raw, 14)


@pytest.mark.parametrize("number", sorted(INNER_PARTIAL))
def test_finish_inner_checksum(number: int) -> None:
    raw = load_pcap(CAPTURE)[number - 1]
    # As a TAP would hand the decapsulated frame over: csum_start counts from the inner Ethernet.
    inner = bytearray(raw[wire.VXLAN_OVERHEAD :])
    offset = 16 if inner[14 + 9] == 6 else 6
    header = wire.VnetHeader(flags=wire.VNET_F_NEEDS_CSUM, csum_start=34, csum_offset=offset)
    assert not all(l4_checksums_ok(bytes(inner)))
    wire.finish_checksum(inner, header)
    assert l4_checksums_ok(bytes(inner)) == [True]
    assert not header.needs_csum
    # Finishing twice would sum the finished checksum in; the cleared flag makes it a no-op.
    again = bytearray(inner)
    wire.finish_checksum(again, header)
    assert again == inner
    # Local checksum offload: the outer UDP checksum was computed for the completed inner packet.
    whole = bytearray(raw)
    wire.finish_checksum(
        whole, wire.VnetHeader(flags=wire.VNET_F_NEEDS_CSUM, csum_start=84, csum_offset=offset)
    )
    assert l4_checksums_ok(bytes(whole)) == [True, True]
    assert whole[wire.VXLAN_OVERHEAD :] == inner
    assert Ether(bytes(whole))[VXLAN].vni == 7331


@pytest.mark.parametrize("number", sorted(OUTER_PARTIAL))
def test_finish_outer_checksum(number: int) -> None:
    frame = bytearray(load_pcap(CAPTURE)[number - 1])
    wire.finish_checksum(frame, wire.VnetHeader(flags=wire.VNET_F_NEEDS_CSUM, csum_start=34, csum_offset=6))
    assert all(l4_checksums_ok(bytes(frame)))
    assert Ether(bytes(frame))[IP].proto == 17


def test_finish_without_needs_csum_leaves_the_frame() -> None:
    frame = bytearray(load_pcap(CAPTURE)[6])
    before = bytes(frame)
    wire.finish_checksum(frame, wire.VnetHeader(flags=wire.VNET_F_DATA_VALID, csum_start=9999))
    assert frame == before


@pytest.mark.parametrize(
    ("start", "offset", "field"),
    [
        (60, 0, "vnet.csum_start"),
        (61, 0, "vnet.csum_start"),
        (58, 1, "vnet.csum_offset"),
        (34, 25, "vnet.csum_offset"),
    ],
)
def test_finish_refuses_offsets_outside_the_frame(start: int, offset: int, field: str) -> None:
    frame = bytearray(60)
    header = wire.VnetHeader(flags=wire.VNET_F_NEEDS_CSUM, csum_start=start, csum_offset=offset)
    with pytest.raises(MalformedPacket) as info:
        wire.finish_checksum(frame, header)
    assert info.value.field == field
    assert frame == bytearray(60)
    assert header.needs_csum


@settings(max_examples=200)
@given(st.binary(max_size=14))
def test_twins_agree_on_any_bytes(data: bytes) -> None:
    pure, compiled = twins("vnet")
    _, cbuffer = twins("buffer")
    outcomes: list[tuple[str, object]] = []
    for module, buffer_type in ((pure, PureBuffer), (compiled, cbuffer.Buffer)):
        for size in (10, 12):
            try:
                outcomes.append(("ok", astuple(module.pull_vnet(buffer_type(data), size))))
            except MalformedPacket as exc:
                outcomes.append(("error", exc.field))
    assert outcomes[:2] == outcomes[2:]

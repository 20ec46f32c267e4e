"""The batch API: VXLAN decap/encap, IPv4 rewrite, classification, checksum completion.

Scapy is the oracle for formats and checksums; the pure and compiled twins must agree byte for byte.
"""

from __future__ import annotations

import array
import logging
import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, Dot1Q, Ether  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402
from scapy.packet import Packet, Raw  # noqa: E402

from dataplane import wire  # noqa: E402
from dataplane.wire import batch as pure_batch  # noqa: E402
from dataplane.wire.batch import Drop, Kind  # noqa: E402
from dataplane.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum  # noqa: E402
from dataplane.wire.vxlan import source_port_for  # noqa: E402
from tests.conftest import twins  # noqa: E402

VNI = 0x123456
LOCAL = bytes([192, 0, 2, 1])
REMOTE = bytes([192, 0, 2, 2])
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def addr(value: bytes) -> int:
    return int.from_bytes(value, "big")


def inner_udp(payload: bytes = b"payload", sport: int = 1234, dport: int = 53) -> Packet:
    return (
        Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
        / IP(src="172.24.1.10", dst="172.24.254.1", id=7)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )


def inner_tcp(payload: bytes = b"GET / HTTP/1.1\r\n\r\n", sport: int = 40000, dport: int = 80) -> Packet:
    return (
        Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
        / IP(src="172.24.1.10", dst="203.0.113.5", id=9)
        / TCP(sport=sport, dport=dport, flags="PA", seq=1000, ack=2000)
        / Raw(payload)
    )


def encapsulated(inner: Packet | bytes, vni: int = VNI, src: str = "192.0.2.2", dport: int = 4789) -> bytes:
    outer = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=src, dst="192.0.2.1", flags="DF")
        / UDP(sport=50000, dport=dport, chksum=0)
        / VXLAN(vni=vni, flags=0x08)
    )
    return bytes(outer / (Raw(inner) if isinstance(inner, bytes) else inner))


def recomputed(frame: bytes) -> Packet:
    """Scapy's own checksums for ``frame``: delete them and rebuild."""
    packet = Ether(frame)
    del packet[IP].chksum
    for layer in (UDP, TCP):
        if layer in packet:
            del packet[layer].chksum
    return Ether(bytes(packet))


def batch_of(*frames: bytes, capacity: int = 16) -> pure_batch.FrameBatch:
    b = wire.FrameBatch(capacity)
    for frame in frames:
        b.append(frame)
    return b


# -- FrameBatch --------------------------------------------------------------------------------------


def test_append_frame_clear() -> None:
    b = wire.FrameBatch(capacity=2, slot_size=128, headroom=64)
    assert b.append(b"a" * 64) == 0
    assert b.append(b"b" * 10) == 1
    assert (len(b), b.count, b.frame(0), b.frame(1)) == (2, 2, b"a" * 64, b"b" * 10)
    assert list(b.offset) == [64, 192]
    assert b.data[64:128] == b"a" * 64
    with pytest.raises(ValueError, match="full"):
        b.append(b"c")
    with pytest.raises(IndexError):
        b.frame(2)
    b.clear()
    assert (b.count, list(b.length), list(b.offset)) == (0, [0, 0], [64, 192])
    with pytest.raises(ValueError, match="does not fit a slot"):
        b.append(b"x" * 65)
    assert b.extend([b"x" * 20, bytearray(b"y" * 20)]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity"),
        ({"slot_size": 10}, "slot_size"),
        ({"slot_size": 128, "headroom": 120}, "headroom"),
        ({"capacity": 1 << 20, "slot_size": 1 << 17}, "4 GiB"),
    ],
)
def test_bad_geometry(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wire.FrameBatch(**kwargs)


def test_count_is_checked_and_arrays_are_pinned() -> None:
    b = wire.FrameBatch(capacity=4)
    b.count = 4
    with pytest.raises(ValueError, match="count"):
        b.count = 5
    with pytest.raises(BufferError):
        b.offset.append(1)
    with pytest.raises(BufferError):
        b.data.extend(b"x")


# -- decap ---------------------------------------------------------------------------------------------


def test_decap_scapy_frames() -> None:
    inners = [inner_udp(), inner_tcp(), inner_udp(b"x" * 1400), Ether() / ARP()]
    b = batch_of(*(encapsulated(i) for i in inners), encapsulated(inner_udp(), vni=5))
    assert wire.vxlan_decap(b, VNI) == 4
    for i, inner in enumerate(inners):
        assert b.frame(i) == bytes(inner)
        assert b.peer[i] == addr(bytes([192, 0, 2, 2]))
        assert b.offset[i] == i * b.slot_size + b.headroom + 50
    assert b.drop_counts() == {Drop.WRONG_VNI: 1}
    # A second decap skips nothing good but finds inner frames are not VXLAN: status set, no raise.
    assert wire.vxlan_decap(b, VNI) == 0


def test_decap_ignores_reserved_bits_and_trailing_padding() -> None:
    raw = bytearray(encapsulated(inner_udp()))
    raw[42] = 0xFF  # every flag bit, I included
    raw[43:46] = b"\xaa\xbb\xcc"
    raw[49] = 0xDD
    b = batch_of(bytes(raw) + b"\x00" * 10)  # Ethernet padding after the IP datagram
    assert wire.vxlan_decap(b, VNI) == 1
    assert b.frame(0) == bytes(inner_udp())


def _patch(frame: bytes, at: int, value: bytes, fix_ip: bool = True) -> bytes:
    raw = bytearray(frame)
    raw[at : at + len(value)] = value
    if fix_ip:
        ihl = (raw[14] & 15) * 4
        raw[24:26] = b"\x00\x00"
        raw[24:26] = internet_checksum(raw, 14, 14 + ihl).to_bytes(2, "big")
    return bytes(raw)


GOOD = encapsulated(inner_udp())
BAD_FRAMES = {
    Drop.TRUNCATED: [GOOD[:10], GOOD[:30], encapsulated(b"\x00" * 8)],
    Drop.NOT_IPV4: [_patch(GOOD, 12, b"\x86\xdd"), _patch(GOOD, 14, b"\x65")],
    Drop.BAD_IHL: [_patch(GOOD, 14, b"\x44", fix_ip=False)],
    Drop.BAD_LENGTH: [
        _patch(GOOD, 16, b"\xff\xff"),
        _patch(GOOD, 16, b"\x00\x10"),
        _patch(GOOD, 38, b"\x00\x08"),
    ],
    Drop.BAD_CHECKSUM: [_patch(GOOD, 24, b"\x12\x34", fix_ip=False)],
    Drop.FRAGMENT: [_patch(GOOD, 20, b"\x20\x00"), _patch(GOOD, 20, b"\x00\x01")],
    Drop.NOT_UDP: [_patch(GOOD, 23, b"\x06")],
    Drop.WRONG_PORT: [encapsulated(inner_udp(), dport=8472)],
    Drop.NO_I_FLAG: [_patch(GOOD, 42, b"\x00")],
    Drop.WRONG_VNI: [encapsulated(inner_udp(), vni=VNI + 1)],
    Drop.INNER_VLAN: [encapsulated(Ether() / Dot1Q(vlan=5) / IP() / UDP())],
}


def test_decap_drop_reasons() -> None:
    frames = [frame for group in BAD_FRAMES.values() for frame in group]
    b = batch_of(GOOD, *frames, capacity=32)
    assert wire.vxlan_decap(b, VNI) == 1
    assert b.drop_counts() == {reason: len(group) for reason, group in BAD_FRAMES.items()}
    for i, frame in enumerate(frames, start=1):
        assert b.frame(i) == frame  # a dropped frame is left as it was


def test_decap_allows_vlan_when_asked() -> None:
    b = batch_of(*BAD_FRAMES[Drop.INNER_VLAN])
    assert wire.vxlan_decap(b, VNI, allow_vlan=True) == 1


# -- encap ---------------------------------------------------------------------------------------------


def test_encap_scapy_decodes() -> None:
    inners = [inner_udp(), inner_tcp(), Ether(src="02:00:00:00:00:0c") / ARP()]
    b = batch_of(*(bytes(i) for i in inners))
    assert wire.vxlan_encap(b, LOCAL, REMOTE, VNI, src_mac=MAC_A, dst_mac=MAC_B, ttl=17) == 3
    for i, inner in enumerate(inners):
        frame = b.frame(i)
        assert len(frame) == len(inner) + wire.VXLAN_OVERHEAD
        outer = Ether(frame)
        assert (outer.src, outer.dst) == (wire.format_mac(MAC_A), wire.format_mac(MAC_B))
        ip = outer[IP]
        assert (ip.src, ip.dst, ip.ttl, ip.id, str(ip.flags), ip.len) == (
            "192.0.2.1",
            "192.0.2.2",
            17,
            0,
            "DF",
            len(inner) + 36,
        )
        assert ip.chksum == recomputed(frame)[IP].chksum
        udp = outer[UDP]
        assert (udp.dport, udp.chksum, udp.len) == (4789, 0, len(inner) + 16)
        assert 49152 <= udp.sport <= 65535
        assert (outer[VXLAN].vni, int(outer[VXLAN].flags)) == (VNI, 0x08)
        assert bytes(outer[VXLAN].payload) == bytes(inner)


def test_encap_source_port_hashes_the_inner_flow() -> None:
    frames = [bytes(inner_udp(sport=s)) for s in range(1000, 1032)]
    b = batch_of(*frames, frames[0], capacity=64)
    wire.vxlan_encap(b, LOCAL, REMOTE, 1, src_mac=MAC_A, dst_mac=MAC_B)
    ports = [Ether(b.frame(i))[UDP].sport for i in range(b.count)]
    assert ports[0] == ports[-1]
    assert len(set(ports)) > 24


def test_encap_drops() -> None:
    b = wire.FrameBatch(capacity=8, headroom=64)
    b.append(bytes(inner_udp(b"x" * 1450)))  # 1492-byte inner frame > mtu 1450 + 14
    b.append(bytes(inner_udp(b"x" * 1400)))
    b.append(b"short")
    assert wire.vxlan_encap(b, LOCAL, REMOTE, 1, src_mac=MAC_A, dst_mac=MAC_B) == 1
    assert b.drop_counts() == {Drop.TOO_BIG: 1, Drop.TRUNCATED: 1}
    tight = wire.FrameBatch(capacity=2, headroom=20)
    tight.append(bytes(inner_udp()))
    assert wire.vxlan_encap(tight, LOCAL, REMOTE, 1, src_mac=MAC_A, dst_mac=MAC_B) == 0
    assert tight.drop_counts() == {Drop.NO_HEADROOM: 1}
    nopeer = batch_of(bytes(inner_udp()))
    assert wire.vxlan_encap(nopeer, LOCAL, None, 1, src_mac=MAC_A, dst_mac=MAC_B) == 0
    assert nopeer.drop_counts() == {Drop.NO_PEER: 1}


def test_decap_then_encap_back_to_the_peer() -> None:
    b = batch_of(encapsulated(inner_tcp(), src="198.51.100.7"), encapsulated(inner_udp(), src="198.51.100.8"))
    assert wire.vxlan_decap(b, VNI) == 2
    assert wire.vxlan_encap(b, LOCAL, None, VNI, src_mac=MAC_A, dst_mac=MAC_B) == 2
    assert [Ether(b.frame(i))[IP].dst for i in range(2)] == ["198.51.100.7", "198.51.100.8"]
    assert bytes(Ether(b.frame(0))[VXLAN].payload) == bytes(inner_tcp())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vni": -1}, "vni"),
        ({"vni": 1 << 24}, "vni"),
        ({"local_ip": b"\x01\x02\x03"}, "local_ip"),
        ({"remote_ip": b"\x01\x02\x03\x04\x05"}, "remote_ip"),
        ({"src_mac": b"\x00"}, "src_mac"),
        ({"ttl": 0}, "ttl"),
        ({"port": 70000}, "port"),
        ({"mtu": 10}, "mtu"),
    ],
)
def test_encap_misuse(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "local_ip": LOCAL,
        "remote_ip": REMOTE,
        "vni": 1,
        "src_mac": MAC_A,
        "dst_mac": MAC_B,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        wire.vxlan_encap(wire.FrameBatch(1), **args)  # type: ignore[arg-type]


def test_decap_and_rewrite_misuse() -> None:
    b = wire.FrameBatch(1)
    with pytest.raises(ValueError, match="vni"):
        wire.vxlan_decap(b, 1 << 24)
    with pytest.raises(ValueError, match="dst_addr"):
        wire.rewrite_ipv4(b, dst_addr=b"\x01\x02")
    with pytest.raises(ValueError, match="dst_port"):
        wire.rewrite_ipv4(b, dst_port=-1)
    with pytest.raises(ValueError, match="typecode"):
        wire.rewrite_ipv4_each(b, dst_port=array.array("I", [1]))
    b.count = 1
    with pytest.raises(ValueError, match="entries"):
        wire.rewrite_ipv4_each(b, dst_addr=array.array("I"))


# -- rewrite -------------------------------------------------------------------------------------------


ports = st.integers(1, 0xFFFF)
addrs = st.binary(min_size=4, max_size=4)


@settings(max_examples=40, deadline=None)
@given(
    tcp=st.booleans(),
    payload=st.binary(max_size=64),
    dst=addrs,
    dport=ports,
    src=st.none() | addrs,
    sport=st.none() | ports,
)
def test_rewrite_matches_scapy(
    *, tcp: bool, payload: bytes, dst: bytes, dport: int, src: bytes | None, sport: int | None
) -> None:
    inner = inner_tcp(payload) if tcp else inner_udp(payload)
    b = batch_of(encapsulated(inner))
    assert wire.vxlan_decap(b, VNI) == 1
    assert wire.rewrite_ipv4(b, dst_addr=dst, dst_port=dport, src_addr=src, src_port=sport) == 1
    ours = Ether(b.frame(0))
    layer = TCP if tcp else UDP
    assert ours[IP].dst == ".".join(map(str, dst))
    assert ours[layer].dport == dport
    if src is not None:
        assert ours[IP].src == ".".join(map(str, src))
    if sport is not None:
        assert ours[layer].sport == sport
    oracle = recomputed(b.frame(0))
    assert (ours[IP].chksum, ours[layer].chksum) == (oracle[IP].chksum, oracle[layer].chksum)


def test_rewrite_udp_zero_checksum_stays_zero() -> None:
    raw = bytearray(bytes(inner_udp()))
    raw[40:42] = b"\x00\x00"
    b = batch_of(bytes(raw))
    assert wire.rewrite_ipv4(b, dst_addr=REMOTE, dst_port=9) == 1
    assert Ether(b.frame(0))[UDP].chksum == 0


def test_rewrite_computed_zero_becomes_ffff() -> None:
    new_dst = bytes([10, 9, 8, 7])
    # Choose two payload bytes so that the rewritten datagram's checksum computes to 0.
    target = bytearray(bytes(inner_udp(b"\x00\x00", dport=99)))
    target[30:34] = new_dst
    segment = bytearray(target[34:])
    segment[6:8] = b"\x00\x00"
    partial = pseudo_header_sum(bytes(target[26:30]), new_dst, 17, len(segment))
    word = 0xFFFF - ones_sum(segment, 0, -1, partial)
    b = batch_of(bytes(inner_udp(word.to_bytes(2, "big"), dport=99)))
    assert wire.rewrite_ipv4(b, dst_addr=new_dst) == 1
    assert Ether(b.frame(0))[UDP].chksum == 0xFFFF
    assert recomputed(b.frame(0))[UDP].chksum == 0xFFFF


def test_rewrite_ip_options_and_fragments() -> None:
    with_options = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / TCP(dport=22)
    first = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=5, dport=6) / Raw(b"x" * 32)
    later = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", frag=5, proto=17) / Raw(b"y" * 16))
    b = batch_of(bytes(with_options), bytes(first), later)
    assert wire.rewrite_ipv4(b, dst_addr=REMOTE, dst_port=2222) == 3
    assert Ether(b.frame(0))[TCP].dport == 2222
    assert Ether(b.frame(0))[TCP].chksum == recomputed(b.frame(0))[TCP].chksum
    assert Ether(b.frame(1))[IP].chksum == recomputed(b.frame(1))[IP].chksum
    assert Ether(b.frame(1))[UDP].dport == 2222
    assert b.frame(2)[34:] == later[34:]  # a later fragment carries no ports
    assert b.frame(2)[30:34] == REMOTE
    assert Ether(b.frame(2))[IP].chksum == recomputed(b.frame(2))[IP].chksum


def test_rewrite_leaves_other_frames() -> None:
    others = [
        bytes(Ether() / IP(dst="10.0.0.2") / ICMP()),
        bytes(Ether() / ARP()),
        bytes(Ether(type=0x86DD) / Raw(b"\x60" + bytes(60))),
    ]
    b = batch_of(*others, bytes(inner_udp())[:40])
    assert wire.rewrite_ipv4(b, dst_addr=REMOTE, dst_port=1) == 0
    assert [b.frame(i) for i in range(3)] == others
    assert b.drop_counts() == {Drop.BAD_LENGTH: 1}


def test_rewrite_each() -> None:
    frames = [bytes(inner_udp(sport=1000 + i)) for i in range(4)]
    b = batch_of(*frames)
    dsts = array.array("I", [addr(REMOTE), 0, addr(LOCAL), 0])
    dports = array.array("H", [0, 7, 8, 0])
    assert wire.rewrite_ipv4_each(b, dst_addr=dsts, dst_port=dports) == 4
    parsed = [Ether(b.frame(i)) for i in range(4)]
    assert [(p[IP].dst, p[UDP].dport) for p in parsed] == [
        ("192.0.2.2", 53),
        ("172.24.254.1", 7),
        ("192.0.2.1", 8),
        ("172.24.254.1", 53),
    ]
    assert b.frame(3) == frames[3]
    for i in range(4):
        oracle = recomputed(b.frame(i))
        assert (parsed[i][IP].chksum, parsed[i][UDP].chksum) == (oracle[IP].chksum, oracle[UDP].chksum)


# -- classify ------------------------------------------------------------------------------------------


def test_classify() -> None:
    frames = [
        bytes(inner_udp(sport=11, dport=22)),
        bytes(inner_tcp(sport=33, dport=44)),
        bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / ICMP()),
        bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8", proto=47) / Raw(b"gre!")),
        bytes(Ether() / ARP(op=2, psrc="172.24.0.1", pdst="172.24.0.2")),
        bytes(Ether(type=0x86DD) / Raw(bytes(40))),
        bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8", frag=3, proto=6) / Raw(b"z" * 8)),
        bytes(Ether() / ARP())[:30],
    ]
    b = batch_of(*frames)
    b.status[1] = Drop.WRONG_VNI  # skipped
    assert wire.classify(b) == 6
    rows = [
        (Kind(b.kind[i]), b.src_addr[i], b.dst_addr[i], b.protocol[i], b.src_port[i], b.dst_port[i])
        for i in range(b.count)
    ]
    a1234, a5678 = addr(bytes([1, 2, 3, 4])), addr(bytes([5, 6, 7, 8]))
    assert rows == [
        (Kind.IPV4_UDP, addr(bytes([172, 24, 1, 10])), addr(bytes([172, 24, 254, 1])), 17, 11, 22),
        (Kind.NONE, 0, 0, 0, 0, 0),
        (Kind.IPV4_ICMP, a1234, a5678, 1, 0, 0),
        (Kind.IPV4_OTHER, a1234, a5678, 47, 0, 0),
        (Kind.ARP, addr(bytes([172, 24, 0, 1])), addr(bytes([172, 24, 0, 2])), 0, 2, 0),
        (Kind.OTHER, 0, 0, 0, 0, 0),
        (Kind.IPV4_TCP, a1234, a5678, 6, 0, 0),
        (Kind.NONE, 0, 0, 0, 0, 0),
    ]
    assert b.drop_counts() == {Drop.WRONG_VNI: 1, Drop.TRUNCATED: 1}


# -- checksum completion -------------------------------------------------------------------------------


def _with_seed(packet: Packet, layer: type[Packet]) -> bytes:
    """``packet`` as a kernel sender over veth leaves it: L4 checksum = pseudo-header seed."""
    raw = bytearray(bytes(packet))
    ihl = (raw[14] & 15) * 4
    where = 14 + ihl + (16 if layer is TCP else 6)
    seed = pseudo_header_sum(bytes(raw[26:30]), bytes(raw[30:34]), raw[23], len(raw) - 14 - ihl)
    raw[where : where + 2] = seed.to_bytes(2, "big")
    return bytes(raw)


def test_complete_inner_checksums() -> None:
    tcp, udp = inner_tcp(b"data" * 100), inner_udp(b"more" * 50)
    wrong = bytearray(bytes(inner_tcp()))
    wrong[50:52] = b"\xde\xad"
    zero = bytearray(bytes(inner_udp()))
    zero[40:42] = b"\x00\x00"
    frames = [_with_seed(tcp, TCP), _with_seed(udp, UDP), bytes(wrong), bytes(zero), bytes(inner_tcp())]
    b = batch_of(*(encapsulated(f) for f in frames))
    wire.vxlan_decap(b, VNI)
    assert wire.complete_inner_checksums(b) == 2
    assert b.frame(0) == bytes(tcp)
    assert b.frame(1) == bytes(udp)
    assert [b.frame(i) for i in (2, 3, 4)] == frames[2:]


# -- robustness and twins ------------------------------------------------------------------------------


def run_all(module: ModuleType, b: pure_batch.FrameBatch) -> None:
    module.vxlan_decap(b, VNI)
    module.complete_inner_checksums(b)
    module.classify(b)
    module.rewrite_ipv4(b, dst_addr=REMOTE, dst_port=8080, src_addr=LOCAL, src_port=1)
    module.vxlan_encap(b, LOCAL, None, VNI, src_mac=MAC_A, dst_mac=MAC_B)


def test_out_of_slot_offsets_are_dropped() -> None:
    b = batch_of(GOOD, GOOD, GOOD, GOOD)
    b.offset[0] = b.slot_size - 10  # runs into the next slot
    b.length[1] = 1 << 30
    b.offset[2] = 0xFFFFFFFF
    run_all(wire, b)
    assert b.drop_counts() == {Drop.OUT_OF_SLOT: 3}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=12))
def test_random_bytes_never_raise(frames: list[bytes]) -> None:
    b = batch_of(*frames)
    run_all(wire, b)
    assert all(code in set(Drop) for code in b.status[: b.count])


def _mutated_frames(draw: st.DrawFn) -> list[bytes]:
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 10))):
        choice = draw(st.integers(0, 3))
        inner = raw_inner(draw)
        if choice == 0:
            frames.append(draw(st.binary(max_size=120)))
            continue
        frame = bytearray(raw_vxlan(inner, draw(st.sampled_from([VNI, VNI, 7]))))
        if choice == 1:
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(frame) - 1))
                frame[at] = draw(st.integers(0, 255))
        if choice == 2:
            frame = frame[: draw(st.integers(0, len(frame)))]
        frames.append(bytes(frame))
    return frames


def raw_inner(draw: st.DrawFn) -> bytes:
    """An inner Ethernet/IPv4 TCP or UDP frame built with struct (no scapy: fast enough to fuzz)."""
    proto = draw(st.sampled_from([6, 17, 1]))
    payload = draw(st.binary(max_size=40))
    src, dst = draw(addrs), draw(addrs)
    sport, dport = draw(ports), draw(ports)
    if proto == 17:
        l4 = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
        where = 6
    elif proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1, 2, 0x50, 0x18, 512, 0, 0) + payload)
        where = 16
    else:
        l4 = bytearray(b"\x08\x00\x00\x00" + payload)
        where = 2
    seed = pseudo_header_sum(src, dst, proto, len(l4)) if proto != 1 else 0
    offloaded = draw(st.booleans()) and proto != 1  # left as the seed, for offload to finish
    check = seed if offloaded else internet_checksum(l4, 0, -1, seed)
    l4[where : where + 2] = check.to_bytes(2, "big")
    flags = draw(st.sampled_from([0x4000, 0x0000, 0x2000, 0x0004]))
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, flags, 64, proto, 0, src, dst))
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return MAC_A + MAC_B + b"\x08\x00" + bytes(header) + bytes(l4)


def raw_vxlan(inner: bytes, vni: int) -> bytes:
    udp = struct.pack("!HHHH", 50000, 4789, 16 + len(inner), 0) + struct.pack("!II", 0x08000000, vni << 8)
    header = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(inner), 0, 0x4000, 64, 17, 0, REMOTE, LOCAL)
    )
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return MAC_B + MAC_A + b"\x08\x00" + bytes(header) + udp + inner


OPERATIONS = st.lists(
    st.sampled_from(["decap", "complete", "classify", "rewrite", "each", "encap"]), max_size=6
)


@settings(max_examples=60, deadline=None)
@given(frames=st.composite(_mutated_frames)(), operations=OPERATIONS, headroom=st.sampled_from([0, 40, 64]))
def test_twins_agree(frames: list[bytes], operations: list[str], headroom: int) -> None:
    pure, compiled = twins("batch")
    results = []
    for module in (pure, compiled):
        b = module.FrameBatch(capacity=len(frames), slot_size=256, headroom=headroom)
        for frame in frames:
            if len(frame) <= 256 - headroom:
                b.append(frame)
        returned = []
        for op in operations:
            if op == "decap":
                returned.append(module.vxlan_decap(b, VNI))
            elif op == "complete":
                returned.append(module.complete_inner_checksums(b))
            elif op == "classify":
                returned.append(module.classify(b))
            elif op == "rewrite":
                returned.append(module.rewrite_ipv4(b, dst_addr=REMOTE, dst_port=8080, src_port=3))
            elif op == "each":
                values = array.array("I", range(b.count))
                returned.append(
                    module.rewrite_ipv4_each(b, src_addr=values, dst_port=array.array("H", values))
                )
            else:
                returned.append(
                    module.vxlan_encap(b, LOCAL, None, VNI, src_mac=MAC_A, dst_mac=MAC_B, mtu=100)
                )
        results.append(
            (
                returned,
                bytes(b.data),
                b.drop_counts(),
                *(
                    list(getattr(b, name))
                    for name in (
                        "status",
                        "offset",
                        "length",
                        "peer",
                        "kind",
                        "src_addr",
                        "dst_addr",
                        "protocol",
                        "src_port",
                        "dst_port",
                    )
                ),
            )
        )
    assert results[0] == results[1]


def test_source_port_is_vxlan_source_port_for() -> None:
    frames = [
        bytes(inner_udp()),
        bytes(inner_tcp()),
        bytes(Ether() / IP(flags="MF", proto=17) / Raw(b"abcdefgh")),
        bytes(Ether() / IP(options=b"\x01" * 4) / TCP()),
        bytes(Ether() / ARP()),
        bytes(Ether(type=0x0800) / Raw(b"\x46" + bytes(21))),  # IHL 6 does not fit
    ]
    pure, compiled = twins("batch")
    for module in (pure, compiled):
        b = module.FrameBatch(8)
        b.extend(frames)
        assert module.vxlan_encap(b, LOCAL, REMOTE, 1, src_mac=MAC_A, dst_mac=MAC_B) == len(frames)
        ports = [struct.unpack_from("!H", b.frame(i), 34)[0] for i in range(len(frames))]
        assert ports == [source_port_for(frame) for frame in frames]

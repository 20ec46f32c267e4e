"""The VTEP core: two and three VTEPs joined in memory on a fake clock, against both twins.

Covers RFC 7348 on receive and send, learning, flooding, ageing, MAC moves, VNI isolation, peers by
difference (spec 2.6.1, 2.6.5), static entries, capacity, and the MTU rule with its ICMP reply.
"""

from __future__ import annotations

import logging
from types import ModuleType

import pytest

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, IPerror, UDPerror  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

from dataplane.overlay import FDB_TRANSITIONS, Drop, EntryState  # noqa: E402
from dataplane.overlay.events import (  # noqa: E402
    FdbEntry,
    MacAged,
    MacEvicted,
    MacFlushed,
    MacLearned,
    MacMoved,
    PeerAdded,
    PeerRemoved,
    PeersChanged,
    Transmit,
)
from dataplane.wire import (  # noqa: E402
    ETHERTYPE_IPV4,
    ETHERTYPE_VLAN,
    EthernetHeader,
    Frame,
    decode_frame,
    embedded_ipv4,
    encode_frame,
    source_port_for,
    verify_icmp_checksum,
    verify_ipv4_checksum,
)
from tests.unit.overlay.conftest import (  # noqa: E402
    H1,
    H2,
    H3,
    H4,
    STRANGER,
    VNI,
    A,
    B,
    C,
    Underlay,
    arp_reply_frame,
    arp_request_frame,
    make,
    ping_frame,
    udp_frame,
    vxlan,
)

MULTICAST_MAC = bytes.fromhex("01005e000001")


def drops(counters: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in counters.items() if name.startswith("drop_") and value}


# -- learning and flooding ---------------------------------------------------------------------------


def test_broadcast_reaches_every_peer_then_unicast_after_learning(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    request = arp_request_frame(H1, H2)
    tx = lan.send(A, request)
    assert tx.destinations == (B, C)  # head-end replication: one copy per peer
    assert tx.payload == lan[A].header + request
    assert lan.take() == {A: [], B: [request], C: [request]}
    assert lan[B].lookup(H1.mac, lan.now) == A
    assert lan[C].lookup(H1.mac, lan.now) == A

    reply = arp_reply_frame(H2, H1)
    assert lan.send(B, reply).destinations == (A,)  # B learnt H1 from the request
    assert lan.take() == {A: [reply], B: [], C: []}

    data = udp_frame(H1, H2)
    assert lan.send(A, data).destinations == (B,)  # and A learnt H2 from the reply
    assert lan.take()[B] == [data]
    assert lan[A].counters()["floods"] == 1
    assert lan[A].drain_events() == [MacLearned(H2.mac, B)]
    assert lan[B].drain_events() == [MacLearned(H1.mac, A)]


def test_unknown_unicast_and_multicast_flood(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    assert lan.send(A, udp_frame(H1, H3)).destinations == (B, C)
    assert lan.send(A, udp_frame(H1, H3, dst_mac=MULTICAST_MAC)).destinations == (B, C)
    counters = lan[A].counters()
    assert (counters["floods"], counters["tx_frames"], counters["tx_datagrams"]) == (2, 2, 4)
    assert lan.take()[C] == [udp_frame(H1, H3), udp_frame(H1, H3, dst_mac=MULTICAST_MAC)]


def test_nothing_to_flood_to_without_peers(impl: ModuleType) -> None:
    vtep = make(impl)
    tx = vtep.send(arp_request_frame(H1, H2), 0.0)
    assert tx == Transmit(b"", (), None)
    assert vtep.last_drop == Drop.NO_PEERS
    assert drops(vtep.counters()) == {"drop_no_peers": 1}


def test_counts_frames_and_bytes(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    frame = udp_frame(H1, H2, b"x" * 100)
    lan.send(A, frame)
    assert lan[A].counters()["tx_bytes"] == len(frame)
    assert lan[B].counters()["rx_bytes"] == len(frame)
    assert lan[B].counters()["rx_frames"] == 1
    assert lan[B].counters()["fdb_size"] == 1


# -- ageing --------------------------------------------------------------------------------------


def test_entries_age_out_and_traffic_floods_again(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    lan.send(B, arp_request_frame(H2, H1))  # A learns H2 behind B at t = 0
    lan.advance(299.0)
    assert lan.send(A, udp_frame(H1, H2)).destinations == (B,)
    lan.advance(1.0)  # 300 s without a frame from H2: gone, even before expire() runs
    assert lan[A].lookup(H2.mac, lan.now) is None
    assert lan.send(A, udp_frame(H1, H2)).destinations == (B, C)
    assert lan[A].drain_events() == [MacLearned(H2.mac, B)]
    assert lan[A].expire(lan.now) == [MacAged(H2.mac, B)]
    assert lan[A].drain_events() == [MacAged(H2.mac, B)]
    assert lan[A].fdb_entries() == []
    assert lan[A].counters()["fdb_aged"] == 1


def test_frames_from_a_mac_keep_its_entry(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    lan.send(B, arp_request_frame(H2, H1))
    lan.send(B, arp_request_frame(H3, H1))
    lan.advance(200.0)
    lan.send(B, udp_frame(H2, H1))  # H2 seen again at 200; H3 not
    lan.advance(150.0)
    assert lan[A].expire(lan.now) == [MacAged(H3.mac, B)]
    assert lan[A].fdb_entries() == [FdbEntry(H2.mac, B, 200.0, False)]
    assert lan[A].expire(499.0) == []
    assert lan[A].expire(500.0) == [MacAged(H2.mac, B)]


def test_sending_to_a_mac_does_not_refresh_it(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    lan.send(B, arp_request_frame(H2, H1))
    for _ in range(5):
        lan.advance(60.0)
        lan[A].send(udp_frame(H1, H2), lan.now)
    assert lan[A].lookup(H2.mac, lan.now) is None  # ageing counts frames *from* the MAC


def test_ageing_zero_never_ages(impl: ModuleType) -> None:
    lan = Underlay(impl, options={"ageing": 0}).mesh()
    lan.send(B, arp_request_frame(H2, H1))
    assert lan[A].expire(1e9) == []
    assert lan[A].lookup(H2.mac, 1e9) == B


# -- MAC moves -------------------------------------------------------------------------------------


def test_mac_moves_to_the_vtep_it_reappears_behind(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    lan.send(B, arp_request_frame(H2, H1))  # H2 behind B
    lan.advance(10.0)
    lan.send(C, arp_request_frame(H2, H1))  # the container moved to C's host
    assert lan[A].lookup(H2.mac, lan.now) == C
    assert lan[A].drain_events() == [MacLearned(H2.mac, B), MacMoved(H2.mac, B, C)]
    assert lan[A].counters()["fdb_moved"] == 1
    assert lan.send(A, udp_frame(H1, H2)).destinations == (C,)
    assert lan[A].fdb_entries() == [FdbEntry(H2.mac, C, 10.0, False)]


# -- receive checks (RFC 7348 §5, spec 2.5) ----------------------------------------------------------


def test_foreign_vni_is_dropped_and_counted(impl: ModuleType) -> None:
    ours = make(impl, A)
    ours.set_peers("static", [B])
    other = make(impl, B, vni=VNI + 1)
    other.set_peers("static", [A])
    tx = other.send(arp_request_frame(H2, H1), 0.0)
    assert tx.destinations == (A,)
    assert ours.receive(tx.payload, B, 0.0) is None
    assert ours.last_drop == Drop.WRONG_VNI
    assert drops(ours.counters()) == {"drop_wrong_vni": 1}
    assert ours.fdb_entries() == []


def test_vni_is_all_24_bits(impl: ModuleType) -> None:
    vtep = make(impl, A, vni=0xABCDEF)
    vtep.set_peers("static", [B])
    frame = arp_request_frame(H2, H1)
    assert vtep.receive(vxlan(frame, vni=0xABCDEE), B, 0.0) is None
    assert vtep.receive(vxlan(frame, vni=0xABCDEF), B, 0.0) == frame
    assert vtep.header == bytes.fromhex("08000000abcdef00")


def test_i_flag_required_reserved_bits_ignored(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    frame = arp_request_frame(H2, H1)
    assert vtep.receive(vxlan(frame, flags=0x00), B, 0.0) is None
    assert vtep.last_drop == Drop.NO_I_FLAG
    reserved = bytearray(vxlan(frame, flags=0xFF))
    reserved[1:4] = b"\xff\xff\xff"
    reserved[7] = 0xFF
    assert vtep.receive(bytes(reserved), B, 0.0) == frame
    assert vtep.last_drop == 0


def test_short_payloads_are_dropped(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    frame = udp_frame(H2, H1)
    for size in (0, 1, 8, 21):
        assert vtep.receive(vxlan(frame)[:size], B, 0.0) is None
    assert vtep.receive(vxlan(frame)[:22], B, 0.0) == frame[:14]  # a bare header is a frame
    assert vtep.send(frame[:13], 0.0).destinations == ()
    assert vtep.counters()["drop_short"] == 5


def test_only_peers_are_accepted(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    frame = arp_request_frame(H2, H1)
    assert vtep.receive(vxlan(frame), STRANGER, 0.0) is None
    assert vtep.last_drop == Drop.NOT_A_PEER
    assert vtep.fdb_entries() == []
    open_vtep = make(impl, peers_only=False)
    assert open_vtep.receive(vxlan(frame), STRANGER, 0.0) == frame  # kubelan's behaviour
    assert open_vtep.lookup(H2.mac, 0.0) == STRANGER


def test_own_address_is_never_a_source(impl: ModuleType) -> None:
    for peers_only in (True, False):
        vtep = make(impl, peers_only=peers_only)
        assert vtep.receive(vxlan(arp_request_frame(H2, H1)), A, 0.0) is None
        assert vtep.last_drop == Drop.LOOPED
        assert vtep.fdb_entries() == []


@pytest.mark.parametrize("tpid", [ETHERTYPE_VLAN, 0x88A8])
def test_inner_vlan_frames_are_dropped(impl: ModuleType, tpid: int) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    inner = udp_frame(H2, H1)
    tag = bytes((0x00, 0x64)) + ETHERTYPE_IPV4.to_bytes(2, "big")  # VID 100, then IPv4
    tagged = encode_frame(Frame(EthernetHeader(H1.mac, H2.mac, tpid), payload=tag + inner[14:]))
    assert vtep.receive(vxlan(tagged), B, 0.0) is None
    assert vtep.last_drop == Drop.INNER_VLAN
    assert vtep.fdb_entries() == []


@pytest.mark.parametrize("source", [MULTICAST_MAC, b"\xff" * 6, bytes(6)])
def test_frames_from_no_station_are_dropped(impl: ModuleType, source: bytes) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    frame = udp_frame(H2, H1)
    assert vtep.receive(vxlan(frame[:6] + source + frame[12:]), B, 0.0) is None
    assert vtep.last_drop == Drop.BAD_SOURCE_MAC
    assert vtep.fdb_entries() == []


def test_learning_off_delivers_without_learning(impl: ModuleType) -> None:
    vtep = make(impl, learning=False)
    vtep.set_peers("static", [B])
    assert vtep.receive(vxlan(arp_request_frame(H2, H1)), B, 0.0) is not None
    assert vtep.fdb_entries() == []
    assert vtep.drain_events() == [PeerAdded(B)]


# -- peers by difference (spec 2.6.1, 2.6.5) ----------------------------------------------------------


def test_set_peers_reports_only_the_difference(impl: ModuleType) -> None:
    vtep = make(impl)
    assert vtep.set_peers("dns", [C, B, A]) == PeersChanged("dns", (B, C), ())  # A is us
    assert vtep.set_peers("dns", [B, C]) is None
    assert vtep.set_peers("dns", [C, "192.0.2.10"]) == PeersChanged("dns", ("192.0.2.10",), (B,))
    assert vtep.peers == (C, "192.0.2.10")  # address order, not string order
    assert vtep.drain_events() == [
        PeerAdded(B),
        PeerAdded(C),
        PeerRemoved(B),
        PeerAdded("192.0.2.10"),
    ]
    assert vtep.peers_by_source() == {"dns": (C, "192.0.2.10")}


def test_peers_are_reference_counted_across_sources(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("dns", [B, C])
    assert vtep.set_peers("kubernetes", [C]) == PeersChanged("kubernetes", (C,), ())
    vtep.drain_events()
    assert vtep.set_peers("dns", [B]) == PeersChanged("dns", (), (C,))
    assert vtep.peers == (B, C)  # kubernetes still lists C
    assert vtep.drain_events() == []
    assert vtep.remove_source("kubernetes") == PeersChanged("kubernetes", (), (C,))
    assert list(vtep.peers) == [B]
    assert vtep.drain_events() == [PeerRemoved(C)]
    assert vtep.remove_source("kubernetes") is None
    assert vtep.peers_by_source() == {"dns": (B,)}


def test_an_empty_first_list_registers_the_source(impl: ModuleType) -> None:
    vtep = make(impl)
    assert vtep.set_peers("dns", []) is None
    assert vtep.peers_by_source() == {"dns": ()}


def test_a_bad_list_changes_nothing(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("dns", [B])
    for bad in ([C, "192.0.2"], [C, "224.0.0.1"], [C, "0.0.0.0"], [C, 3], "192.0.2.3"):
        with pytest.raises(ValueError, match="addresses"):
            vtep.set_peers("dns", bad)  # type: ignore[arg-type]
    assert vtep.peers == (B,)


def test_removing_a_peer_flushes_only_its_macs(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    lan.send(B, arp_request_frame(H2, H1))
    lan.send(C, arp_request_frame(H3, H1))
    lan.send(C, arp_request_frame(H4, H1))
    lan[A].add_static(H1.mac, C)
    lan[A].drain_events()
    lan.take()

    assert lan[A].set_peers("static", [B]) == PeersChanged("static", (), (C,))
    assert lan[A].drain_events() == [PeerRemoved(C), MacFlushed(H3.mac, C), MacFlushed(H4.mac, C)]
    assert [entry.mac for entry in lan[A].fdb_entries()] == [H1.mac, H2.mac]  # static stays
    assert lan[A].counters()["fdb_flushed"] == 2
    # traffic to the remaining peer is undisturbed; floods skip the removed one
    assert lan.send(A, udp_frame(H1, H2)).destinations == (B,)
    assert lan.send(A, udp_frame(H1, H3)).destinations == (B,)
    assert lan.take()[B] == [udp_frame(H1, H2), udp_frame(H1, H3)]
    # and C's frames are refused until it is a peer again
    assert lan.send(C, arp_request_frame(H3, H1)).destinations == (A, B)
    assert lan[A].counters()["drop_not_a_peer"] == 1
    lan[A].set_peers("static", [B, C])
    lan.send(C, arp_request_frame(H3, H1))
    assert lan[A].lookup(H3.mac, lan.now) == C


# -- static entries ------------------------------------------------------------------------------


def test_static_entries_never_age_and_never_move(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    lan[A].add_static(H2.mac, B)
    assert lan[A].fdb_entries() == [FdbEntry(H2.mac, B, None, True)]
    assert lan.send(A, udp_frame(H1, H2)).destinations == (B,)
    lan.advance(1000.0)
    assert lan[A].expire(lan.now) == []
    assert lan[A].lookup(H2.mac, lan.now) == B
    lan.send(B, udp_frame(H2, H1))
    assert lan[A].fdb_entries() == [FdbEntry(H2.mac, B, 1000.0, True)]
    # a frame claiming H2 from C is refused, as the kernel refuses to move a static entry
    lan.take()
    lan.send(C, udp_frame(H2, H1))
    assert lan.take()[A] == []
    assert lan[A].last_drop == Drop.STATIC_CONFLICT
    assert lan[A].lookup(H2.mac, lan.now) == B
    assert lan[A].remove_static(H2.mac) is True
    assert lan[A].remove_static(H2.mac) is False
    assert lan[A].fdb_entries() == []


def test_static_entry_replaces_a_learned_one(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    lan.send(B, arp_request_frame(H2, H1))
    lan[A].add_static(H2.mac, C)
    assert lan[A].fdb_entries() == [FdbEntry(H2.mac, C, None, True)]
    lan[A].add_static(H2.mac, B)
    assert lan[A].lookup(H2.mac, 0.0) == B
    assert lan[A].counters()["fdb_static"] == 1
    assert lan[A].entry_state(H2.mac) is EntryState.STATIC


def test_static_entry_arguments_are_checked(impl: ModuleType) -> None:
    vtep = make(impl)
    with pytest.raises(ValueError, match="mac"):
        vtep.add_static(b"\x02\x00", B)
    with pytest.raises(ValueError, match="mac"):
        vtep.add_static(MULTICAST_MAC, B)
    with pytest.raises(ValueError, match="peer"):
        vtep.add_static(H2.mac, "not an address")
    with pytest.raises(ValueError, match="peer"):
        vtep.add_static(H2.mac, A)


# -- capacity ----------------------------------------------------------------------------------


def test_full_table_evicts_the_least_recently_seen(impl: ModuleType) -> None:
    lan = Underlay(impl, options={"fdb_capacity": 3}).mesh()
    for h in (H1, H2, H3):
        lan.advance(1.0)
        lan.send(B, arp_request_frame(h, H4))
    lan.advance(1.0)
    lan.send(B, udp_frame(H1, H4))  # H1 seen again: H2 is now the stalest
    lan[A].drain_events()
    lan.send(B, arp_request_frame(H4, H1))
    assert lan[A].drain_events() == [MacEvicted(H2.mac, B), MacLearned(H4.mac, B)]
    assert [e.mac for e in lan[A].fdb_entries()] == [H1.mac, H3.mac, H4.mac]
    assert lan[A].counters()["fdb_evicted"] == 1


def test_a_table_full_of_static_entries_learns_nothing(impl: ModuleType) -> None:
    vtep = make(impl, fdb_capacity=2)
    vtep.set_peers("static", [B])
    vtep.add_static(H1.mac, B)
    vtep.add_static(H2.mac, B)
    with pytest.raises(ValueError, match="fdb_capacity"):
        vtep.add_static(H3.mac, B)
    assert vtep.receive(vxlan(arp_request_frame(H3, H1)), B, 0.0) is not None  # still delivered
    assert vtep.counters()["fdb_learn_refused"] == 1
    assert vtep.lookup(H3.mac, 0.0) is None


def test_static_entry_evicts_a_learned_one_when_full(impl: ModuleType) -> None:
    vtep = make(impl, fdb_capacity=1)
    vtep.set_peers("static", [B])
    vtep.receive(vxlan(arp_request_frame(H3, H1)), B, 0.0)
    vtep.drain_events()
    vtep.add_static(H1.mac, B)
    assert vtep.drain_events() == [MacEvicted(H3.mac, B)]
    assert vtep.fdb_entries() == [FdbEntry(H1.mac, B, None, True)]


def test_undrained_frame_events_are_bounded(impl: ModuleType) -> None:
    vtep = make(impl, event_capacity=2)
    vtep.set_peers("static", [B])  # PeerAdded: control-path events are never dropped
    for h in (H1, H2, H3):
        vtep.receive(vxlan(arp_request_frame(h, H4)), B, 0.0)
    assert vtep.drain_events() == [PeerAdded(B), MacLearned(H1.mac, B)]
    assert vtep.counters()["events_dropped"] == 2
    assert len(vtep.fdb_entries()) == 3  # the table itself is complete


def test_entry_states_follow_the_transition_table(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    vtep = lan[A]

    def step(trigger: str, action: object) -> None:
        before = vtep.entry_state(H2.mac)
        assert callable(action)
        action()
        assert vtep.entry_state(H2.mac) is FDB_TRANSITIONS.get((before, trigger), before), trigger

    step("learn", lambda: lan.send(B, arp_request_frame(H2, H1)))
    step("learn", lambda: lan.send(C, arp_request_frame(H2, H1)))
    step("flush", lambda: vtep.set_peers("static", [B]))
    step("add_static", lambda: vtep.add_static(H2.mac, B))
    step("remove_static", lambda: vtep.remove_static(H2.mac))
    step("learn", lambda: lan.send(B, arp_request_frame(H2, H1)))
    step("add_static", lambda: vtep.add_static(H2.mac, B))
    step("remove_static", lambda: vtep.remove_static(H2.mac))
    step("learn", lambda: lan.send(B, arp_request_frame(H2, H1)))
    step("expire", lambda: vtep.expire(lan.now + 300.0))


# -- MTU: drop, never fragment, and tell the sender (RFC 7348 §4.3, RFC 1191) ----------------------------


def big(df: bool = True, size: int = 1451) -> bytes:
    """An IPv4/UDP frame whose datagram is ``size`` bytes: one over the 1450 MTU by default."""
    return udp_frame(H1, H2, b"z" * (size - 28), df=df)


def test_frame_of_exactly_the_mtu_goes_through(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    frame = big(size=1450)
    assert len(frame) == 1464
    assert lan.send(A, frame).destinations == (B,)
    assert lan.take()[B] == [frame]


def test_oversized_df_frame_is_dropped_and_answered(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    frame = big()
    tx = lan.send(A, frame)
    assert (tx.payload, tx.destinations) == (b"", ())
    assert lan[A].last_drop == Drop.TOO_BIG
    assert lan.take()[B] == []
    assert tx.reply is not None
    reply = decode_frame(tx.reply)
    assert (reply.ethernet.dst, reply.ethernet.src) == (H1.mac, H2.mac)
    assert reply.ipv4 is not None and reply.icmp is not None
    assert (reply.ipv4.src, reply.ipv4.dst) == (H2.ip, H1.ip)
    assert verify_ipv4_checksum(tx.reply[14:])
    assert verify_icmp_checksum(tx.reply[34:])
    assert (reply.icmp.type, reply.icmp.code, reply.icmp.next_hop_mtu) == (3, 4, 1450)
    quoted, quoted_data = embedded_ipv4(reply.icmp)
    assert quoted.total_length == 1451 and quoted.dont_fragment
    assert (quoted.src, quoted.dst) == (H1.ip, H2.ip)
    assert quoted_data[:2] == (40000).to_bytes(2, "big")  # the UDP header, as RFC 792 asks
    assert reply.icmp.payload == frame[14 : 14 + len(reply.icmp.payload)]
    assert len(tx.reply) <= 14 + 576  # RFC 1812 §4.3.2.3
    counters = lan[A].counters()
    assert (counters["drop_too_big"], counters["frag_needed_sent"]) == (1, 1)

    oracle = Ether(tx.reply)  # scapy, independently
    assert oracle[ICMP].type == 3 and oracle[ICMP].code == 4 and oracle[ICMP].nexthopmtu == 1450
    assert oracle[IPerror].src == "172.24.0.1" and oracle[IPerror].len == 1451
    assert oracle[UDPerror].sport == 40000
    check = Ether(tx.reply)
    del check[IP].chksum, check[ICMP].chksum
    assert bytes(Ether(bytes(check))) == tx.reply


def test_oversized_frames_that_get_no_answer(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    icmp_error = bytearray(ping_frame(H1, H2, b"e" * 1500))
    icmp_error[34] = 3  # an ICMP error (its checksum does not matter here)
    broadcast = bytearray(big())
    broadcast[0:6] = b"\xff" * 6
    fragment = bytearray(big())
    fragment[21] = 1  # fragment offset 8 with DF: not the first fragment
    for frame in (
        big(df=False),
        bytes(icmp_error),
        bytes(broadcast),
        bytes(fragment),
        arp_request_frame(H1, H2) + bytes(1420),
    ):
        assert vtep.send(frame, 0.0) == Transmit(b"", (), None)
    assert vtep.counters()["drop_too_big"] == 5
    assert vtep.send(ping_frame(H1, H2, b"e" * 1500), 0.0).reply is not None  # echo is no error


def test_frag_needed_is_rate_limited(impl: ModuleType) -> None:
    vtep = make(impl)
    vtep.set_peers("static", [B])
    replies = [vtep.send(big(), 5.0).reply for _ in range(12)]
    assert sum(r is not None for r in replies) == 10  # the burst
    assert vtep.send(big(), 5.015625).reply is not None  # 100 per second: 1.56 tokens
    assert vtep.send(big(), 5.015625).reply is None
    counters = vtep.counters()
    assert (counters["frag_needed_sent"], counters["frag_needed_rate_limited"]) == (11, 3)


# -- the rest of the API -------------------------------------------------------------------------------


def test_payload_is_rfc7348_vxlan(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    frame = udp_frame(H1, H2)
    tx = lan.send(A, frame)
    header = VXLAN(tx.payload)
    assert (header.flags, header.vni) == (0x08, VNI)
    assert bytes(header.payload) == frame


def test_source_port_is_the_flow_hash(impl: ModuleType) -> None:
    vtep = make(impl)
    for frame in (udp_frame(H1, H2), ping_frame(H1, H2), arp_request_frame(H1, H2), b"", b"\x01" * 5):
        assert vtep.source_port(frame) == source_port_for(frame)
        assert 49152 <= vtep.source_port(frame) <= 65535


def test_configuration(impl: ModuleType) -> None:
    vtep = make(
        impl,
        "10.0.0.1",
        vni=1,
        port=8472,
        mtu=9000,
        ageing=60,
        learning=False,
        peers_only=False,
        fdb_capacity=10,
    )
    assert (vtep.vni, vtep.local, vtep.port, vtep.mtu, vtep.ageing) == (1, "10.0.0.1", 8472, 9000, 60.0)
    assert (vtep.learning, vtep.peers_only, vtep.fdb_capacity) == (False, False, 10)
    assert vtep.peers == ()
    assert vtep.counters()["peers"] == 0


@pytest.mark.parametrize(
    ("arguments", "options", "name"),
    [
        ((0, A), {}, "vni"),
        ((1 << 24, A), {}, "vni"),
        ((VNI, "192.0.2"), {}, "local"),
        ((VNI, "224.0.0.5"), {}, "local"),
        ((VNI, 3232235777), {}, "local"),
        ((VNI, A), {"port": 0}, "port"),
        ((VNI, A), {"mtu": 67}, "mtu"),
        ((VNI, A), {"ageing": -1}, "ageing"),
        ((VNI, A), {"ageing": float("inf")}, "ageing"),
        ((VNI, A), {"fdb_capacity": 0}, "fdb_capacity"),
    ],
)
def test_bad_configuration_names_the_argument(
    impl: ModuleType, arguments: tuple[object, object], options: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        impl.Vtep(*arguments, **options)


def test_receive_source_is_checked(impl: ModuleType) -> None:
    vtep = make(impl)
    with pytest.raises(ValueError, match="src"):
        vtep.receive(vxlan(arp_request_frame(H2, H1)), "nope", 0.0)


def test_buffers_of_any_kind(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    frame = udp_frame(H1, H2)
    tx = lan[A].send(bytearray(frame), 0.0)
    assert tx.payload == lan[A].header + frame
    assert lan[B].receive(memoryview(tx.payload), A, 0.0) == frame


# -- the table is read, and the deadline reported ---------------------------------------------------------


def test_transitions_not_in_the_table_are_refused_and_counted(impl: ModuleType) -> None:
    lan = Underlay(impl).mesh()
    vtep = lan[A]
    assert vtep.remove_static(H2.mac) is False  # ABSENT --remove_static--> is not listed
    lan.send(B, arp_request_frame(H2, H1))
    assert vtep.remove_static(H2.mac) is False  # nor LEARNED --remove_static-->
    assert vtep.entry_state(H2.mac) is EntryState.LEARNED
    assert vtep.counters()["fdb_transitions_refused"] == 2
    vtep.add_static(H2.mac, B)
    assert vtep.remove_static(H2.mac) is True
    assert vtep.counters()["fdb_transitions_refused"] == 2


def test_next_deadline_is_the_stalest_learned_entry_expiry(impl: ModuleType) -> None:
    lan = Underlay(impl, (A, B, C)).mesh()
    vtep = lan[A]
    assert vtep.next_deadline(lan.now) is None  # nothing learned: no timer
    lan.send(B, arp_request_frame(H2, H1))  # H2 seen at t = 0
    lan.advance(10.0)
    lan.send(C, arp_request_frame(H3, H1))  # H3 seen at t = 10
    assert vtep.next_deadline(lan.now) == 300.0
    lan.advance(5.0)
    lan.send(B, arp_request_frame(H2, H1))  # H2 refreshed at t = 15: H3 is now the stalest
    assert vtep.next_deadline(lan.now) == 310.0
    assert vtep.expire(310.0) == [MacAged(H3.mac, C)]
    assert vtep.next_deadline(310.0) == 315.0
    vtep.add_static(H4.mac, B)  # static entries never age
    assert vtep.expire(315.0) == [MacAged(H2.mac, B)]
    assert vtep.next_deadline(315.0) is None
    assert make(impl, ageing=0).next_deadline(0.0) is None  # ageing 0: never

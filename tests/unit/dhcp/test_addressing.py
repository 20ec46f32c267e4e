"""Reply addressing (RFC 2131 §4.1, spec 4.3), relays (RFC 3046) and reservations (spec 4.5)."""

from __future__ import annotations

from types import ModuleType

import pytest

from dataplane.dhcp.events import LeaseFreed, LeaseState
from tests.unit.dhcp.conftest import (
    SERVER_B,
    T0,
    Client,
    ip,
    mac_of,
    make,
    reservation,
)

BCAST = ("255.255.255.255", 68, b"\xff" * 6)
RELAY = ip("172.24.0.10")
OPTION_82 = b"\x01\x04eth0\x02\x06\x02\x00\x00\x00\x00\x99"


Row = tuple[str, bytes, bytes, int, bool, tuple[str, int, bytes | None]]
MATRIX: list[Row] = [
    ("relay", RELAY, bytes(4), 0, False, ("172.24.0.10", 67, None)),
    ("relay nak", RELAY, bytes(4), 0, True, ("172.24.0.10", 67, None)),
    ("relay beats ciaddr", RELAY, ip("172.24.1.1"), 0x8000, False, ("172.24.0.10", 67, None)),
    ("ciaddr", bytes(4), ip("172.24.1.1"), 0, False, ("172.24.1.1", 68, None)),
    ("ciaddr with broadcast flag", bytes(4), ip("172.24.1.1"), 0x8000, False, ("172.24.1.1", 68, None)),
    ("nak is broadcast", bytes(4), bytes(4), 0, True, BCAST),
    ("broadcast flag", bytes(4), bytes(4), 0x8000, False, BCAST),
    ("unicast to yiaddr at chaddr", bytes(4), bytes(4), 0, False, ("172.24.1.1", 68, bytes(mac_of(1)))),
]


@pytest.mark.parametrize("row", MATRIX, ids=[row[0] for row in MATRIX])
def test_reply_addressing_matrix(impl: ModuleType, row: Row) -> None:
    case, giaddr, ciaddr, flags, nak, expected = row
    server = make(impl)
    client = Client(server, mac_of(1))
    if ciaddr != bytes(4) and not nak:
        client.dora(T0)  # so the renewal is ACKed
    if nak:
        msg = client.message(3, giaddr=giaddr, flags=flags, options={50: ip("10.1.1.1")})
    elif ciaddr != bytes(4):
        msg = client.message(3, giaddr=giaddr, ciaddr=ciaddr, flags=flags)
    else:
        msg = client.message(1, giaddr=giaddr, flags=flags)
    reply, parsed = client.one(msg, T0 + 1)
    assert (reply.dst_ip, reply.dst_port, reply.dst_mac) == expected, case
    assert reply.src_port == 67
    assert parsed.giaddr == giaddr and parsed.xid == client.xid and parsed.chaddr[:6] == mac_of(1)
    if nak:
        assert parsed.options[53] == b"\x06"
        # RFC 2131 §4.3.2: a NAK to a relay sets the broadcast bit, for the relay to broadcast it.
        assert parsed.broadcast == (giaddr != bytes(4) or bool(flags))
    else:
        assert parsed.flags == flags


def test_nak_from_a_renewing_client_is_broadcast(impl: ModuleType) -> None:
    """RFC 2131 §4.1: "in all cases, when 'giaddr' is zero, the server broadcasts any DHCPNAK"."""
    server = make(impl)
    client = Client(server, mac_of(1), address=ip("172.24.1.7"))
    reply, nak = client.one(client.message(3, ciaddr=client.address), T0)
    assert nak.options[53] == b"\x06" and nak.ciaddr == bytes(4) and nak.yiaddr == bytes(4)
    assert (reply.dst_ip, reply.dst_port) == ("255.255.255.255", 68)


def test_relayed_dora_echoes_option_82_last(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1), extra={82: OPTION_82})
    reply, offer = client.one(client.message(1, giaddr=RELAY, hops=1), T0)
    assert reply.dst_ip == "172.24.0.10" and reply.dst_port == 67
    assert offer.options[82] == OPTION_82 and list(offer.options)[-1] == 82
    assert offer.giaddr == RELAY and offer.hops == 0
    reply, ack = client.one(client.message(3, giaddr=RELAY, options={50: offer.yiaddr, 54: SERVER_B}), T0 + 1)
    assert ack.options[53] == b"\x05" and ack.options[82] == OPTION_82 and reply.dst_port == 67


def test_perfdhcp_style_relay_from_port_67(impl: ModuleType) -> None:
    """perfdhcp acts as a relay: giaddr = its address, replies unicast to giaddr:67."""
    server = make(impl)
    for n in range(5):
        client = Client(server, mac_of(n), xid=n)
        reply, offer = client.one(client.message(1, giaddr=RELAY), T0)
        assert (reply.dst_ip, reply.dst_port, reply.dst_mac) == ("172.24.0.10", 67, None)
        reply, ack = client.one(client.message(3, giaddr=RELAY, options={50: offer.yiaddr, 54: SERVER_B}), T0)
        assert ack.options[53] == b"\x05" and ack.xid == n


def test_relay_off_our_subnet_is_dropped(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    assert client.send(client.message(1, giaddr=ip("10.0.0.1")), T0) == []
    assert server.counters()["drop_foreign_relay"] == 1


def test_client_id_is_echoed(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1), client_id=b"\x01" + mac_of(1))
    offer = client.discover(T0)
    assert offer is not None and offer.options[61] == b"\x01" + mac_of(1)


def test_reply_fields_follow_rfc_2131_table_3(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    reply, offer = client.one(client.message(1, secs=9, ciaddr=bytes(4)), T0)
    assert offer.op == 2 and offer.ciaddr == bytes(4) and offer.secs == 0 and offer.siaddr == bytes(4)
    assert len(reply.payload) >= 300


# -- reservations --------------------------------------------------------------------------------


def test_reservation_by_mac_wins_even_with_a_duid_client_id(impl: ModuleType) -> None:
    duid = b"\xff\x12\x34\x56\x78\x00\x02" + b"\x00\x00\xab\x11" + b"Z" * 8
    server = make(impl, reservations=[reservation(mac_of(7), "172.24.5.5", "db")])
    client = Client(server, mac_of(7), client_id=duid, prl=bytes((1, 3, 12)))
    ack = client.dora(T0)
    assert ack.yiaddr == ip("172.24.5.5")  # outside the dynamic pool, fine for a reservation
    assert ack.options[12] == b"db"
    lease = server.lease_for("172.24.5.5")
    assert lease is not None and lease.hostname == "db" and lease.client == ("client-id", duid)
    # Other clients never get it, even asking.
    other = Client(server, mac_of(8))
    offer = other.discover(T0, o50=ip("172.24.5.5"))
    assert offer is not None and offer.yiaddr != ip("172.24.5.5")
    nak = other.init_reboot(ip("172.24.5.5"), T0)
    assert nak is not None and nak.options[53] == b"\x06"


def test_reservation_inside_the_pool_is_kept_out_of_it(impl: ModuleType) -> None:
    server = make(
        impl, pools=[("172.24.1.1", "172.24.1.2")], reservations=[reservation(mac_of(7), "172.24.1.1")]
    )
    a = Client(server, mac_of(1)).dora(T0)
    assert a.yiaddr == ip("172.24.1.2")
    assert Client(server, mac_of(2)).discover(T0) is None
    assert Client(server, mac_of(7)).dora(T0).yiaddr == ip("172.24.1.1")


def test_adding_a_reservation_moves_its_client_and_evicts_another(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)  # 172.24.1.1
    b = Client(server, mac_of(2))
    b.dora(T0)  # 172.24.1.2
    events = server.add_reservation(reservation(mac_of(2), "172.24.1.1"), T0 + 5)
    assert [type(e) for e in events] == [LeaseFreed]
    nak = a.renew(T0 + 10)  # a lost its address to the reservation
    assert nak is not None and nak.options[53] == b"\x06"
    nak = b.renew(T0 + 10)  # b renewing its dynamic address is sent to the reserved one
    assert nak is not None and nak.options[53] == b"\x06"
    assert b.dora(T0 + 11).yiaddr == ip("172.24.1.1")
    assert server.lease_for("172.24.1.2") is None
    # Removing the reservation keeps the binding until it ends.
    server.remove_reservation(mac_of(2), T0 + 12)
    assert server.lease_for("172.24.1.1").state == LeaseState.BOUND  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a host"):
        server.add_reservation(reservation(mac_of(3), "10.0.0.1"), T0)

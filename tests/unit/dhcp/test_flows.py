"""Every message flow of spec 4.2, on a fake clock, against both twins."""

from __future__ import annotations

from types import ModuleType

import pytest

from dataplane.dhcp.events import (
    AddressDeclined,
    LeaseExpired,
    LeaseGranted,
    LeaseOffered,
    LeaseReleased,
    LeaseRenewed,
    LeaseState,
    OfferWithdrawn,
    PoolExhausted,
    PoolReplenished,
    QuarantineEnded,
)
from dataplane.dhcp.store import MemoryStore
from tests.unit.dhcp.conftest import (
    SERVER_B,
    T0,
    Client,
    ip,
    mac_of,
    make,
    no_internal_errors,
    parse,
)


def test_dora_grants_a_lease_and_records_it(impl: ModuleType) -> None:
    store = MemoryStore()
    server = make(impl, store)
    client = Client(server, mac_of(1))
    offer = client.discover(T0)
    assert offer is not None
    assert offer.options[53] == b"\x02" and offer.yiaddr == ip("172.24.1.1")
    assert server.lease_for("172.24.1.1").state == LeaseState.OFFERED  # type: ignore[union-attr]
    assert not store.pending  # an offer needs no durability
    ack = client.select(offer, T0 + 1)
    assert ack is not None and ack.options[53] == b"\x05" and ack.yiaddr == offer.yiaddr
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.state == LeaseState.BOUND and lease.expires == T0 + 1 + 7200
    assert store.pending == [lease]
    events = server.drain_events()
    assert [type(e) for e in events] == [LeaseOffered, LeaseGranted]
    no_internal_errors(server)


def test_ack_reply_is_marked_durable_and_offer_is_not(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    offer_reply = client.send(client.message(1), T0)[0]
    assert not offer_reply.durable and offer_reply.message_type == 2
    ack_reply = client.send(client.message(3, options={50: parse(offer_reply).yiaddr, 54: SERVER_B}), T0)[0]
    assert ack_reply.durable and ack_reply.message_type == 5


def test_retransmitted_discover_and_request_are_idempotent(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    first = client.discover(T0)
    second = client.discover(T0 + 4)
    assert first is not None and second is not None and first.yiaddr == second.yiaddr
    ack1 = client.select(first, T0 + 5)
    ack2 = client.select(first, T0 + 6)
    assert ack1 is not None and ack2 is not None
    assert ack1.options[53] == ack2.options[53] == b"\x05" and ack1.yiaddr == ack2.yiaddr
    assert len([x for x in server.leases() if x.state == LeaseState.BOUND]) == 1


def test_discover_prefers_binding_then_requested_then_pool(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    # Its binding wins over what it asks for.
    offer = a.discover(T0 + 1, o50=ip("172.24.1.9"))
    assert offer is not None and offer.yiaddr == a.address
    # A new client gets the free address it asks for, in the pool.
    b = Client(server, mac_of(2))
    offer = b.discover(T0 + 1, o50=ip("172.24.1.9"))
    assert offer is not None and offer.yiaddr == ip("172.24.1.9")
    # Not another client's address, nor one off the pool.
    c = Client(server, mac_of(3))
    offer = c.discover(T0 + 1, o50=a.address)
    assert offer is not None and offer.yiaddr not in (a.address, ip("172.24.1.9"))
    d = Client(server, mac_of(4))
    offer = d.discover(T0 + 1, o50=ip("10.0.0.1"))
    assert offer is not None and offer.yiaddr[:3] == bytes((172, 24, 1))


def test_selecting_another_server_withdraws_our_offer_silently(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    offer = client.discover(T0)
    assert offer is not None
    assert client.select(offer, T0 + 1, server=ip("172.24.254.9")) is None
    assert server.lease_for("172.24.1.1") is None
    assert server.counters()["request_other_server"] == 1
    assert isinstance(server.drain_events()[-1], OfferWithdrawn)
    # The address is free again (handed out after the fresh ones).
    assert server.pool.is_free(int.from_bytes(offer.yiaddr, "big"))


def test_selecting_an_address_taken_by_another_client_is_naked(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    b = Client(server, mac_of(2))
    offer = b.discover(T0)
    assert offer is not None
    offer.yiaddr = a.address  # b asks for a's address instead
    nak = b.select(offer, T0 + 1)
    assert nak is not None and nak.options[53] == b"\x06"


def test_selecting_with_a_lost_offer_regrants_a_free_address(impl: ModuleType) -> None:
    """Authoritative: after a restart that lost the offer, the REQUEST is still granted."""
    server = make(impl)
    client = Client(server, mac_of(1))
    offer = client.discover(T0)
    assert offer is not None
    fresh = make(impl)  # a restarted server: offers are not stored
    client.server = fresh
    ack = client.select(offer, T0 + 1)
    assert ack is not None and ack.options[53] == b"\x05" and ack.yiaddr == offer.yiaddr


def test_renewing_and_rebinding_extend_the_lease(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    client.dora(T0)
    t1 = T0 + 3600
    reply = client.send(client.message(3, ciaddr=client.address), t1)[0]
    ack = parse(reply)
    assert ack.options[53] == b"\x05" and ack.yiaddr == client.address and ack.ciaddr == client.address
    assert reply.dst_ip == "172.24.1.1" and reply.dst_port == 68 and reply.durable
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.expires == t1 + 7200
    rebind = client.renew(T0 + 3600 + 6300, broadcast=True)
    assert rebind is not None and rebind.options[53] == b"\x05"
    events = server.drain_events()
    assert [type(e) for e in events] == [LeaseOffered, LeaseGranted, LeaseRenewed, LeaseRenewed]


def test_renewing_an_unknown_binding_is_naked_when_authoritative(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1), address=ip("172.24.1.5"))
    nak = client.renew(T0)
    assert nak is not None and nak.options[53] == b"\x06"
    quiet = make(impl, authoritative=False)
    client.server = quiet
    assert client.renew(T0) is None
    assert quiet.counters()["silent_not_authoritative"] == 1


def test_renewing_another_clients_address_is_naked(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    b = Client(server, mac_of(2), address=a.address)
    nak = b.renew(T0 + 10)
    assert nak is not None and nak.options[53] == b"\x06"
    assert server.lease_for("172.24.1.1").client == a.server.lease_for("172.24.1.1").client  # type: ignore[union-attr]


def test_request_for_a_foreign_address_is_naked(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    nak = client.init_reboot(ip("192.168.1.10"), T0)
    assert nak is not None and nak.options[53] == b"\x06"
    assert nak.yiaddr == bytes(4) and nak.ciaddr == bytes(4)
    assert nak.options[54] == SERVER_B
    assert 51 not in nak.options


def test_init_reboot(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    # Matching binding: ACK.
    ack = a.init_reboot(a.address, T0 + 100)
    assert ack is not None and ack.options[53] == b"\x05" and ack.yiaddr == a.address
    # Another client's binding: NAK.
    b = Client(server, mac_of(2))
    nak = b.init_reboot(a.address, T0 + 100)
    assert nak is not None and nak.options[53] == b"\x06"
    # Wrong network: NAK.
    nak = b.init_reboot(ip("10.9.8.7"), T0 + 100)
    assert nak is not None and nak.options[53] == b"\x06"
    # No record: NAK when authoritative, silence otherwise.
    nak = b.init_reboot(ip("172.24.1.15"), T0 + 100)
    assert nak is not None and nak.options[53] == b"\x06"
    quiet = make(impl, authoritative=False)
    b.server = quiet
    assert b.init_reboot(ip("172.24.1.15"), T0 + 100) is None


def test_release_frees_the_address_and_remembers_the_client(impl: ModuleType) -> None:
    store = MemoryStore()
    server = make(impl, store)
    a = Client(server, mac_of(1))
    a.dora(T0)
    store.commit()
    free_before = server.pool.free_count
    assert a.release(T0 + 10) == []
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.state == LeaseState.RELEASED
    assert server.pool.free_count == free_before + 1
    assert isinstance(server.drain_events()[-1], LeaseReleased)
    store.commit()
    assert store.records["172.24.1.1"].state == LeaseState.RELEASED
    # Other clients take fresh addresses first; the same client gets its address back.
    for n in range(2, 6):
        Client(server, mac_of(n)).dora(T0 + 20)
    offer = a.discover(T0 + 30)
    assert offer is not None and offer.yiaddr == ip("172.24.1.1")


def test_release_of_someone_elses_lease_or_with_a_spoofed_server_id_is_dropped(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    b = Client(server, mac_of(2), address=a.address)
    b.release(T0 + 1)
    assert server.counters()["drop_release_unknown"] == 1
    a.send(a.message(7, ciaddr=a.address, options={54: ip("172.24.254.7")}), T0 + 1)
    assert server.counters()["drop_spoofed_server_id"] == 1
    assert server.lease_for("172.24.1.1").state == LeaseState.BOUND  # type: ignore[union-attr]


def test_decline_quarantines_the_address(impl: ModuleType) -> None:
    server = make(impl, decline_hold=600)
    a = Client(server, mac_of(1))
    ack = a.dora(T0)
    assert a.decline(ack.yiaddr, T0 + 1) == []
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.state == LeaseState.DECLINED and lease.expires == T0 + 601
    assert isinstance(server.drain_events()[-1], AddressDeclined)
    # Not offered again, to anyone, while quarantined.
    offer = a.discover(T0 + 2)
    assert offer is not None and offer.yiaddr != ip("172.24.1.1")
    for n in range(2, 22):
        o = Client(server, mac_of(n)).discover(T0 + 300)
        assert o is None or o.yiaddr != ip("172.24.1.1")
    # After decline_hold it is free again.
    events = server.tick(T0 + 601)
    assert any(isinstance(e, QuarantineEnded) for e in events)
    assert server.lease_for("172.24.1.1") is None
    assert server.pool.is_free(int.from_bytes(ip("172.24.1.1"), "big"))


def test_decline_from_another_client_or_spoofed_is_dropped(impl: ModuleType) -> None:
    server = make(impl)
    a = Client(server, mac_of(1))
    a.dora(T0)
    Client(server, mac_of(2)).decline(a.address, T0)
    a.send(a.message(4, options={50: a.address, 54: ip("172.24.254.99")}), T0)
    counters = server.counters()
    assert counters["drop_decline_unknown"] == 1 and counters["drop_spoofed_server_id"] == 1
    assert server.lease_for("172.24.1.1").state == LeaseState.BOUND  # type: ignore[union-attr]


def test_inform_acks_without_lease_time(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    reply, ack = client.one(client.message(8, ciaddr=ip("172.24.9.9")), T0)
    assert ack.options[53] == b"\x05" and ack.yiaddr == bytes(4) and ack.ciaddr == ip("172.24.9.9")
    assert 51 not in ack.options and 58 not in ack.options and 59 not in ack.options
    assert ack.options[54] == SERVER_B and ack.options[1] == ip("255.255.0.0")
    assert (reply.dst_ip, reply.dst_port, reply.durable) == ("172.24.9.9", 68, False)
    assert server.leases() == []


def test_offer_expires_after_offer_hold(impl: ModuleType) -> None:
    server = make(impl, offer_hold=60)
    client = Client(server, mac_of(1))
    client.discover(T0)
    assert server.tick(T0 + 59) == []
    events = server.tick(T0 + 60)
    assert [type(e) for e in events] == [OfferWithdrawn]
    assert server.leases() == [] and server.pool.free_count == server.pool.size


def test_lease_expiry_reclaims_the_address(impl: ModuleType) -> None:
    server = make(impl, lease_time=600)
    client = Client(server, mac_of(1))
    client.dora(T0)
    assert server.tick(T0 + 599) == []
    events = server.tick(T0 + 600)
    assert [type(e) for e in events] == [LeaseExpired]
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.state == LeaseState.EXPIRED
    assert server.pool.is_free(int.from_bytes(ip("172.24.1.1"), "big"))
    # A renewal after expiry of the still-free address is granted again; of a taken one, NAKed.
    again = client.renew(T0 + 700)
    assert again is not None and again.options[53] == b"\x05"


def test_expired_but_not_ticked_lease_cannot_be_renewed_once_taken(impl: ModuleType) -> None:
    server = make(impl, lease_time=600, pools=[("172.24.1.1", "172.24.1.1")])
    a = Client(server, mac_of(1))
    a.dora(T0)
    b = Client(server, mac_of(2))
    assert b.discover(T0 + 100) is None  # exhausted while a holds it
    b.dora(T0 + 700)  # no tick in between: the expiry is noticed on demand
    nak = a.renew(T0 + 701)
    assert nak is not None and nak.options[53] == b"\x06"


def test_renew_and_rebind_timing(impl: ModuleType) -> None:
    server = make(impl, lease_time=7200)
    ack = Client(server, mac_of(1)).dora(T0)
    assert int.from_bytes(ack.options[51], "big") == 7200
    assert int.from_bytes(ack.options[58], "big") == 3600  # T1 = 0.5
    assert int.from_bytes(ack.options[59], "big") == 6300  # T2 = 0.875
    server = make(impl, lease_time=1000, t1_ratio=0.25, t2_ratio=0.5)
    ack = Client(server, mac_of(1)).dora(T0)
    assert [int.from_bytes(ack.options[c], "big") for c in (51, 58, 59)] == [1000, 250, 500]


def test_infinite_lease(impl: ModuleType) -> None:
    server = make(impl, lease_time=0xFFFFFFFF)
    ack = Client(server, mac_of(1)).dora(T0)
    assert ack.options[51] == b"\xff\xff\xff\xff" and 58 not in ack.options
    assert server.tick(T0 + 10**9) == []
    assert server.lease_for("172.24.1.1").state == LeaseState.BOUND  # type: ignore[union-attr]


def test_pool_exhaustion_is_reported_once(impl: ModuleType) -> None:
    server = make(impl, pools=[("172.24.1.1", "172.24.1.3")], offer_hold=60)
    for n in range(3):
        Client(server, mac_of(n)).dora(T0)
    server.drain_events()
    for n in range(3, 50):
        assert Client(server, mac_of(n)).discover(T0 + 1) is None
    events = server.drain_events()
    assert [type(e) for e in events] == [PoolExhausted]
    counters = server.counters()
    assert counters["pool_exhausted"] == 1 and counters["no_address"] == 47
    Client(server, mac_of(0), address=ip("172.24.1.1")).release(T0 + 2)
    assert PoolReplenished in [type(e) for e in server.drain_events()]
    assert Client(server, mac_of(60)).discover(T0 + 3) is not None
    assert Client(server, mac_of(61)).discover(T0 + 3) is None
    assert server.counters()["pool_exhausted"] == 2


def test_client_id_is_the_identity(impl: ModuleType) -> None:
    server = make(impl)
    duid = b"\xff\x00\x00\x00\x01\x00\x04" + b"X" * 16
    a = Client(server, mac_of(1), client_id=duid)
    a.dora(T0)
    # Same client-id, another MAC (a moved VM): same lease.
    moved = Client(server, mac_of(9), client_id=duid)
    assert moved.discover(T0 + 1).yiaddr == a.address  # type: ignore[union-attr]
    # Same MAC, no client-id: another client.
    plain = Client(server, mac_of(1))
    assert plain.discover(T0 + 1).yiaddr != a.address  # type: ignore[union-attr]


def test_hostname_and_fqdn_are_recorded(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1), extra={12: b"WS_u42.example"})
    client.dora(T0)
    lease = server.lease_for("172.24.1.1")
    assert lease is not None and lease.hostname == "ws-u42"
    other = Client(server, mac_of(2), extra={81: b"\x05\x00\x00\x04host\x08webspace\x00"})
    other.dora(T0)
    lease = server.lease_for(".".join(str(b) for b in other.address))
    assert lease is not None and lease.fqdn == "host.webspace." and lease.hostname == "host"


def test_free_lease_forgets_the_mac(impl: ModuleType) -> None:
    store = MemoryStore()
    server = make(impl, store)
    a = Client(server, mac_of(1))
    a.dora(T0)
    store.commit()
    freed = server.free_lease(mac_of(1), T0 + 5)
    assert [lease.address for lease in freed] == ["172.24.1.1"]
    assert server.leases() == []
    store.commit()
    assert store.records == {}
    nak = a.renew(T0 + 10)
    assert nak is not None and nak.options[53] == b"\x06"


@pytest.mark.parametrize("mtype", [2, 5, 6])
def test_server_messages_sent_to_us_are_dropped(impl: ModuleType, mtype: int) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    assert client.send(client.message(mtype), T0) == []
    assert server.counters()["drop_server_message"] == 1

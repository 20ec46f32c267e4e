"""The lease table reads LEASE_TRANSITIONS on every state change, and the core reports its deadline."""

from __future__ import annotations

from types import ModuleType

from dataplane.dhcp.events import LEASE_TRANSITIONS, Lease, LeaseState
from tests.unit.dhcp.conftest import SERVER_B, T0, Client, mac_of, make, no_internal_errors

CLIENT = ("hardware", b"\x01" + mac_of(1))


def test_every_flow_takes_only_listed_transitions(impl: ModuleType) -> None:
    server = make(impl, decline_hold=30)
    a, b, c = (Client(server, mac_of(n)) for n in (1, 2, 3))
    a.dora(T0)
    a.renew(T0 + 10)
    a.release(T0 + 20)
    a.dora(T0 + 30)
    b.dora(T0)
    b.decline(b.address, T0 + 1)
    c.discover(T0)
    c.send(c.message(7, ciaddr=bytes((172, 24, 1, 3)), options={54: SERVER_B}), T0 + 1)  # releases an offer
    server.tick(T0 + 100_000)
    server.free_lease(mac_of(1), T0 + 100_001)
    counters = server.counters()
    assert counters["leases_released"] == 2 and counters["addresses_declined"] == 1
    assert counters["refused_transitions"] == 0
    no_internal_errors(server)


def test_a_transition_not_listed_is_refused_and_counted(impl: ModuleType) -> None:
    server = make(impl)
    table = server._table
    released = Lease("172.24.1.1", CLIENT, mac_of(1), LeaseState.RELEASED, T0, T0)
    assert (LeaseState.RELEASED, "expire") not in LEASE_TRANSITIONS
    assert not table.allow(released, "expire", LeaseState.EXPIRED, CLIENT)
    assert (LeaseState.BOUND, "ack") in LEASE_TRANSITIONS
    bound = Lease("172.24.1.1", CLIENT, mac_of(1), LeaseState.BOUND, T0 + 60, T0)
    assert not table.allow(bound, "ack", LeaseState.OFFERED, CLIENT)  # listed, but not to OFFERED
    assert table.allow(bound, "ack", LeaseState.BOUND, CLIENT)
    assert server.counters()["refused_transitions"] == 2


def test_a_refused_change_leaves_the_record_as_it_was(impl: ModuleType) -> None:
    server = make(impl)
    table = server._table
    a = Client(server, mac_of(1))
    a.dora(T0)
    bound = server.lease_for("172.24.1.1")
    assert bound is not None and bound.state == LeaseState.BOUND
    offer = Lease("172.24.1.1", bound.client, bound.mac, LeaseState.OFFERED, T0 + 60, T0)
    assert not table.put(offer, "offer", bound.client)  # (BOUND, offer) keeps it BOUND, never OFFERED
    assert server.lease_for("172.24.1.1") is bound
    assert server.counters()["refused_transitions"] == 1
    a.release(T0 + 1)
    released = server.lease_for("172.24.1.1")
    assert released is not None and released.state == LeaseState.RELEASED
    assert table.end(released, 0xAC180101, T0 + 2) is None  # a RELEASED record does not run out
    assert server.lease_for("172.24.1.1") is released


def test_next_deadline_is_the_earliest_offer_lease_or_quarantine(impl: ModuleType) -> None:
    server = make(impl, lease_time=3600, offer_hold=60, decline_hold=600)
    assert server.next_deadline(T0) is None  # nothing can run out
    a = Client(server, mac_of(1))
    a.dora(T0)
    assert server.next_deadline(T0) == T0 + 3600
    b = Client(server, mac_of(2))
    b.discover(T0 + 10)
    assert server.next_deadline(T0 + 10) == T0 + 70  # the offer's hold
    offer = b.discover(T0 + 20)
    assert offer is not None and b.select(offer, T0 + 20) is not None
    assert server.next_deadline(T0 + 20) == T0 + 3600  # offer bound: its heap entries are stale
    b.decline(offer.yiaddr, T0 + 30)
    assert server.next_deadline(T0 + 30) == T0 + 630  # the quarantine
    assert server.next_deadline(T0 + 5000) == T0 + 5000  # overdue: now
    server.tick(T0 + 5000)
    assert server.next_deadline(T0 + 5000) is None


def test_infinite_leases_have_no_deadline(impl: ModuleType) -> None:
    server = make(impl, lease_time=0xFFFFFFFF)
    Client(server, mac_of(1)).dora(T0)
    assert server.next_deadline(T0) is None

# cython: annotation_typing=False
"""The lease table: one record per address, one per client, the expiry heap and the reservations.

The same source is compiled by Cython into ``_leases`` (see ``setup.py``), which the compiled server
uses; this file is the pure-Python twin.

Theory of operation
-------------------
:class:`LeaseTable` keeps what the server knows about addresses (see the theory of operation above
:data:`~.events.LEASE_TRANSITIONS`): ``leases`` maps each address (an ``int``) to its record,
``by_client`` each client key to its address, and the :class:`~.pool.Pool` holds the addresses no
record holds (OFFERED, BOUND and DECLINED records take theirs out; reserved addresses never go back).
Records are replaced, never changed in place.

Every state change is checked against :data:`~.events.LEASE_TRANSITIONS` first
(:meth:`LeaseTable.allow`, inlined in :meth:`LeaseTable.put`; the table is read as the set of its
(state, trigger, next state) triples, :data:`ALLOWED`, built from it at import): a change the table
does not list, or one that leads elsewhere, is refused — the record stays as it was — and counted
as ``refused_transitions``. An address without a record is FREE. A record of another client that a
reservation's MAC takes over (same MAC, new client identifier) is first freed, then taken from FREE.

Expiry: every OFFERED, BOUND (not infinite) and DECLINED record pushes ``(expires, address)`` on a
heap; :meth:`LeaseTable.tick` pops what is due and ends it. An entry whose record changed since is
stale and skipped, so replacing a record never searches the heap. :meth:`LeaseTable.next_deadline`
is the earliest live entry: when the next tick has something to do.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from dataplane.wire import _select

from .events import (
    INFINITE,
    LEASE_TRANSITIONS,
    ClientKey,
    Event,
    Lease,
    LeaseExpired,
    LeaseFreed,
    LeaseState,
    OfferWithdrawn,
    PoolReplenished,
    QuarantineEnded,
)

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from .pool import Pool, int_to_ip, ip_to_int
else:
    from ._pool import Pool, int_to_ip, ip_to_int

if TYPE_CHECKING:
    from .server import Reservation
    from .store import LeaseStore

__all__ = ["NO_CLIENT", "LeaseTable"]

NO_CLIENT: ClientKey = ("", b"")

BOUND = LeaseState.BOUND
OFFERED = LeaseState.OFFERED
RELEASED = LeaseState.RELEASED
EXPIRED = LeaseState.EXPIRED
DECLINED = LeaseState.DECLINED
FREE = LeaseState.FREE
HOLDING = frozenset((OFFERED, BOUND, DECLINED))
CLIENT_HELD = frozenset((OFFERED, BOUND))
# LEASE_TRANSITIONS as (state, trigger, next state) triples: one set lookup per change.
ALLOWED = frozenset((state, trigger, after) for (state, trigger), after in LEASE_TRANSITIONS.items())


def _rank(lease: Lease) -> tuple[int, float]:
    return (1 if lease.state == BOUND else 0, lease.updated)


def changed(lease: Lease, **changes: object) -> Lease:
    """A copy of ``lease`` with ``changes`` (records are replaced, never changed in place)."""
    return replace(lease, **changes)  # type: ignore[arg-type]


class LeaseTable:
    """The lease records of one subnet (see the module docstring).

    ``counters`` and ``events`` are the server's: the table counts and reports what it does there.
    """

    def __init__(
        self,
        ranges: list[tuple[str, str]],
        exclude: list[str],
        store: LeaseStore,
        *,
        server_int: int,
        prefix_len: int,
        counters: dict[str, int],
        events: deque[Event],
    ) -> None:
        """``ValueError`` when a pool range is off the subnet of ``server_int``/``prefix_len`` or
        refused by :class:`~.pool.Pool`."""
        self._mask = mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        self._network = network = server_int & mask
        self._broadcast_int = network | (~mask & 0xFFFFFFFF)
        self._server_int = server_int
        self.subnet = f"{int_to_ip(network)}/{prefix_len}"
        for first, last in ranges:
            for end in (first, last):
                if not self.in_subnet(ip_to_int(end)):
                    raise ValueError(f"pool address {end} is outside {self.subnet}")
        self.pool = Pool(list(ranges), exclude)
        self.store = store
        self.counters = counters
        self.events = events
        self.leases: dict[int, Lease] = {}
        self.by_client: dict[ClientKey, int] = {}
        self.heap: list[tuple[float, int]] = []
        self.reserved_mac: dict[bytes, Reservation] = {}  # shared with the reply builder: never rebound
        self.reserved_addr: dict[int, bytes] = {}
        self.exhausted = False  # PoolExhausted reported; PoolReplenished due when an address frees

    @property
    def broadcast_int(self) -> int:
        return self._broadcast_int

    @property
    def mask(self) -> int:
        return self._mask

    def in_subnet(self, addr: int) -> bool:
        """Is ``addr`` a host address of the subnet (not its network or broadcast address)?"""
        return (addr & self._mask) == self._network and addr not in (self._network, self._broadcast_int)

    def is_host(self, addr: int) -> bool:
        """A host of the subnet other than the server itself: an address a lease may hold."""
        return self.in_subnet(addr) and addr != self._server_int

    # -- the transition table -----------------------------------------------------------------

    def allow(self, record: Lease | None, trigger: str, state: LeaseState, client: ClientKey) -> bool:
        """May ``client``'s change by ``trigger`` turn ``record`` (None: FREE) into ``state``?

        Read from :data:`~.events.LEASE_TRANSITIONS`; a refusal is counted. Another client's
        OFFERED or BOUND record is freed first (a reservation's MAC taking its address over).
        """
        current = FREE if record is None else record.state
        if record is not None and record.client != client and current in CLIENT_HELD:
            if (current, "free", FREE) not in ALLOWED:
                self.counters["refused_transitions"] += 1
                return False
            current = FREE
        if (current, trigger, state) not in ALLOWED:
            self.counters["refused_transitions"] += 1
            return False
        return True

    # -- restore ------------------------------------------------------------------------------

    def restore(self, now: float) -> None:
        """Load the store's records: the bound, released and expired ones (one per client, the later
        decision winning) and the quarantines still running. Offers are never stored."""
        # Bulk path (restart with 100k leases must stay well under a second): one address parse
        # per record, and the expiry heap built at once.
        chosen: dict[ClientKey, tuple[int, Lease]] = {}
        declined: list[tuple[int, Lease]] = []
        skipped = 0
        for stored in self.store.load():
            try:
                addr = ip_to_int(stored.address)
            except ValueError:
                skipped += 1
                continue
            if not self.in_subnet(addr) or addr == self._server_int:
                skipped += 1
                continue
            state = stored.state
            if state == DECLINED:
                if stored.expires > now:
                    declined.append(
                        (
                            addr,
                            Lease(stored.address, NO_CLIENT, b"", DECLINED, stored.expires, stored.updated),
                        )
                    )
                continue
            if state == BOUND and stored.expires <= now:
                state = EXPIRED
            elif state not in (BOUND, RELEASED, EXPIRED):
                continue
            lease = stored if state == stored.state else changed(stored, state=state)
            # One record per client: after a crash between two of a client's records, the later
            # decision wins (a binding over a memory of a released address).
            other = chosen.get(lease.client)
            if other is not None and _rank(other[1]) >= _rank(lease):
                continue
            chosen[lease.client] = (addr, lease)
        leases = self.leases
        by_client = self.by_client
        heap = self.heap
        take = self.pool.take
        for addr, lease in chosen.values():
            leases[addr] = lease
            by_client[lease.client] = addr
            if lease.state == BOUND:
                take(addr)
                if lease.expires != INFINITE:
                    heap.append((lease.expires, addr))
        for addr, lease in declined:
            if addr not in leases:
                leases[addr] = lease
                take(addr)
                heap.append((lease.expires, addr))
        heapq.heapify(heap)
        self.counters["restored"] = len(leases)
        self.counters["restore_skipped"] = skipped

    # -- records ------------------------------------------------------------------------------

    def put(self, lease: Lease, trigger: str, client: ClientKey) -> bool:
        """Make ``lease`` its address's record (replacing any other) and its client's only one, as
        ``client``'s change by ``trigger``; False (nothing changed) when the table refuses it."""
        addr = ip_to_int(lease.address)
        old = self.leases.get(addr)
        # allow(), inlined for its common case: this runs twice per lease granted.
        state = FREE if old is None else old.state
        if old is not None and old.client != client and state in CLIENT_HELD:
            if not self.allow(old, trigger, lease.state, client):
                return False
        elif (state, trigger, lease.state) not in ALLOWED:
            self.counters["refused_transitions"] += 1
            return False
        if old is not None and old.client != lease.client and self.by_client.get(old.client) == addr:
            del self.by_client[old.client]
        self.leases[addr] = lease
        if lease.client != NO_CLIENT:
            self.by_client[lease.client] = addr
        if lease.state in HOLDING:
            self.hold(addr)
            if lease.expires != INFINITE:
                heapq.heappush(self.heap, (lease.expires, addr))
        else:
            self.give_back(addr, lease.updated)
        return True

    def forget(self, addr: int, now: float) -> None:
        old = self.leases.pop(addr, None)
        if old is not None and self.by_client.get(old.client) == addr:
            del self.by_client[old.client]
        self.give_back(addr, now)

    def hold(self, addr: int) -> None:
        if self.pool.contains(addr):
            self.pool.take(addr)

    def give_back(self, addr: int, now: float) -> None:
        if addr in self.reserved_addr or not self.pool.contains(addr):
            return
        if self.pool.release(addr) and self.exhausted:
            self.exhausted = False
            self.emit(PoolReplenished(now, self.pool.free_count))

    def emit(self, event: Event) -> None:
        if len(self.events) == self.events.maxlen:
            self.counters["events_dropped"] += 1
        self.events.append(event)

    def drop_client_record(self, addr: int, client: ClientKey, now: float) -> bool:
        """The client moves to another address: its old record goes (stored ones durably)."""
        lease = self.leases.get(addr)
        if lease is None:
            return True
        if not self.allow(lease, "free", FREE, client):
            return False
        self.forget(addr, now)
        if lease.state != OFFERED:
            self.store.record(changed(lease, state=FREE, updated=now))
        return True

    def end(self, lease: Lease, addr: int, now: float) -> Event | None:
        """The offer, lease or quarantine of ``lease`` ran out (it is the record of ``addr``)."""
        state = lease.state
        if state == OFFERED:
            if not self.allow(lease, "withdraw", FREE, lease.client):
                return None
            self.forget(addr, now)
            self.counters["offers_withdrawn"] += 1
            event: Event = OfferWithdrawn(lease)
        elif state == BOUND:
            # Not stored: a loaded BOUND record past its expiry is read as EXPIRED anyway.
            expired = changed(lease, state=EXPIRED, updated=now)
            if not self.put(expired, "expire", lease.client):
                return None
            self.counters["leases_expired"] += 1
            event = LeaseExpired(expired)
        elif state == DECLINED:
            if not self.allow(lease, "unquarantine", FREE, lease.client):
                return None
            self.forget(addr, now)
            event = QuarantineEnded(lease.address)
        else:
            return None
        self.emit(event)
        return event

    def free(self, lease: Lease, addr: int, now: float) -> Event | None:
        """The control plane (or a reservation) takes ``addr`` back from ``lease``, durably."""
        if not self.allow(lease, "free", FREE, lease.client):
            return None
        self.forget(addr, now)
        self.store.record(changed(lease, state=FREE, updated=now))
        self.counters["leases_freed"] += 1
        event = LeaseFreed(lease)
        self.emit(event)
        return event

    def withdraw_offer(self, client: ClientKey, now: float) -> None:
        addr = self.by_client.get(client)
        if addr is None:
            return
        lease = self.leases[addr]
        if lease.state == OFFERED:
            if not self.allow(lease, "withdraw", FREE, client):
                return
            self.forget(addr, now)
            self.counters["offers_withdrawn"] += 1
            self.emit(OfferWithdrawn(lease))

    def current(self, addr: int, now: float) -> Lease | None:
        """The record of ``addr``, after ending it if its time ran out and ``tick`` has not yet."""
        lease = self.leases.get(addr)
        if lease is not None and lease.state in HOLDING and lease.expires <= now:
            self.end(lease, addr, now)
            lease = self.leases.get(addr)
        return lease

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Event]:
        """End the offers, leases and quarantines due by ``now``; the events."""
        events: list[Event] = []
        heap = self.heap
        while heap and heap[0][0] <= now:
            expires, addr = heapq.heappop(heap)
            lease = self.leases.get(addr)
            if lease is None or lease.state not in HOLDING or lease.expires != expires:
                continue  # a stale entry: the record changed since it was pushed
            event = self.end(lease, addr, now)
            if event is not None:
                events.append(event)
        return events

    def due(self, now: float) -> bool:
        """Is an entry of the heap (perhaps a stale one) due by ``now``?"""
        heap = self.heap
        return bool(heap) and heap[0][0] <= now

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`tick` next has something to end: ``now`` when it is overdue, None for never.

        Stale heap entries at the top are dropped on the way (``tick`` would skip them).
        """
        heap = self.heap
        leases = self.leases
        while heap:
            expires, addr = heap[0]
            lease = leases.get(addr)
            if lease is None or lease.state not in HOLDING or lease.expires != expires:
                heapq.heappop(heap)
                continue
            return expires if expires > now else now
        return None

    # -- reservations -------------------------------------------------------------------------

    def reserve(self, reservation: Reservation, addr: int, now: float) -> list[Event]:
        """Reserve ``addr`` for ``reservation.mac`` (checked by the caller), replacing that MAC's
        old reservation; a record of another MAC on ``addr`` is freed (recorded)."""
        mac = reservation.mac
        self.remove_reservation(mac, now)
        self.reserved_mac[mac] = reservation
        self.reserved_addr[addr] = mac
        if self.pool.contains(addr):
            self.pool.take(addr)
        events: list[Event] = []
        lease = self.leases.get(addr)
        if lease is not None and lease.state != DECLINED and lease.mac != mac:
            event = self.free(lease, addr, now)
            if event is not None:
                events.append(event)
        return events

    def remove_reservation(self, mac: bytes, now: float) -> Reservation | None:
        reservation = self.reserved_mac.pop(bytes(mac), None)
        if reservation is None:
            return None
        addr = ip_to_int(reservation.address)
        self.reserved_addr.pop(addr, None)
        lease = self.leases.get(addr)
        if lease is None or lease.state not in HOLDING:
            self.give_back(addr, now)
        return reservation

    def free_mac(self, mac: bytes, now: float) -> list[Lease]:
        """Forget the records of hardware address ``mac`` (quarantines stay); the freed records."""
        freed = [lease for lease in self.leases.values() if lease.mac == mac and lease.state != DECLINED]
        for lease in freed:
            self.free(lease, ip_to_int(lease.address), now)
        return freed

# cython: annotation_typing=False
"""The DHCPv4 server (RFC 2131/2132), sans-I/O: the pure-Python twin and the reference.

The same source is compiled by Cython into ``_server`` (see ``setup.py``), which uses the compiled
pool and wire codecs; results (:class:`~.events.Reply`, leases, events) are the shared classes of
:mod:`.events`.

Theory of operation
-------------------
A :class:`DhcpServer` serves one subnet. It owns no socket, no clock and no file: the I/O layer
hands it each UDP payload that arrived on port 67 (:meth:`DhcpServer.receive`) with the current
wall-clock time, and sends the :class:`~.events.Reply` list it gets back.

Durability (group commit): the server writes every lease decision into its store as it makes it
(``store.record(lease)``, buffered, cheap). The I/O loop handles a *batch* of packets, calls
``store.commit()`` once for the batch (one fsync), and only then sends the batch's replies. So an
ACK leaves only after its lease is durable; replies marked ``durable`` are the ones that need this
(an ACK binding or extending a lease), and a batch with none of them needs no commit before its
replies go (OFFER, NAK, ACK to INFORM).

Message flows follow spec 4.2:

* DISCOVER: the address is picked in order: the client's own record (binding, offer, or remembered
  released/expired address still free) — unless the client's MAC has a reservation, which wins over
  anything dynamic; the requested address (50) if free and in the pool; the next free pool address.
  It is held (OFFERED) for ``offer_hold`` seconds. No address: no OFFER, and :class:`PoolExhausted`
  once until an address frees up.
* REQUEST, SELECTING (54 and 50, ciaddr 0): 54 not ours -> our offer to the client is withdrawn,
  silently. Ours -> ACK if the address is still the client's to take, else NAK.
* REQUEST, INIT-REBOOT (50, no 54, ciaddr 0): NAK for an address off our subnet or held by another
  client; ACK for the client's own record; no record: NAK when authoritative, else silence.
* REQUEST, RENEWING/REBINDING (ciaddr, no 50/54): the client's binding is extended and ACKed to
  ciaddr; unknown: NAK when authoritative, else silence.
* DECLINE (50, our 54): the address is quarantined for ``decline_hold`` and the binding dropped.
* RELEASE (ciaddr, our 54): the address is freed, the client remembered.
* INFORM (ciaddr): ACK with the configuration options, yiaddr 0 and no 51/58/59.

Identity is option 61 when present, else (htype, chaddr) (:func:`dataplane.wire.client_id_key`);
reservations match ``chaddr`` whatever the client-id. Bad input never raises: a malformed packet
(the codec's ``MalformedPacket``), a BOOTREPLY, a non-Ethernet/odd ``hlen``, a message type a server
does not take, a spoofed server identifier, a relay off our subnet, are dropped and counted by
reason (:meth:`DhcpServer.counters`, keys ``drop_<reason>``).

Reply addressing follows RFC 2131 §4.1 (spec 4.3): giaddr set -> the relay, port 67 (broadcast bit
set on a NAK); else a NAK -> 255.255.255.255:68 (RFC 2131 §4.1: "in all cases, when giaddr is zero,
the server broadcasts any DHCPNAK"); else ciaddr set -> ciaddr:68; else broadcast flag -> broadcast;
else unicast to yiaddr with the destination MAC = chaddr.
"""

from __future__ import annotations

import heapq
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.wire.errors import MalformedPacket

from .events import (
    INFINITE,
    AddressDeclined,
    ClientKey,
    Event,
    Lease,
    LeaseExpired,
    LeaseFreed,
    LeaseGranted,
    LeaseOffered,
    LeaseReleased,
    LeaseRenewed,
    LeaseState,
    OfferWithdrawn,
    PoolExhausted,
    PoolReplenished,
    QuarantineEnded,
    Reply,
)

COMPILED = __name__.rpartition(".")[2].startswith("_")
if TYPE_CHECKING or not COMPILED:
    from dataplane.wire.buffer import Buffer
    from dataplane.wire.dhcp import (
        ClasslessRoute,
        DhcpMessage,
        client_id_key,
        decode_client_fqdn,
        decode_client_id,
        decode_ip,
        decode_text,
        encode_classless_routes,
        encode_domain_search,
        encode_ip_list,
        encode_uint,
        pull_dhcp,
        push_dhcp,
    )

    from .pool import Pool, int_to_ip, ip_to_int
else:
    from dataplane.wire._buffer import Buffer
    from dataplane.wire._dhcp import (
        ClasslessRoute,
        DhcpMessage,
        client_id_key,
        decode_client_fqdn,
        decode_client_id,
        decode_ip,
        decode_text,
        encode_classless_routes,
        encode_domain_search,
        encode_ip_list,
        encode_uint,
        pull_dhcp,
        push_dhcp,
    )

    from ._pool import Pool, int_to_ip, ip_to_int

if TYPE_CHECKING:
    from .store import LeaseStore

__all__ = ["IMPLEMENTATION", "DhcpServer", "Reservation", "ServerConfig"]

IMPLEMENTATION = "cython" if COMPILED else "python"

# Option 53 values (RFC 2132 §9.6); plain ints so the compiled twin compares machine integers.
DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

BOOTREQUEST = 1
BOOTREPLY = 2
SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST_FLAG = 0x8000
BROADCAST_IP = "255.255.255.255"
BROADCAST_MAC = b"\xff" * 6
ZERO = bytes(4)
INFINITE_LEASE = 0xFFFFFFFF  # RFC 2132 §9.2
MIN_MTU = 68  # RFC 2132 §5.1
MAX_REPLY = 1472  # an Ethernet frame's worth of DHCP message (1500 - IP - UDP), whatever 57 says
NO_CLIENT: ClientKey = ("", b"")

# Configuration options sent when the client sends no parameter request list (RFC 2131 §4.3.1
# leaves the choice to the server): what dnsmasq sends, plus our MTU.
DEFAULT_PARAMETERS = frozenset((1, 3, 6, 15, 26, 28))
# Never left out of a reply to make it fit (spec 4.4).
MANDATORY = frozenset((53, 54, 51, 58, 59, 1, 61, 82))

BOUND = LeaseState.BOUND
OFFERED = LeaseState.OFFERED
RELEASED = LeaseState.RELEASED
EXPIRED = LeaseState.EXPIRED
DECLINED = LeaseState.DECLINED
FREE = LeaseState.FREE
HOLDING = frozenset((OFFERED, BOUND, DECLINED))

# Counter names, all present from the start so a scrape sees zeros.
COUNTERS = (
    "received",
    "discover",
    "request",
    "decline",
    "release",
    "inform",
    "offer_sent",
    "ack_sent",
    "nak_sent",
    "leases_granted",
    "leases_renewed",
    "leases_released",
    "leases_expired",
    "leases_freed",
    "offers_withdrawn",
    "addresses_declined",
    "pool_exhausted",  # exhaustion episodes (reported once each), not DISCOVERs
    "no_address",  # DISCOVERs left unanswered for lack of an address
    "reservation_conflicts",  # a reserved address was held by another client when its MAC came
    "request_other_server",  # SELECTING REQUESTs for another server: our offer withdrawn
    "silent_not_authoritative",
    "events_dropped",
    "restored",
    "restore_skipped",
    "options_trimmed",  # optional options left out of a reply that did not fit the client's size
    "drop_malformed",
    "drop_bootreply",
    "drop_bootp",  # no option 53: plain BOOTP is not served
    "drop_server_message",  # OFFER/ACK/NAK sent to a server
    "drop_no_identity",
    "drop_looped",  # chaddr is our own interface MAC
    "drop_foreign_relay",  # giaddr off our subnet
    "drop_spoofed_server_id",  # DECLINE/RELEASE naming another server
    "drop_bad_request",  # REQUEST with no address in 50 or ciaddr
    "drop_decline_unknown",
    "drop_release_unknown",
    "drop_inform_foreign",
    "drop_reply_too_big",
    "drop_internal_error",
)


@dataclass(slots=True)
class Reservation:
    """A static lease (spec 4.5): ``mac`` (6 bytes, matched against chaddr) always gets ``address``."""

    mac: bytes
    address: str
    hostname: str | None = None


@dataclass(slots=True)
class ServerConfig:
    """One subnet's DHCP service. Addresses are dotted quads; times are seconds.

    ``classless_routes`` are (destination CIDR, router) pairs for option 121 (RFC 3442), sent only to
    a client that asks for 121; since such a client ignores option 3 (RFC 3442 §2), the list sent
    always holds the default route (``0.0.0.0/0`` via ``router`` is added when missing; with neither,
    121 is never sent), and option 3 is omitted then. ``lease_time`` 0xFFFFFFFF is infinite.
    """

    server_address: str
    pools: list[tuple[str, str]]
    prefix_len: int = 16
    exclude: list[str] = field(default_factory=list)
    lease_time: int = 7200
    router: str | None = None
    dns_servers: list[str] = field(default_factory=list)
    domain: str | None = None
    mtu: int | None = 1450
    broadcast: str | None = None  # option 28; None: the subnet's broadcast address
    search_domains: list[str] = field(default_factory=list)
    classless_routes: list[tuple[str, str]] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    authoritative: bool = True
    offer_hold: float = 60.0
    decline_hold: float = 600.0
    t1_ratio: float = 0.5
    t2_ratio: float = 0.875
    event_capacity: int = 65536


def sanitize_hostname(name: str) -> str | None:
    """A DNS label from a client's host name (spec 4.4): the first label, lower case, letters,
    digits and hyphens only (RFC 952/1123), at most 63 bytes; None when nothing is left."""
    label = name.split(".", 1)[0].lower()
    out = "".join(c if ("a" <= c <= "z" or "0" <= c <= "9" or c == "-") else "-" for c in label)
    out = out.strip("-")[:63].rstrip("-")
    return out or None


def _cidr(text: str) -> tuple[bytes, int]:
    address, _, prefix = text.partition("/")
    width = int(prefix) if prefix else 32
    if not 0 <= width <= 32:
        raise ValueError(f"route {text!r}: prefix length outside 0..32")
    value = ip_to_int(address)
    mask = (0xFFFFFFFF << (32 - width)) & 0xFFFFFFFF
    return (value & mask).to_bytes(4, "big"), width


def _ip(text: str) -> bytes:
    return ip_to_int(text).to_bytes(4, "big")


class DhcpServer:
    """The sans-I/O DHCPv4 server core for one subnet (see the module docstring)."""

    def __init__(self, config: ServerConfig, store: LeaseStore, now: float) -> None:
        """Validate ``config`` (``ValueError``) and restore the leases ``store.load()`` returns."""
        self._config = config
        self._store = store
        if not 0 <= config.prefix_len <= 30:
            raise ValueError(f"prefix length {config.prefix_len} outside 0..30")
        self._server_int = ip_to_int(config.server_address)
        self._server_ip = self._server_int.to_bytes(4, "big")
        self._mask = (0xFFFFFFFF << (32 - config.prefix_len)) & 0xFFFFFFFF
        self._network = self._server_int & self._mask
        self._broadcast_int = self._network | (~self._mask & 0xFFFFFFFF)
        if not 0 < config.lease_time <= INFINITE_LEASE:
            raise ValueError(f"lease time {config.lease_time} outside 1..{INFINITE_LEASE}")
        if not 0 < config.t1_ratio < config.t2_ratio < 1:
            raise ValueError("T1 and T2 ratios must satisfy 0 < T1 < T2 < 1 (RFC 2131 §4.4.5)")
        if config.mtu is not None and not MIN_MTU <= config.mtu <= 0xFFFF:
            raise ValueError(f"MTU {config.mtu} outside {MIN_MTU}..65535 (RFC 2132 §5.1)")
        if config.offer_hold <= 0 or config.decline_hold < 0:
            raise ValueError("offer_hold must be positive and decline_hold not negative")
        for first, last in config.pools:
            for end in (first, last):
                if not self._in_subnet(ip_to_int(end)):
                    raise ValueError(f"pool address {end} is outside {self.subnet}")
        exclude = [*config.exclude, config.server_address]
        if config.router:
            exclude.append(config.router)
        self._pool = Pool(list(config.pools), exclude)
        self._lease_time = int(config.lease_time)
        self._t1 = int(self._lease_time * config.t1_ratio)
        self._t2 = int(self._lease_time * config.t2_ratio)

        self._leases: dict[int, Lease] = {}
        self._by_client: dict[ClientKey, int] = {}
        self._heap: list[tuple[float, int]] = []
        self._reserved_mac: dict[bytes, Reservation] = {}
        self._reserved_addr: dict[int, bytes] = {}
        self._events: deque[Event] = deque(maxlen=max(1, config.event_capacity))
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._exhausted = False
        self.last_error: str | None = None
        self._static = self._static_options()
        self._restore(now)
        for reservation in config.reservations:
            self.add_reservation(reservation, now)
        self._events.clear()

    # -- configuration ------------------------------------------------------------------------

    @property
    def subnet(self) -> str:
        return f"{int_to_ip(self._network)}/{self._config.prefix_len}"

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def config(self) -> ServerConfig:
        return self._config

    def _in_subnet(self, addr: int) -> bool:
        return (addr & self._mask) == self._network and addr not in (self._network, self._broadcast_int)

    def _static_options(self) -> dict[int, bytes]:
        """The configuration options (RFC 2132), encoded once."""
        config = self._config
        options: dict[int, bytes] = {1: self._mask.to_bytes(4, "big")}
        if config.router:
            options[3] = _ip(config.router)
        if config.dns_servers:
            options[6] = encode_ip_list(6, [_ip(a) for a in config.dns_servers])
        if config.domain:
            options[15] = config.domain.encode("ascii")
        if config.mtu is not None:
            options[26] = encode_uint(26, int(config.mtu))
        broadcast = config.broadcast or int_to_ip(self._broadcast_int)
        options[28] = _ip(broadcast)
        if config.search_domains:
            options[119] = encode_domain_search(config.search_domains)
        if config.classless_routes:
            routes = []
            has_default = False
            for destination, router in config.classless_routes:
                prefix, width = _cidr(destination)
                has_default = has_default or width == 0
                routes.append(ClasslessRoute(prefix, width, _ip(router)))
            if not has_default and config.router:
                routes.append(ClasslessRoute(ZERO, 0, _ip(config.router)))
                has_default = True
            # RFC 3442 §2: a client that takes 121 ignores option 3, so 121 without a default
            # route would leave it with none; then 121 is not sent at all.
            if has_default:
                options[121] = encode_classless_routes(routes)
        return options

    # -- restore ------------------------------------------------------------------------------

    def _restore(self, now: float) -> None:
        # Bulk path (restart with 100k leases must stay well under a second): one address parse
        # per record, and the expiry heap built at once.
        chosen: dict[ClientKey, tuple[int, Lease]] = {}
        declined: list[tuple[int, Lease]] = []
        skipped = 0
        for stored in self._store.load():
            try:
                addr = ip_to_int(stored.address)
            except ValueError:
                skipped += 1
                continue
            if not self._in_subnet(addr) or addr == self._server_int:
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
            lease = stored if state == stored.state else _with(stored, state=state)
            # One record per client: after a crash between two of a client's records, the later
            # decision wins (a binding over a memory of a released address).
            other = chosen.get(lease.client)
            if other is not None and _rank(other[1]) >= _rank(lease):
                continue
            chosen[lease.client] = (addr, lease)
        leases = self._leases
        by_client = self._by_client
        heap = self._heap
        take = self._pool.take
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
        self._counters["restored"] = len(leases)
        self._counters["restore_skipped"] = skipped

    # -- the public API -----------------------------------------------------------------------

    def receive(self, payload: bytes, now: float, *, interface_mac: bytes | None = None) -> list[Reply]:
        """Handle one UDP payload received on port 67; never raises for bad input.

        ``interface_mac`` is the receiving interface's MAC: a packet whose chaddr is ours (our own
        reply looped back) is dropped. Lease decisions are recorded into the store, not committed:
        commit before sending replies marked ``durable``.
        """
        self._counters["received"] += 1
        try:
            msg = pull_dhcp(Buffer(payload))
            return self._handle(msg, now, interface_mac)
        except MalformedPacket:
            self._counters["drop_malformed"] += 1
        except Exception:  # a bug must cost one packet, not the server; tests assert none happen
            self._counters["drop_internal_error"] += 1
            self.last_error = traceback.format_exc()
        return []

    def tick(self, now: float) -> list[Event]:
        """Reclaim expired offers and leases and end quarantines due by ``now``; the events."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires, addr = heapq.heappop(heap)
            lease = self._leases.get(addr)
            if lease is None or lease.state not in HOLDING or lease.expires != expires:
                continue  # a stale entry: the record changed since it was pushed
            event = self._end(lease, addr, now)
            if event is not None:
                events.append(event)
        return events

    def leases(self) -> list[Lease]:
        """Every lease record (offered, bound, released, expired, declined), by address."""
        return [self._leases[a] for a in sorted(self._leases)]

    def lease_for(self, address: str) -> Lease | None:
        return self._leases.get(ip_to_int(address))

    def lease_of(self, client: ClientKey) -> Lease | None:
        """The record of ``client`` (its binding, offer, or remembered address), if any."""
        addr = self._by_client.get(client)
        return None if addr is None else self._leases.get(addr)

    def drain_events(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        return events

    def counters(self) -> dict[str, int]:
        counters = dict(self._counters)
        counters["pool_size"] = self._pool.size
        counters["pool_free"] = self._pool.free_count
        counters["leases_bound"] = sum(1 for lease in self._leases.values() if lease.state == BOUND)
        return counters

    def add_reservation(self, reservation: Reservation, now: float) -> list[Event]:
        """Reserve ``reservation.address`` for its MAC (replacing that MAC's old reservation).

        A lease another client holds on the address is freed (recorded): that client's next renewal
        is NAKed and it starts over; ``ValueError`` when the address is off the subnet or reserved
        for another MAC.
        """
        mac = bytes(reservation.mac)
        if len(mac) != 6:
            raise ValueError(f"a reservation's MAC is 6 bytes, got {len(mac)}")
        addr = ip_to_int(reservation.address)
        if not self._in_subnet(addr) or addr == self._server_int:
            raise ValueError(f"reserved address {reservation.address} is not a host of {self.subnet}")
        owner = self._reserved_addr.get(addr)
        if owner is not None and owner != mac:
            raise ValueError(f"{reservation.address} is already reserved for another MAC")
        self.remove_reservation(mac, now)
        self._reserved_mac[mac] = Reservation(mac, reservation.address, reservation.hostname)
        self._reserved_addr[addr] = mac
        if self._pool.contains(addr):
            self._pool.take(addr)
        events: list[Event] = []
        lease = self._leases.get(addr)
        if lease is not None and lease.state != DECLINED and lease.mac != mac:
            events.append(self._free(lease, addr, now))
        return events

    def remove_reservation(self, mac: bytes, now: float) -> Reservation | None:
        reservation = self._reserved_mac.pop(bytes(mac), None)
        if reservation is None:
            return None
        addr = ip_to_int(reservation.address)
        self._reserved_addr.pop(addr, None)
        lease = self._leases.get(addr)
        if lease is None or lease.state not in HOLDING:
            self._give_back(addr, now)
        return reservation

    def reservations(self) -> list[Reservation]:
        return list(self._reserved_mac.values())

    def free_lease(self, mac: bytes, now: float) -> list[Lease]:
        """Forget the leases of hardware address ``mac`` (control plane ``DELETE /v1/leases/{mac}``);
        the freed records (recorded as FREE in the store: commit to make it durable)."""
        mac = bytes(mac)
        freed = [lease for lease in self._leases.values() if lease.mac == mac and lease.state != DECLINED]
        for lease in freed:
            self._free(lease, ip_to_int(lease.address), now)
        return freed

    # -- record keeping -----------------------------------------------------------------------

    def _put(self, lease: Lease) -> int:
        """Make ``lease`` its address's record (replacing any other) and its client's only one."""
        addr = ip_to_int(lease.address)
        old = self._leases.get(addr)
        if old is not None and old.client != lease.client and self._by_client.get(old.client) == addr:
            del self._by_client[old.client]
        self._leases[addr] = lease
        if lease.client != NO_CLIENT:
            self._by_client[lease.client] = addr
        if lease.state in HOLDING:
            self._hold(addr)
            if lease.expires != INFINITE:
                heapq.heappush(self._heap, (lease.expires, addr))
        else:
            self._give_back(addr, lease.updated)
        return addr

    def _forget(self, addr: int, now: float) -> None:
        old = self._leases.pop(addr, None)
        if old is not None and self._by_client.get(old.client) == addr:
            del self._by_client[old.client]
        self._give_back(addr, now)

    def _hold(self, addr: int) -> None:
        if self._pool.contains(addr):
            self._pool.take(addr)

    def _give_back(self, addr: int, now: float) -> None:
        if addr in self._reserved_addr or not self._pool.contains(addr):
            return
        if self._pool.release(addr) and self._exhausted:
            self._exhausted = False
            self._emit(PoolReplenished(now, self._pool.free_count))

    def _emit(self, event: Event) -> None:
        if len(self._events) == self._events.maxlen:
            self._counters["events_dropped"] += 1
        self._events.append(event)

    def _end(self, lease: Lease, addr: int, now: float) -> Event | None:
        """The offer, lease or quarantine of ``lease`` ran out (it is the record of ``addr``)."""
        if lease.state == OFFERED:
            self._forget(addr, now)
            self._counters["offers_withdrawn"] += 1
            event: Event = OfferWithdrawn(lease)
        elif lease.state == BOUND:
            # Not stored: a loaded BOUND record past its expiry is read as EXPIRED anyway.
            expired = _with(lease, state=EXPIRED, updated=now)
            self._put(expired)
            self._counters["leases_expired"] += 1
            event = LeaseExpired(expired)
        elif lease.state == DECLINED:
            self._forget(addr, now)
            event = QuarantineEnded(lease.address)
        else:
            return None
        self._emit(event)
        return event

    def _free(self, lease: Lease, addr: int, now: float) -> Event:
        self._forget(addr, now)
        self._store.record(_with(lease, state=FREE, updated=now))
        self._counters["leases_freed"] += 1
        event = LeaseFreed(lease)
        self._emit(event)
        return event

    def _withdraw_offer(self, client: ClientKey, now: float) -> None:
        addr = self._by_client.get(client)
        if addr is None:
            return
        lease = self._leases[addr]
        if lease.state == OFFERED:
            self._forget(addr, now)
            self._counters["offers_withdrawn"] += 1
            self._emit(OfferWithdrawn(lease))

    def _current(self, addr: int, now: float) -> Lease | None:
        """The record of ``addr``, after ending it if its time ran out and ``tick`` has not yet."""
        lease = self._leases.get(addr)
        if lease is not None and lease.state in HOLDING and lease.expires <= now:
            self._end(lease, addr, now)
            lease = self._leases.get(addr)
        return lease

    # -- address choice -----------------------------------------------------------------------

    def _reserved_for(self, mac: bytes, client: ClientKey, now: float) -> int | None:
        """The reserved address of ``mac``, when no other client holds it."""
        reservation = self._reserved_mac.get(mac)
        if reservation is None:
            return None
        addr = ip_to_int(reservation.address)
        lease = self._current(addr, now)
        if lease is not None and lease.state in HOLDING and lease.client != client and lease.mac != mac:
            self._counters["reservation_conflicts"] += 1
            return None
        return addr

    def _available(self, addr: int, client: ClientKey, mac: bytes, now: float) -> bool:
        """May ``client`` (with hardware address ``mac``) take ``addr`` now?"""
        if not self._in_subnet(addr) or addr == self._server_int:
            return False
        owner = self._reserved_addr.get(addr)
        if owner is not None:
            return owner == mac and self._reserved_for(mac, client, now) == addr
        lease = self._current(addr, now)
        if lease is not None:
            if lease.state == DECLINED:
                return False
            if lease.client == client:
                # Its own record: a binding, an offer, or a remembered address still free.
                return lease.state in HOLDING or self._pool.is_free(addr)
            if lease.state in HOLDING:
                return False
        return self._pool.is_free(addr)

    def _choose(self, client: ClientKey, mac: bytes, requested: int | None, now: float) -> int | None:
        reserved = self._reserved_for(mac, client, now) if mac in self._reserved_mac else None
        if reserved is not None:
            return reserved
        own = self._by_client.get(client)
        if own is not None and self._available(own, client, mac, now):
            return own
        if (
            requested is not None
            and self._pool.contains(requested)
            and self._available(requested, client, mac, now)
        ):
            return requested
        while True:
            addr = self._pool.allocate(None)
            if addr is None:
                return None
            if addr in self._reserved_addr:  # reserved after it was freed: keep it out
                continue
            lease = self._leases.get(addr)
            if lease is None or lease.state not in HOLDING:
                return addr

    # -- message handling ---------------------------------------------------------------------

    def _handle(self, msg: DhcpMessage, now: float, interface_mac: bytes | None) -> list[Reply]:
        counters = self._counters
        if msg.op != BOOTREQUEST:
            counters["drop_bootreply"] += 1
            return []
        options = msg.options
        raw_type = options.get(53)
        if raw_type is None:
            counters["drop_bootp"] += 1
            return []
        if len(raw_type) != 1 or not 1 <= raw_type[0] <= 8:
            counters["drop_malformed"] += 1
            return []
        mtype = raw_type[0]
        if mtype in (OFFER, ACK, NAK):
            counters["drop_server_message"] += 1
            return []
        mac = bytes(msg.chaddr[: msg.hlen])
        if interface_mac is not None and msg.hlen == 6 and mac == bytes(interface_mac):
            counters["drop_looped"] += 1
            return []
        raw_id = options.get(61)
        if raw_id is not None:
            decode_client_id(raw_id)  # validates: at least type + 1 byte (RFC 2132 §9.14)
        elif msg.hlen == 0:
            counters["drop_no_identity"] += 1
            return []
        if msg.giaddr != ZERO and not self._in_subnet(int.from_bytes(msg.giaddr, "big")):
            counters["drop_foreign_relay"] += 1
            return []
        client = client_id_key(msg)
        if msg.htype != 1 or msg.hlen != 6:
            mac = b""  # reservations are by Ethernet MAC
        if mtype == DISCOVER:
            counters["discover"] += 1
            return self._discover(msg, client, mac, now)
        if mtype == REQUEST:
            counters["request"] += 1
            return self._request(msg, client, mac, now)
        if mtype == DECLINE:
            counters["decline"] += 1
            self._decline(msg, client, now)
            return []
        if mtype == RELEASE:
            counters["release"] += 1
            self._release(msg, client, now)
            return []
        counters["inform"] += 1
        return self._inform(msg, now)

    def _server_id_ok(self, msg: DhcpMessage) -> bool:
        raw = msg.options.get(54)
        if raw is None:
            return True
        if decode_ip(54, raw) != self._server_ip:
            self._counters["drop_spoofed_server_id"] += 1
            return False
        return True

    def _discover(self, msg: DhcpMessage, client: ClientKey, mac: bytes, now: float) -> list[Reply]:
        raw = msg.options.get(50)
        requested = None if raw is None else int.from_bytes(decode_ip(50, raw), "big")
        addr = self._choose(client, mac, requested, now)
        if addr is None and self._heap and self._heap[0][0] <= now:
            self.tick(now)  # leases ran out since the last tick: reclaim them before giving up
            addr = self._choose(client, mac, requested, now)
        if addr is None:
            self._counters["no_address"] += 1
            if not self._exhausted:
                self._exhausted = True
                self._counters["pool_exhausted"] += 1
                self._emit(PoolExhausted(now, self._pool.size))
            return []
        old = self._by_client.get(client)
        if old is not None and old != addr:
            self._drop_client_record(old, now)
        hostname, fqdn = self._names(msg, mac)
        current = self._leases.get(addr)
        if current is not None and current.state == BOUND and current.client == client:
            lease = current  # its own client, rebooted: offer the binding, which stays as it is
        else:
            lease = Lease(
                int_to_ip(addr),
                client,
                mac,
                OFFERED,
                now + self._config.offer_hold,
                now,
                hostname,
                fqdn,
                self._lease_time,
            )
            self._put(lease)
        self._emit(LeaseOffered(lease))
        return [self._reply(msg, OFFER, addr.to_bytes(4, "big"), lease_time=True, durable=False)]

    def _drop_client_record(self, addr: int, now: float) -> None:
        """The client moves to another address: its old record goes (stored ones durably)."""
        lease = self._leases.get(addr)
        if lease is None:
            return
        self._forget(addr, now)
        if lease.state != OFFERED:
            self._store.record(_with(lease, state=FREE, updated=now))

    def _request(self, msg: DhcpMessage, client: ClientKey, mac: bytes, now: float) -> list[Reply]:
        options = msg.options
        raw_server = options.get(54)
        raw_requested = options.get(50)
        ciaddr = int.from_bytes(msg.ciaddr, "big")
        if raw_server is not None:
            # SELECTING: the client chose a server among the offers (RFC 2131 §4.3.2).
            if decode_ip(54, raw_server) != self._server_ip:
                self._counters["request_other_server"] += 1
                self._withdraw_offer(client, now)
                return []
            if raw_requested is not None:
                addr = int.from_bytes(decode_ip(50, raw_requested), "big")
            elif ciaddr:
                addr = ciaddr
            else:
                self._counters["drop_bad_request"] += 1
                return []
            if self._available(addr, client, mac, now) and self._preferred(addr, client, mac, now):
                return [self._bind(msg, client, mac, addr, now)]
            self._withdraw_offer(client, now)
            return [self._nak(msg)]
        if ciaddr:
            addr = ciaddr  # RENEWING (unicast) or REBINDING (broadcast)
        elif raw_requested is not None:
            addr = int.from_bytes(decode_ip(50, raw_requested), "big")  # INIT-REBOOT
        else:
            self._counters["drop_bad_request"] += 1
            return []
        if not self._in_subnet(addr):
            return [self._nak(msg)]  # wrong network: NAK whatever the mode (RFC 2131 §4.3.2)
        lease = self._current(addr, now)
        if lease is not None and lease.client == client and lease.state != DECLINED:
            if self._available(addr, client, mac, now) and self._preferred(addr, client, mac, now):
                return [self._bind(msg, client, mac, addr, now)]
            return [self._nak(msg)]
        if lease is not None and lease.state in HOLDING:
            return [self._nak(msg)]  # another client's
        if self._reserved_addr.get(addr, mac) != mac:
            return [self._nak(msg)]
        if self._config.authoritative:
            return [self._nak(msg)]
        self._counters["silent_not_authoritative"] += 1
        return []

    def _preferred(self, addr: int, client: ClientKey, mac: bytes, now: float) -> bool:
        """False when the client's MAC has a usable reservation elsewhere: NAK moves it there."""
        if mac not in self._reserved_mac:
            return True
        reserved = self._reserved_for(mac, client, now)
        return reserved is None or reserved == addr

    def _bind(self, msg: DhcpMessage, client: ClientKey, mac: bytes, addr: int, now: float) -> Reply:
        previous = self._leases.get(addr)
        old = self._by_client.get(client)
        if old is not None and old != addr:
            self._drop_client_record(old, now)
        hostname, fqdn = self._names(msg, mac)
        renewed = (
            previous is not None
            and previous.client == client
            and previous.state == BOUND
            and previous.expires > now
        )
        if previous is not None and previous.client == client:
            hostname = hostname or previous.hostname
            fqdn = fqdn or previous.fqdn
        lease_time = self._lease_time
        expires = INFINITE if lease_time == INFINITE_LEASE else now + lease_time
        lease = Lease(int_to_ip(addr), client, mac, BOUND, expires, now, hostname, fqdn, lease_time)
        self._put(lease)
        self._store.record(lease)
        if renewed:
            self._counters["leases_renewed"] += 1
            self._emit(LeaseRenewed(lease))
        else:
            self._counters["leases_granted"] += 1
            self._emit(LeaseGranted(lease))
        return self._reply(msg, ACK, addr.to_bytes(4, "big"), lease_time=True, durable=True)

    def _decline(self, msg: DhcpMessage, client: ClientKey, now: float) -> None:
        if not self._server_id_ok(msg):
            return
        raw = msg.options.get(50)
        if raw is None:
            self._counters["drop_decline_unknown"] += 1
            return
        addr = int.from_bytes(decode_ip(50, raw), "big")
        lease = self._leases.get(addr)
        if lease is None or lease.client != client or lease.state not in (OFFERED, BOUND):
            self._counters["drop_decline_unknown"] += 1
            return
        until = now + self._config.decline_hold
        quarantined = Lease(lease.address, NO_CLIENT, b"", DECLINED, until, now)
        self._put(quarantined)
        self._store.record(quarantined)
        self._counters["addresses_declined"] += 1
        self._emit(AddressDeclined(lease.address, client, until))

    def _release(self, msg: DhcpMessage, client: ClientKey, now: float) -> None:
        if not self._server_id_ok(msg):
            return
        addr = int.from_bytes(msg.ciaddr, "big")
        lease = self._leases.get(addr)
        if lease is None or lease.client != client or lease.state not in (OFFERED, BOUND):
            self._counters["drop_release_unknown"] += 1
            return
        released = _with(lease, state=RELEASED, expires=now, updated=now)
        self._put(released)
        self._store.record(released)
        self._counters["leases_released"] += 1
        self._emit(LeaseReleased(released))

    def _inform(self, msg: DhcpMessage, now: float) -> list[Reply]:
        ciaddr = int.from_bytes(msg.ciaddr, "big")
        if msg.giaddr == ZERO and not self._in_subnet(ciaddr):
            self._counters["drop_inform_foreign"] += 1
            return []
        return [self._reply(msg, ACK, ZERO, lease_time=False, durable=False)]

    # -- replies ------------------------------------------------------------------------------

    def _names(self, msg: DhcpMessage, mac: bytes) -> tuple[str | None, str | None]:
        hostname = None
        fqdn = None
        raw = msg.options.get(12)
        if raw is not None:
            try:
                hostname = sanitize_hostname(decode_text(12, raw))
            except MalformedPacket:
                hostname = None
        raw = msg.options.get(81)
        if raw is not None:
            try:
                fqdn = decode_client_fqdn(raw).name or None
            except MalformedPacket:
                fqdn = None
            if hostname is None and fqdn:
                hostname = sanitize_hostname(fqdn)
        reservation = self._reserved_mac.get(mac) if mac else None
        if reservation is not None and reservation.hostname:
            hostname = reservation.hostname
        return hostname, fqdn

    def _nak(self, msg: DhcpMessage) -> Reply:
        return self._reply(msg, NAK, ZERO, lease_time=False, durable=False)

    def _reply(
        self, msg: DhcpMessage, mtype: int, yiaddr: bytes, *, lease_time: bool, durable: bool
    ) -> Reply:
        request = msg.options
        options: dict[int, bytes] = {53: bytes((mtype,)), 54: self._server_ip}
        if mtype == NAK:
            self._counters["nak_sent"] += 1
        else:
            if lease_time:
                options[51] = encode_uint(51, self._lease_time)
                if self._lease_time != INFINITE_LEASE:
                    options[58] = encode_uint(58, self._t1)
                    options[59] = encode_uint(59, self._t2)
            raw_prl = request.get(55)
            wanted = DEFAULT_PARAMETERS if not raw_prl else frozenset(raw_prl)
            static = self._static
            classless = 121 in wanted and 121 in static
            for code, value in static.items():
                if code == 1 or (code in wanted and code != 121):
                    if code == 3 and classless:
                        continue  # RFC 3442 §2: ignored by a client that gets 121
                    options[code] = value
            if classless:
                options[121] = static[121]
            if 12 in wanted and yiaddr != ZERO:
                reservation = self._reserved_mac.get(bytes(msg.chaddr[:6])) if msg.hlen == 6 else None
                if reservation is not None and reservation.hostname:
                    options[12] = reservation.hostname.encode("ascii", "replace")
            self._counters["offer_sent" if mtype == OFFER else "ack_sent"] += 1
        client_id = request.get(61)
        if client_id is not None:
            options[61] = client_id  # RFC 6842
        relay = request.get(82)
        if relay is not None:
            options[82] = relay  # RFC 3046 §2.2: echoed unchanged, last
        flags = msg.flags
        giaddr = msg.giaddr
        # RFC 2131 §4.1 (spec 4.3)
        if giaddr != ZERO:
            dst_ip = int_to_ip(int.from_bytes(giaddr, "big"))
            dst_port = SERVER_PORT
            dst_mac: bytes | None = None
            if mtype == NAK:
                flags |= BROADCAST_FLAG
        elif mtype == NAK:
            dst_ip, dst_port, dst_mac = BROADCAST_IP, CLIENT_PORT, BROADCAST_MAC
        elif msg.ciaddr != ZERO:
            dst_ip = int_to_ip(int.from_bytes(msg.ciaddr, "big"))
            dst_port = CLIENT_PORT
            dst_mac = None
        elif flags & BROADCAST_FLAG or yiaddr == ZERO or msg.htype != 1 or msg.hlen != 6:
            dst_ip, dst_port, dst_mac = BROADCAST_IP, CLIENT_PORT, BROADCAST_MAC
        else:
            dst_ip = int_to_ip(int.from_bytes(yiaddr, "big"))
            dst_port = CLIENT_PORT
            dst_mac = bytes(msg.chaddr[:6])
        reply = DhcpMessage(
            op=BOOTREPLY,
            htype=msg.htype,
            hlen=msg.hlen,
            hops=0,
            xid=msg.xid,
            secs=0,
            flags=flags,
            # RFC 2131 table 3: ciaddr is echoed in an ACK, zero in OFFER and NAK.
            ciaddr=msg.ciaddr if mtype == ACK else ZERO,
            yiaddr=yiaddr,
            siaddr=ZERO,
            giaddr=giaddr,
            chaddr=msg.chaddr,
            options=options,
        )
        max_size = 576
        raw_max = request.get(57)
        if raw_max is not None and len(raw_max) == 2:
            max_size = max(576, min(int.from_bytes(raw_max, "big"), MAX_REPLY))
        while True:
            buf = Buffer(capacity=MAX_REPLY)
            try:
                push_dhcp(buf, reply, max_size=max_size)
                break
            except ValueError:
                # Too big even overloaded into file/sname: leave out the largest optional option.
                optional = [code for code in options if code not in MANDATORY]
                if not optional:
                    raise
                del options[max(optional, key=lambda code: len(options[code]))]
                self._counters["options_trimmed"] += 1
        return Reply(buf.data, dst_ip, dst_port, dst_mac, SERVER_PORT, durable, mtype)


def _rank(lease: Lease) -> tuple[int, float]:
    return (1 if lease.state == BOUND else 0, lease.updated)


def _with(lease: Lease, **changes: object) -> Lease:
    from dataclasses import replace  # noqa: PLC0415 - cheap, and keeps the module namespace small

    return replace(lease, **changes)  # type: ignore[arg-type]

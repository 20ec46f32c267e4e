# cython: annotation_typing=False
"""The DHCPv4 server (RFC 2131/2132), sans-I/O: the pure-Python twin and the reference.

The same source is compiled by Cython into ``_server`` (see ``setup.py``), which uses the compiled
lease table, reply builder, pool and wire codecs; results (:class:`~.events.Reply`, leases, events)
are the shared classes of :mod:`.events`.

This module holds the message flows; the records they decide on are the lease table's
(:mod:`.leases`, which checks every state change against :data:`~.events.LEASE_TRANSITIONS`), the
replies they send are built by :mod:`.replies`, with the option codes named in :mod:`.options`.

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

Reply addressing follows RFC 2131 §4.1 (spec 4.3; see :mod:`.replies`). Time: :meth:`DhcpServer.tick`
ends what ran out, and :meth:`DhcpServer.next_deadline` says when it next has something to do, so
the I/O loop sleeps until a packet or that deadline.
"""

from __future__ import annotations

import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.wire import _select
from dataplane.wire.errors import MalformedPacket

from .events import (
    INFINITE,
    AddressDeclined,
    ClientKey,
    Event,
    Lease,
    LeaseGranted,
    LeaseOffered,
    LeaseReleased,
    LeaseRenewed,
    LeaseState,
    PoolExhausted,
    Reply,
)
from .options import (
    ACK,
    CLIENT_FQDN,
    CLIENT_ID,
    DECLINE,
    DISCOVER,
    HOST_NAME,
    MESSAGE_TYPE,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    REQUESTED_ADDRESS,
    SERVER_ID,
)

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from dataplane.wire.buffer import Buffer
    from dataplane.wire.dhcp import (
        DhcpMessage,
        client_id_key,
        decode_client_fqdn,
        decode_client_id,
        decode_ip,
        decode_text,
        pull_dhcp,
    )

    from .leases import NO_CLIENT, LeaseTable, changed
    from .pool import Pool, int_to_ip, ip_to_int
    from .replies import INFINITE_LEASE, ReplyBuilder
else:
    from dataplane.wire._buffer import Buffer
    from dataplane.wire._dhcp import (
        DhcpMessage,
        client_id_key,
        decode_client_fqdn,
        decode_client_id,
        decode_ip,
        decode_text,
        pull_dhcp,
    )

    from ._leases import NO_CLIENT, LeaseTable, changed
    from ._pool import Pool, int_to_ip, ip_to_int
    from ._replies import INFINITE_LEASE, ReplyBuilder

if TYPE_CHECKING:
    from .store import LeaseStore

__all__ = ["IMPLEMENTATION", "DhcpServer", "Reservation", "ServerConfig"]

IMPLEMENTATION = "cython" if COMPILED else "python"

BOOTREQUEST = 1
ZERO = bytes(4)
MIN_MTU = 68  # RFC 2132 §5.1

BOUND = LeaseState.BOUND
OFFERED = LeaseState.OFFERED
RELEASED = LeaseState.RELEASED
DECLINED = LeaseState.DECLINED
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
    "refused_transitions",  # lease state changes LEASE_TRANSITIONS does not list: not made
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
        if not 0 < config.lease_time <= INFINITE_LEASE:
            raise ValueError(f"lease time {config.lease_time} outside 1..{INFINITE_LEASE}")
        if not 0 < config.t1_ratio < config.t2_ratio < 1:
            raise ValueError("T1 and T2 ratios must satisfy 0 < T1 < T2 < 1 (RFC 2131 §4.4.5)")
        if config.mtu is not None and not MIN_MTU <= config.mtu <= 0xFFFF:
            raise ValueError(f"MTU {config.mtu} outside {MIN_MTU}..65535 (RFC 2132 §5.1)")
        if config.offer_hold <= 0 or config.decline_hold < 0:
            raise ValueError("offer_hold must be positive and decline_hold not negative")
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._events: deque[Event] = deque(maxlen=max(1, config.event_capacity))
        exclude = [*config.exclude, config.server_address]
        if config.router:
            exclude.append(config.router)
        table = LeaseTable(
            config.pools,
            exclude,
            store,
            server_int=self._server_int,
            prefix_len=config.prefix_len,
            counters=self._counters,
            events=self._events,
        )
        self._table = table
        self._in_subnet = table.in_subnet
        self._pool = table.pool
        self._leases = table.leases
        self._by_client = table.by_client
        self._reserved_mac = table.reserved_mac
        self._reserved_addr = table.reserved_addr
        self._replies = ReplyBuilder(
            config,
            mask=table.mask,
            broadcast_int=table.broadcast_int,
            server_ip=self._server_ip,
            reserved=table.reserved_mac,
            counters=self._counters,
        )
        self._lease_time = self._replies.lease_time
        # Bound once: the flows call these per packet.
        self._current = table.current
        self._put = table.put
        self._emit = table.emit
        self._reply = self._replies.reply
        self.last_error: str | None = None
        table.restore(now)
        for reservation in config.reservations:
            self.add_reservation(reservation, now)
        self._events.clear()

    # -- configuration ------------------------------------------------------------------------

    @property
    def subnet(self) -> str:
        return self._table.subnet

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def config(self) -> ServerConfig:
        return self._config

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
        return self._table.tick(now)

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`tick` next has work: the earliest end of an offer, a lease or a quarantine
        (``now`` when one is overdue), or None when nothing will run out."""
        return self._table.next_deadline(now)

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
        if not self._table.is_host(addr):
            raise ValueError(f"reserved address {reservation.address} is not a host of {self.subnet}")
        owner = self._reserved_addr.get(addr)
        if owner is not None and owner != mac:
            raise ValueError(f"{reservation.address} is already reserved for another MAC")
        return self._table.reserve(Reservation(mac, reservation.address, reservation.hostname), addr, now)

    def remove_reservation(self, mac: bytes, now: float) -> Reservation | None:
        return self._table.remove_reservation(mac, now)

    def reservations(self) -> list[Reservation]:
        return list(self._reserved_mac.values())

    def free_lease(self, mac: bytes, now: float) -> list[Lease]:
        """Forget the leases of hardware address ``mac`` (control plane ``DELETE /v1/leases/{mac}``);
        the freed records (recorded as FREE in the store: commit to make it durable)."""
        return self._table.free_mac(bytes(mac), now)

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
        raw_type = options.get(MESSAGE_TYPE)
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
        raw_id = options.get(CLIENT_ID)
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
        raw = msg.options.get(SERVER_ID)
        if raw is None:
            return True
        if decode_ip(SERVER_ID, raw) != self._server_ip:
            self._counters["drop_spoofed_server_id"] += 1
            return False
        return True

    def _discover(self, msg: DhcpMessage, client: ClientKey, mac: bytes, now: float) -> list[Reply]:
        raw = msg.options.get(REQUESTED_ADDRESS)
        requested = None if raw is None else int.from_bytes(decode_ip(REQUESTED_ADDRESS, raw), "big")
        table = self._table
        addr = self._choose(client, mac, requested, now)
        if addr is None and table.due(now):
            self.tick(now)  # leases ran out since the last tick: reclaim them before giving up
            addr = self._choose(client, mac, requested, now)
        if addr is None:
            self._counters["no_address"] += 1
            if not table.exhausted:
                table.exhausted = True
                self._counters["pool_exhausted"] += 1
                self._emit(PoolExhausted(now, self._pool.size))
            return []
        old = self._by_client.get(client)
        if old is not None and old != addr and not table.drop_client_record(old, client, now):
            return []
        hostname, fqdn = self._names(msg, mac)
        current = self._leases.get(addr)
        if current is not None and current.state == BOUND and current.client == client:
            # Its own client, rebooted: offer the binding, which stays as it is.
            if not table.allow(current, "offer", BOUND, client):
                return []
            lease = current
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
            if not self._put(lease, "offer", client):
                return []
        self._emit(LeaseOffered(lease))
        return [self._reply(msg, OFFER, addr.to_bytes(4, "big"), lease_time=True, durable=False)]

    def _request(self, msg: DhcpMessage, client: ClientKey, mac: bytes, now: float) -> list[Reply]:
        options = msg.options
        raw_server = options.get(SERVER_ID)
        raw_requested = options.get(REQUESTED_ADDRESS)
        ciaddr = int.from_bytes(msg.ciaddr, "big")
        replies = self._replies
        if raw_server is not None:
            # SELECTING: the client chose a server among the offers (RFC 2131 §4.3.2).
            if decode_ip(SERVER_ID, raw_server) != self._server_ip:
                self._counters["request_other_server"] += 1
                self._table.withdraw_offer(client, now)
                return []
            if raw_requested is not None:
                addr = int.from_bytes(decode_ip(REQUESTED_ADDRESS, raw_requested), "big")
            elif ciaddr:
                addr = ciaddr
            else:
                self._counters["drop_bad_request"] += 1
                return []
            if self._available(addr, client, mac, now) and self._preferred(addr, client, mac, now):
                return self._bind(msg, client, mac, addr, now)
            self._table.withdraw_offer(client, now)
            return [replies.nak(msg)]
        if ciaddr:
            addr = ciaddr  # RENEWING (unicast) or REBINDING (broadcast)
        elif raw_requested is not None:
            addr = int.from_bytes(decode_ip(REQUESTED_ADDRESS, raw_requested), "big")  # INIT-REBOOT
        else:
            self._counters["drop_bad_request"] += 1
            return []
        if not self._in_subnet(addr):
            return [replies.nak(msg)]  # wrong network: NAK whatever the mode (RFC 2131 §4.3.2)
        lease = self._current(addr, now)
        if lease is not None and lease.client == client and lease.state != DECLINED:
            if self._available(addr, client, mac, now) and self._preferred(addr, client, mac, now):
                return self._bind(msg, client, mac, addr, now)
            return [replies.nak(msg)]
        if lease is not None and lease.state in HOLDING:
            return [replies.nak(msg)]  # another client's
        if self._reserved_addr.get(addr, mac) != mac:
            return [replies.nak(msg)]
        if self._config.authoritative:
            return [replies.nak(msg)]
        self._counters["silent_not_authoritative"] += 1
        return []

    def _preferred(self, addr: int, client: ClientKey, mac: bytes, now: float) -> bool:
        """False when the client's MAC has a usable reservation elsewhere: NAK moves it there."""
        if mac not in self._reserved_mac:
            return True
        reserved = self._reserved_for(mac, client, now)
        return reserved is None or reserved == addr

    def _bind(self, msg: DhcpMessage, client: ClientKey, mac: bytes, addr: int, now: float) -> list[Reply]:
        table = self._table
        previous = self._leases.get(addr)
        old = self._by_client.get(client)
        if old is not None and old != addr and not table.drop_client_record(old, client, now):
            return []
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
        if not self._put(lease, "ack", client):
            return []
        self._store.record(lease)
        if renewed:
            self._counters["leases_renewed"] += 1
            self._emit(LeaseRenewed(lease))
        else:
            self._counters["leases_granted"] += 1
            self._emit(LeaseGranted(lease))
        return [self._reply(msg, ACK, addr.to_bytes(4, "big"), lease_time=True, durable=True)]

    def _decline(self, msg: DhcpMessage, client: ClientKey, now: float) -> None:
        if not self._server_id_ok(msg):
            return
        raw = msg.options.get(REQUESTED_ADDRESS)
        if raw is None:
            self._counters["drop_decline_unknown"] += 1
            return
        addr = int.from_bytes(decode_ip(REQUESTED_ADDRESS, raw), "big")
        lease = self._leases.get(addr)
        if lease is None or lease.client != client or lease.state not in (OFFERED, BOUND):
            self._counters["drop_decline_unknown"] += 1
            return
        until = now + self._config.decline_hold
        quarantined = Lease(lease.address, NO_CLIENT, b"", DECLINED, until, now)
        if not self._put(quarantined, "decline", client):
            return
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
        released = changed(lease, state=RELEASED, expires=now, updated=now)
        if not self._put(released, "release", client):
            return
        self._store.record(released)
        self._counters["leases_released"] += 1
        self._emit(LeaseReleased(released))

    def _inform(self, msg: DhcpMessage, now: float) -> list[Reply]:
        ciaddr = int.from_bytes(msg.ciaddr, "big")
        if msg.giaddr == ZERO and not self._in_subnet(ciaddr):
            self._counters["drop_inform_foreign"] += 1
            return []
        return [self._reply(msg, ACK, ZERO, lease_time=False, durable=False)]

    def _names(self, msg: DhcpMessage, mac: bytes) -> tuple[str | None, str | None]:
        """The sanitised host name (12, else 81's first label; a reservation's wins) and the FQDN."""
        hostname = None
        fqdn = None
        raw = msg.options.get(HOST_NAME)
        if raw is not None:
            try:
                hostname = sanitize_hostname(decode_text(HOST_NAME, raw))
            except MalformedPacket:
                hostname = None
        raw = msg.options.get(CLIENT_FQDN)
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

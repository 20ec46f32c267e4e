"""What the DHCP core works with and reports: lease states, leases, events and replies.

Pure Python, imported by both twins of the server (``server.py`` and its compiled ``_server``), so
their results are instances of the same classes and compare equal. Nothing here does I/O.

Times are wall-clock seconds (POSIX epoch, ``time.time()``), not monotonic: leases outlive the
process in the store, and a restarted server must know which of them are still valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "INFINITE",
    "LEASE_TRANSITIONS",
    "AddressDeclined",
    "ClientKey",
    "Event",
    "Lease",
    "LeaseExpired",
    "LeaseFreed",
    "LeaseGranted",
    "LeaseOffered",
    "LeaseReleased",
    "LeaseRenewed",
    "LeaseState",
    "OfferWithdrawn",
    "PoolExhausted",
    "PoolReplenished",
    "QuarantineEnded",
    "Reply",
]

# RFC 2132 §9.2: a lease time of 0xFFFFFFFF means infinity; such a lease's `expires` is INFINITE.
INFINITE = float("inf")

# The lease key (RFC 2131 §4.2, spec 4.5): ("client-id", option 61) or ("hardware", htype || chaddr),
# as `dataplane.wire.client_id_key` computes it.
ClientKey = tuple[str, bytes]


class LeaseState(IntEnum):
    """State of one address's lease record. The values are stored on disk: never renumber."""

    FREE = 0  # no record: in the pool (or outside it); in the store, "forget this address"
    OFFERED = 1  # held for a client after an OFFER, until `expires` (offer_hold); never stored
    BOUND = 2  # ACKed to a client, until `expires`
    RELEASED = 3  # the client released it: free again, but the client is remembered
    EXPIRED = 4  # the lease ran out: free again, but the client is remembered
    DECLINED = 5  # a client found it in use (DECLINE): quarantined, no client, until `expires`


# Theory of operation: every address of the subnet has at most one lease record, so it can never be
# bound to two clients; every client has at most one OFFERED or BOUND record. A DISCOVER holds an
# address for its client (OFFERED) for `offer_hold` seconds; a REQUEST binds it (BOUND) for the lease
# time and a renewal extends it. A BOUND lease ends by RELEASE, by running out (EXPIRED, reclaimed by
# `tick`), by DECLINE (DECLINED: quarantined for `decline_hold`, then FREE) or by the control plane
# (FREE). RELEASED and EXPIRED addresses are back in the pool but keep their client, so that client
# gets the same address back while nobody else has taken it (RFC 2131 §4.3.1); a new client taking
# the address replaces the record. OFFERED is memory-only: an offer needs no durability, so after a
# crash it is simply gone, and authoritative mode re-grants the address when its REQUEST comes.
#
# (state, trigger) -> next state. The lease table (`.leases.LeaseTable.allow`) reads it before every
# change it makes: a pair not listed, or one leading elsewhere, is refused (the record stays as it
# was) and counted as the server's `refused_transitions`. FREE stands for "no record".
LEASE_TRANSITIONS: dict[tuple[LeaseState, str], LeaseState] = {
    (LeaseState.FREE, "offer"): LeaseState.OFFERED,  # LeaseOffered
    (LeaseState.RELEASED, "offer"): LeaseState.OFFERED,
    (LeaseState.EXPIRED, "offer"): LeaseState.OFFERED,
    (LeaseState.OFFERED, "offer"): LeaseState.OFFERED,  # a retransmitted DISCOVER: hold refreshed
    (LeaseState.BOUND, "offer"): LeaseState.BOUND,  # its own client rebooted: offered, still bound
    (LeaseState.FREE, "ack"): LeaseState.BOUND,  # authoritative re-grant (lost offer or database)
    (LeaseState.OFFERED, "ack"): LeaseState.BOUND,  # LeaseGranted
    (LeaseState.RELEASED, "ack"): LeaseState.BOUND,
    (LeaseState.EXPIRED, "ack"): LeaseState.BOUND,
    (LeaseState.BOUND, "ack"): LeaseState.BOUND,  # LeaseRenewed (renewing, rebinding, init-reboot)
    (LeaseState.OFFERED, "withdraw"): LeaseState.FREE,  # OfferWithdrawn: timed out, other server, NAK
    (LeaseState.OFFERED, "release"): LeaseState.RELEASED,  # LeaseReleased (a client may release an offer)
    (LeaseState.BOUND, "release"): LeaseState.RELEASED,
    (LeaseState.BOUND, "expire"): LeaseState.EXPIRED,  # LeaseExpired
    (LeaseState.OFFERED, "decline"): LeaseState.DECLINED,  # AddressDeclined
    (LeaseState.BOUND, "decline"): LeaseState.DECLINED,
    (LeaseState.DECLINED, "unquarantine"): LeaseState.FREE,  # QuarantineEnded
    (LeaseState.OFFERED, "free"): LeaseState.FREE,  # LeaseFreed: control plane, or a reservation
    (LeaseState.BOUND, "free"): LeaseState.FREE,
    (LeaseState.RELEASED, "free"): LeaseState.FREE,
    (LeaseState.EXPIRED, "free"): LeaseState.FREE,
    (LeaseState.DECLINED, "free"): LeaseState.FREE,
}


@dataclass(slots=True)
class Lease:
    """One address's lease record, as the server keeps it and the store persists it.

    Treated as immutable: the server replaces a record (``dataclasses.replace``), never changes one
    in place, so a lease handed out in an event stays as it was. (Not ``frozen``: a frozen
    dataclass's ``__init__`` costs twice as much, and restoring 100k leases builds 100k of them.)

    ``client`` is the lease key (option 61, else htype + chaddr); ``mac`` the hardware address from
    ``chaddr`` (what reservations match). ``expires`` is when the offer, the lease or the quarantine
    ends (:data:`INFINITE` for an infinite lease); ``updated`` when the server last decided on it,
    which orders records of one client after a crash. A DECLINED record has no client (``b""`` key).
    """

    address: str
    client: ClientKey
    mac: bytes
    state: LeaseState
    expires: float
    updated: float = 0.0
    hostname: str | None = None  # sanitised option 12 (or the first label of option 81)
    fqdn: str | None = None  # option 81 name as sent (RFC 4702)
    lease_time: int = 0  # seconds granted in the last ACK (option 51)

    def active(self, now: float) -> bool:
        """Does this record still hold its address (an OFFERED, BOUND or DECLINED one not ended)?"""
        return self.state in _HOLDING and self.expires > now


_HOLDING = frozenset((LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED))


@dataclass(frozen=True, slots=True)
class Reply:
    """One UDP datagram to send (RFC 2131 §4.1 addressing, spec 4.3), from ``src_port``.

    ``dst_mac`` is ``chaddr`` for a unicast to ``yiaddr`` (the client cannot answer ARP for an
    address it does not have yet; the engine builds the frame itself), ``ff:ff:ff:ff:ff:ff`` for
    255.255.255.255, and None where the route and ARP decide (a relay's ``giaddr``, a ``ciaddr``).
    ``durable`` marks a reply that may leave only after ``store.commit()`` returned (an ACK that
    binds or extends a lease); OFFER, NAK and ACK to INFORM need no durability.
    """

    payload: bytes
    dst_ip: str
    dst_port: int
    dst_mac: bytes | None
    src_port: int = 67
    durable: bool = False
    message_type: int = 0  # option 53 of the reply (2 OFFER, 5 ACK, 6 NAK)


@dataclass(frozen=True, slots=True)
class LeaseOffered:
    lease: Lease


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    """A client got (or got back) an address: the first ACK of a binding."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class LeaseRenewed:
    """An ACK extended a binding the client already had (renewing, rebinding, init-reboot)."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    lease: Lease


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    lease: Lease


@dataclass(frozen=True, slots=True)
class LeaseFreed:
    """The control plane freed the lease (``free_lease``), or a reservation took its address."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """An offer ended unused: it timed out, or the client chose another server."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class AddressDeclined:
    """A client reported ``address`` in use (DECLINE): quarantined until ``until``."""

    address: str
    client: ClientKey
    until: float


@dataclass(frozen=True, slots=True)
class QuarantineEnded:
    address: str


@dataclass(frozen=True, slots=True)
class PoolExhausted:
    """A DISCOVER found no address to offer. Reported once, until an address is free again."""

    at: float
    size: int


@dataclass(frozen=True, slots=True)
class PoolReplenished:
    """An address became free after :class:`PoolExhausted`; the next exhaustion is reported again."""

    at: float
    free: int


Event = (
    LeaseOffered
    | LeaseGranted
    | LeaseRenewed
    | LeaseReleased
    | LeaseExpired
    | LeaseFreed
    | OfferWithdrawn
    | AddressDeclined
    | QuarantineEnded
    | PoolExhausted
    | PoolReplenished
)

"""What the VTEP core reports: drop reasons, FDB entry states, events and its send result.

Pure Python, imported by both twins (``vtep.py`` and ``_vtep.pyx``), so their results are instances
of the same classes and compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "FDB_TRANSITIONS",
    "FDB_TRIGGERS",
    "Drop",
    "EntryState",
    "Event",
    "FdbEntry",
    "MacAged",
    "MacEvicted",
    "MacFlushed",
    "MacLearned",
    "MacMoved",
    "PeerAdded",
    "PeerRemoved",
    "PeersChanged",
    "Transmit",
]


class Drop(IntEnum):
    """Why a frame was dropped; the values are the codes ``c_receive``/``c_send`` return."""

    SHORT = 1  # receive: under 8 + 14 bytes (VXLAN header, inner Ethernet header); send: under 14
    NO_I_FLAG = 2  # VXLAN I flag (0x08) clear: RFC 7348 §5 says discard
    WRONG_VNI = 3  # another VXLAN network's traffic (RFC 7348 §5)
    NOT_A_PEER = 4  # outer source is not a current peer, and peers_only is set (spec 2.6.6)
    INNER_VLAN = 5  # inner 802.1Q / 802.1ad frame (RFC 7348 §6.1, spec 2.5)
    BAD_SOURCE_MAC = 6  # inner source MAC is multicast, broadcast or all-zeros: not a station
    TOO_BIG = 7  # send: inner frame longer than mtu + 14; VTEPs must not fragment (RFC 7348 §4.3)
    NO_PEERS = 8  # send: a frame to flood, and nobody to flood it to
    LOOPED = 9  # receive: outer source is our own VTEP address (a reflected packet)
    STATIC_CONFLICT = 10  # inner source MAC is pinned by a static entry to another VTEP


class EntryState(IntEnum):
    """State of one MAC in the forwarding database (the C twin stores these values)."""

    ABSENT = 0
    LEARNED = 1
    STATIC = 2


# Theory of operation: an FDB entry is created by learning (a decapsulated frame's inner source MAC
# bound to the outer source address) or by configuration (a static entry). A learned entry follows
# its MAC when it appears behind another VTEP (a move), and goes when it is not seen for `ageing`
# seconds, is evicted as the least recently seen entry of a full table, or its VTEP stops being a
# peer (spec 2.6.5). A static entry is only ever removed by configuration; learning never moves it:
# a frame whose source MAC is statically bound to another VTEP is dropped (STATIC_CONFLICT), as the
# kernel's vxlan_snoop() does for NUD_NOARP entries.
#
# (state, trigger) -> next state. The VTEP's code that changes an entry's state asks this table
# first (both twins; the compiled one through a C array made from it at import): a pair not listed
# is refused, leaving the entry as it is, and counted (fdb_transitions_refused). A refreshed learned
# entry (the per-frame case) keeps its state and is not looked up.
FDB_TRIGGERS = ("learn", "expire", "evict", "flush", "add_static", "remove_static")
FDB_TRANSITIONS: dict[tuple[EntryState, str], EntryState] = {
    (EntryState.ABSENT, "learn"): EntryState.LEARNED,  # MacLearned (may evict another: MacEvicted)
    (EntryState.LEARNED, "learn"): EntryState.LEARNED,  # refreshed, or MacMoved
    (EntryState.LEARNED, "expire"): EntryState.ABSENT,  # MacAged
    (EntryState.LEARNED, "evict"): EntryState.ABSENT,  # MacEvicted
    (EntryState.LEARNED, "flush"): EntryState.ABSENT,  # MacFlushed (its peer was removed)
    (EntryState.ABSENT, "add_static"): EntryState.STATIC,
    (EntryState.LEARNED, "add_static"): EntryState.STATIC,
    (EntryState.STATIC, "add_static"): EntryState.STATIC,
    (EntryState.STATIC, "remove_static"): EntryState.ABSENT,
}


@dataclass(frozen=True, slots=True)
class PeersChanged:
    """One discovery source's list changed (spec 2.6.1): what it added and removed, in address order.

    Returned by ``set_peers``/``remove_source``; an address another source still lists stays a peer.
    """

    source: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerAdded:
    """``address`` became a peer (the first source listed it)."""

    address: str


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    """``address`` stopped being a peer (no source lists it any more)."""

    address: str


@dataclass(frozen=True, slots=True)
class MacLearned:
    mac: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class MacMoved:
    """``mac`` reappeared behind another VTEP (RFC 7348 §4.1: learning follows the latest source)."""

    mac: bytes
    old_peer: str
    new_peer: str


@dataclass(frozen=True, slots=True)
class MacAged:
    """Not seen for ``ageing`` seconds; removed by ``expire``."""

    mac: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class MacEvicted:
    """Removed, least recently seen, to make room in a full table."""

    mac: bytes
    peer: str


@dataclass(frozen=True, slots=True)
class MacFlushed:
    """Removed because ``peer`` stopped being a peer (spec 2.6.5)."""

    mac: bytes
    peer: str


Event = PeerAdded | PeerRemoved | MacLearned | MacMoved | MacAged | MacEvicted | MacFlushed


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: bytes
    peer: str
    last_seen: float | None  # None: a static entry no frame has come from yet
    static: bool


@dataclass(frozen=True, slots=True)
class Transmit:
    """What ``send`` decided: ``payload`` (VXLAN header + frame) to each address in ``destinations``.

    A dropped frame has an empty payload and no destinations; ``reply`` is then an ICMP
    fragmentation-needed frame to deliver back to the TAP, when one is due.
    """

    payload: bytes
    destinations: tuple[str, ...]
    reply: bytes | None = None

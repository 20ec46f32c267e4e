"""The VXLAN tunnel endpoint (RFC 7348), sans-I/O: the pure-Python twin and the reference.

Theory of operation
-------------------
A :class:`Vtep` joins one VXLAN network (``vni``) at one underlay address (``local``). It owns no
socket and no clock: the I/O layer hands it UDP payloads that arrived (:meth:`Vtep.receive`) and
frames read from the TAP (:meth:`Vtep.send`), each with the current monotonic time, and does with
the results what they say. ``dataplane/overlay/_vtep.pyx`` is the compiled twin: same API, same
results, plus a C-level interface for the data-path pump (``_vtep.pxd``).

* **Receive (decapsulation, RFC 7348 §4.1, §5).** A payload is the 8-byte VXLAN header and the
  inner Ethernet frame. It is dropped, counted by :class:`~.events.Drop` reason, when it is shorter
  than 8 + 14 bytes, the I flag is clear, the VNI is foreign (reserved bits are ignored), it comes
  from our own address, from an address that is not a current peer (``peers_only``, spec 2.6.6),
  carries an inner 802.1Q/802.1ad tag (spec 2.5), has a source MAC that is not a station's
  (multicast, broadcast, all-zeros: never learnt, as the kernel's ``is_valid_ether_addr``), or a
  source MAC statically bound to another VTEP. Otherwise the inner source MAC is learnt behind the
  outer source address and the inner frame is delivered. Completing inner checksums that a kernel
  sender left partial (spec 5.3) is the pump's job, on the batch, not this core's.
* **Send (encapsulation).** A frame to a known unicast MAC goes to that MAC's VTEP; broadcast,
  multicast and unknown unicast go to every peer (head-end replication, spec 2.1). VTEPs must not
  fragment (RFC 7348 §4.3): a frame longer than ``mtu + 14`` is dropped (TOO_BIG) and, when it is an
  IPv4 datagram with DF set, answered with ICMP fragmentation needed (RFC 1191 §4, next-hop MTU =
  ``mtu``) for the TAP, so the sender lowers its path MTU. The outer UDP source port is the I/O
  layer's: :meth:`Vtep.source_port` gives the RFC 7348 §5 flow hash, and the pump picks the send
  socket whose port stripe holds it (``dataplane.io.udp``).
* **Forwarding database.** Inner MAC -> VTEP address, with the entry states and transitions of
  :data:`~.events.FDB_TRANSITIONS`. A learned entry not seen (as a source) for ``ageing`` seconds
  counts as absent at once and is removed, with an event, by :meth:`Vtep.expire`; ``ageing == 0``
  disables ageing (the kernel's meaning). Learned entries are kept in least-recently-seen order, so
  expiry stops at the first live entry and a full table (``fdb_capacity`` entries, static ones
  included) evicts its stalest learned entry. That order is the order of refreshes, so ``now`` must
  not go backwards (pass ``time.monotonic()``).
* **Peers, by difference (spec 2.6.1).** Each discovery source replaces its own list with
  :meth:`Vtep.set_peers`; an address is a peer while at least one source lists it (reference
  counted), so adding or removing one peer never touches the others. When an address stops being a
  peer, the MACs learnt behind it are flushed at once (spec 2.6.5); static entries stay.
* **Events** (past tense, :mod:`.events`) queue until :meth:`Vtep.drain_events`. Those raised by
  frames (learned, moved, evicted) are bounded: beyond ``event_capacity`` undrained events they are
  dropped and counted (``events_dropped``), so a consumer that stops draining cannot grow memory.

Addresses are dotted-quad strings in this API; MACs are 6 bytes.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Iterable

from dataplane.wire import (
    ICMP_ERROR_TYPES,
    VXLAN_FLAG_I,
    VXLAN_HEADER_LENGTH,
    VXLAN_PORT,
    EthernetHeader,
    Frame,
    IPv4Header,
    MalformedPacket,
    encode_frame,
    icmp_frag_needed,
    source_port_for,
    vxlan_header,
)
from dataplane.wire.ethernet import ETHERTYPE_IPV4
from dataplane.wire.ethernet import HEADER_LENGTH as ETHERNET_HEADER_LENGTH
from dataplane.wire.ipv4 import parse_ipv4

from .events import (
    FDB_TRANSITIONS,
    Drop,
    EntryState,
    Event,
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

__all__ = ["ICMP_BURST", "ICMP_RATE", "IMPLEMENTATION", "Vtep"]

IMPLEMENTATION = "python"

MIN_PAYLOAD = VXLAN_HEADER_LENGTH + ETHERNET_HEADER_LENGTH
MIN_MTU = 68  # RFC 791: every IPv4 link carries 68-byte datagrams
MAX_MTU = 65535 - 50 - ETHERNET_HEADER_LENGTH  # the outer IPv4 datagram must fit in 65535 bytes
MAX_FDB_CAPACITY = 1 << 24
MAX_EVENT_CAPACITY = 1 << 24

# Generated ICMP is rate limited (spec 5.4, RFC 1812 §4.3.2.8): a token bucket filled at ICMP_RATE
# per second, holding at most ICMP_BURST. One reply per flow is enough for the sender's PMTU cache.
ICMP_RATE = 100.0
ICMP_BURST = 10.0
_ICMP_TOS = 0xC0  # precedence "internetwork control", as Linux sends its ICMP errors (icmp_send)
_ICMP_TTL = 64

_ETH_VLAN = (0x8100, 0x88A8)

# Counter names, in the order of the C twin's counter array (drops follow, one per Drop member).
COUNTERS = (
    "rx_frames",  # inner frames delivered, and their bytes
    "rx_bytes",
    "tx_frames",  # inner frames sent (once each, however many copies), and their bytes
    "tx_bytes",
    "tx_datagrams",  # VXLAN datagrams sent: one per destination
    "floods",  # frames sent to every peer (broadcast, multicast, unknown unicast)
    "fdb_learned",
    "fdb_moved",
    "fdb_aged",
    "fdb_evicted",
    "fdb_flushed",
    "fdb_learn_refused",  # a new MAC not learnt: the table is full of static entries
    "frag_needed_sent",
    "frag_needed_rate_limited",
    "events_dropped",
    "fdb_transitions_refused",  # a state change FDB_TRANSITIONS does not list: refused
)
DROP_BASE = 16  # counter index of drop reason r is DROP_BASE + r
COUNTER_SLOTS = DROP_BASE + len(Drop) + 1
DROP_COUNTERS = tuple(f"drop_{reason.name.lower()}" for reason in Drop)

_R_SHORT = int(Drop.SHORT)
_R_NO_I_FLAG = int(Drop.NO_I_FLAG)
_R_WRONG_VNI = int(Drop.WRONG_VNI)
_R_NOT_A_PEER = int(Drop.NOT_A_PEER)
_R_INNER_VLAN = int(Drop.INNER_VLAN)
_R_BAD_SOURCE_MAC = int(Drop.BAD_SOURCE_MAC)
_R_TOO_BIG = int(Drop.TOO_BIG)
_R_NO_PEERS = int(Drop.NO_PEERS)
_R_LOOPED = int(Drop.LOOPED)
_R_STATIC_CONFLICT = int(Drop.STATIC_CONFLICT)

_C_RX_FRAMES, _C_RX_BYTES, _C_TX_FRAMES, _C_TX_BYTES, _C_TX_DATAGRAMS, _C_FLOODS = range(6)
_C_LEARNED, _C_MOVED, _C_AGED, _C_EVICTED, _C_FLUSHED, _C_REFUSED = range(6, 12)
_C_FRAG_SENT, _C_FRAG_LIMITED, _C_EVENTS_DROPPED, _C_TRANSITIONS_REFUSED = range(12, 16)

_ABSENT, _LEARNED, _STATIC = EntryState.ABSENT, EntryState.LEARNED, EntryState.STATIC


# -- argument checks and conversions, shared with the compiled twin -----------------------------


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


@functools.lru_cache(maxsize=4096)
def _parse(text: str, name: str) -> int:
    try:
        return int.from_bytes(parse_ipv4(text), "big")
    except ValueError:
        raise ValueError(f"{name} must be a dotted-quad IPv4 address, not {text!r}") from None


def _address(value: object, name: str) -> int:
    """A dotted-quad string as a host-order integer; ValueError naming ``name`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a dotted-quad IPv4 address string, not {value!r}")
    return _parse(value, name)


def _unicast_address(value: object, name: str) -> int:
    """An address a VTEP can have: not 0.0.0.0/8, loopback, multicast, class E or broadcast."""
    address = _address(value, name)
    first = address >> 24
    if first in {0, 127} or first >= 224:
        raise ValueError(f"{name} must be a unicast IPv4 address, not {value!r}")
    return address


@functools.lru_cache(maxsize=4096)
def _format_address(address: int) -> str:
    return f"{address >> 24}.{address >> 16 & 0xFF}.{address >> 8 & 0xFF}.{address & 0xFF}"


def _mac(value: object, name: str) -> int:
    """A station's MAC (6 bytes, not multicast, not all-zeros) as a 48-bit integer."""
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != 6:
        raise ValueError(f"{name} must be 6 bytes, not {value!r}")
    mac = int.from_bytes(value, "big")
    if mac == 0 or value[0] & 1:
        raise ValueError(f"{name} must be a unicast MAC address, not {bytes(value).hex(':')}")
    return mac


def _mac_bytes(mac: int) -> bytes:
    return mac.to_bytes(6, "big")


def _check_config(  # noqa: PLR0917 - the constructor's arguments, checked in one place
    vni: object,
    local: object,
    port: object,
    mtu: object,
    ageing: object,
    fdb_capacity: object,
    event_capacity: object,
) -> tuple[int, int, int, int, float, int, int]:
    if not isinstance(ageing, int | float) or isinstance(ageing, bool) or not 0 <= ageing < math.inf:
        raise ValueError(f"ageing must be a finite number of seconds >= 0, not {ageing!r}")
    return (
        _check_int("vni", vni, 1, 0xFFFFFF),
        _unicast_address(local, "local"),
        _check_int("port", port, 1, 65535),
        _check_int("mtu", mtu, MIN_MTU, MAX_MTU),
        float(ageing),
        _check_int("fdb_capacity", fdb_capacity, 1, MAX_FDB_CAPACITY),
        _check_int("event_capacity", event_capacity, 0, MAX_EVENT_CAPACITY),
    )


def _peer_set(addresses: Iterable[str], local: int) -> frozenset[int]:
    if isinstance(addresses, str | bytes):
        raise ValueError(f"addresses must be an iterable of address strings, not {addresses!r}")
    found = {_unicast_address(a, "addresses") for a in addresses}
    found.discard(local)  # the local address is never a peer
    return frozenset(found)


def _apply_source(
    sources: dict[str, frozenset[int]], refs: dict[int, int], source: str, new: frozenset[int] | None
) -> tuple[PeersChanged | None, list[int], list[int]]:
    """Replace ``source``'s list with ``new`` (None: forget the source), reference counting.

    Returns the per-source change and the addresses that became and stopped being peers, each in
    address order. Both twins keep their peer tables with this, so they cannot disagree.
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a string, not {source!r}")
    old = sources.get(source, frozenset())
    if new is None:
        sources.pop(source, None)
        new = frozenset()
    else:
        sources[source] = new
    added = sorted(new - old)
    removed = sorted(old - new)
    up: list[int] = []
    down: list[int] = []
    for address in added:
        count = refs.get(address, 0) + 1
        refs[address] = count
        if count == 1:
            up.append(address)
    for address in removed:
        count = refs[address] - 1
        if count:
            refs[address] = count
        else:
            del refs[address]
            down.append(address)
    if not added and not removed:
        return None, up, down
    event = PeersChanged(source, tuple(map(_format_address, added)), tuple(map(_format_address, removed)))
    return event, up, down


def _peers_by_source(sources: dict[str, frozenset[int]]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(map(_format_address, sorted(peers))) for name, peers in sorted(sources.items())}


def _frag_needed_due(frame: bytes | bytearray | memoryview, n: int) -> bool:
    """May an oversized ``frame`` be answered with fragmentation needed (RFC 1812 §4.3.2.7)?

    Only an IPv4 datagram with DF set, as the first (or only) fragment, sent to a unicast MAC and
    IPv4 address from a unicast address, and not itself an ICMP error.
    """
    if n < ETHERNET_HEADER_LENGTH + 20 or frame[0] & 1 or (frame[12] << 8 | frame[13]) != ETHERTYPE_IPV4:
        return False
    vihl = frame[14]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or n < ETHERNET_HEADER_LENGTH + ihl:
        return False
    flags = frame[20] << 8 | frame[21]
    if not flags & 0x4000 or flags & 0x1FFF:
        return False
    source = frame[26]
    if source in {0, 127} or source >= 224 or frame[30] >= 224:
        return False
    if frame[23] == 1:  # ICMP: never an error about an error (RFC 1812 §4.3.2.7)
        l4 = ETHERNET_HEADER_LENGTH + ihl
        if n <= l4 or frame[l4] in ICMP_ERROR_TYPES:
            return False
    return True


def _frag_needed_reply(frame: bytes, mtu: int) -> bytes | None:
    """The Ethernet/IPv4/ICMP 3/4 frame answering oversized ``frame``; None if it cannot be quoted.

    Addressing: back to the datagram's sender, with the Ethernet addresses swapped and the IPv4
    source set to the datagram's destination. A VTEP has no address on the overlay, and the sender
    keys its PMTU cache on the quoted datagram's destination, not on the ICMP source (RFC 1191 §6);
    sent from the destination, the error also passes the sender's reverse-path and stateful
    firewall checks, which would drop it from an unknown source. The quote is as much of the
    datagram as fits in 576 bytes (RFC 1812 §4.3.2.3).
    """
    datagram = frame[ETHERNET_HEADER_LENGTH:]
    try:
        message = icmp_frag_needed(mtu, datagram)
    except MalformedPacket:
        return None
    reply = Frame(
        ethernet=EthernetHeader(dst=frame[6:12], src=frame[0:6]),
        ipv4=IPv4Header(tos=_ICMP_TOS, ttl=_ICMP_TTL, protocol=1, src=frame[30:34], dst=frame[26:30]),
        icmp=message,
    )
    return encode_frame(reply)


def _counter_dict(counters: list[int], fdb_size: int, fdb_static: int, peers: int) -> dict[str, int]:
    out = dict(zip(COUNTERS, counters, strict=False))
    for reason, name in zip(Drop, DROP_COUNTERS, strict=True):
        out[name] = counters[DROP_BASE + reason]
    out["fdb_size"] = fdb_size
    out["fdb_static"] = fdb_static
    out["peers"] = peers
    return out


class _Entry:
    """A forwarding-database entry: the VTEP behind a MAC, and when a frame last came from it."""

    __slots__ = ("peer", "seen")

    def __init__(self, peer: int, seen: float) -> None:
        self.peer = peer
        self.seen = seen


class Vtep:
    """One VXLAN tunnel endpoint: VNI filter, FDB with learning and ageing, head-end replication.

    See the module docstring. ``port`` is recorded for the I/O layer; the core never binds it.
    """

    def __init__(
        self,
        vni: int,
        local: str,
        *,
        port: int = VXLAN_PORT,
        mtu: int = 1450,
        ageing: float = 300.0,
        learning: bool = True,
        peers_only: bool = True,
        fdb_capacity: int = 65536,
        event_capacity: int = 16384,
    ) -> None:
        (
            self._vni,
            self._local,
            self._port,
            self._mtu,
            self._ageing,
            self._capacity,
            self._event_capacity,
        ) = _check_config(vni, local, port, mtu, ageing, fdb_capacity, event_capacity)
        self._learning = bool(learning)
        self._peers_only = bool(peers_only)
        self._header = vxlan_header(self._vni)
        self._last_drop = 0
        # mac -> entry, least recently seen first
        self._learned: OrderedDict[int, _Entry] = OrderedDict()
        # mac -> entry; seen is -inf until a frame comes from the MAC
        self._static: dict[int, _Entry] = {}
        self._sources: dict[str, frozenset[int]] = {}
        self._refs: dict[int, int] = {}
        self._peers: tuple[int, ...] = ()
        self._events: list[Event] = []
        self._counters = [0] * COUNTER_SLOTS
        self._tokens = ICMP_BURST
        self._token_time = -math.inf

    # -- configuration ------------------------------------------------------------------------

    @property
    def vni(self) -> int:
        return self._vni

    @property
    def local(self) -> str:
        return _format_address(self._local)

    @property
    def port(self) -> int:
        return self._port

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def ageing(self) -> float:
        return self._ageing

    @property
    def learning(self) -> bool:
        return self._learning

    @property
    def peers_only(self) -> bool:
        return self._peers_only

    @property
    def fdb_capacity(self) -> int:
        return self._capacity

    @property
    def header(self) -> bytes:
        """The 8-byte VXLAN header this VTEP sends: I flag and VNI, reserved bits 0 (RFC 7348 §5)."""
        return self._header

    @property
    def last_drop(self) -> int:
        """The :class:`~.events.Drop` reason of the last receive or send, 0 when it went through."""
        return self._last_drop

    # -- receive ------------------------------------------------------------------------------

    def receive(self, payload: bytes | bytearray | memoryview, src: str, now: float) -> bytes | None:
        """Decapsulate ``payload`` (VXLAN header + inner frame) from underlay address ``src``.

        Returns the inner frame to deliver to the TAP, or None when dropped (counted).
        """
        if self._decide(payload, len(payload), _address(src, "src"), now):
            return None
        return bytes(payload[VXLAN_HEADER_LENGTH:])

    def _drop(self, reason: int) -> int:
        self._counters[DROP_BASE + reason] += 1
        self._last_drop = reason
        return reason

    def _decide(self, p: bytes | bytearray | memoryview, n: int, src: int, now: float) -> int:
        if n < MIN_PAYLOAD:
            return self._drop(_R_SHORT)
        if not p[0] & VXLAN_FLAG_I:
            return self._drop(_R_NO_I_FLAG)
        if (p[4] << 16 | p[5] << 8 | p[6]) != self._vni:
            return self._drop(_R_WRONG_VNI)
        if src == self._local:
            return self._drop(_R_LOOPED)
        if self._peers_only and src not in self._refs:
            return self._drop(_R_NOT_A_PEER)
        if (p[20] << 8 | p[21]) in _ETH_VLAN:
            return self._drop(_R_INNER_VLAN)
        mac = int.from_bytes(p[14:20], "big")
        if mac == 0 or p[14] & 1:
            return self._drop(_R_BAD_SOURCE_MAC)
        pinned = self._static.get(mac)
        if pinned is not None:
            if pinned.peer != src:
                return self._drop(_R_STATIC_CONFLICT)
            pinned.seen = now
        elif self._learning:
            self._learn(mac, src, now)
        counters = self._counters
        counters[_C_RX_FRAMES] += 1
        counters[_C_RX_BYTES] += n - VXLAN_HEADER_LENGTH
        self._last_drop = 0
        return 0

    def _learn(self, mac: int, src: int, now: float) -> None:
        entry = self._learned.get(mac)
        if entry is not None:
            old = entry.peer
            if old != src:
                entry.peer = src
                self._counters[_C_MOVED] += 1
                self._data_event(MacMoved(_mac_bytes(mac), _format_address(old), _format_address(src)))
            entry.seen = now
            self._learned.move_to_end(mac)
            return
        if not self._may(_ABSENT, "learn"):
            return
        if len(self._learned) + len(self._static) >= self._capacity and not self._evict():
            self._counters[_C_REFUSED] += 1
            return
        self._learned[mac] = _Entry(src, now)
        self._counters[_C_LEARNED] += 1
        self._data_event(MacLearned(_mac_bytes(mac), _format_address(src)))

    def _evict(self) -> bool:
        """Remove the least recently seen learned entry; False when there is none."""
        if not self._learned or not self._may(_LEARNED, "evict"):
            return False
        mac, entry = self._learned.popitem(last=False)
        self._counters[_C_EVICTED] += 1
        self._data_event(MacEvicted(_mac_bytes(mac), _format_address(entry.peer)))
        return True

    def _may(self, state: EntryState, trigger: str) -> bool:
        """Does :data:`~.events.FDB_TRANSITIONS` list ``trigger`` from ``state``? Else count a refusal."""
        if (state, trigger) in FDB_TRANSITIONS:
            return True
        self._counters[_C_TRANSITIONS_REFUSED] += 1
        return False

    def _data_event(self, event: Event) -> None:
        if len(self._events) >= self._event_capacity:
            self._counters[_C_EVENTS_DROPPED] += 1
        else:
            self._events.append(event)

    # -- send ---------------------------------------------------------------------------------

    def send(self, frame: bytes | bytearray | memoryview, now: float) -> Transmit:
        """Encapsulate ``frame`` (an Ethernet frame from the TAP, no FCS) for its destinations."""
        destinations = self._route(frame, len(frame), now)
        if not destinations:
            reply = self._frag_needed(frame, len(frame), now) if self._last_drop == _R_TOO_BIG else None
            return Transmit(b"", (), reply)
        return Transmit(self._header + bytes(frame), tuple(map(_format_address, destinations)), None)

    def _route(self, frame: bytes | bytearray | memoryview, n: int, now: float) -> tuple[int, ...]:
        if n < ETHERNET_HEADER_LENGTH:
            self._drop(_R_SHORT)
            return ()
        if n > self._mtu + ETHERNET_HEADER_LENGTH:
            self._drop(_R_TOO_BIG)
            return ()
        counters = self._counters
        if not frame[0] & 1:
            peer = self._lookup(int.from_bytes(frame[0:6], "big"), now)
            if peer >= 0:
                counters[_C_TX_FRAMES] += 1
                counters[_C_TX_BYTES] += n
                counters[_C_TX_DATAGRAMS] += 1
                self._last_drop = 0
                return (peer,)
        peers = self._peers
        if not peers:
            self._drop(_R_NO_PEERS)
            return ()
        counters[_C_FLOODS] += 1
        counters[_C_TX_FRAMES] += 1
        counters[_C_TX_BYTES] += n
        counters[_C_TX_DATAGRAMS] += len(peers)
        self._last_drop = 0
        return peers

    def _lookup(self, mac: int, now: float) -> int:
        pinned = self._static.get(mac)
        if pinned is not None:
            return pinned.peer
        entry = self._learned.get(mac)
        if entry is None or (self._ageing > 0 and now - entry.seen >= self._ageing):
            return -1
        return entry.peer

    def _frag_needed(self, frame: bytes | bytearray | memoryview, n: int, now: float) -> bytes | None:
        if n <= self._mtu + ETHERNET_HEADER_LENGTH or not _frag_needed_due(frame, n):
            return None
        elapsed = now - self._token_time
        if elapsed > 0:
            self._tokens = min(ICMP_BURST, self._tokens + elapsed * ICMP_RATE)
            self._token_time = now
        if self._tokens < 1.0:
            self._counters[_C_FRAG_LIMITED] += 1
            return None
        self._tokens -= 1.0
        reply = _frag_needed_reply(bytes(frame), self._mtu)
        if reply is not None:
            self._counters[_C_FRAG_SENT] += 1
        return reply

    def source_port(self, frame: bytes | bytearray | memoryview) -> int:
        """The outer UDP source port RFC 7348 §5 asks for: a flow hash of ``frame``, in 49152-65535.

        (``dataplane.wire.vxlan.source_port_for``; the pump sends each flow through the pool socket
        of its stripe, ``dataplane.pump.tunnel.source_slot``.)
        """
        return source_port_for(frame)

    # -- peers --------------------------------------------------------------------------------

    @property
    def peers(self) -> tuple[str, ...]:
        """Current peers, in address order."""
        return tuple(map(_format_address, self._peers))

    def peers_by_source(self) -> dict[str, tuple[str, ...]]:
        """Each source's last list (local address excluded), in address order."""
        return _peers_by_source(self._sources)

    def set_peers(self, source: str, addresses: Iterable[str]) -> PeersChanged | None:
        """Replace ``source``'s peer list with ``addresses``; None when that changes nothing.

        The whole list is checked before anything changes (ValueError naming ``addresses``).
        """
        return self._update(source, _peer_set(addresses, self._local))

    def remove_source(self, source: str) -> PeersChanged | None:
        """Forget ``source`` and its list, as if it had sent an empty one."""
        return self._update(source, None)

    def _update(self, source: str, new: frozenset[int] | None) -> PeersChanged | None:
        change, up, down = _apply_source(self._sources, self._refs, source, new)
        if up or down:
            self._peers = tuple(sorted(self._refs))
        for address in down:
            self._events.append(PeerRemoved(_format_address(address)))
            self._flush(address)
        for address in up:
            self._events.append(PeerAdded(_format_address(address)))
        return change

    def _flush(self, peer: int) -> None:
        name = _format_address(peer)
        for mac, entry in list(self._learned.items()):
            if entry.peer == peer and self._may(_LEARNED, "flush"):
                del self._learned[mac]
                self._counters[_C_FLUSHED] += 1
                self._events.append(MacFlushed(_mac_bytes(mac), name))

    # -- forwarding database ------------------------------------------------------------------

    def add_static(self, mac: bytes, peer: str) -> None:
        """Bind ``mac`` to VTEP ``peer`` for good: never aged, never moved by learning.

        A learned entry for ``mac`` becomes static. A full table evicts its stalest learned entry;
        ValueError when every entry is static already.
        """
        key = _mac(mac, "mac")
        address = _unicast_address(peer, "peer")
        if address == self._local:
            raise ValueError(f"peer must not be the local address {peer!r}")
        pinned = self._static.get(key)
        state = _STATIC if pinned is not None else _LEARNED if key in self._learned else _ABSENT
        if not self._may(state, "add_static"):
            return
        if pinned is not None:
            pinned.peer = address
            return
        full = len(self._learned) + len(self._static) >= self._capacity
        if self._learned.pop(key, None) is None and full and not self._evict():
            raise ValueError(f"the FDB holds fdb_capacity={self._capacity} static entries")
        self._static[key] = _Entry(address, -math.inf)

    def remove_static(self, mac: bytes) -> bool:
        """Remove the static entry for ``mac``; False when there is none."""
        key = _mac(mac, "mac")
        if not self._may(self._state(key), "remove_static"):
            return False
        del self._static[key]
        return True

    def lookup(self, mac: bytes, now: float) -> str | None:
        """The VTEP a frame to ``mac`` goes to at ``now``; None when it would be flooded."""
        peer = self._lookup(_mac(mac, "mac"), now)
        return None if peer < 0 else _format_address(peer)

    def expire(self, now: float) -> list[MacAged]:
        """Remove learned entries not seen for ``ageing`` seconds; also queued as events."""
        aged: list[MacAged] = []
        if self._ageing <= 0:
            return aged
        learned = self._learned
        while learned:
            mac, entry = next(iter(learned.items()))
            if now - entry.seen < self._ageing or not self._may(_LEARNED, "expire"):
                break
            del learned[mac]
            event = MacAged(_mac_bytes(mac), _format_address(entry.peer))
            aged.append(event)
            self._counters[_C_AGED] += 1
        self._events.extend(aged)
        return aged

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`expire` next has work: the stalest learned entry's expiry; None: never.

        ``now`` is the caller's clock (unused: a deadline does not depend on it). The program driving
        the pump sleeps until a frame or this time instead of polling on a fixed tick.
        """
        if self._ageing <= 0 or not self._learned:
            return None
        return next(iter(self._learned.values())).seen + self._ageing

    def fdb_entries(self) -> list[FdbEntry]:
        """Every entry, expired-but-not-yet-removed ones included, in MAC order."""
        entries = [
            FdbEntry(_mac_bytes(mac), _format_address(e.peer), e.seen, False)
            for mac, e in self._learned.items()
        ]
        entries += [
            FdbEntry(_mac_bytes(mac), _format_address(e.peer), None if e.seen == -math.inf else e.seen, True)
            for mac, e in self._static.items()
        ]
        entries.sort(key=lambda entry: entry.mac)
        return entries

    def entry_state(self, mac: bytes) -> EntryState:
        return self._state(_mac(mac, "mac"))

    def _state(self, key: int) -> EntryState:
        if key in self._static:
            return EntryState.STATIC
        return EntryState.LEARNED if key in self._learned else EntryState.ABSENT

    # -- events and counters ------------------------------------------------------------------

    def drain_events(self) -> list[Event]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def counters(self) -> dict[str, int]:
        return _counter_dict(
            self._counters, len(self._learned) + len(self._static), len(self._static), len(self._peers)
        )

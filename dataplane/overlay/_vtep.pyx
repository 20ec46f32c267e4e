# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The VXLAN tunnel endpoint, compiled twin of ``vtep.py``: same Python API, results and events.

The behaviour is documented (and defined) by ``vtep.py``; argument checks, the peer bookkeeping per
discovery source and the ICMP reply builder are imported from it so that the twins cannot disagree.
What is here is the data path in C, for the pump's ``c_*`` calls (``_vtep.pxd``): the forwarding
database is a pool of entries indexed by an open-addressing hash table keyed by the 48-bit MAC
(linear probing, backward-shift deletion, at most half full), with the learned entries on an
intrusive least-recently-seen list; peers are a sorted uint32 array (binary search on receive,
memcpy on flood); events raised by frames go to a C array until the control path drains them.
No Python object is made or touched per frame.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from dataplane.wire._bytes cimport flow_source_port, rd16, rd32

from dataplane.wire.vxlan import VXLAN_HEADER_LENGTH, vxlan_header

from .events import (
    FDB_TRANSITIONS,
    FDB_TRIGGERS,
    Drop,
    EntryState,
    FdbEntry,
    MacAged,
    MacEvicted,
    MacFlushed,
    MacLearned,
    MacMoved,
    PeerAdded,
    PeerRemoved,
    Transmit,
)
from .vtep import (
    COUNTER_SLOTS,
    COUNTERS,
    DROP_BASE,
    ICMP_BURST,
    ICMP_RATE,
    VXLAN_PORT,
    _apply_source,
    _check_config,
    _counter_dict,
    _format_address,
    _frag_needed_reply,
    _mac,
    _mac_bytes,
    _peer_set,
    _peers_by_source,
    _unicast_address,
    _address,
)

__all__ = ["ICMP_BURST", "ICMP_RATE", "IMPLEMENTATION", "Vtep"]

IMPLEMENTATION = "cython"

cdef enum:
    D_SHORT = 1
    D_NO_I_FLAG = 2
    D_WRONG_VNI = 3
    D_NOT_A_PEER = 4
    D_INNER_VLAN = 5
    D_BAD_SOURCE_MAC = 6
    D_TOO_BIG = 7
    D_NO_PEERS = 8
    D_LOOPED = 9
    D_STATIC_CONFLICT = 10

cdef enum:
    C_RX_FRAMES = 0
    C_RX_BYTES = 1
    C_TX_FRAMES = 2
    C_TX_BYTES = 3
    C_TX_DATAGRAMS = 4
    C_FLOODS = 5
    C_LEARNED = 6
    C_MOVED = 7
    C_AGED = 8
    C_EVICTED = 9
    C_FLUSHED = 10
    C_REFUSED = 11
    C_FRAG_SENT = 12
    C_FRAG_LIMITED = 13
    C_EVENTS_DROPPED = 14
    C_TRANSITIONS_REFUSED = 15
    C_DROP_BASE = 16

cdef enum:
    S_FREE = 0
    S_LEARNED = 1
    S_STATIC = 2

# Triggers of FDB state changes, as indices of events.FDB_TRIGGERS.
cdef enum:
    T_LEARN = 0
    T_EXPIRE = 1
    T_EVICT = 2
    T_FLUSH = 3
    T_ADD_STATIC = 4
    T_REMOVE_STATIC = 5
    T_COUNT = 6

cdef enum:
    E_LEARNED = 1
    E_MOVED = 2
    E_EVICTED = 3

cdef enum:
    ETH = 14
    VXH = 8

assert [(r.name, int(r)) for r in Drop] == [
    ("SHORT", D_SHORT),
    ("NO_I_FLAG", D_NO_I_FLAG),
    ("WRONG_VNI", D_WRONG_VNI),
    ("NOT_A_PEER", D_NOT_A_PEER),
    ("INNER_VLAN", D_INNER_VLAN),
    ("BAD_SOURCE_MAC", D_BAD_SOURCE_MAC),
    ("TOO_BIG", D_TOO_BIG),
    ("NO_PEERS", D_NO_PEERS),
    ("LOOPED", D_LOOPED),
    ("STATIC_CONFLICT", D_STATIC_CONFLICT),
]
assert COUNTERS.index("events_dropped") == C_EVENTS_DROPPED and COUNTERS.index("fdb_learned") == C_LEARNED
assert DROP_BASE == C_DROP_BASE and COUNTER_SLOTS <= VTEP_COUNTER_SLOTS
assert (int(EntryState.LEARNED), int(EntryState.STATIC)) == (S_LEARNED, S_STATIC)
assert COUNTERS.index("fdb_transitions_refused") == C_TRANSITIONS_REFUSED
assert VXH == VXLAN_HEADER_LENGTH
assert FDB_TRIGGERS == ("learn", "expire", "evict", "flush", "add_static", "remove_static")

# events.FDB_TRANSITIONS as a C array, [state][trigger] -> 1 when listed: the one table, read
# without a dict lookup (entry states are the S_* values, S_FREE standing for ABSENT).
cdef uint8_t ALLOWED[3][T_COUNT]
for _state in range(3):
    for _trigger in range(T_COUNT):
        ALLOWED[_state][_trigger] = 0
for (_state, _trigger) in FDB_TRANSITIONS:
    ALLOWED[int(_state)][FDB_TRIGGERS.index(_trigger)] = 1

cdef const uint8_t* EMPTY = <const uint8_t*>""  # stands in for &view[0] of an empty buffer
cdef double RATE = ICMP_RATE
cdef double BURST = ICMP_BURST


cdef inline uint64_t _mac48(const uint8_t* p) noexcept nogil:
    return (<uint64_t>rd16(p) << 32) | rd32(p + 2)


# -- the hash table ---------------------------------------------------------------------------


cdef inline uint32_t _home(Vtep v, uint64_t mac) noexcept nogil:
    # Fibonacci hashing: the top bits of the product mix every bit of the MAC.
    return <uint32_t>((mac * <uint64_t>0x9E3779B97F4A7C15) >> v._shift)


cdef inline int32_t _find(Vtep v, uint64_t mac) noexcept nogil:
    cdef uint32_t i = _home(v, mac)
    cdef int32_t e
    while True:
        e = v._slots[i]
        if e < 0 or v._entries[e].mac == mac:
            return e
        i = (i + 1) & v._mask


cdef inline void _lru_append(Vtep v, int32_t e) noexcept nogil:
    v._entries[e].prev = v._lru_tail
    v._entries[e].next = -1
    if v._lru_tail >= 0:
        v._entries[v._lru_tail].next = e
    else:
        v._lru_head = e
    v._lru_tail = e


cdef inline void _lru_unlink(Vtep v, int32_t e) noexcept nogil:
    cdef int32_t p = v._entries[e].prev
    cdef int32_t n = v._entries[e].next
    if p >= 0:
        v._entries[p].next = n
    else:
        v._lru_head = n
    if n >= 0:
        v._entries[n].prev = p
    else:
        v._lru_tail = p


cdef int32_t _insert(Vtep v, uint64_t mac, uint32_t peer, double seen, uint8_t state) noexcept nogil:
    """Add an entry (the caller has made room: the pool has a free entry)."""
    cdef int32_t e = v._free
    cdef uint32_t i = _home(v, mac)
    v._free = v._entries[e].next
    v._entries[e].mac = mac
    v._entries[e].peer = peer
    v._entries[e].seen = seen
    v._entries[e].state = state
    v._entries[e].prev = -1
    v._entries[e].next = -1
    while v._slots[i] >= 0:
        i = (i + 1) & v._mask
    v._slots[i] = e
    if state == S_LEARNED:
        _lru_append(v, e)
        v._n_learned += 1
    else:
        v._n_static += 1
    return e


cdef void _remove(Vtep v, int32_t e) noexcept nogil:
    """Remove entry ``e``: backward-shift deletion keeps every probe chain unbroken, no tombstones."""
    cdef uint32_t i = _home(v, v._entries[e].mac)
    cdef uint32_t j, k
    cdef int32_t f
    while v._slots[i] != e:
        i = (i + 1) & v._mask
    j = i
    while True:
        j = (j + 1) & v._mask
        f = v._slots[j]
        if f < 0:
            break
        k = _home(v, v._entries[f].mac)
        # f (at j, home k) may fill the hole at i unless k lies cyclically in (i, j].
        if (j > i and (k <= i or k > j)) or (j < i and k <= i and k > j):
            v._slots[i] = f
            i = j
    v._slots[i] = -1
    if v._entries[e].state == S_LEARNED:
        _lru_unlink(v, e)
        v._n_learned -= 1
    else:
        v._n_static -= 1
    v._entries[e].state = S_FREE
    v._entries[e].next = v._free
    v._free = e


# -- the data path ----------------------------------------------------------------------------


cdef inline bint _may(Vtep v, int state, int trigger) noexcept nogil:
    """vtep.Vtep._may: does FDB_TRANSITIONS list ``trigger`` from ``state``? Else count a refusal."""
    if ALLOWED[state][trigger]:
        return True
    v._counters[C_TRANSITIONS_REFUSED] += 1
    return False


cdef inline int _drop(Vtep v, int reason) noexcept nogil:
    v._counters[C_DROP_BASE + reason] += 1
    v.last_drop = reason
    return reason


cdef inline void _event(Vtep v, int kind, uint64_t mac, uint32_t old_peer, uint32_t new_peer) noexcept nogil:
    cdef PendingEvent* slot
    if v._ring_count + v._py_events >= v._event_capacity:
        v._counters[C_EVENTS_DROPPED] += 1
        return
    slot = &v._ring[v._ring_count]
    slot.kind = kind
    slot.mac = mac
    slot.old_peer = old_peer
    slot.new_peer = new_peer
    v._ring_count += 1


cdef bint _evict(Vtep v) noexcept nogil:
    """Remove the least recently seen learned entry; False when there is none."""
    cdef int32_t e = v._lru_head
    if e < 0 or not _may(v, S_LEARNED, T_EVICT):
        return False
    _event(v, E_EVICTED, v._entries[e].mac, v._entries[e].peer, 0)
    _remove(v, e)
    v._counters[C_EVICTED] += 1
    return True


cdef void _learn(Vtep v, int32_t e, uint64_t mac, uint32_t src, double now) noexcept nogil:
    cdef uint32_t old
    if e >= 0:
        old = v._entries[e].peer
        if old != src:
            v._entries[e].peer = src
            v._counters[C_MOVED] += 1
            _event(v, E_MOVED, mac, old, src)
        v._entries[e].seen = now
        if e != v._lru_tail:
            _lru_unlink(v, e)
            _lru_append(v, e)
        return
    if not _may(v, S_FREE, T_LEARN):
        return
    if v._n_learned + v._n_static >= v._capacity and not _evict(v):
        v._counters[C_REFUSED] += 1
        return
    _insert(v, mac, src, now, S_LEARNED)
    v._counters[C_LEARNED] += 1
    _event(v, E_LEARNED, mac, 0, src)


cdef inline bint _is_peer(Vtep v, uint32_t address) noexcept nogil:
    cdef int low = 0
    cdef int high = v._n_peers - 1
    cdef int middle
    cdef uint32_t value
    while low <= high:
        middle = (low + high) >> 1
        value = v._peers[middle]
        if value == address:
            return True
        if value < address:
            low = middle + 1
        else:
            high = middle - 1
    return False


cdef inline int32_t _route(Vtep v, uint64_t mac, double now) noexcept nogil:
    """The entry a frame to ``mac`` goes by, or -1 (flood): static, or learned and not expired."""
    cdef int32_t e = _find(v, mac)
    if e >= 0 and v._entries[e].state == S_LEARNED and v._ageing > 0 and now - v._entries[e].seen >= v._ageing:
        return -1
    return e


cdef bint _frag_due(const uint8_t* f, Py_ssize_t n) noexcept nogil:
    """vtep._frag_needed_due: an IPv4 DF first fragment, unicast both ways, not an ICMP error."""
    cdef int ihl, flags, l4, kind
    if n < ETH + 20 or f[0] & 1 or rd16(f + 12) != 0x0800:
        return False
    ihl = (f[14] & 0x0F) * 4
    if f[14] >> 4 != 4 or ihl < 20 or n < ETH + ihl:
        return False
    flags = rd16(f + 20)
    if not flags & 0x4000 or flags & 0x1FFF:
        return False
    if f[26] == 0 or f[26] == 127 or f[26] >= 224 or f[30] >= 224:
        return False
    if f[23] == 1:
        l4 = ETH + ihl
        if n <= l4:
            return False
        kind = f[l4]
        if kind == 3 or kind == 4 or kind == 5 or kind == 11 or kind == 12:
            return False
    return True


cdef void _release(Vtep v) noexcept:
    free(v._entries)
    free(v._slots)
    free(v._ring)
    free(v._peers)
    free(v._out)
    v._entries = NULL
    v._slots = NULL
    v._ring = NULL
    v._peers = NULL
    v._out = NULL


# -- the control path -------------------------------------------------------------------------


cdef _update(Vtep v, source, new):
    cdef int i, size
    change, up, down = _apply_source(v._sources, v._refs, source, new)
    if up or down:
        addresses = sorted(v._refs)
        size = len(addresses)
        if size > v._peers_alloc:
            _grow(v, size)
        for i in range(size):
            v._peers[i] = addresses[i]
        v._n_peers = size
    _sync(v)
    for address in down:
        _push(v, PeerRemoved(_format_address(address)))
        _flush(v, address)
    for address in up:
        _push(v, PeerAdded(_format_address(address)))
    return change


cdef _grow(Vtep v, int size):
    cdef int alloc = v._peers_alloc
    cdef uint32_t* peers
    cdef uint32_t* out
    while alloc < size:
        alloc *= 2
    peers = <uint32_t*>malloc(alloc * sizeof(uint32_t))
    out = <uint32_t*>malloc(alloc * sizeof(uint32_t))
    if peers == NULL or out == NULL:
        free(peers)
        free(out)
        raise MemoryError("cannot grow the peer table")
    free(v._peers)
    free(v._out)
    v._peers = peers
    v._out = out
    v._peers_alloc = alloc


cdef _flush(Vtep v, uint32_t peer):
    """Remove the MACs learnt behind ``peer`` (spec 2.6.5), least recently seen first."""
    cdef int32_t e = v._lru_head
    cdef int32_t following
    cdef uint64_t mac
    name = _format_address(peer)
    while e >= 0:
        following = v._entries[e].next
        if v._entries[e].peer == peer and _may(v, S_LEARNED, T_FLUSH):
            mac = v._entries[e].mac
            _remove(v, e)
            v._counters[C_FLUSHED] += 1
            _push(v, MacFlushed(_mac_bytes(mac), name))
        e = following


cdef _push(Vtep v, event):
    """Queue a control-path event; the caller has called _sync, so the order is kept."""
    v._events.append(event)
    v._py_events += 1


cdef _sync(Vtep v):
    """Move the events raised by frames into the Python list, oldest first."""
    cdef int i
    cdef PendingEvent* event
    for i in range(v._ring_count):
        event = &v._ring[i]
        mac = _mac_bytes(event.mac)
        if event.kind == E_LEARNED:
            v._events.append(MacLearned(mac, _format_address(event.new_peer)))
        elif event.kind == E_MOVED:
            v._events.append(MacMoved(mac, _format_address(event.old_peer), _format_address(event.new_peer)))
        else:
            v._events.append(MacEvicted(mac, _format_address(event.old_peer)))
    v._py_events += v._ring_count
    v._ring_count = 0


cdef class Vtep:
    """One VXLAN tunnel endpoint (see ``dataplane.overlay.vtep``, the reference)."""

    def __init__(
        self,
        vni,
        local,
        *,
        port=VXLAN_PORT,
        mtu=1450,
        ageing=300.0,
        learning=True,
        peers_only=True,
        fdb_capacity=65536,
        event_capacity=16384,
    ):
        cdef int size, bits, i
        vni, local, port, mtu, ageing, fdb_capacity, event_capacity = _check_config(
            vni, local, port, mtu, ageing, fdb_capacity, event_capacity
        )
        _release(self)
        self._vni = vni
        self._local = local
        self._port = port
        self._mtu = mtu
        self._ageing = ageing
        self._learning = bool(learning)
        self._peers_only = bool(peers_only)
        self._capacity = fdb_capacity
        self._event_capacity = event_capacity
        self._header_bytes = vxlan_header(self._vni)
        memcpy(self._header, PyBytes_AS_STRING(self._header_bytes), 8)
        # At most half full: short probe chains, and every search meets an empty slot.
        bits = 3
        while (1 << bits) < 2 * fdb_capacity:
            bits += 1
        size = 1 << bits
        self._mask = size - 1
        self._shift = 64 - bits
        self._entries = <FdbEntryC*>calloc(fdb_capacity, sizeof(FdbEntryC))
        self._slots = <int32_t*>malloc(size * sizeof(int32_t))
        self._ring = <PendingEvent*>malloc((event_capacity or 1) * sizeof(PendingEvent))
        self._peers_alloc = 16
        self._peers = <uint32_t*>malloc(self._peers_alloc * sizeof(uint32_t))
        self._out = <uint32_t*>malloc(self._peers_alloc * sizeof(uint32_t))
        if not (self._entries and self._slots and self._ring and self._peers and self._out):
            _release(self)
            raise MemoryError("cannot allocate the forwarding database")
        for i in range(size):
            self._slots[i] = -1
        for i in range(fdb_capacity):
            self._entries[i].next = i + 1 if i + 1 < fdb_capacity else -1
        self._free = 0
        self._lru_head = self._lru_tail = -1
        self._n_learned = self._n_static = self._n_peers = 0
        self._ring_count = self._py_events = 0
        for i in range(VTEP_COUNTER_SLOTS):
            self._counters[i] = 0
        self._tokens = BURST
        self._token_time = -INFINITY
        self.last_drop = 0
        self._sources = {}
        self._refs = {}
        self._events = []

    def __dealloc__(self):
        _release(self)

    # -- the C-level interface (_vtep.pxd) ---------------------------------------------------

    cdef int c_receive(self, const uint8_t* p, Py_ssize_t n, uint32_t src, double now) except -1:
        cdef uint64_t mac
        cdef uint32_t ethertype
        cdef int32_t e
        if n < VXH + ETH:
            return _drop(self, D_SHORT)
        if not p[0] & 0x08:
            return _drop(self, D_NO_I_FLAG)
        if ((<uint32_t>p[4] << 16) | (<uint32_t>p[5] << 8) | p[6]) != self._vni:
            return _drop(self, D_WRONG_VNI)
        if src == self._local:
            return _drop(self, D_LOOPED)
        if self._peers_only and not _is_peer(self, src):
            return _drop(self, D_NOT_A_PEER)
        ethertype = rd16(p + 20)
        if ethertype == 0x8100 or ethertype == 0x88A8:
            return _drop(self, D_INNER_VLAN)
        mac = _mac48(p + 14)
        if mac == 0 or p[14] & 1:
            return _drop(self, D_BAD_SOURCE_MAC)
        e = _find(self, mac)
        if e >= 0 and self._entries[e].state == S_STATIC:
            if self._entries[e].peer != src:
                return _drop(self, D_STATIC_CONFLICT)
            self._entries[e].seen = now
        elif self._learning:
            _learn(self, e, mac, src, now)
        self._counters[C_RX_FRAMES] += 1
        self._counters[C_RX_BYTES] += <uint64_t>(n - VXH)
        self.last_drop = 0
        return 0

    cdef int c_send(self, const uint8_t* frame, Py_ssize_t n, double now, uint32_t* out, int max_out) except -1:
        cdef int32_t e
        if n < ETH:
            _drop(self, D_SHORT)
            return 0
        if n > self._mtu + ETH:
            _drop(self, D_TOO_BIG)
            return 0
        if not frame[0] & 1:
            e = _route(self, _mac48(frame), now)
            if e >= 0:
                if max_out < 1:
                    raise ValueError("c_send: out has room for no destination")
                out[0] = self._entries[e].peer
                self._counters[C_TX_FRAMES] += 1
                self._counters[C_TX_BYTES] += <uint64_t>n
                self._counters[C_TX_DATAGRAMS] += 1
                self.last_drop = 0
                return 1
        if self._n_peers == 0:
            _drop(self, D_NO_PEERS)
            return 0
        if max_out < self._n_peers:
            raise ValueError(f"c_send: out has room for {max_out} destinations, {self._n_peers} needed")
        memcpy(out, self._peers, self._n_peers * sizeof(uint32_t))
        self._counters[C_FLOODS] += 1
        self._counters[C_TX_FRAMES] += 1
        self._counters[C_TX_BYTES] += <uint64_t>n
        self._counters[C_TX_DATAGRAMS] += <uint64_t>self._n_peers
        self.last_drop = 0
        return self._n_peers

    cdef void c_header(self, uint8_t* dst) noexcept nogil:
        memcpy(dst, self._header, 8)

    cdef object c_frag_needed(self, const uint8_t* frame, Py_ssize_t n, double now):
        cdef double elapsed, tokens
        if n <= self._mtu + ETH or not _frag_due(frame, n):
            return None
        elapsed = now - self._token_time
        if elapsed > 0:
            tokens = self._tokens + elapsed * RATE
            self._tokens = tokens if tokens < BURST else BURST
            self._token_time = now
        if self._tokens < 1.0:
            self._counters[C_FRAG_LIMITED] += 1
            return None
        self._tokens -= 1.0
        reply = _frag_needed_reply(PyBytes_FromStringAndSize(<const char*>frame, n), self._mtu)
        if reply is not None:
            self._counters[C_FRAG_SENT] += 1
        return reply

    cdef int c_peer_count(self) noexcept:
        return self._n_peers

    cdef int c_source_port(self, const uint8_t* frame, Py_ssize_t n) noexcept nogil:
        return flow_source_port(frame, n)

    # -- configuration -----------------------------------------------------------------------

    @property
    def vni(self):
        return self._vni

    @property
    def local(self):
        return _format_address(self._local)

    @property
    def port(self):
        return self._port

    @property
    def mtu(self):
        return self._mtu

    @property
    def ageing(self):
        return self._ageing

    @property
    def learning(self):
        return bool(self._learning)

    @property
    def peers_only(self):
        return bool(self._peers_only)

    @property
    def fdb_capacity(self):
        return self._capacity

    @property
    def header(self):
        return self._header_bytes

    # -- receive and send ---------------------------------------------------------------------

    def receive(self, payload, src, double now):
        cdef uint32_t source = _address(src, "src")
        cdef const uint8_t[::1] view = payload
        cdef Py_ssize_t n = view.shape[0]
        cdef const uint8_t* p = &view[0] if n else EMPTY
        if self.c_receive(p, n, source, now):
            return None
        return PyBytes_FromStringAndSize(<const char*>p + VXH, n - VXH)

    def send(self, frame, double now):
        cdef const uint8_t[::1] view = frame
        cdef Py_ssize_t n = view.shape[0]
        cdef const uint8_t* p = &view[0] if n else EMPTY
        cdef int count = self.c_send(p, n, now, self._out, self._peers_alloc)
        cdef int i
        cdef bytes payload
        if count == 0:
            reply = self.c_frag_needed(p, n, now) if self.last_drop == D_TOO_BIG else None
            return Transmit(b"", (), reply)
        payload = PyBytes_FromStringAndSize(NULL, n + VXH)
        memcpy(PyBytes_AS_STRING(payload), self._header, VXH)
        memcpy(PyBytes_AS_STRING(payload) + VXH, p, n)
        return Transmit(payload, tuple([_format_address(self._out[i]) for i in range(count)]), None)

    def source_port(self, frame):
        cdef const uint8_t[::1] view = frame
        cdef Py_ssize_t n = view.shape[0]
        cdef const uint8_t* p = &view[0] if n else EMPTY
        return flow_source_port(p, n)

    # -- peers --------------------------------------------------------------------------------

    @property
    def peers(self):
        return tuple([_format_address(self._peers[i]) for i in range(self._n_peers)])

    def peers_by_source(self):
        return _peers_by_source(self._sources)

    def set_peers(self, source, addresses):
        return _update(self, source, _peer_set(addresses, self._local))

    def remove_source(self, source):
        return _update(self, source, None)

    # -- events -------------------------------------------------------------------------------

    def drain_events(self):
        _sync(self)
        events = self._events
        self._events = []
        self._py_events = 0
        return events

    def counters(self):
        return _counter_dict(
            [self._counters[i] for i in range(COUNTER_SLOTS)],
            self._n_learned + self._n_static,
            self._n_static,
            self._n_peers,
        )

    # -- forwarding database ------------------------------------------------------------------

    def add_static(self, mac, peer):
        cdef uint64_t key = _mac(mac, "mac")
        cdef uint32_t address = _unicast_address(peer, "peer")
        cdef int32_t e
        cdef bint full
        if address == self._local:
            raise ValueError(f"peer must not be the local address {peer!r}")
        e = _find(self, key)
        if not _may(self, self._entries[e].state if e >= 0 else S_FREE, T_ADD_STATIC):
            return
        if e >= 0 and self._entries[e].state == S_STATIC:
            self._entries[e].peer = address
            return
        full = self._n_learned + self._n_static >= self._capacity
        if e >= 0:
            _remove(self, e)
        elif full and not _evict(self):
            raise ValueError(f"the FDB holds fdb_capacity={self._capacity} static entries")
        _insert(self, key, address, -INFINITY, S_STATIC)

    def remove_static(self, mac):
        cdef int32_t e = _find(self, _mac(mac, "mac"))
        if not _may(self, self._entries[e].state if e >= 0 else S_FREE, T_REMOVE_STATIC):
            return False
        _remove(self, e)
        return True

    def lookup(self, mac, double now):
        cdef int32_t e = _route(self, _mac(mac, "mac"), now)
        return None if e < 0 else _format_address(self._entries[e].peer)

    def expire(self, double now):
        cdef int32_t e
        aged = []
        _sync(self)
        if self._ageing <= 0:
            return aged
        while self._lru_head >= 0:
            e = self._lru_head
            if now - self._entries[e].seen < self._ageing or not _may(self, S_LEARNED, T_EXPIRE):
                break
            aged.append(MacAged(_mac_bytes(self._entries[e].mac), _format_address(self._entries[e].peer)))
            _remove(self, e)
            self._counters[C_AGED] += 1
        for event in aged:
            _push(self, event)
        return aged

    def next_deadline(self, double now):
        if self._ageing <= 0 or self._lru_head < 0:
            return None
        return self._entries[self._lru_head].seen + self._ageing

    def fdb_entries(self):
        cdef int i
        cdef FdbEntryC* entry
        entries = []
        for i in range(self._capacity):
            entry = &self._entries[i]
            if entry.state == S_LEARNED:
                entries.append(FdbEntry(_mac_bytes(entry.mac), _format_address(entry.peer), entry.seen, False))
            elif entry.state == S_STATIC:
                seen = None if entry.seen == -INFINITY else entry.seen
                entries.append(FdbEntry(_mac_bytes(entry.mac), _format_address(entry.peer), seen, True))
        entries.sort(key=lambda item: item.mac)
        return entries

    def entry_state(self, mac):
        cdef int32_t e = _find(self, _mac(mac, "mac"))
        return EntryState.ABSENT if e < 0 else EntryState(self._entries[e].state)

# cython: language_level=3
# C-level interface of the compiled VTEP: a frame handler (dataplane/pump/_handler.pxd) for the
# tunnel pump, which calls it through FrameHandler's vtable and never names this class.
# The Python-level API is the same as the pure-Python twin dataplane/overlay/vtep.py.
#
# Addresses are IPv4 as uint32 in host order (192.0.2.1 == 0xC0000201).
# None of the c_* methods touches a Python object except c_frag_needed (which builds its reply);
# c_receive and c_send raise only for a caller's bug (c_send: out too small for the destinations).

from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t

from dataplane.pump._handler cimport FrameHandler


cdef enum:
    VTEP_COUNTER_SLOTS = 32  # >= vtep.COUNTER_SLOTS; indices as vtep.COUNTERS, drops at 16 + reason


# One forwarding-database entry, in a pool of fdb_capacity entries; the open-addressing hash table
# holds pool indices. Learned entries are also on a doubly linked list, least recently seen first;
# a free entry's `next` links the free list.
cdef struct FdbEntryC:
    uint64_t mac       # 48-bit MAC, first octet most significant
    double seen        # last time a frame came from it (-inf: a static entry not seen yet)
    uint32_t peer
    int32_t prev
    int32_t next
    uint8_t state      # events.EntryState: 0 free, 1 learned, 2 static


# An event raised on the data path, turned into an events.* object when drained.
cdef struct PendingEvent:
    uint64_t mac
    uint32_t old_peer
    uint32_t new_peer
    int kind           # 1 MacLearned, 2 MacMoved, 3 MacEvicted


cdef class Vtep(FrameHandler):
    # Overrides every c_* method of FrameHandler (dataplane/pump/_handler.pxd), as a VTEP:
    # c_receive checks the VXLAN I flag, the VNI and (when peers_only) that src is a current peer,
    # and learns the inner source MAC -> src; c_send gives one destination for a known unicast MAC,
    # every peer for broadcast/multicast/unknown unicast, and counts a DF IPv4 frame over the MTU
    # as TOO_BIG, which c_frag_needed answers with ICMP fragmentation needed (next-hop MTU = mtu);
    # c_header writes the VXLAN header (I flag, this VNI); c_peer_count is the number of peers;
    # c_source_port is dataplane.wire.vxlan.source_port_for in C.

    # The drop reason of the last c_receive/c_send (0: delivered or sent); readonly from Python.
    cdef readonly int last_drop

    # -- private state (dataplane/overlay/_vtep.pyx) --
    cdef uint32_t _vni
    cdef uint32_t _local
    cdef int _port
    cdef int _mtu
    cdef double _ageing
    cdef bint _learning
    cdef bint _peers_only
    cdef int _capacity
    cdef uint8_t _header[8]
    # FDB: entry pool, hash table of pool indices (-1 empty), LRU list of learned entries
    cdef FdbEntryC* _entries
    cdef int32_t* _slots
    cdef uint32_t _mask
    cdef int _shift
    cdef int32_t _free
    cdef int32_t _lru_head
    cdef int32_t _lru_tail
    cdef int _n_learned
    cdef int _n_static
    # peers in address order (mirrors the reference counts kept in Python dicts), and a scratch
    # destination array of the same size for the Python-level send
    cdef uint32_t* _peers
    cdef uint32_t* _out
    cdef int _n_peers
    cdef int _peers_alloc
    # events: raised by frames into a C array, moved to the Python list on the control path
    cdef PendingEvent* _ring
    cdef int _ring_count
    cdef int _event_capacity
    cdef int _py_events
    cdef uint64_t _counters[VTEP_COUNTER_SLOTS]
    # ICMP rate limit (token bucket)
    cdef double _tokens
    cdef double _token_time
    cdef object _sources
    cdef object _refs
    cdef list _events
    cdef bytes _header_bytes

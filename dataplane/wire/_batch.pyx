# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Batches of frames in one buffer (compiled twin of ``batch.py``; same API, results and errors).

Typed loops over raw pointers into the batch's ``bytearray`` and arrays, without the GIL and without
a Python object per frame. The layout, drop reasons, flow hash and checksum rules are documented in
``batch.py``; the enums and argument checks are imported from it so the twins cannot disagree. The outer UDP
source port is ``vxlan.source_port_for`` of the inner frame, in C in ``_bytes.pxd`` (shared with the VTEP).
"""

import array

from cpython cimport array as carray
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from ._bytes cimport flow_source_port, fold, rd16, rd32, sum16, wr16, wr32

from .batch import (
    VXLAN_OVERHEAD,
    VXLAN_PORT,
    Drop,
    Kind,
    _check_addr,
    _check_array,
    _check_bytes,
    _check_geometry,
    _check_int,
    _check_port,

)

__all__ = [
    "Drop",
    "FrameBatch",
    "Kind",
    "classify",
    "complete_inner_checksums",
    "rewrite_ipv4",
    "rewrite_ipv4_each",
    "vxlan_decap",
    "vxlan_encap",
]

IMPLEMENTATION = "cython"

# Drop reasons and kinds as C constants (values from batch.Drop / batch.Kind).
cdef enum:
    D_TRUNCATED = 1
    D_NOT_IPV4 = 2
    D_BAD_IHL = 3
    D_BAD_LENGTH = 4
    D_BAD_CHECKSUM = 5
    D_FRAGMENT = 6
    D_NOT_UDP = 7
    D_WRONG_PORT = 8
    D_NO_I_FLAG = 9
    D_WRONG_VNI = 10
    D_INNER_VLAN = 11
    D_TOO_BIG = 12
    D_NO_HEADROOM = 13
    D_NO_PEER = 14
    D_OUT_OF_SLOT = 15

cdef enum:
    K_NONE = 0
    K_ARP = 1
    K_IPV4_UDP = 2
    K_IPV4_TCP = 3
    K_IPV4_ICMP = 4
    K_IPV4_OTHER = 5
    K_OTHER = 6

cdef enum:
    OVERHEAD = 50

assert VXLAN_OVERHEAD == OVERHEAD
assert [int(d) for d in Drop][1:] == list(range(D_TRUNCATED, D_OUT_OF_SLOT + 1))
assert int(Kind.OTHER) == K_OTHER


cdef class FrameBatch:
    """Up to ``capacity`` frames in one buffer; see ``batch.py`` for the layout."""

    cdef readonly bytearray data
    cdef readonly object offset, length, status, peer, kind, src_addr, dst_addr, protocol, src_port, dst_port
    cdef readonly Py_ssize_t capacity, slot_size, headroom
    cdef Py_ssize_t _count
    cdef object _pins
    cdef uint8_t* _data
    cdef uint32_t* _offset
    cdef uint32_t* _length
    cdef uint8_t* _status
    cdef uint32_t* _peer
    cdef uint8_t* _kind
    cdef uint32_t* _src
    cdef uint32_t* _dst
    cdef uint8_t* _proto
    cdef uint16_t* _sport
    cdef uint16_t* _dport

    def __init__(self, capacity=256, slot_size=2048, headroom=64):
        capacity, slot_size, headroom = _check_geometry(capacity, slot_size, headroom)
        assert array.array("I").itemsize == 4 and array.array("H").itemsize == 2
        self.capacity = capacity
        self.slot_size = slot_size
        self.headroom = headroom
        self.data = bytearray(capacity * slot_size)
        self.offset = array.array("I", range(headroom, capacity * slot_size, slot_size))
        self.length = array.array("I", bytes(4 * capacity))
        self.status = array.array("B", bytes(capacity))
        self.peer = array.array("I", bytes(4 * capacity))
        self.kind = array.array("B", bytes(capacity))
        self.src_addr = array.array("I", bytes(4 * capacity))
        self.dst_addr = array.array("I", bytes(4 * capacity))
        self.protocol = array.array("B", bytes(capacity))
        self.src_port = array.array("H", bytes(2 * capacity))
        self.dst_port = array.array("H", bytes(2 * capacity))
        # Exported buffers keep every array (and data) from being resized: the pointers stay valid.
        self._pins = tuple(
            memoryview(a)
            for a in (
                self.data, self.offset, self.length, self.status, self.peer, self.kind,
                self.src_addr, self.dst_addr, self.protocol, self.src_port, self.dst_port,
            )
        )
        self._data = <uint8_t*>(<char*>self.data)
        self._offset = <uint32_t*>(<carray.array>self.offset).data.as_uints
        self._length = <uint32_t*>(<carray.array>self.length).data.as_uints
        self._status = <uint8_t*>(<carray.array>self.status).data.as_uchars
        self._peer = <uint32_t*>(<carray.array>self.peer).data.as_uints
        self._kind = <uint8_t*>(<carray.array>self.kind).data.as_uchars
        self._src = <uint32_t*>(<carray.array>self.src_addr).data.as_uints
        self._dst = <uint32_t*>(<carray.array>self.dst_addr).data.as_uints
        self._proto = <uint8_t*>(<carray.array>self.protocol).data.as_uchars
        self._sport = <uint16_t*>(<carray.array>self.src_port).data.as_ushorts
        self._dport = <uint16_t*>(<carray.array>self.dst_port).data.as_ushorts
        self._count = 0

    @property
    def count(self):
        """Frames in use (slots ``0 .. count-1``); the I/O layer sets it after filling the arrays."""
        return self._count

    @count.setter
    def count(self, value):
        self._count = _check_int("count", value, 0, self.capacity)

    def __len__(self):
        return self._count

    def append(self, frame):
        """Copy ``frame`` into the next slot after the headroom; return its index."""
        cdef Py_ssize_t n = len(frame)
        cdef Py_ssize_t room = self.slot_size - self.headroom
        if n > room:
            raise ValueError(f"frame of {n} bytes does not fit a slot ({room} bytes after the headroom)")
        cdef Py_ssize_t i = self._count
        if i >= self.capacity:
            raise ValueError(f"batch is full ({self.capacity} frames)")
        cdef Py_ssize_t off = i * self.slot_size + self.headroom
        if isinstance(frame, bytes):
            memcpy(self._data + off, <const char*>frame, n)
        else:
            self.data[off : off + n] = frame
        self._offset[i] = <uint32_t>off
        self._length[i] = <uint32_t>n
        self._status[i] = 0
        self._peer[i] = 0
        self._kind[i] = 0
        self._count = i + 1
        return i

    def extend(self, frames):
        """:meth:`append` each frame; return the new count."""
        for frame in frames:
            self.append(frame)
        return self._count

    def frame(self, Py_ssize_t i):
        """A copy of frame ``i`` as it is now (after decap, the inner frame)."""
        if not 0 <= i < self._count:
            raise IndexError(f"frame {i} outside 0..{self._count - 1}")
        cdef Py_ssize_t off = self._offset[i]
        return bytes(self.data[off : off + self._length[i]])

    def clear(self):
        """Forget every frame and point each slot's offset back after the headroom."""
        cdef Py_ssize_t i
        self._count = 0
        for i in range(self.capacity):
            self._offset[i] = <uint32_t>(i * self.slot_size + self.headroom)
            self._length[i] = 0
            self._status[i] = 0
            self._peer[i] = 0
            self._kind[i] = 0

    def drop_counts(self):
        """How many of the ``count`` frames carry each drop reason (reasons with none are left out)."""
        cdef Py_ssize_t counts[256]
        cdef Py_ssize_t i
        for i in range(256):
            counts[i] = 0
        for i in range(self._count):
            counts[self._status[i]] += 1
        return {Drop(code): counts[code] for code in range(1, 256) if counts[code]}


cdef inline bint in_slot(FrameBatch b, Py_ssize_t i) noexcept nogil:
    cdef uint64_t base = <uint64_t>i * <uint64_t>b.slot_size
    cdef uint64_t off = b._offset[i]
    return base <= off and off + b._length[i] <= base + <uint64_t>b.slot_size


cdef inline int ipv4_check(const uint8_t* p, uint32_t n, uint32_t* ihl_out, uint32_t* total_out) noexcept nogil:
    """As batch._ipv4: 0 ok, -1 not an IPv4 EtherType, else a drop reason."""
    if n < 14:
        return D_TRUNCATED
    if rd16(p + 12) != 0x0800:
        return -1
    if n < 34:
        return D_TRUNCATED
    cdef uint32_t vihl = p[14]
    if vihl >> 4 != 4:
        return D_NOT_IPV4
    cdef uint32_t ihl = (vihl & 15) * 4
    if ihl < 20:
        return D_BAD_IHL
    if 14 + ihl > n:
        return D_TRUNCATED
    cdef uint32_t total = rd16(p + 16)
    if total < ihl or 14 + total > n:
        return D_BAD_LENGTH
    ihl_out[0] = ihl
    total_out[0] = total
    return 0


cdef inline int l4_check(const uint8_t* p, uint32_t ihl, uint32_t total, uint32_t* where, bint* first) noexcept nogil:
    """As batch._l4: ``where`` is the checksum's offset from ``p``, 0 when not in this fragment."""
    cdef uint32_t proto = p[23]
    where[0] = 0
    first[0] = (rd16(p + 20) & 0x1FFF) == 0
    if not first[0]:
        return 0
    cdef uint32_t need = 8 if proto == 17 else 20
    if total - ihl < need:
        return D_TRUNCATED
    where[0] = 14 + ihl + (6 if proto == 17 else 16)
    return 0


# -- VXLAN -------------------------------------------------------------------------------------------


cdef Py_ssize_t decap_loop(FrameBatch b, uint32_t vni, uint32_t port, bint allow_vlan) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    cdef uint8_t* p
    cdef uint8_t* u
    cdef uint32_t n, ihl = 0, total = 0, ulen, inner, et
    cdef int code
    for i in range(b._count):
        if b._status[i]:
            continue
        if not in_slot(b, i):
            b._status[i] = D_OUT_OF_SLOT
            continue
        p = b._data + b._offset[i]
        n = b._length[i]
        code = ipv4_check(p, n, &ihl, &total)
        if code:
            b._status[i] = D_NOT_IPV4 if code < 0 else code
            continue
        if fold(sum16(p + 14, ihl)) != 0xFFFF:
            b._status[i] = D_BAD_CHECKSUM
            continue
        if rd16(p + 20) & 0x3FFF:
            b._status[i] = D_FRAGMENT
            continue
        if p[23] != 17:
            b._status[i] = D_NOT_UDP
            continue
        if total < ihl + 16:
            b._status[i] = D_TRUNCATED
            continue
        u = p + 14 + ihl
        if rd16(u + 2) != port:
            b._status[i] = D_WRONG_PORT
            continue
        ulen = rd16(u + 4)
        if ulen < 16 or ulen > total - ihl:
            b._status[i] = D_BAD_LENGTH
            continue
        if not (u[8] & 0x08):
            b._status[i] = D_NO_I_FLAG
            continue
        if ((<uint32_t>u[12] << 16) | (<uint32_t>u[13] << 8) | u[14]) != vni:
            b._status[i] = D_WRONG_VNI
            continue
        inner = ulen - 16
        if inner < 14:
            b._status[i] = D_TRUNCATED
            continue
        et = rd16(u + 28)
        if not allow_vlan and (et == 0x8100 or et == 0x88A8):
            b._status[i] = D_INNER_VLAN
            continue
        b._peer[i] = rd32(p + 26)
        b._offset[i] = <uint32_t>((u + 16) - b._data)
        b._length[i] = inner
        done += 1
    return done


def vxlan_decap(FrameBatch batch, vni, port=VXLAN_PORT, *, allow_vlan=False):
    """Strip the outer headers of every good frame carrying ``vni``; return how many were."""
    cdef uint32_t cvni = _check_int("vni", vni, 0, 0xFFFFFF)
    cdef uint32_t cport = _check_int("port", port, 0, 0xFFFF)
    cdef bint vlan = bool(allow_vlan)
    cdef Py_ssize_t done
    with nogil:
        done = decap_loop(batch, cvni, cport, vlan)
    return done


cdef Py_ssize_t encap_loop(
    FrameBatch b, const uint8_t* template, uint32_t fixed, bint has_remote, uint32_t remote, uint32_t mtu
) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    cdef uint8_t* p
    cdef uint8_t* s
    cdef uint32_t n, target, total
    cdef uint64_t base
    for i in range(b._count):
        if b._status[i]:
            continue
        if not in_slot(b, i):
            b._status[i] = D_OUT_OF_SLOT
            continue
        n = b._length[i]
        if n < 14:
            b._status[i] = D_TRUNCATED
            continue
        if n > mtu + 14:
            b._status[i] = D_TOO_BIG
            continue
        base = <uint64_t>i * <uint64_t>b.slot_size
        if b._offset[i] - base < OVERHEAD:
            b._status[i] = D_NO_HEADROOM
            continue
        if has_remote:
            target = remote
        else:
            target = b._peer[i]
            if not target:
                b._status[i] = D_NO_PEER
                continue
        p = b._data + b._offset[i]
        s = p - OVERHEAD
        memcpy(s, template, OVERHEAD)
        total = n + 36
        wr16(s + 16, total)
        wr16(s + 24, ~fold(<uint64_t>fixed + total + (target >> 16) + (target & 0xFFFF)) & 0xFFFF)
        wr32(s + 30, target)
        wr16(s + 34, flow_source_port(p, n))
        wr16(s + 38, n + 16)
        b._offset[i] -= OVERHEAD
        b._length[i] = n + OVERHEAD
        done += 1
    return done


def vxlan_encap(
    FrameBatch batch, local_ip, remote_ip, vni, *, src_mac, dst_mac, port=VXLAN_PORT, ttl=64, mtu=1450
):
    """Prepend Ethernet/IPv4/UDP/VXLAN to every good frame; return how many were encapsulated.

    ``remote_ip`` None sends each frame to its ``peer[i]`` (as recorded by decap or by the FDB).
    """
    local = _check_bytes("local_ip", local_ip, 4)
    remote = _check_addr("remote_ip", remote_ip)
    vni = _check_int("vni", vni, 0, 0xFFFFFF)
    src = _check_bytes("src_mac", src_mac, 6)
    dst = _check_bytes("dst_mac", dst_mac, 6)
    port = _check_int("port", port, 0, 0xFFFF)
    ttl = _check_int("ttl", ttl, 1, 255)
    mtu = _check_int("mtu", mtu, 68, 0xFFFF - VXLAN_OVERHEAD)
    cdef bytes template = (
        dst
        + src
        + b"\x08\x00"
        + bytes((0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, 17, 0, 0))
        + local
        + bytes(4)
        + bytes((0, 0, port >> 8, port & 0xFF, 0, 0, 0, 0, 0x08, 0, 0, 0, vni >> 16, vni >> 8 & 0xFF, vni & 0xFF, 0))
    )
    cdef uint32_t fixed = 0x4500 + 0x4000 + (ttl << 8 | 17) + (local[0] << 8 | local[1]) + (local[2] << 8 | local[3])
    cdef const uint8_t* t = <const uint8_t*><const char*>template
    cdef bint has_remote = remote >= 0
    cdef uint32_t cremote = remote if remote >= 0 else 0
    cdef uint32_t cmtu = mtu
    cdef Py_ssize_t done
    with nogil:
        done = encap_loop(batch, t, fixed, has_remote, cremote, cmtu)
    return done


# -- IPv4 rewrite -------------------------------------------------------------------------------------


cdef inline int rewrite_one(
    FrameBatch b, Py_ssize_t i, bint has_src, uint32_t new_src, bint has_dst, uint32_t new_dst,
    bint has_sport, uint32_t new_sport, bint has_dport, uint32_t new_dport
) noexcept nogil:
    cdef uint8_t* p
    cdef uint32_t ihl = 0, total = 0, where = 0, proto, old, hc, check
    cdef bint first = False
    cdef int code
    cdef uint64_t delta_ip = 0, delta
    cdef uint8_t* l4
    if not in_slot(b, i):
        b._status[i] = D_OUT_OF_SLOT
        return 0
    p = b._data + b._offset[i]
    code = ipv4_check(p, b._length[i], &ihl, &total)
    if code:
        if code > 0:
            b._status[i] = code
        return 0
    proto = p[23]
    if proto != 6 and proto != 17:
        return 0
    code = l4_check(p, ihl, total, &where, &first)
    if code:
        b._status[i] = code
        return 0
    # RFC 1624 eqn. 3 over every changed word at once: HC' = ~(~HC + sum(~m) + sum(m')).
    if has_src:
        old = rd32(p + 26)
        delta_ip += ((~old >> 16) & 0xFFFF) + (~old & 0xFFFF) + (new_src >> 16) + (new_src & 0xFFFF)
        wr32(p + 26, new_src)
    if has_dst:
        old = rd32(p + 30)
        delta_ip += ((~old >> 16) & 0xFFFF) + (~old & 0xFFFF) + (new_dst >> 16) + (new_dst & 0xFFFF)
        wr32(p + 30, new_dst)
    hc = rd16(p + 24)
    wr16(p + 24, ~fold((~hc & 0xFFFF) + delta_ip) & 0xFFFF)
    if not first:
        return 1
    delta = delta_ip
    l4 = p + 14 + ihl
    if has_sport:
        old = rd16(l4)
        delta += (~old & 0xFFFF) + new_sport
        wr16(l4, new_sport)
    if has_dport:
        old = rd16(l4 + 2)
        delta += (~old & 0xFFFF) + new_dport
        wr16(l4 + 2, new_dport)
    check = rd16(p + where)
    if proto == 17 and check == 0:
        return 1
    check = ~fold((~check & 0xFFFF) + delta) & 0xFFFF
    if proto == 17 and check == 0:
        check = 0xFFFF
    wr16(p + where, check)
    return 1


cdef Py_ssize_t rewrite_loop(
    FrameBatch b, bint has_src, uint32_t src, bint has_dst, uint32_t dst,
    bint has_sport, uint32_t sport, bint has_dport, uint32_t dport
) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    for i in range(b._count):
        if not b._status[i]:
            done += rewrite_one(b, i, has_src, src, has_dst, dst, has_sport, sport, has_dport, dport)
    return done


def rewrite_ipv4(FrameBatch batch, *, dst_addr=None, dst_port=None, src_addr=None, src_port=None):
    """Rewrite the given fields of every good IPv4 TCP/UDP frame; return how many matched."""
    new_dst = _check_addr("dst_addr", dst_addr)
    new_src = _check_addr("src_addr", src_addr)
    new_dport = _check_port("dst_port", dst_port)
    new_sport = _check_port("src_port", src_port)
    cdef bint hs = new_src >= 0, hd = new_dst >= 0, hsp = new_sport >= 0, hdp = new_dport >= 0
    cdef uint32_t s = new_src if hs else 0
    cdef uint32_t d = new_dst if hd else 0
    cdef uint32_t sp = new_sport if hsp else 0
    cdef uint32_t dp = new_dport if hdp else 0
    cdef Py_ssize_t done
    with nogil:
        done = rewrite_loop(batch, hs, s, hd, d, hsp, sp, hdp, dp)
    return done


cdef Py_ssize_t rewrite_each_loop(
    FrameBatch b, const uint32_t* srcs, const uint32_t* dsts, const uint16_t* sports, const uint16_t* dports
) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    cdef uint32_t s, d, sp, dp
    for i in range(b._count):
        if b._status[i]:
            continue
        s = srcs[i] if srcs != NULL else 0
        d = dsts[i] if dsts != NULL else 0
        sp = sports[i] if sports != NULL else 0
        dp = dports[i] if dports != NULL else 0
        done += rewrite_one(b, i, s != 0, s, d != 0, d, sp != 0, sp, dp != 0, dp)
    return done


cdef inline uint32_t* uints(object a):
    return NULL if a is None else <uint32_t*>(<carray.array>a).data.as_uints


cdef inline uint16_t* ushorts(object a):
    return NULL if a is None else <uint16_t*>(<carray.array>a).data.as_ushorts


def rewrite_ipv4_each(FrameBatch batch, *, dst_addr=None, dst_port=None, src_addr=None, src_port=None):
    """:func:`rewrite_ipv4` with a value per frame (for NAT): ``array('I')`` addresses, ``array('H')``
    ports, at least ``count`` long; an entry of 0 leaves that field of that frame unchanged."""
    count = batch._count
    dsts = _check_array("dst_addr", dst_addr, "I", count)
    dports = _check_array("dst_port", dst_port, "H", count)
    srcs = _check_array("src_addr", src_addr, "I", count)
    sports = _check_array("src_port", src_port, "H", count)
    # Hold exports while the GIL is released, so no other thread can resize the arrays.
    pins = [memoryview(a) for a in (dsts, dports, srcs, sports) if a is not None]
    cdef const uint32_t* s = uints(srcs)
    cdef const uint32_t* d = uints(dsts)
    cdef const uint16_t* sp = ushorts(sports)
    cdef const uint16_t* dp = ushorts(dports)
    cdef Py_ssize_t done
    with nogil:
        done = rewrite_each_loop(batch, s, d, sp, dp)
    del pins
    return done


# -- classification and checksum completion ------------------------------------------------------------


cdef Py_ssize_t classify_loop(FrameBatch b) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    cdef uint8_t* p
    cdef uint32_t n, ihl = 0, total = 0, where = 0, kind, src, dst, proto, sport, dport
    cdef bint first = False
    cdef int code
    for i in range(b._count):
        kind = K_NONE
        src = dst = proto = sport = dport = 0
        if not b._status[i]:
            if not in_slot(b, i):
                b._status[i] = D_OUT_OF_SLOT
            else:
                p = b._data + b._offset[i]
                n = b._length[i]
                code = ipv4_check(p, n, &ihl, &total)
                if code > 0:
                    b._status[i] = code
                elif code == 0:
                    proto = p[23]
                    src = rd32(p + 26)
                    dst = rd32(p + 30)
                    if proto == 6 or proto == 17:
                        code = l4_check(p, ihl, total, &where, &first)
                        if code:
                            b._status[i] = code
                        else:
                            kind = K_IPV4_UDP if proto == 17 else K_IPV4_TCP
                            if first:
                                sport = rd16(p + 14 + ihl)
                                dport = rd16(p + 16 + ihl)
                    else:
                        kind = K_IPV4_ICMP if proto == 1 else K_IPV4_OTHER
                elif rd16(p + 12) == 0x0806:
                    if n < 42:
                        b._status[i] = D_TRUNCATED
                    else:
                        kind = K_ARP
                        sport = rd16(p + 20)
                        if p[18] == 6 and p[19] == 4:
                            src = rd32(p + 28)
                            dst = rd32(p + 38)
                else:
                    kind = K_OTHER
                if b._status[i]:
                    kind = K_NONE
                    src = dst = proto = sport = dport = 0
                else:
                    done += 1
        b._kind[i] = <uint8_t>kind
        b._src[i] = src
        b._dst[i] = dst
        b._proto[i] = <uint8_t>proto
        b._sport[i] = <uint16_t>sport
        b._dport[i] = <uint16_t>dport
    return done


def classify(FrameBatch batch):
    """Fill ``kind``, ``src_addr``, ``dst_addr``, ``protocol``, ``src_port``, ``dst_port``.

    IPv4: addresses and protocol; ports for a first-fragment TCP/UDP packet, else 0. ARP over
    Ethernet/IPv4: sender and target protocol addresses, the opcode in ``src_port``. Frames with a
    status get :attr:`Kind.NONE` and zeros. Returns how many good frames were classified.
    """
    cdef Py_ssize_t done
    with nogil:
        done = classify_loop(batch)
    return done


cdef Py_ssize_t complete_loop(FrameBatch b) noexcept nogil:
    cdef Py_ssize_t i, done = 0
    cdef uint8_t* p
    cdef uint32_t ihl = 0, total = 0, where = 0, proto, stored, seg, seed, segment_sum, check
    cdef bint first = False
    cdef int code
    for i in range(b._count):
        if b._status[i]:
            continue
        if not in_slot(b, i):
            b._status[i] = D_OUT_OF_SLOT
            continue
        p = b._data + b._offset[i]
        code = ipv4_check(p, b._length[i], &ihl, &total)
        if code:
            if code > 0:
                b._status[i] = code
            continue
        proto = p[23]
        if proto != 6 and proto != 17:
            continue
        code = l4_check(p, ihl, total, &where, &first)
        if code:
            b._status[i] = code
            continue
        if rd16(p + 20) & 0x3FFF:
            continue
        stored = rd16(p + where)
        if proto == 17 and stored == 0:
            continue
        seg = total - ihl
        seed = fold(<uint64_t>rd16(p + 26) + rd16(p + 28) + rd16(p + 30) + rd16(p + 32) + proto + seg)
        if stored != seed:
            continue
        segment_sum = fold(sum16(p + 14 + ihl, seg))
        if fold(<uint64_t>segment_sum + seed) == 0xFFFF:
            continue
        check = ~segment_sum & 0xFFFF
        if proto == 17 and check == 0:
            check = 0xFFFF
        wr16(p + where, check)
        done += 1
    return done


def complete_inner_checksums(FrameBatch batch):
    """Finish inner TCP/UDP checksums that fail to verify and equal the pseudo-header seed.

    That is what a kernel VXLAN sender over veth leaves (offload never ran); other bad checksums
    are left for the end host to drop (``spec/dataplane.md`` §5.3). Returns how many were finished.
    """
    cdef Py_ssize_t done
    with nogil:
        done = complete_loop(batch)
    return done

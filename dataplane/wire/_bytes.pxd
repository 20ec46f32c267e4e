# cython: language_level=3
# Network-order loads/stores, the RFC 1071 one's-complement sum and the RFC 7348 §5 flow hash,
# shared by every hand-written Cython module (_checksum, _batch, _gso, the VTEP and the pump): the
# one C declaration of each. Inline, so each module gets its own copy at C level and the hot loops
# pay no call.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #define WEBSPACES_LITTLE_ENDIAN (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    """
    const bint LITTLE "WEBSPACES_LITTLE_ENDIAN"


cdef inline uint32_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void wr16(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline uint32_t fold(uint64_t total) noexcept nogil:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return <uint32_t>total


cdef inline uint64_t sum16(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Unfolded sum of big-endian 16-bit words; an odd last byte is padded with zero (RFC 1071 §4.1)."""
    cdef uint64_t total = 0
    cdef Py_ssize_t i = 0
    while i + 1 < n:
        total += (<uint32_t>p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        total += <uint32_t>p[i] << 8
    return total


cdef inline uint32_t ld16n(const uint8_t* p) noexcept nogil:
    """A 16-bit field in host order (virtio-net header fields are native-endian)."""
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline void st16n(uint8_t* p, uint32_t value) noexcept nogil:
    cdef uint16_t v = <uint16_t>value
    memcpy(p, &v, 2)


cdef inline uint32_t csum(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Folded RFC 1071 sum of p[0:n] as big-endian words (odd last byte padded), not complemented.

    Sums native 32-bit words into 64 bits and swaps once at the end: the one's-complement sum is
    byte-order independent up to that swap (RFC 1071 §2(B)). The fast form of :func:`sum16`, for
    whole frames.
    """
    cdef uint64_t s = 0
    cdef uint32_t w0, w1, w2, w3
    cdef uint16_t h
    cdef uint32_t r
    while n >= 16:
        memcpy(&w0, p, 4)
        memcpy(&w1, p + 4, 4)
        memcpy(&w2, p + 8, 4)
        memcpy(&w3, p + 12, 4)
        s += <uint64_t>w0 + w1 + w2 + w3
        p += 16
        n -= 16
    while n >= 4:
        memcpy(&w0, p, 4)
        s += w0
        p += 4
        n -= 4
    if n >= 2:
        memcpy(&h, p, 2)
        s += h
        p += 2
        n -= 2
    if n:
        s += p[0] if LITTLE else (<uint32_t>p[0] << 8)
    r = fold(s)
    if LITTLE:
        r = ((r & 0xFF) << 8) | (r >> 8)
    return r


cdef inline uint32_t pseudo(const uint8_t* l3, bint v6, uint32_t proto, uint32_t length) noexcept nogil:
    """Folded sum of the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768; RFC 8200 §8.1 for IPv6)."""
    if v6:
        return fold(<uint64_t>csum(l3 + 8, 32) + (length >> 16) + (length & 0xFFFF) + proto)
    return fold(<uint64_t>csum(l3 + 12, 8) + proto + length)


cdef inline uint32_t fnv1a(uint32_t h, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * <uint32_t>0x01000193
    return h


cdef inline int flow_source_port(const uint8_t* f, Py_ssize_t n) noexcept nogil:
    """dataplane.wire.vxlan.source_port_for: FNV-1a of the inner flow key, in 49152-65535 (RFC 7348 §5)."""
    cdef uint32_t h = 0x811C9DC5
    cdef int ihl, l4
    if n >= 34 and f[12] == 0x08 and f[13] == 0x00 and f[14] >> 4 == 4:
        ihl = (f[14] & 0x0F) * 4
        if ihl >= 20 and n >= 14 + ihl:
            h = fnv1a(h, f + 26, 8)
            h = fnv1a(h, f + 23, 1)
            l4 = 14 + ihl
            if (f[23] == 6 or f[23] == 17) and rd16(f + 20) & 0x3FFF == 0 and n >= l4 + 4:
                h = fnv1a(h, f + l4, 4)
            return 49152 + <int>(h & 0x3FFF)
    h = fnv1a(h, f, n if n < 12 else 12)
    return 49152 + <int>(h & 0x3FFF)

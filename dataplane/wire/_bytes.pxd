# cython: language_level=3
# Network-order loads/stores and the RFC 1071 one's-complement sum, shared by the hand-written
# Cython modules (_checksum, _batch). Inline, so each module gets its own copy at C level.

from libc.stdint cimport uint8_t, uint32_t, uint64_t


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

# cython: language_level=3, boundscheck=False, wraparound=False
"""Internet checksums (compiled twin of ``checksum.py``; same API and errors)."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from ._bytes cimport fold as _fold, sum16 as _sum
from .errors import MalformedPacket

__all__ = ["complete_partial", "internet_checksum", "ones_sum", "pseudo_header_sum", "transport_checksum", "udp_wire_checksum", "update16", "update32", "update_partial16", "update_partial32"]

IMPLEMENTATION = "cython"


def ones_sum(data, Py_ssize_t start=0, Py_ssize_t end=-1, initial=0):
    cdef const uint8_t[:] view = data
    cdef Py_ssize_t size = view.shape[0]
    if end < 0:
        end = size
    if start < 0 or start > end or end > size:
        raise MalformedPacket("checksum", f"range {start}:{end} outside 0:{size}")
    cdef uint64_t total = <uint64_t>(initial & 0xFFFFFFFF)
    if end > start:
        total += _sum(&view[start], end - start)
    return _fold(total)


def internet_checksum(data, Py_ssize_t start=0, Py_ssize_t end=-1, initial=0):
    return ~ones_sum(data, start, end, initial) & 0xFFFF


def pseudo_header_sum(src, dst, protocol, length):
    if len(src) != 4 or len(dst) != 4:
        raise MalformedPacket("pseudo_header", "IPv4 addresses must be 4 bytes")
    cdef const uint8_t[:] s = src
    cdef const uint8_t[:] d = dst
    cdef uint64_t total = (
        ((<uint32_t>s[0] << 8) | s[1])
        + ((<uint32_t>s[2] << 8) | s[3])
        + ((<uint32_t>d[0] << 8) | d[1])
        + ((<uint32_t>d[2] << 8) | d[3])
        + (<uint32_t>protocol & 0xFF)
        + (<uint64_t>length & 0xFFFF)
        + (<uint64_t>length >> 16)
    )
    return _fold(total)


def update16(checksum, old, new):
    cdef uint64_t total = (~<uint32_t>checksum & 0xFFFF) + (~<uint32_t>old & 0xFFFF) + (<uint32_t>new & 0xFFFF)
    return ~_fold(total) & 0xFFFF


def update32(checksum, old, new):
    cdef uint32_t o = old
    cdef uint32_t n = new
    cdef uint64_t total = (
        (~<uint32_t>checksum & 0xFFFF) + ((~o >> 16) & 0xFFFF) + (~o & 0xFFFF) + ((n >> 16) & 0xFFFF) + (n & 0xFFFF)
    )
    return ~_fold(total) & 0xFFFF


def update_partial16(seed, old, new):
    cdef uint64_t total = (<uint32_t>seed & 0xFFFF) + (~<uint32_t>old & 0xFFFF) + (<uint32_t>new & 0xFFFF)
    return _fold(total)


def update_partial32(seed, old, new):
    cdef uint32_t o = old
    cdef uint32_t n = new
    cdef uint64_t total = (
        (<uint32_t>seed & 0xFFFF) + ((~o >> 16) & 0xFFFF) + (~o & 0xFFFF) + ((n >> 16) & 0xFFFF) + (n & 0xFFFF)
    )
    return _fold(total)


def udp_wire_checksum(checksum):
    return checksum if checksum else 0xFFFF


def complete_partial(bytearray frame, Py_ssize_t csum_start, Py_ssize_t csum_offset):
    cdef Py_ssize_t where = csum_start + csum_offset
    cdef Py_ssize_t size = len(frame)
    if csum_start < 0 or csum_offset < 0 or where + 2 > size:
        raise MalformedPacket("vnet.csum_offset", f"checksum at {where} outside frame of {size}")
    cdef uint8_t* p = frame
    cdef uint32_t value = ~_fold(_sum(p + csum_start, size - csum_start)) & 0xFFFF
    p[where] = <uint8_t>(value >> 8)
    p[where + 1] = <uint8_t>value


def transport_checksum(src, dst, protocol, segment):
    return internet_checksum(segment, 0, -1, pseudo_header_sum(src, dst, protocol, len(segment)))

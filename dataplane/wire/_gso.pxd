# cython: language_level=3
# C-level frame builders of software GSO (dataplane/wire/_gso.pyx; theory in gso.py), for the
# compiled pumps, which run them on their own raw buffers.

from libc.stdint cimport uint8_t


cdef enum:
    GSO_ETH_LEN = 14
    GSO_PROTO_TCP = 6
    GSO_PROTO_UDP = 17
    GSO_F_NEEDS_CSUM = 1
    GSO_F_DATA_VALID = 2
    GSO_KNOWN_FLAGS = 7
    GSO_TCPV4 = 1
    GSO_TCPV6 = 4
    GSO_UDP_L4 = 5
    GSO_ECN = 0x80
    GSO_MAX_HEADERS = 256  # gso.MAX_HEADERS
    GSO_MAX_SEGMENTS = 256  # gso.MAX_SEGMENTS

# What build refuses, as minus one of these (index into gso.REASONS, which names the field).
cdef enum:
    GSO_R_VNET_HEADER = 1
    GSO_R_VNET_FLAGS
    GSO_R_ETHERNET
    GSO_R_VNET_GSO_TYPE
    GSO_R_VNET_GSO_SIZE
    GSO_R_IPV4_VERSION
    GSO_R_IPV6_VERSION
    GSO_R_VNET_CSUM_START
    GSO_R_ETHERNET_TYPE
    GSO_R_TCP_HEADER
    GSO_R_TCP_OFFSET
    GSO_R_VNET_CSUM_OFFSET
    GSO_R_VNET_HDR_LEN
    GSO_R_COUNT

# Write the wire-ready frames of one TAP read (vnet header `vh`, Ethernet frame of n bytes) to
# `out`, each after `pre` spare bytes (room for an encapsulation header). Segment i starts at
# out + i * (pre + seg_len); all are seg_len bytes but the last, last_len. Returns the count, or
# minus a GSO_R_* reason (the checks of gso.segment, in its order).
cdef int build(const uint8_t* vh, const uint8_t* frame, Py_ssize_t n, int pre, uint8_t* out,
               Py_ssize_t cap, Py_ssize_t* seg_len, Py_ssize_t* last_len) noexcept nogil

# Fill the vnet header `vh` (zeroed by the caller) for a decapsulated frame (gso.deliver_header);
# returns the flag set (GSO_F_DATA_VALID, GSO_F_NEEDS_CSUM) or 0.
cdef int deliver_flags(const uint8_t* frame, Py_ssize_t n, uint8_t* vh) noexcept nogil

# cython: language_level=3
# C-level interface of the compiled VTEP, for the data-path pump (dataplane/io/_pump.pyx).
# The Python-level API is the same as the pure-Python twin dataplane/overlay/vtep.py.
#
# Addresses are IPv4 as uint32 in host order (192.0.2.1 == 0xC0000201).

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef class Vtep:
    # Decide one received VXLAN payload: `payload` points at the 8-byte VXLAN header, followed by
    # the inner Ethernet frame (n - 8 bytes), sent by underlay address `src`. Checks flags, VNI and
    # (when peers_only) that src is a current peer; learns the inner source MAC -> src; counts.
    # Returns 0 to deliver the inner frame to the TAP, else a drop-reason code > 0 (already counted).
    cdef int c_receive(self, const uint8_t* payload, Py_ssize_t n, uint32_t src, double now) except -1

    # Decide one inner frame read from the TAP (no vnet header; at most mtu + 14 bytes is legal).
    # Writes the destination VTEP addresses into out[0 .. max_out-1] and returns how many (1 for a
    # known unicast MAC, every peer for broadcast/multicast/unknown unicast), or 0 when the frame
    # is dropped (counted; a DF IPv4 frame over the MTU is counted as TOO_BIG and the caller may ask
    # c_frag_needed for the ICMP reply).
    cdef int c_send(self, const uint8_t* frame, Py_ssize_t n, double now, uint32_t* out, int max_out) except -1

    # Write the 8-byte VXLAN header (I flag, this VTEP's VNI) at dst.
    cdef void c_header(self, uint8_t* dst) noexcept nogil

    # The ICMP fragmentation-needed frame (Ethernet/IPv4/ICMP 3/4, next-hop MTU = mtu) answering an
    # oversized DF IPv4 frame, addressed back to its sender; None if none is due (not IPv4, no DF,
    # rate limited, or an ICMP error itself).
    cdef object c_frag_needed(self, const uint8_t* frame, Py_ssize_t n, double now)

    # Number of peers (for sizing the out array of c_send).
    cdef int c_peer_count(self) noexcept

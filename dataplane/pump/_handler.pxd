# cython: language_level=3
# The frame-handler interface at C level: what the compiled pump (dataplane/pump/_tunnel.pyx) calls
# for every frame, and what a compiled core implements by subclassing FrameHandler (the overlay's
# VTEP today, the router's core next). The Python-level twin is dataplane/pump/handler.py.
#
# Addresses are IPv4 as uint32 in host order (192.0.2.1 == 0xC0000201). The pump owns the buffers:
# every pointer is valid only for the call. Only c_frag_needed may make a Python object.

from libc.stdint cimport uint8_t, uint32_t


cdef class FrameHandler:
    # Decide one received tunnel datagram: `payload` points at the 8-byte encapsulation header
    # followed by the inner Ethernet frame (n - 8 bytes), sent by underlay address `src`. Returns 0
    # to deliver the inner frame to the TAP, else a drop-reason code > 0 (counted by the handler).
    cdef int c_receive(self, const uint8_t* payload, Py_ssize_t n, uint32_t src, double now) except -1

    # Decide one inner frame read from the TAP (no vnet header). Writes the destination addresses
    # into out[0 .. max_out-1] and returns how many, or 0 when the frame is dropped (counted; the
    # caller may then ask c_frag_needed for a reply to an oversized frame).
    cdef int c_send(self, const uint8_t* frame, Py_ssize_t n, double now, uint32_t* out, int max_out) except -1

    # Write the 8-byte encapsulation header at dst.
    cdef void c_header(self, uint8_t* dst) noexcept nogil

    # The frame to write back to the TAP for an oversized frame c_send dropped, or None.
    cdef object c_frag_needed(self, const uint8_t* frame, Py_ssize_t n, double now)

    # The most destinations c_send can write (sizes its out array).
    cdef int c_peer_count(self) noexcept

    # The outer UDP source port for an inner frame (RFC 7348 §5 flow hash).
    cdef int c_source_port(self, const uint8_t* frame, Py_ssize_t n) noexcept nogil

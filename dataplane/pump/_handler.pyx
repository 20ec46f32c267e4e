# cython: language_level=3
"""The frame-handler interface, compiled twin of ``handler.py``: the cdef base class of compiled cores.

A compiled core (``dataplane.overlay._vtep.Vtep``) subclasses :class:`FrameHandler` and overrides
its ``c_*`` methods (declared in ``_handler.pxd``); the compiled pump holds a ``FrameHandler`` and
calls them through its vtable, so it names no core. These bodies are the defaults of a handler
that handles nothing: every frame is refused.
"""

from libc.stdint cimport uint8_t, uint32_t

__all__ = ["FrameHandler"]


cdef class FrameHandler:
    """Base of the compiled frame handlers; see ``dataplane.pump.handler.FrameHandler``."""

    cdef int c_receive(self, const uint8_t* payload, Py_ssize_t n, uint32_t src, double now) except -1:
        return 1

    cdef int c_send(self, const uint8_t* frame, Py_ssize_t n, double now, uint32_t* out, int max_out) except -1:
        return 0

    cdef void c_header(self, uint8_t* dst) noexcept nogil:
        pass

    cdef object c_frag_needed(self, const uint8_t* frame, Py_ssize_t n, double now):
        return None

    cdef int c_peer_count(self) noexcept:
        return 0

    cdef int c_source_port(self, const uint8_t* frame, Py_ssize_t n) noexcept nogil:
        return 0

    def next_deadline(self, double now):
        """The earliest time this handler has work to do without a frame; None: no timer."""
        return None

# cython: language_level=3, boundscheck=False, wraparound=False
"""A bounds-checked read/write buffer (compiled twin of ``buffer.py``; same API and errors)."""

import struct

from .errors import BufferWriteError, MalformedPacket

__all__ = ["Buffer"]

IMPLEMENTATION = "cython"


cdef class Buffer:
    """Network-order reader and writer over one ``bytearray``."""

    cdef bytearray _data
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef bint _fixed

    def __init__(self, data=None, Py_ssize_t capacity=0):
        if data is not None:
            self._data = bytearray(data)
            self._end = len(self._data)
            self._fixed = False
        else:
            if capacity < 0:
                raise ValueError("negative capacity")
            self._data = bytearray(capacity)
            self._end = 0
            self._fixed = capacity > 0
        self._pos = 0

    @property
    def data(self):
        return bytes(self._data[: self._end])

    def data_slice(self, Py_ssize_t start, Py_ssize_t end):
        if start < 0 or end > self._end or start > end:
            raise MalformedPacket("buffer", f"slice {start}:{end} outside 0:{self._end}")
        return bytes(self._data[start:end])

    cpdef Py_ssize_t tell(self):
        return self._pos

    def seek(self, Py_ssize_t pos):
        if pos < 0 or pos > self._end:
            raise MalformedPacket("buffer", f"seek to {pos} outside 0:{self._end}")
        self._pos = pos

    cpdef Py_ssize_t remaining(self):
        return self._end - self._pos

    cpdef bint eof(self):
        return self._pos >= self._end

    def __len__(self):
        return self._end

    # -- reads ------------------------------------------------------------------------------

    cdef inline Py_ssize_t _need(self, Py_ssize_t n, str field) except -1:
        cdef Py_ssize_t pos = self._pos
        if n < 0 or pos + n > self._end:
            raise MalformedPacket(field, f"needs {n} bytes, {self._end - pos} left")
        return pos

    def require(self, Py_ssize_t n, str field):
        self._need(n, field)

    def pull_bytes(self, Py_ssize_t n, str field="data"):
        cdef Py_ssize_t pos = self._need(n, field)
        self._pos = pos + n
        cdef const unsigned char* p = self._data
        return p[pos : pos + n]

    def pull_uint8(self, str field="data"):
        cdef Py_ssize_t pos = self._need(1, field)
        self._pos = pos + 1
        cdef const unsigned char* p = self._data
        return p[pos]

    def pull_uint16(self, str field="data"):
        cdef Py_ssize_t pos = self._need(2, field)
        self._pos = pos + 2
        cdef const unsigned char* p = self._data
        return (<unsigned int>p[pos] << 8) | p[pos + 1]

    def pull_uint32(self, str field="data"):
        cdef Py_ssize_t pos = self._need(4, field)
        self._pos = pos + 4
        cdef const unsigned char* p = self._data
        return (
            (<unsigned long>p[pos] << 24)
            | (<unsigned long>p[pos + 1] << 16)
            | (<unsigned long>p[pos + 2] << 8)
            | p[pos + 3]
        )

    def pull_uint64(self, str field="data"):
        cdef Py_ssize_t pos = self._need(8, field)
        self._pos = pos + 8
        cdef const unsigned char* p = self._data
        cdef unsigned long long v = 0
        cdef int i
        for i in range(8):
            v = (v << 8) | p[pos + i]
        return v

    def pull_struct(self, fmt, str field="data"):
        cdef Py_ssize_t size = fmt.size
        cdef Py_ssize_t pos = self._need(size, field)
        self._pos = pos + size
        return fmt.unpack_from(self._data, pos)

    # -- writes -----------------------------------------------------------------------------

    cdef Py_ssize_t _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t have = len(self._data)
        if pos + n > have:
            if self._fixed:
                raise BufferWriteError(f"write of {n} bytes at {pos} past capacity {have}")
            self._data.extend(bytes(pos + n - have))
        self._pos = pos + n
        if self._pos > self._end:
            self._end = self._pos
        return pos

    def push_bytes(self, value):
        cdef Py_ssize_t n = len(value)
        cdef Py_ssize_t pos = self._reserve(n)
        self._data[pos : pos + n] = value

    def push_uint8(self, value):
        if not 0 <= value <= 0xFF:
            raise BufferWriteError(f"uint8 out of range: {value}")
        cdef Py_ssize_t pos = self._reserve(1)
        cdef unsigned char* p = self._data
        p[pos] = <unsigned char>value

    def push_uint16(self, value):
        if not 0 <= value <= 0xFFFF:
            raise BufferWriteError(f"uint16 out of range: {value}")
        cdef unsigned int v = value
        cdef Py_ssize_t pos = self._reserve(2)
        cdef unsigned char* p = self._data
        p[pos] = <unsigned char>(v >> 8)
        p[pos + 1] = <unsigned char>v

    def push_uint32(self, value):
        if not 0 <= value <= 0xFFFFFFFF:
            raise BufferWriteError(f"uint32 out of range: {value}")
        cdef unsigned long v = value
        cdef Py_ssize_t pos = self._reserve(4)
        cdef unsigned char* p = self._data
        p[pos] = <unsigned char>(v >> 24)
        p[pos + 1] = <unsigned char>(v >> 16)
        p[pos + 2] = <unsigned char>(v >> 8)
        p[pos + 3] = <unsigned char>v

    def push_uint64(self, value):
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise BufferWriteError(f"uint64 out of range: {value}")
        cdef unsigned long long v = value
        cdef Py_ssize_t pos = self._reserve(8)
        cdef unsigned char* p = self._data
        cdef int i
        for i in range(8):
            p[pos + 7 - i] = <unsigned char>(v >> (8 * i))

    def push_struct(self, fmt, *values):
        try:
            packed = fmt.pack(*values)
        except struct.error as exc:
            raise BufferWriteError(f"cannot pack {values!r} as {fmt.format!r}: {exc}") from None
        self.push_bytes(packed)

"""A bounds-checked read/write buffer (pure-Python twin of ``_buffer.pyx``).

Reads (``pull_*``) never move the position when they fail: they raise :class:`MalformedPacket`
naming the field the caller was reading and leave the buffer as it was, so a codec can report
exactly where input went wrong. Writes (``push_*``) grow the buffer when it was created without a
fixed capacity, and overwrite in place after a ``seek`` (to patch lengths and checksums).
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import BufferWriteError, MalformedPacket

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")

__all__ = ["Buffer"]

IMPLEMENTATION = "python"


class Buffer:
    """Network-order reader and writer over one ``bytearray``."""

    __slots__ = ("_data", "_end", "_fixed", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview | None = None, capacity: int = 0) -> None:
        if data is not None:
            self._data = bytearray(data)
            self._end = len(self._data)
            self._fixed = False
        else:
            self._data = bytearray(capacity)
            self._end = 0
            self._fixed = capacity > 0
        self._pos = 0

    # -- inspection ------------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """Everything written or given, up to the furthest position reached."""
        return bytes(self._data[: self._end])

    def data_slice(self, start: int, end: int) -> bytes:
        if start < 0 or end > self._end or start > end:
            raise MalformedPacket("buffer", f"slice {start}:{end} outside 0:{self._end}")
        return bytes(self._data[start:end])

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        if pos < 0 or pos > self._end:
            raise MalformedPacket("buffer", f"seek to {pos} outside 0:{self._end}")
        self._pos = pos

    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def __len__(self) -> int:
        return self._end

    # -- reads ------------------------------------------------------------------------------

    def _need(self, n: int, field: str) -> int:
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise MalformedPacket(field, f"needs {n} bytes, {self._end - pos} left")
        return pos

    def require(self, n: int, field: str) -> None:
        """Raise unless ``n`` more bytes can be read; moves nothing."""
        self._need(n, field)

    def pull_bytes(self, n: int, field: str = "data") -> bytes:
        pos = self._need(n, field)
        self._pos = pos + n
        return bytes(self._data[pos : pos + n])

    def pull_uint8(self, field: str = "data") -> int:
        pos = self._need(1, field)
        self._pos = pos + 1
        return self._data[pos]

    def pull_uint16(self, field: str = "data") -> int:
        pos = self._need(2, field)
        self._pos = pos + 2
        value: int = _U16.unpack_from(self._data, pos)[0]
        return value

    def pull_uint32(self, field: str = "data") -> int:
        pos = self._need(4, field)
        self._pos = pos + 4
        value: int = _U32.unpack_from(self._data, pos)[0]
        return value

    def pull_uint64(self, field: str = "data") -> int:
        pos = self._need(8, field)
        self._pos = pos + 8
        value: int = _U64.unpack_from(self._data, pos)[0]
        return value

    def pull_struct(self, fmt: struct.Struct, field: str = "data") -> tuple[Any, ...]:
        """Read a fixed-size header described by ``fmt`` in one step."""
        pos = self._need(fmt.size, field)
        self._pos = pos + fmt.size
        return fmt.unpack_from(self._data, pos)

    # -- writes -----------------------------------------------------------------------------

    def _reserve(self, n: int) -> int:
        pos = self._pos
        if pos + n > len(self._data):
            if self._fixed:
                raise BufferWriteError(f"write of {n} bytes at {pos} past capacity {len(self._data)}")
            self._data.extend(bytes(pos + n - len(self._data)))
        self._pos = pos + n
        self._end = max(self._end, self._pos)
        return pos

    def push_bytes(self, value: bytes | bytearray | memoryview) -> None:
        n = len(value)
        pos = self._reserve(n)
        self._data[pos : pos + n] = value

    def push_uint8(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise BufferWriteError(f"uint8 out of range: {value}")
        pos = self._reserve(1)
        self._data[pos] = value

    def push_uint16(self, value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise BufferWriteError(f"uint16 out of range: {value}")
        pos = self._reserve(2)
        _U16.pack_into(self._data, pos, value)

    def push_uint32(self, value: int) -> None:
        if not 0 <= value <= 0xFFFFFFFF:
            raise BufferWriteError(f"uint32 out of range: {value}")
        pos = self._reserve(4)
        _U32.pack_into(self._data, pos, value)

    def push_uint64(self, value: int) -> None:
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise BufferWriteError(f"uint64 out of range: {value}")
        pos = self._reserve(8)
        _U64.pack_into(self._data, pos, value)

    def push_struct(self, fmt: struct.Struct, *values: Any) -> None:
        try:
            packed = fmt.pack(*values)
        except struct.error as exc:
            raise BufferWriteError(f"cannot pack {values!r} as {fmt.format!r}: {exc}") from None
        self.push_bytes(packed)

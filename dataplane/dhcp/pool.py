# cython: annotation_typing=False
"""Address pools with O(1) allocation, whatever their size.

The same source is compiled by Cython into ``_pool`` (see ``setup.py``); this file is the
pure-Python twin and the reference for behaviour.

Theory of operation
-------------------
A :class:`Pool` numbers its addresses 0..N-1 across its ranges (``index``). Free addresses live in
two places, and no operation ever scans either:

* **Fresh** addresses, never handed out: positions ``lo..hi-1`` of a virtual array that starts as
  the identity (position p holds index p). :meth:`Pool.allocate` takes position ``lo`` and moves
  ``lo`` on, so fresh addresses go out in order; :meth:`Pool.take` of a fresh address elsewhere
  swaps it with the one at ``hi - 1`` and moves ``hi`` down (Fisher-Yates style). Only swapped
  positions are stored (two dicts), so a 16M-address pool costs memory for what was taken out of
  order, not for its size.
* **Recycled** addresses, released after use: an insertion-ordered set (``OrderedDict``) popped
  oldest first. Fresh addresses go out before recycled ones, and recycled ones least recently freed
  first, so a released address stays unused as long as possible and its last client (whom the
  server remembers) is likely to get it back.

Every operation is a constant number of dict operations plus a binary search over the ranges (one
step for the usual single range). :attr:`Pool.probes` counts the candidates examined, so tests can
check that no operation scans. Exclusions split the ranges at construction: they are simply not
addresses of the pool.

Addresses are ``int`` here (``ip_to_int``/``int_to_ip`` convert); the server speaks strings only at
its edges.
"""

from __future__ import annotations

import bisect
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["Pool", "int_to_ip", "ip_to_int"]

_U32 = struct.Struct("!I")


def ip_to_int(address: str) -> int:
    """Dotted quad to integer; ``ValueError`` for anything else."""
    try:
        packed = socket.inet_aton(address)
    except OSError:
        raise ValueError(f"not an IPv4 address: {address!r}") from None
    if address.count(".") != 3:  # inet_aton accepts "10.1" and friends
        raise ValueError(f"not a dotted-quad IPv4 address: {address!r}")
    value: int = _U32.unpack(packed)[0]
    return value


def int_to_ip(value: int) -> str:
    return socket.inet_ntoa(_U32.pack(value))


class Pool:
    """The dynamic addresses of one subnet: ``ranges`` (inclusive, dotted quads) minus ``exclude``."""

    def __init__(self, ranges: list[tuple[str, str]], exclude: Iterable[str] = ()) -> None:
        given = sorted((ip_to_int(a), ip_to_int(b)) for a, b in ranges)
        if not given:
            raise ValueError("a pool needs at least one range")
        for i, (first, last) in enumerate(given):
            if last < first:
                raise ValueError(f"pool range {int_to_ip(first)}-{int_to_ip(last)} is reversed")
            if i and first <= given[i - 1][1]:
                raise ValueError(f"pool range {int_to_ip(first)}-{int_to_ip(last)} overlaps another")
        # Exclusions split the ranges, so they are simply not addresses of the pool.
        excluded = sorted({ip_to_int(address) for address in exclude})
        starts: list[int] = []
        ends: list[int] = []
        j = 0
        for first, last in given:
            while j < len(excluded) and excluded[j] < first:
                j += 1
            start = first
            while j < len(excluded) and excluded[j] <= last:
                if excluded[j] > start:
                    starts.append(start)
                    ends.append(excluded[j] - 1)
                start = excluded[j] + 1
                j += 1
            if start <= last:
                starts.append(start)
                ends.append(last)
        if not starts:
            raise ValueError("every address of the pool is excluded")
        self._starts = starts
        self._ends = ends
        # _offsets[i]: the index of _starts[i]; the total is the number of addresses in the ranges.
        self._offsets: list[int] = []
        total = 0
        for first, last in zip(starts, ends, strict=True):
            self._offsets.append(total)
            total += last - first + 1
        self._total = total
        self._lo = 0  # fresh positions are lo..hi-1
        self._hi = total
        self._value_at: dict[int, int] = {}  # position -> index, where not the identity
        self._position_of: dict[int, int] = {}  # index -> position, where not the identity
        self._recycled: OrderedDict[int, None] = OrderedDict()
        self.probes = 0

    # -- index <-> address ---------------------------------------------------------------------

    def _index(self, addr: int) -> int:
        """The index of ``addr``, or -1 when it is outside every range."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr > self._ends[i]:
            return -1
        return self._offsets[i] + addr - self._starts[i]

    def _address(self, index: int) -> int:
        i = bisect.bisect_right(self._offsets, index) - 1
        return self._starts[i] + index - self._offsets[i]

    # -- queries -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Addresses in the ranges, exclusions not counted."""
        return self._total

    @property
    def free_count(self) -> int:
        return self._hi - self._lo + len(self._recycled)

    def contains(self, addr: int) -> bool:
        """Is ``addr`` one of the pool's addresses (free or not; exclusions are not)?"""
        return self._index(addr) >= 0

    def is_free(self, addr: int) -> bool:
        if addr in self._recycled:
            return True
        index = self._index(addr)
        if index < 0:
            return False
        position = self._position_of.get(index, index)
        return self._lo <= position < self._hi

    def ranges(self) -> list[tuple[str, str]]:
        """The ranges after exclusions, in order."""
        return [(int_to_ip(a), int_to_ip(b)) for a, b in zip(self._starts, self._ends, strict=True)]

    # -- changes -------------------------------------------------------------------------------

    def allocate(self, preferred: int | None = None) -> int | None:
        """A free address, taken: ``preferred`` when it is free, else the next fresh one, else the
        least recently released one; None when the pool is exhausted."""
        if preferred is not None:
            self.probes += 1
            if self.take(preferred):
                return preferred
        self.probes += 1
        if self._lo < self._hi:
            # _position_of keeps saying `lo` for a moved index: below the new lo, so not free.
            index = self._value_at.pop(self._lo, self._lo)
            self._lo += 1
            return self._address(index)
        if self._recycled:
            addr, _ = self._recycled.popitem(last=False)
            return addr
        return None

    def take(self, addr: int) -> bool:
        """Take ``addr`` out of the free addresses; False when it is not free (or not ours)."""
        if addr in self._recycled:
            del self._recycled[addr]
            return True
        index = self._index(addr)
        if index < 0:
            return False
        position = self._position_of.get(index, index)
        lo = self._lo
        hi = self._hi
        if position < lo or position >= hi:
            return False
        if position == lo:
            self._value_at.pop(lo, None)
            self._lo = lo + 1
            return True
        # Swap with the fresh address at hi - 1, then shrink: lo..hi-2 stays the fresh set, and
        # `addr` sits at hi - 1, outside it.
        last = hi - 1
        other = self._value_at.pop(last, last)
        if position != last:
            self._value_at[position] = other
            self._position_of[other] = position
        if index == last:
            self._position_of.pop(index, None)
        else:
            self._position_of[index] = last
        self._hi = last
        return True

    def release(self, addr: int) -> bool:
        """Give ``addr`` back; False (and nothing changes) when it is free already, excluded or not
        in the pool. Released addresses are handed out again last, oldest first."""
        if self._index(addr) < 0 or self.is_free(addr):
            return False
        self._recycled[addr] = None
        return True

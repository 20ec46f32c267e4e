"""Batches of frames in one buffer: VXLAN decap/encap, IPv4 rewrite, classification (pure twin).

The hot path handles many frames per call, held in ONE preallocated ``bytearray`` so that the
compiled twin (``_batch.pyx``) can loop over raw pointers without a Python object per frame, and so
that the I/O layer can fill it with one ``recvmmsg`` (or a TAP/AF_PACKET ring) later.

Layout (``FrameBatch``):

* ``data`` is ``capacity * slot_size`` bytes; frame ``i`` lives in slot ``i``, that is
  ``data[i * slot_size : (i + 1) * slot_size]``, at ``offset[i]`` with ``length[i]`` bytes.
  ``clear()`` points every offset ``headroom`` bytes into its slot, where ``append`` copies frames.
* ``offset``, ``length``, ``peer``, ``src_addr``, ``dst_addr`` are ``array('I')`` (uint32);
  ``status``, ``kind``, ``protocol`` are ``array('B')``; ``src_port``, ``dst_port`` ``array('H')``.
  They are pinned (an exported buffer is held), so they cannot be resized under a compiled loop.
  IPv4 addresses are stored as the big-endian integer of their four bytes.
* ``status[i]`` is 0 for a good frame, else a :class:`Drop` reason; every operation skips frames
  whose status is not 0, and sets it when a frame it must understand is malformed. Malformed input
  never raises; API misuse (VNI out of range, an address of the wrong length) raises ValueError.
* An offset/length that leaves the frame's own slot (only possible when the caller wrote the arrays
  itself) gets :attr:`Drop.OUT_OF_SLOT` instead of touching memory outside the slot.

Operations, each a loop over the batch returning how many frames it changed:

* :func:`vxlan_decap` validates outer Ethernet / IPv4 / UDP / VXLAN (RFC 7348 §5; fragments are
  dropped, as §4.3 allows receivers to) and narrows ``offset``/``length`` to the inner frame in
  place; the outer headers stay in front of it, and ``peer[i]`` records the outer source address
  (for FDB learning).
* :func:`vxlan_encap` writes the 50-byte outer header into the space in front of each frame (after
  a decap, the old outer header's place; after ``append``, the headroom). The outer IPv4 header has
  DF set and identification 0 (an atomic datagram, RFC 6864 §4.1); the UDP source port is a hash of
  the inner flow in 49152-65535 and the UDP checksum is 0 (RFC 7348 §5).
* :func:`rewrite_ipv4` / :func:`rewrite_ipv4_each` rewrite IPv4 addresses and TCP/UDP ports with
  RFC 1624 incremental checksum updates (pseudo-header included; a UDP checksum of 0 stays 0, and a
  computed 0 is sent as 0xFFFF, RFC 768). Only a first fragment carries ports.
* :func:`classify` fills ``kind`` (a :class:`Kind`) and the 5-tuple arrays.
* :func:`complete_inner_checksums` finishes inner TCP/UDP checksums left as the pseudo-header seed
  by a kernel VXLAN sender over veth (``spec/dataplane.md`` §5.3).

The outer UDP source port is :func:`dataplane.wire.vxlan.source_port_for` of the inner frame (FNV-1a
of its flow key, defined in ``vxlan.py``), so a flow keeps one source port whichever path sent it.

Who calls it: this is the shape of a data path that owns the outer headers (the router's: decap,
NAT rewrite, encap, over AF_PACKET rings). The overlay's tunnel pump does not: the kernel's UDP
sockets own its outer headers, and it works on its own ``recvmmsg``/``sendmmsg`` buffers in C with
the frame builders of :mod:`.gso` and ``_bytes.pxd``'s helpers, which the ``wire`` benchmark times
beside this module.
"""

from __future__ import annotations

import array
import struct
from collections import Counter
from collections.abc import Iterable
from enum import IntEnum

from .checksum import ones_sum
from .vxlan import VXLAN_OVERHEAD, VXLAN_PORT, source_port_for

__all__ = [
    "Drop",
    "FrameBatch",
    "Kind",
    "classify",
    "complete_inner_checksums",
    "rewrite_ipv4",
    "rewrite_ipv4_each",
    "vxlan_decap",
    "vxlan_encap",
]

IMPLEMENTATION = "python"


_ETH_IPV4 = 0x0800
_ETH_ARP = 0x0806
_ETH_VLAN = (0x8100, 0x88A8)
_TCP = 6
_UDP = 17
_ICMP = 1
_M32 = 0xFFFFFFFF

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class Drop(IntEnum):
    """Why a frame's ``status`` is not 0."""

    OK = 0
    TRUNCATED = 1  # shorter than a header it must carry
    NOT_IPV4 = 2  # outer EtherType is not IPv4, or the IP version is not 4
    BAD_IHL = 3  # IPv4 IHL < 5
    BAD_LENGTH = 4  # IPv4 total length or UDP length inconsistent with the frame
    BAD_CHECKSUM = 5  # outer IPv4 header checksum does not verify
    FRAGMENT = 6  # outer IPv4 fragment (MF or offset): RFC 7348 §4.3 receivers may drop
    NOT_UDP = 7  # outer IPv4 protocol is not UDP
    WRONG_PORT = 8  # outer UDP destination port is not the VXLAN port
    NO_I_FLAG = 9  # VXLAN I flag (0x08) clear: RFC 7348 §5 says discard
    WRONG_VNI = 10  # VXLAN network identifier is not ours
    INNER_VLAN = 11  # inner 802.1Q/802.1ad frame, dropped unless allowed (RFC 7348 §6.1)
    TOO_BIG = 12  # inner frame longer than mtu + 14: VTEPs must not fragment
    NO_HEADROOM = 13  # fewer than 50 bytes in front of the frame for the outer header
    NO_PEER = 14  # encap to the per-frame peer, but none was recorded
    OUT_OF_SLOT = 15  # offset/length written by the caller leave the frame's slot


class Kind(IntEnum):
    """What :func:`classify` found in a frame."""

    NONE = 0  # not classified: the frame's status is not 0
    ARP = 1
    IPV4_UDP = 2
    IPV4_TCP = 3
    IPV4_ICMP = 4
    IPV4_OTHER = 5
    OTHER = 6


# -- argument checks (shared with the compiled twin, so both raise the same messages) ----------------


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def _check_bytes(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {value!r}")
    return bytes(value)


def _check_addr(name: str, value: object) -> int:
    """An optional IPv4 address (4 bytes) as a big-endian integer, or -1 for "unchanged"."""
    if value is None:
        return -1
    return int.from_bytes(_check_bytes(name, value, 4), "big")


def _check_port(name: str, value: object) -> int:
    if value is None:
        return -1
    return _check_int(name, value, 0, 0xFFFF)


def _check_array(name: str, value: object, typecode: str, count: int) -> array.array[int] | None:
    if value is None:
        return None
    if not isinstance(value, array.array) or value.typecode != typecode:
        raise ValueError(f"{name} must be an array.array of typecode {typecode!r}, not {value!r}")
    if len(value) < count:
        raise ValueError(f"{name} has {len(value)} entries, the batch holds {count} frames")
    return value


def _check_geometry(capacity: object, slot_size: object, headroom: object) -> tuple[int, int, int]:
    capacity = _check_int("capacity", capacity, 1, 1 << 20)
    slot_size = _check_int("slot_size", slot_size, 64, 1 << 17)
    headroom = _check_int("headroom", headroom, 0, slot_size - 14)
    if capacity * slot_size > _M32:
        raise ValueError(f"capacity * slot_size must stay below 4 GiB, not {capacity * slot_size}")
    return capacity, slot_size, headroom


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class FrameBatch:
    """Up to ``capacity`` frames in one buffer; see the module docstring for the layout."""

    __slots__ = (
        "_count",
        "_pins",
        "capacity",
        "data",
        "dst_addr",
        "dst_port",
        "headroom",
        "kind",
        "length",
        "offset",
        "peer",
        "protocol",
        "slot_size",
        "src_addr",
        "src_port",
        "status",
    )

    def __init__(self, capacity: int = 256, slot_size: int = 2048, headroom: int = 64) -> None:
        capacity, slot_size, headroom = _check_geometry(capacity, slot_size, headroom)
        self.capacity = capacity
        self.slot_size = slot_size
        self.headroom = headroom
        self.data = bytearray(capacity * slot_size)
        self.offset = array.array("I", range(headroom, capacity * slot_size, slot_size))
        self.length = array.array("I", bytes(4 * capacity))
        self.status = array.array("B", bytes(capacity))
        self.peer = array.array("I", bytes(4 * capacity))
        self.kind = array.array("B", bytes(capacity))
        self.src_addr = array.array("I", bytes(4 * capacity))
        self.dst_addr = array.array("I", bytes(4 * capacity))
        self.protocol = array.array("B", bytes(capacity))
        self.src_port = array.array("H", bytes(2 * capacity))
        self.dst_port = array.array("H", bytes(2 * capacity))
        # Exported buffers keep every array (and data) from being resized behind a compiled loop.
        self._pins = tuple(
            memoryview(a)
            for a in (
                self.data,
                self.offset,
                self.length,
                self.status,
                self.peer,
                self.kind,
                self.src_addr,
                self.dst_addr,
                self.protocol,
                self.src_port,
                self.dst_port,
            )
        )
        self._count = 0

    @property
    def count(self) -> int:
        """Frames in use (slots ``0 .. count-1``); the I/O layer sets it after filling the arrays."""
        return self._count

    @count.setter
    def count(self, value: int) -> None:
        self._count = _check_int("count", value, 0, self.capacity)

    def __len__(self) -> int:
        return self._count

    def append(self, frame: bytes | bytearray | memoryview) -> int:
        """Copy ``frame`` into the next slot after the headroom; return its index."""
        n = len(frame)
        room = self.slot_size - self.headroom
        if n > room:
            raise ValueError(f"frame of {n} bytes does not fit a slot ({room} bytes after the headroom)")
        i = self._count
        if i >= self.capacity:
            raise ValueError(f"batch is full ({self.capacity} frames)")
        off = i * self.slot_size + self.headroom
        self.data[off : off + n] = frame
        self.offset[i] = off
        self.length[i] = n
        self.status[i] = 0
        self.peer[i] = 0
        self.kind[i] = 0
        self._count = i + 1
        return i

    def extend(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """:meth:`append` each frame; return the new count."""
        for frame in frames:
            self.append(frame)
        return self._count

    def frame(self, i: int) -> bytes:
        """A copy of frame ``i`` as it is now (after decap, the inner frame)."""
        if not 0 <= i < self._count:
            raise IndexError(f"frame {i} outside 0..{self._count - 1}")
        off = self.offset[i]
        return bytes(self.data[off : off + self.length[i]])

    def clear(self) -> None:
        """Forget every frame and point each slot's offset back after the headroom."""
        self._count = 0
        for i in range(self.capacity):
            self.offset[i] = i * self.slot_size + self.headroom
            self.length[i] = 0
            self.status[i] = 0
            self.peer[i] = 0
            self.kind[i] = 0

    def drop_counts(self) -> dict[Drop, int]:
        """How many of the ``count`` frames carry each drop reason (reasons with none are left out)."""
        counts = Counter(self.status[: self._count])
        counts.pop(0, None)
        return {Drop(code): n for code, n in sorted(counts.items())}


def _in_slot(batch: FrameBatch, i: int) -> bool:
    base = i * batch.slot_size
    off = batch.offset[i]
    return base <= off and off + batch.length[i] <= base + batch.slot_size


def _ipv4(data: bytearray, off: int, n: int) -> tuple[int, int, int]:
    """Validate the IPv4 header of an Ethernet frame: ``(status, ihl, total_length)``.

    Status -1 means "not an IPv4 EtherType" (not the operation's business, not malformed).
    """
    if n < 14:
        return Drop.TRUNCATED, 0, 0
    if (data[off + 12] << 8 | data[off + 13]) != _ETH_IPV4:
        return -1, 0, 0
    if n < 34:
        return Drop.TRUNCATED, 0, 0
    vihl = data[off + 14]
    if vihl >> 4 != 4:
        return Drop.NOT_IPV4, 0, 0
    ihl = (vihl & 15) * 4
    if ihl < 20:
        return Drop.BAD_IHL, 0, 0
    if 14 + ihl > n:
        return Drop.TRUNCATED, 0, 0
    total = data[off + 16] << 8 | data[off + 17]
    if total < ihl or 14 + total > n:
        return Drop.BAD_LENGTH, 0, 0
    return 0, ihl, total


def _l4(data: bytearray, off: int, ihl: int, total: int) -> tuple[int, int, bool]:
    """For TCP/UDP: ``(status, checksum position, first fragment)``; position 0 if none here."""
    proto = data[off + 23]
    first = (data[off + 20] << 8 | data[off + 21]) & 0x1FFF == 0
    if not first:
        return 0, 0, False
    need = 8 if proto == _UDP else 20
    if total - ihl < need:
        return Drop.TRUNCATED, 0, True
    return 0, off + 14 + ihl + (6 if proto == _UDP else 16), True


# -- VXLAN ---------------------------------------------------------------------------------------------


def vxlan_decap(batch: FrameBatch, vni: int, port: int = VXLAN_PORT, *, allow_vlan: bool = False) -> int:
    """Strip the outer headers of every good frame carrying ``vni``; return how many were."""
    vni = _check_int("vni", vni, 0, 0xFFFFFF)
    port = _check_int("port", port, 0, 0xFFFF)
    data, offset, length, status, peer = batch.data, batch.offset, batch.length, batch.status, batch.peer
    done = 0
    for i in range(batch.count):
        if status[i]:
            continue
        if not _in_slot(batch, i):
            status[i] = Drop.OUT_OF_SLOT
            continue
        off = offset[i]
        code, ihl, total = _ipv4(data, off, length[i])
        if code:
            status[i] = Drop.NOT_IPV4 if code < 0 else code
            continue
        if ones_sum(data, off + 14, off + 14 + ihl) != 0xFFFF:
            status[i] = Drop.BAD_CHECKSUM
            continue
        if (data[off + 20] << 8 | data[off + 21]) & 0x3FFF:
            status[i] = Drop.FRAGMENT
            continue
        if data[off + 23] != _UDP:
            status[i] = Drop.NOT_UDP
            continue
        if total < ihl + 16:
            status[i] = Drop.TRUNCATED
            continue
        u = off + 14 + ihl
        if (data[u + 2] << 8 | data[u + 3]) != port:
            status[i] = Drop.WRONG_PORT
            continue
        ulen = data[u + 4] << 8 | data[u + 5]
        if ulen < 16 or ulen > total - ihl:
            status[i] = Drop.BAD_LENGTH
            continue
        if not data[u + 8] & 0x08:
            status[i] = Drop.NO_I_FLAG
            continue
        if (data[u + 12] << 16 | data[u + 13] << 8 | data[u + 14]) != vni:
            status[i] = Drop.WRONG_VNI
            continue
        inner = ulen - 16
        if inner < 14:
            status[i] = Drop.TRUNCATED
            continue
        if not allow_vlan and (data[u + 28] << 8 | data[u + 29]) in _ETH_VLAN:
            status[i] = Drop.INNER_VLAN
            continue
        peer[i] = _U32.unpack_from(data, off + 26)[0]
        offset[i] = u + 16
        length[i] = inner
        done += 1
    return done


def vxlan_encap(
    batch: FrameBatch,
    local_ip: bytes,
    remote_ip: bytes | None,
    vni: int,
    *,
    src_mac: bytes,
    dst_mac: bytes,
    port: int = VXLAN_PORT,
    ttl: int = 64,
    mtu: int = 1450,
) -> int:
    """Prepend Ethernet/IPv4/UDP/VXLAN to every good frame; return how many were encapsulated.

    ``remote_ip`` None sends each frame to its ``peer[i]`` (as recorded by decap or by the FDB).
    """
    local = _check_bytes("local_ip", local_ip, 4)
    remote = _check_addr("remote_ip", remote_ip)
    vni = _check_int("vni", vni, 0, 0xFFFFFF)
    src = _check_bytes("src_mac", src_mac, 6)
    dst = _check_bytes("dst_mac", dst_mac, 6)
    port = _check_int("port", port, 0, 0xFFFF)
    ttl = _check_int("ttl", ttl, 1, 255)
    mtu = _check_int("mtu", mtu, 68, 0xFFFF - VXLAN_OVERHEAD)
    template = bytearray(
        dst
        + src
        + b"\x08\x00"
        + bytes((0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, _UDP, 0, 0))
        + local
        + bytes(4)
        + bytes(
            (
                0,
                0,
                port >> 8,
                port & 0xFF,
                0,
                0,
                0,
                0,
                0x08,
                0,
                0,
                0,
                vni >> 16,
                vni >> 8 & 0xFF,
                vni & 0xFF,
                0,
            )
        )
    )
    # Sum of the IPv4 header words that do not change per frame.
    fixed = 0x4500 + 0x4000 + (ttl << 8 | _UDP) + (local[0] << 8 | local[1]) + (local[2] << 8 | local[3])
    data, offset, length, status, peer = batch.data, batch.offset, batch.length, batch.status, batch.peer
    slot = batch.slot_size
    view = memoryview(data)
    done = 0
    for i in range(batch.count):
        if status[i]:
            continue
        if not _in_slot(batch, i):
            status[i] = Drop.OUT_OF_SLOT
            continue
        off, n = offset[i], length[i]
        if n < 14:
            status[i] = Drop.TRUNCATED
            continue
        if n > mtu + 14:
            status[i] = Drop.TOO_BIG
            continue
        if off - i * slot < VXLAN_OVERHEAD:
            status[i] = Drop.NO_HEADROOM
            continue
        target = remote if remote >= 0 else peer[i]
        if remote < 0 and not target:
            status[i] = Drop.NO_PEER
            continue
        sport = source_port_for(view[off : off + n])
        s = off - VXLAN_OVERHEAD
        data[s:off] = template
        total = n + 36
        checksum = ~_fold(fixed + total + (target >> 16) + (target & 0xFFFF)) & 0xFFFF
        _U16.pack_into(data, s + 16, total)
        _U16.pack_into(data, s + 24, checksum)
        _U32.pack_into(data, s + 30, target)
        _U16.pack_into(data, s + 34, sport)
        _U16.pack_into(data, s + 38, n + 16)
        offset[i] = s
        length[i] = n + VXLAN_OVERHEAD
        done += 1
    return done


# -- IPv4 rewrite ---------------------------------------------------------------------------------------


def _rewrite_one(batch: FrameBatch, i: int, values: tuple[int, int, int, int]) -> int:
    """Rewrite frame ``i`` to ``values`` = (src, dst, sport, dport), where < 0 means "as it is".

    Returns 1 if the frame is IPv4 TCP/UDP, else 0.
    """
    new_src, new_dst, new_sport, new_dport = values
    data, status = batch.data, batch.status
    if not _in_slot(batch, i):
        status[i] = Drop.OUT_OF_SLOT
        return 0
    off = batch.offset[i]
    code, ihl, total = _ipv4(data, off, batch.length[i])
    if code:
        if code > 0:
            status[i] = code
        return 0
    proto = data[off + 23]
    if proto not in (_TCP, _UDP):
        return 0
    code, where, first = _l4(data, off, ihl, total)
    if code:
        status[i] = code
        return 0
    # RFC 1624 eqn. 3 over every changed word at once: HC' = ~(~HC + sum(~m) + sum(m')).
    delta_ip = 0
    for pos, new in ((off + 26, new_src), (off + 30, new_dst)):
        if new >= 0:
            old = _U32.unpack_from(data, pos)[0]
            delta_ip += (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
            _U32.pack_into(data, pos, new)
    hc = data[off + 24] << 8 | data[off + 25]
    _U16.pack_into(data, off + 24, ~_fold((~hc & 0xFFFF) + delta_ip) & 0xFFFF)
    if not first:
        return 1
    delta = delta_ip
    l4 = off + 14 + ihl
    for pos, new in ((l4, new_sport), (l4 + 2, new_dport)):
        if new >= 0:
            old = data[pos] << 8 | data[pos + 1]
            delta += (~old & 0xFFFF) + new
            _U16.pack_into(data, pos, new)
    check = data[where] << 8 | data[where + 1]
    if proto == _UDP and check == 0:
        return 1  # "no checksum" over IPv4 (RFC 768) stays so
    check = ~_fold((~check & 0xFFFF) + delta) & 0xFFFF
    if proto == _UDP and check == 0:
        check = 0xFFFF
    _U16.pack_into(data, where, check)
    return 1


def rewrite_ipv4(
    batch: FrameBatch,
    *,
    dst_addr: bytes | None = None,
    dst_port: int | None = None,
    src_addr: bytes | None = None,
    src_port: int | None = None,
) -> int:
    """Rewrite the given fields of every good IPv4 TCP/UDP frame; return how many matched."""
    new = (
        _check_addr("src_addr", src_addr),
        _check_addr("dst_addr", dst_addr),
        _check_port("src_port", src_port),
        _check_port("dst_port", dst_port),
    )
    status = batch.status
    done = 0
    for i in range(batch.count):
        if not status[i]:
            done += _rewrite_one(batch, i, new)
    return done


def rewrite_ipv4_each(
    batch: FrameBatch,
    *,
    dst_addr: array.array[int] | None = None,
    dst_port: array.array[int] | None = None,
    src_addr: array.array[int] | None = None,
    src_port: array.array[int] | None = None,
) -> int:
    """:func:`rewrite_ipv4` with a value per frame (for NAT): ``array('I')`` addresses, ``array('H')``
    ports, at least ``count`` long; an entry of 0 leaves that field of that frame unchanged."""
    count = batch.count
    dsts = _check_array("dst_addr", dst_addr, "I", count)
    dports = _check_array("dst_port", dst_port, "H", count)
    srcs = _check_array("src_addr", src_addr, "I", count)
    sports = _check_array("src_port", src_port, "H", count)
    status = batch.status
    done = 0
    for i in range(count):
        if status[i]:
            continue
        new = (
            (srcs[i] or -1) if srcs is not None else -1,
            (dsts[i] or -1) if dsts is not None else -1,
            (sports[i] or -1) if sports is not None else -1,
            (dports[i] or -1) if dports is not None else -1,
        )
        done += _rewrite_one(batch, i, new)
    return done


# -- classification and checksum completion --------------------------------------------------------------


def classify(batch: FrameBatch) -> int:
    """Fill ``kind``, ``src_addr``, ``dst_addr``, ``protocol``, ``src_port``, ``dst_port``.

    IPv4: addresses and protocol; ports for a first-fragment TCP/UDP packet, else 0. ARP over
    Ethernet/IPv4: sender and target protocol addresses, the opcode in ``src_port``. Frames with a
    status get :attr:`Kind.NONE` and zeros. Returns how many good frames were classified.
    """
    data, status, kinds = batch.data, batch.status, batch.kind
    srcs, dsts, protos, sports, dports = (
        batch.src_addr,
        batch.dst_addr,
        batch.protocol,
        batch.src_port,
        batch.dst_port,
    )
    done = 0
    for i in range(batch.count):
        kind = Kind.NONE
        src = dst = proto = sport = dport = 0
        if not status[i]:
            if not _in_slot(batch, i):
                status[i] = Drop.OUT_OF_SLOT
            else:
                off, n = batch.offset[i], batch.length[i]
                code, ihl, total = _ipv4(data, off, n)
                if code > 0:
                    status[i] = code
                elif code == 0:
                    proto = data[off + 23]
                    src, dst = struct.unpack_from("!II", data, off + 26)
                    if proto in (_TCP, _UDP):
                        code, _where, first = _l4(data, off, ihl, total)
                        if code:
                            status[i] = code
                        else:
                            kind = Kind.IPV4_UDP if proto == _UDP else Kind.IPV4_TCP
                            if first:
                                sport, dport = struct.unpack_from("!HH", data, off + 14 + ihl)
                    else:
                        kind = Kind.IPV4_ICMP if proto == _ICMP else Kind.IPV4_OTHER
                elif (data[off + 12] << 8 | data[off + 13]) == _ETH_ARP:
                    if n < 42:
                        status[i] = Drop.TRUNCATED
                    else:
                        kind = Kind.ARP
                        sport = data[off + 20] << 8 | data[off + 21]
                        if data[off + 18] == 6 and data[off + 19] == 4:
                            src = _U32.unpack_from(data, off + 28)[0]
                            dst = _U32.unpack_from(data, off + 38)[0]
                else:
                    kind = Kind.OTHER
                if status[i]:
                    kind = Kind.NONE
                    src = dst = proto = sport = dport = 0
                else:
                    done += 1
        kinds[i] = kind
        srcs[i] = src
        dsts[i] = dst
        protos[i] = proto
        sports[i] = sport
        dports[i] = dport
    return done


def complete_inner_checksums(batch: FrameBatch) -> int:
    """Finish inner TCP/UDP checksums that fail to verify and equal the pseudo-header seed.

    That is what a kernel VXLAN sender over veth leaves (offload never ran); other bad checksums
    are left for the end host to drop (``spec/dataplane.md`` §5.3). Returns how many were finished.
    """
    data, status = batch.data, batch.status
    done = 0
    for i in range(batch.count):
        if status[i]:
            continue
        if not _in_slot(batch, i):
            status[i] = Drop.OUT_OF_SLOT
            continue
        off = batch.offset[i]
        code, ihl, total = _ipv4(data, off, batch.length[i])
        if code:
            if code > 0:
                status[i] = code
            continue
        proto = data[off + 23]
        if proto not in (_TCP, _UDP):
            continue
        code, where, _first = _l4(data, off, ihl, total)
        if code:
            status[i] = code
            continue
        if (data[off + 20] << 8 | data[off + 21]) & 0x3FFF:
            continue  # a fragment: the checksum covers data not in this frame
        stored = data[where] << 8 | data[where + 1]
        if proto == _UDP and stored == 0:
            continue
        seg = total - ihl
        seed = _fold(
            (data[off + 26] << 8 | data[off + 27])
            + (data[off + 28] << 8 | data[off + 29])
            + (data[off + 30] << 8 | data[off + 31])
            + (data[off + 32] << 8 | data[off + 33])
            + proto
            + seg
        )
        if stored != seed:
            continue
        l4 = off + 14 + ihl
        segment_sum = ones_sum(data, l4, l4 + seg)
        if _fold(segment_sum + seed) == 0xFFFF:
            continue  # verifies after all
        check = ~segment_sum & 0xFFFF
        if proto == _UDP and check == 0:
            check = 0xFFFF
        _U16.pack_into(data, where, check)
        done += 1
    return done

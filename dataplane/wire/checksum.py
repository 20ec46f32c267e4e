"""Internet checksums (pure-Python twin of ``_checksum.pyx``).

RFC 1071 one's-complement sum, the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768), RFC 1624
incremental update ``HC' = ~(~HC + ~m + m')`` (eqn. 3, which avoids RFC 1141's -0 defect), and
completion of partial checksums left for offload (virtio-net ``NEEDS_CSUM``: the L4 checksum field
holds the folded, uncomplemented pseudo-header sum; the rest is summed from ``csum_start``).
"""

from __future__ import annotations

from .errors import MalformedPacket

__all__ = [
    "complete_partial",
    "internet_checksum",
    "ones_sum",
    "pseudo_header_sum",
    "transport_checksum",
    "udp_wire_checksum",
    "update16",
    "update32",
    "update_partial16",
    "update_partial32",
]

IMPLEMENTATION = "python"


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview, start: int = 0, end: int = -1, initial: int = 0) -> int:
    """Folded 16-bit one's-complement sum of ``data[start:end]`` plus ``initial`` (not complemented).

    An odd trailing byte is padded with a zero byte, as RFC 1071 §4.1 does.
    """
    if end < 0:
        end = len(data)
    if start < 0 or start > end or end > len(data):
        raise MalformedPacket("checksum", f"range {start}:{end} outside 0:{len(data)}")
    view = bytes(data[start:end])
    if len(view) & 1:
        view += b"\x00"
    total = initial & 0xFFFFFFFF
    # Summing 16-bit words via one big integer is the fastest pure-Python route: the sum of the
    # words equals the big-endian integer folded modulo 0xFFFF (except that 0xFFFF stays 0xFFFF).
    number = int.from_bytes(view, "big")
    if number:
        folded = number % 0xFFFF
        total += folded if folded else 0xFFFF
    return _fold(total)


def internet_checksum(
    data: bytes | bytearray | memoryview, start: int = 0, end: int = -1, initial: int = 0
) -> int:
    """The RFC 1071 checksum: the complement of :func:`ones_sum`."""
    return ~ones_sum(data, start, end, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (source, destination, zero, protocol, L4 length)."""
    if len(src) != 4 or len(dst) != 4:
        raise MalformedPacket("pseudo_header", "IPv4 addresses must be 4 bytes")
    total = (
        (src[0] << 8 | src[1])
        + (src[2] << 8 | src[3])
        + (dst[0] << 8 | dst[1])
        + (dst[2] << 8 | dst[3])
        + (protocol & 0xFF)
        + (length & 0xFFFF)
        + (length >> 16)
    )
    return _fold(total)


def update16(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for one changed 16-bit word."""
    total = (~checksum & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)
    return ~_fold(total) & 0xFFFF


def update32(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for a changed 32-bit value (an IPv4 address): two words at once."""
    total = (
        (~checksum & 0xFFFF) + (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16 & 0xFFFF) + (new & 0xFFFF)
    )
    return ~_fold(total) & 0xFFFF


def update_partial16(seed: int, old: int, new: int) -> int:
    """Update an uncomplemented partial-checksum seed: ``HC' = HC + ~m + m'`` (no outer complements)."""
    return _fold((seed & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF))


def update_partial32(seed: int, old: int, new: int) -> int:
    """:func:`update_partial16` for a changed 32-bit value."""
    return _fold(
        (seed & 0xFFFF) + (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16 & 0xFFFF) + (new & 0xFFFF)
    )


def udp_wire_checksum(checksum: int) -> int:
    """Over IPv4 a UDP checksum of 0 means "none", so a computed 0 is sent as 0xFFFF (RFC 768)."""
    return checksum if checksum else 0xFFFF


def complete_partial(frame: bytearray, csum_start: int, csum_offset: int) -> None:
    """Finish a checksum left for offload, in place.

    ``frame[csum_start + csum_offset]`` holds the folded pseudo-header seed; the checksum is the
    complement of the sum from ``csum_start`` to the end of the frame, seed included.
    """
    where = csum_start + csum_offset
    if csum_start < 0 or csum_offset < 0 or where + 2 > len(frame):
        raise MalformedPacket("vnet.csum_offset", f"checksum at {where} outside frame of {len(frame)}")
    value = internet_checksum(frame, csum_start, len(frame))
    frame[where] = value >> 8
    frame[where + 1] = value & 0xFF


def transport_checksum(src: bytes, dst: bytes, protocol: int, segment: bytes | bytearray | memoryview) -> int:
    """TCP/UDP checksum of ``segment`` (its checksum field zeroed) under the IPv4 pseudo-header."""
    return internet_checksum(segment, 0, -1, pseudo_header_sum(src, dst, protocol, len(segment)))

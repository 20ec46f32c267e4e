# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Software GSO for virtio-net frames (compiled twin of ``gso.py``; same API, same frames).

The theory of operation is in ``gso.py``. ``build`` and ``deliver_flags`` (declared in
``_gso.pxd``) are the C functions the compiled tunnel pump (``dataplane/pump/_tunnel.pyx``) runs on
its raw buffers; the Python-level functions below wrap the same two, so a test or benchmark of
this module exercises exactly the pump's code.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._bytes cimport csum, fold, ld16n, pseudo, rd16, rd32, st16n, wr16, wr32

from .errors import MalformedPacket

__all__ = ["deliver_header", "segment"]  # finish_checksum too, not re-exported: wire.vnet has its own

IMPLEMENTATION = "cython"
MAX_HEADERS = GSO_MAX_HEADERS
MAX_SEGMENTS = GSO_MAX_SEGMENTS

cdef enum:
    # scratch for segment(): a 64 KiB payload cut into the most segments, with room to spare
    SCRATCH = 65536 + GSO_MAX_SEGMENTS * (8 + GSO_MAX_HEADERS) + 256

# The field each GSO_R_* reason names (MalformedPacket.field), index = reason.
REASONS = (
    "", "vnet.header", "vnet.flags", "ethernet", "vnet.gso_type", "vnet.gso_size", "ipv4.version",
    "ipv6.version", "vnet.csum_start", "ethernet.type", "tcp.header", "tcp.offset", "vnet.csum_offset",
    "vnet.hdr_len",
)
assert len(REASONS) == GSO_R_COUNT


cdef int build(const uint8_t* vh, const uint8_t* frame, Py_ssize_t n, int pre, uint8_t* out,
               Py_ssize_t cap, Py_ssize_t* seg_len, Py_ssize_t* last_len) noexcept nogil:
    """See ``_gso.pxd``: the frames of one TAP read, each after ``pre`` spare bytes, or -reason."""
    cdef uint32_t flags = vh[0], gso_type = vh[1], kind
    cdef uint32_t gso_size = ld16n(vh + 4), csum_start = ld16n(vh + 6), csum_offset = ld16n(vh + 8)
    cdef Py_ssize_t l3 = GSO_ETH_LEN, l4, l4_len, hlen, payload, count, i, chunk, stride, where
    cdef uint32_t ethertype, proto, want, ip_id = 0, seq = 0, tflags = 0, value, l4_total
    cdef bint v6
    cdef uint8_t* seg
    if flags & ~GSO_KNOWN_FLAGS:
        return -GSO_R_VNET_FLAGS
    if n < GSO_ETH_LEN:
        return -GSO_R_ETHERNET
    kind = gso_type & ~GSO_ECN
    if kind == 0:
        if pre + n > cap:
            return -GSO_R_VNET_HDR_LEN
        seg = out + pre
        memcpy(seg, frame, n)
        if flags & GSO_F_NEEDS_CSUM:
            if csum_start >= n:
                return -GSO_R_VNET_CSUM_START
            where = csum_start + csum_offset
            if where + 2 > n:
                return -GSO_R_VNET_CSUM_OFFSET
            value = ~csum(seg + csum_start, n - csum_start) & 0xFFFF
            wr16(seg + where, value if value else 0xFFFF)
        seg_len[0] = n
        last_len[0] = n
        return 1
    if kind != GSO_TCPV4 and kind != GSO_TCPV6 and kind != GSO_UDP_L4:
        return -GSO_R_VNET_GSO_TYPE
    if not flags & GSO_F_NEEDS_CSUM:
        return -GSO_R_VNET_FLAGS
    if gso_size == 0:
        return -GSO_R_VNET_GSO_SIZE
    ethertype = rd16(frame + 12)
    l4 = csum_start
    if ethertype == 0x0800 and kind != GSO_TCPV6:
        v6 = False
        if n < l3 + 20 or frame[l3] >> 4 != 4:
            return -GSO_R_IPV4_VERSION
        if l4 != l3 + (frame[l3] & 0x0F) * 4 or l4 < l3 + 20:
            return -GSO_R_VNET_CSUM_START
    elif ethertype == 0x86DD and kind != GSO_TCPV4:
        v6 = True
        if n < l3 + 40 or frame[l3] >> 4 != 6:
            return -GSO_R_IPV6_VERSION
        if l4 < l3 + 40:
            return -GSO_R_VNET_CSUM_START
    else:
        return -GSO_R_ETHERNET_TYPE
    if kind == GSO_UDP_L4:
        proto = GSO_PROTO_UDP
        want = 6
        l4_len = 8
    else:
        proto = GSO_PROTO_TCP
        want = 16
        if n < l4 + 20:
            return -GSO_R_TCP_HEADER
        l4_len = (frame[l4 + 12] >> 4) * 4
        if l4_len < 20:
            return -GSO_R_TCP_OFFSET
    if csum_offset != want:
        return -GSO_R_VNET_CSUM_OFFSET
    hlen = l4 + l4_len
    if hlen > n or hlen > GSO_MAX_HEADERS:
        return -GSO_R_VNET_HDR_LEN
    payload = n - hlen
    count = (payload + gso_size - 1) // gso_size
    if count < 1:
        count = 1
    if count > GSO_MAX_SEGMENTS:
        return -GSO_R_VNET_GSO_SIZE
    chunk = gso_size if payload > gso_size else payload
    stride = pre + hlen + chunk
    if count * stride > cap:
        return -GSO_R_VNET_GSO_SIZE
    if not v6:
        ip_id = rd16(frame + l3 + 4)
    if proto == GSO_PROTO_TCP:
        seq = rd32(frame + l4 + 4)
        tflags = frame[l4 + 13]
    seg_len[0] = hlen + chunk
    for i in range(count):
        seg = out + i * stride + pre
        chunk = payload - i * <Py_ssize_t>gso_size
        if chunk > gso_size:
            chunk = gso_size
        memcpy(seg, frame, hlen)
        memcpy(seg + hlen, frame + hlen + i * <Py_ssize_t>gso_size, chunk)
        l4_total = <uint32_t>(l4_len + chunk)
        if v6:
            wr16(seg + l3 + 4, <uint32_t>(l4 - l3 - 40) + l4_total)
        else:
            wr16(seg + l3 + 2, <uint32_t>(l4 - l3) + l4_total)
            wr16(seg + l3 + 4, (ip_id + <uint32_t>i) & 0xFFFF)
            wr16(seg + l3 + 10, 0)
            wr16(seg + l3 + 10, ~csum(seg + l3, l4 - l3) & 0xFFFF)
        if proto == GSO_PROTO_TCP:
            wr32(seg + l4 + 4, seq + <uint32_t>(i * <Py_ssize_t>gso_size))
            value = tflags
            if i != count - 1:
                value &= ~0x09  # FIN, PSH only on the last segment
            if i:
                value &= ~0x80  # CWR only on the first
            seg[l4 + 13] = <uint8_t>value
        else:
            wr16(seg + l4 + 4, l4_total)
        wr16(seg + l4 + want, 0)
        value = ~fold(<uint64_t>pseudo(seg + l3, v6, proto, l4_total) + csum(seg + l4, l4_total)) & 0xFFFF
        if proto == GSO_PROTO_UDP and value == 0:
            value = 0xFFFF
        wr16(seg + l4 + want, value)
        last_len[0] = hlen + chunk
    return <int>count


cdef int deliver_flags(const uint8_t* frame, Py_ssize_t n, uint8_t* vh) noexcept nogil:
    """See ``_gso.pxd`` and ``gso.deliver_header``."""
    cdef Py_ssize_t l3 = GSO_ETH_LEN, ihl, total_len, l4, l4_total, offset
    cdef uint32_t proto, field, seed, total
    if n < GSO_ETH_LEN + 20 or frame[12] != 0x08 or frame[13] != 0x00 or frame[l3] >> 4 != 4:
        return 0
    ihl = (frame[l3] & 0x0F) * 4
    total_len = rd16(frame + l3 + 2)
    proto = frame[l3 + 9]
    if ihl < 20 or total_len < ihl or l3 + total_len > n or (frame[l3 + 6] & 0x3F) or frame[l3 + 7]:
        return 0
    l4 = l3 + ihl
    l4_total = total_len - ihl
    if proto == GSO_PROTO_TCP:
        offset = 16
        if l4_total < 20:
            return 0
    elif proto == GSO_PROTO_UDP:
        offset = 6
        if l4_total < 8:
            return 0
    else:
        return 0
    field = rd16(frame + l4 + offset)
    if proto == GSO_PROTO_UDP and field == 0:
        return 0
    seed = pseudo(frame + l3, False, proto, <uint32_t>l4_total)
    total = fold(<uint64_t>seed + csum(frame + l4, l4_total))
    if total == 0xFFFF:
        vh[0] = GSO_F_DATA_VALID
        return GSO_F_DATA_VALID
    if field == seed:
        vh[0] = GSO_F_NEEDS_CSUM
        st16n(vh + 6, <uint32_t>l4)
        st16n(vh + 8, <uint32_t>offset)
        return GSO_F_NEEDS_CSUM
    return 0



# -- Python-level API (gso.py's) --------------------------------------------------------------

def _check_size(int vnet_hdr_size):
    if vnet_hdr_size != 10 and vnet_hdr_size != 12:
        raise ValueError(f"vnet_hdr_size must be 10 or 12, not {vnet_hdr_size}")


def segment(data, int vnet_hdr_size=10):
    """The wire-ready inner frames of one TAP read (vnet header + frame); see ``gso.segment``."""
    _check_size(vnet_hdr_size)
    cdef const uint8_t[:] view = data
    cdef Py_ssize_t n = view.shape[0]
    if n < vnet_hdr_size:
        raise MalformedPacket("vnet.header", f"{n} bytes")
    cdef uint8_t* out = <uint8_t*>malloc(SCRATCH)
    if out == NULL:
        raise MemoryError()
    cdef Py_ssize_t seg_len = 0, last_len = 0, i
    cdef int count
    try:
        count = build(&view[0], &view[0] + vnet_hdr_size, n - vnet_hdr_size, 0, out, SCRATCH,
                      &seg_len, &last_len)
        if count < 0:
            raise MalformedPacket(REASONS[-count], "refused")
        result = []
        for i in range(count):
            result.append(PyBytes_FromStringAndSize(<char*>out + i * seg_len,
                                                    last_len if i == count - 1 else seg_len))
        return result
    finally:
        free(out)


def deliver_header(frame, int vnet_hdr_size=10):
    """The vnet header to write before a decapsulated inner frame; see ``gso.deliver_header``."""
    _check_size(vnet_hdr_size)
    cdef const uint8_t[:] view = frame
    cdef uint8_t vh[12]
    memset(vh, 0, 12)
    if view.shape[0]:
        deliver_flags(&view[0], view.shape[0], vh)
    return PyBytes_FromStringAndSize(<char*>vh, vnet_hdr_size)


def finish_checksum(bytearray frame, Py_ssize_t csum_start, Py_ssize_t csum_offset):
    """Complete a partial checksum in place (0 -> 0xFFFF, as ``skb_checksum_help``)."""
    cdef Py_ssize_t n = len(frame)
    cdef uint8_t* p = <uint8_t*>(<char*>frame)
    if csum_start < 0 or csum_start >= n:
        raise MalformedPacket("vnet.csum_start", f"{csum_start} outside frame of {n}")
    if csum_offset < 0 or csum_start + csum_offset + 2 > n:
        raise MalformedPacket("vnet.csum_offset", f"field at {csum_start + csum_offset} outside frame of {n}")
    cdef uint32_t value = ~csum(p + csum_start, n - csum_start) & 0xFFFF
    wr16(p + csum_start + csum_offset, value if value else 0xFFFF)

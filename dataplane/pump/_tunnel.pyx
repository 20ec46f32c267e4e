# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The tunnel pump (compiled twin of ``tunnel.py``; same API, same frames on the wire).

The theory of operation is in ``tunnel.py``. What this twin adds is batching, with the GIL released
around every syscall:

* TAP -> underlay: up to ``batch`` TAP reads per round; each frame (segmented in C when it is a GSO
  super-frame) is staged with its VXLAN header in one buffer, and the round ends with ``sendmmsg``:
  one message per peer per run of equal-size segments, carrying a ``UDP_SEGMENT`` cmsg so the
  kernel cuts it into datagrams (UDP GSO), or one message per datagram without GSO (send sockets
  with ``SO_NO_CHECK``). Each TAP read's messages name the send socket of its flow
  (:func:`source_slot`); at the end of a round the queue is sent with one ``sendmmsg`` per socket,
  each flow's messages in their order.
* underlay -> TAP: ``recvmmsg`` fills up to ``rx_batch`` buffers (64 KiB each when ``UDP_GRO``
  coalesces datagrams, split at the ``gso_size`` cmsg); consecutive in-order TCP segments of one flow
  are written to the TAP as one GSO super-frame (``TCPV4``, ``NEEDS_CSUM`` with the pseudo-header
  seed) with one ``writev``: software GRO, so the receiving stack sees 64 KiB at a time.

The handler (the VTEP) is called at C level through ``dataplane/pump/_handler.pxd``, the frame
builders of software GSO are ``dataplane/wire/_gso.pxd``'s and the byte and checksum helpers
``dataplane/wire/_bytes.pxd``'s: this module holds only the moving of batches.
"""

import socket as _socket
import time as _time

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from dataplane.wire._bytes cimport csum, fold, pseudo, rd16, rd32, st16n, wr16
from dataplane.wire._gso cimport (
    GSO_ECN,
    GSO_ETH_LEN as ETH_LEN,
    GSO_F_DATA_VALID as F_DATA_VALID,
    GSO_F_NEEDS_CSUM as F_NEEDS_CSUM,
    GSO_MAX_HEADERS as MAX_HEADERS,
    GSO_MAX_SEGMENTS as MAX_SEGMENTS,
    GSO_PROTO_TCP as PROTO_TCP,
    GSO_R_COUNT,
    GSO_TCPV4,
    build,
    deliver_flags,
)

from ._handler cimport FrameHandler

from dataplane.wire._gso import REASONS as GSO_REASONS
from dataplane.wire.vxlan import VXLAN_HEADER_LENGTH, VXLAN_PORT

__all__ = ["IMPLEMENTATION", "Pump", "source_slot"]

IMPLEMENTATION = "cython"


cdef extern from "<errno.h>":
    int errno
    enum:
        EAGAIN
        EINTR
        ENOBUFS
        EINVAL
        EIO

cdef extern from "<unistd.h>":
    ssize_t c_read "read"(int fd, void* buf, size_t count) nogil
    int c_close "close"(int fd) nogil

cdef extern from "<sched.h>":
    int sched_yield() nogil

cdef extern from "<sys/uio.h>":
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int iovcnt) nogil

cdef extern from "<sys/socket.h>":
    ctypedef unsigned int socklen_t
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* m) nogil
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c) nogil
    unsigned char* CMSG_DATA(cmsghdr* c) nogil
    size_t CMSG_SPACE(size_t n) nogil
    size_t CMSG_LEN(size_t n) nogil
    int sendmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags) nogil
    int recvmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags, void* timeout) nogil
    enum:
        MSG_DONTWAIT
        AF_INET

cdef extern from "<netinet/in.h>":
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    uint16_t htons(uint16_t v) nogil
    uint32_t htonl(uint32_t v) nogil
    uint32_t ntohl(uint32_t v) nogil

cdef extern from "<sys/epoll.h>":
    ctypedef union epoll_data_t:
        int fd
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags) nogil
    int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) nogil
    int epoll_wait(int epfd, epoll_event* evs, int n, int timeout) nogil
    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CLOEXEC

cdef extern from "<poll.h>":
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long n, int timeout) nogil
    enum:
        POLLOUT


# -- constants (values shared with tunnel.py) ----------------------------------------------------

cdef enum:
    SOL_UDP = 17
    UDP_SEGMENT = 103
    UDP_GRO = 104
    SO_NO_CHECK = 11
    PORT_BASE = 49152
    PORT_SPAN = 16384
    MAX_GSO_BYTES = 65000
    MAX_GSO_SEGMENTS = 64
    VXLAN_LEN = 8
    TAP_READ = 65536 + 64
    SEG_SCRATCH = 65536 + MAX_SEGMENTS * (VXLAN_LEN + MAX_HEADERS) + 256
    TX_BUFFER = 4 * SEG_SCRATCH
    TX_MESSAGES = 1024
    GRO_MAX = 64
    CTRL_SPACE = 32

# Drop reasons: index into Pump.drops and REASONS. The malformed ones are wire.gso's (they name the
# field, as in tunnel.py), then the pump's own.
cdef enum:
    R_VNET_HEADER = 1
    R_VTEP_TX = GSO_R_COUNT
    R_VTEP_RX
    R_UDP_EAGAIN
    R_UDP_ENOBUFS
    R_UDP_ERROR
    R_TAP_EAGAIN
    R_TAP_ERROR
    R_COUNT

REASONS = GSO_REASONS + (
    "vtep_tx", "vtep_rx", "udp_send_eagain", "udp_send_enobufs", "udp_send_error", "tap_write_eagain",
    "tap_write_error",
)
assert len(REASONS) == R_COUNT and VXLAN_HEADER_LENGTH == VXLAN_LEN

# Counters: index into Pump.counts.
cdef enum:
    C_TAP_RX_FRAMES = 0
    C_TAP_RX_BYTES
    C_TAP_RX_GSO
    C_TSO_SEGMENTS
    C_UDP_TX_DGRAMS
    C_UDP_TX_BYTES
    C_UDP_RX_DGRAMS
    C_UDP_RX_BYTES
    C_TAP_TX_FRAMES
    C_TAP_TX_BYTES
    C_GRO_SEGMENTS
    C_CSUM_PASSED
    C_EPOLL
    C_SYS_TAP_READ
    C_SYS_TAP_WRITE
    C_SYS_UDP_SEND
    C_SYS_UDP_RECV
    C_UDP_TX_MSGS
    C_SPIN_POLLS
    C_SPIN_HITS
    C_SPIN_NS
    C_COUNT


MAX_BUSY_POLL_US = 1000000


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int slot_of(int port, int count) noexcept nogil:
    cdef int offset = port - PORT_BASE
    if count <= 1:
        return 0
    if offset < 0:
        offset = 0
    elif offset >= PORT_SPAN:
        offset = PORT_SPAN - 1
    return <int>((<int64_t>offset * count) // PORT_SPAN)


# -- module-level twins of tunnel.py's helpers ------------------------------------------------------

def source_slot(int port, int count):
    """The send socket (0..count-1) for a flow whose hash port is ``port``; see ``pump.source_slot``."""
    return slot_of(port, count)


def _check_size(int vnet_hdr_size):
    if vnet_hdr_size != 10 and vnet_hdr_size != 12:
        raise ValueError(f"vnet_hdr_size must be 10 or 12, not {vnet_hdr_size}")


def _check_busy_poll(busy_poll):
    if not 0 <= busy_poll <= MAX_BUSY_POLL_US:
        raise ValueError(f"busy_poll must be 0..{MAX_BUSY_POLL_US} microseconds, not {busy_poll}")


# -- the pump -------------------------------------------------------------------------------------

cdef class Pump:
    """Moves frames between a TAP descriptor and the underlay UDP socket through ``handler``.

    Same constructor and methods as ``pump.Pump``; ``rx_batch`` sets how many receive buffers one
    ``recvmmsg`` fills (64 KiB each with UDP GRO).
    """

    cdef readonly int tap_fd
    cdef readonly int udp_fd
    cdef int* send_fds
    cdef int n_send
    cdef readonly bint pooled
    cdef readonly bint checksum_zero
    cdef readonly tuple send_socks
    cdef int epfd
    cdef readonly int wake_fd
    cdef readonly int vnet_hdr_size
    cdef readonly int batch
    cdef readonly int rx_batch
    cdef public bint gso
    cdef readonly bint gro
    cdef public bint soft_gro
    cdef readonly int port
    cdef int mtu
    # busy-polling: after a round with traffic, poll (epoll_wait 0) until spin_until before blocking
    cdef int64_t busy_ns
    cdef int64_t spin_until
    cdef FrameHandler handler
    cdef object sock
    cdef uint64_t counts[C_COUNT]
    cdef uint64_t drops[R_COUNT]
    cdef uint64_t* gro_hist
    # TAP -> underlay
    cdef uint8_t* tap_buf
    cdef uint8_t* tx_buf
    cdef Py_ssize_t tx_used
    cdef mmsghdr* tx_msgs
    cdef iovec* tx_iov
    cdef sockaddr_in* tx_addr
    cdef uint8_t* tx_ctrl
    cdef int* tx_segs
    cdef int* tx_fd
    cdef mmsghdr* tx_sorted
    cdef int* tx_sorted_segs
    cdef uint8_t* tx_done
    cdef bint tx_mixed
    cdef int tx_n
    cdef uint32_t* dsts
    cdef int dst_cap
    # underlay -> TAP
    cdef Py_ssize_t rx_size
    cdef uint8_t* rx_buf
    cdef mmsghdr* rx_msgs
    cdef iovec* rx_iov
    cdef sockaddr_in* rx_addr
    cdef uint8_t* rx_ctrl
    # software GRO: the pending super-frame
    cdef iovec gro_iov[GRO_MAX + 1]
    cdef uint8_t gro_head[12 + MAX_HEADERS]
    cdef const uint8_t* gro_first
    cdef Py_ssize_t gro_first_len
    cdef int gro_n
    cdef int gro_hlen
    cdef int gro_ihl
    cdef uint32_t gro_next_seq
    cdef uint32_t gro_mss
    cdef uint32_t gro_total
    cdef uint8_t gro_last_flags
    cdef int gro_first_vh
    cdef bint gro_open

    def __cinit__(self):
        self.epfd = -1
        self.wake_fd = -1

    def __init__(self, int tap_fd, udp_sock, FrameHandler handler not None, *, int vnet_hdr_size=10, gso=None,
                 int batch=64, port=None, int rx_batch=16, bint soft_gro=True, send_socks=None,
                 int busy_poll=0, wake_fd=None):
        cdef int i
        cdef epoll_event ev
        _check_size(vnet_hdr_size)
        _check_busy_poll(busy_poll)
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch must be 1..1024, not {batch}")
        if rx_batch < 1 or rx_batch > 1024:
            raise ValueError(f"rx_batch must be 1..1024, not {rx_batch}")
        self.tap_fd = tap_fd
        self.sock = udp_sock
        self.udp_fd = udp_sock.fileno()
        self.handler = handler
        self.vnet_hdr_size = vnet_hdr_size
        self.batch = batch
        self.port = int(port if port is not None else getattr(handler, "port", VXLAN_PORT))
        self.mtu = int(getattr(handler, "mtu", 1450))
        self.send_socks = tuple(send_socks or ()) or (udp_sock,)
        self.pooled = bool(send_socks)
        self.n_send = len(self.send_socks)
        self.send_fds = <int*>calloc(self.n_send, sizeof(int))
        if self.send_fds == NULL:
            raise MemoryError()
        for i in range(self.n_send):
            self.send_fds[i] = self.send_socks[i].fileno()
        try:
            self.checksum_zero = bool(self.send_socks[0].getsockopt(_socket.SOL_SOCKET, SO_NO_CHECK))
        except OSError:
            self.checksum_zero = False
        if gso is None:
            gso = _probe(self.send_socks[0], UDP_SEGMENT) and not self.checksum_zero
        self.gso = bool(gso)
        try:
            self.gro = bool(udp_sock.getsockopt(SOL_UDP, UDP_GRO))
        except OSError:
            self.gro = False
        self.soft_gro = soft_gro
        self.busy_ns = <int64_t>busy_poll * 1000
        self.spin_until = 0
        self.rx_batch = rx_batch if self.gro else max(rx_batch, batch)
        self.rx_size = 65536 if self.gro else 2048 if self.mtu <= 1900 else 65536
        self.tap_buf = <uint8_t*>malloc(TAP_READ)
        self.tx_buf = <uint8_t*>malloc(TX_BUFFER)
        self.tx_msgs = <mmsghdr*>calloc(TX_MESSAGES, sizeof(mmsghdr))
        self.tx_iov = <iovec*>calloc(TX_MESSAGES, sizeof(iovec))
        self.tx_addr = <sockaddr_in*>calloc(TX_MESSAGES, sizeof(sockaddr_in))
        self.tx_ctrl = <uint8_t*>calloc(TX_MESSAGES, CTRL_SPACE)
        self.tx_segs = <int*>calloc(TX_MESSAGES, sizeof(int))
        self.tx_fd = <int*>calloc(TX_MESSAGES, sizeof(int))
        self.tx_sorted = <mmsghdr*>calloc(TX_MESSAGES, sizeof(mmsghdr))
        self.tx_sorted_segs = <int*>calloc(TX_MESSAGES, sizeof(int))
        self.tx_done = <uint8_t*>calloc(TX_MESSAGES, 1)
        self.dst_cap = 4096
        self.dsts = <uint32_t*>calloc(self.dst_cap, sizeof(uint32_t))
        self.rx_buf = <uint8_t*>malloc(self.rx_batch * self.rx_size)
        self.rx_msgs = <mmsghdr*>calloc(self.rx_batch, sizeof(mmsghdr))
        self.rx_iov = <iovec*>calloc(self.rx_batch, sizeof(iovec))
        self.rx_addr = <sockaddr_in*>calloc(self.rx_batch, sizeof(sockaddr_in))
        self.rx_ctrl = <uint8_t*>calloc(self.rx_batch, CTRL_SPACE)
        self.gro_hist = <uint64_t*>calloc(GRO_MAX + 1, sizeof(uint64_t))
        if (self.tap_buf == NULL or self.tx_buf == NULL or self.tx_msgs == NULL or self.tx_iov == NULL
                or self.tx_addr == NULL or self.tx_ctrl == NULL or self.tx_segs == NULL
                or self.tx_fd == NULL or self.tx_sorted == NULL or self.tx_sorted_segs == NULL
                or self.tx_done == NULL
                or self.dsts == NULL or self.rx_buf == NULL or self.rx_msgs == NULL
                or self.rx_iov == NULL or self.rx_addr == NULL or self.rx_ctrl == NULL
                or self.gro_hist == NULL):
            raise MemoryError()
        for i in range(self.rx_batch):
            self.rx_iov[i].iov_base = self.rx_buf + i * self.rx_size
            self.rx_msgs[i].msg_hdr.msg_iov = &self.rx_iov[i]
            self.rx_msgs[i].msg_hdr.msg_iovlen = 1
            self.rx_msgs[i].msg_hdr.msg_name = &self.rx_addr[i]
            self.rx_msgs[i].msg_hdr.msg_control = self.rx_ctrl + i * CTRL_SPACE
        for i in range(TX_MESSAGES):
            self.tx_msgs[i].msg_hdr.msg_iov = &self.tx_iov[i]
            self.tx_msgs[i].msg_hdr.msg_iovlen = 1
            self.tx_msgs[i].msg_hdr.msg_name = &self.tx_addr[i]
            self.tx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)
        memset(self.counts, 0, sizeof(self.counts))
        memset(self.drops, 0, sizeof(self.drops))
        self.gro_n = 0
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        ev.events = EPOLLIN
        ev.data.fd = self.tap_fd
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.tap_fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl(tap) failed")
        ev.data.fd = self.udp_fd
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.udp_fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl(udp) failed")
        self.wake_fd = -1 if wake_fd is None else int(wake_fd)
        if self.wake_fd >= 0:
            ev.data.fd = self.wake_fd
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.wake_fd, &ev) < 0:
                raise OSError(errno, "epoll_ctl(wake) failed")

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
        free(self.tap_buf)
        free(self.tx_buf)
        free(self.tx_msgs)
        free(self.tx_iov)
        free(self.tx_addr)
        free(self.tx_ctrl)
        free(self.tx_segs)
        free(self.tx_fd)
        free(self.tx_sorted)
        free(self.tx_sorted_segs)
        free(self.tx_done)
        free(self.send_fds)
        free(self.dsts)
        free(self.rx_buf)
        free(self.rx_msgs)
        free(self.rx_iov)
        free(self.rx_addr)
        free(self.rx_ctrl)
        free(self.gro_hist)

    def close(self):
        if self.epfd >= 0:
            c_close(self.epfd)
            self.epfd = -1

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    # -- loop ----------------------------------------------------------------------------------

    @property
    def busy_poll(self):
        """The busy-poll window in microseconds (0: off); see ``pump.Pump.busy_poll``."""
        return <int>(self.busy_ns // 1000)

    @busy_poll.setter
    def busy_poll(self, value):
        _check_busy_poll(value)
        self.busy_ns = <int64_t>value * 1000
        self.spin_until = 0

    def run_once(self, double timeout):
        """Wait up to ``timeout`` seconds for either descriptor, then drain both. Returns frames moved.

        Within ``busy_poll`` microseconds of the last round that read a frame, the wait polls
        without sleeping first (GIL released); see ``pump.Pump.run_once``.
        """
        cdef epoll_event evs[3]
        cdef int n = 0, i, ms, err = 0
        cdef int moved = 0
        cdef int64_t start, limit, t
        cdef uint64_t polls = 0, seen
        if self.epfd < 0:
            raise ValueError("the pump is closed")
        if timeout < 0:
            timeout = 0
        ms = <int>(timeout * 1000.0)
        if self.spin_until:
            with nogil:
                start = now_ns()
                limit = start + <int64_t>(timeout * 1e9)
                if limit > self.spin_until:
                    limit = self.spin_until
                t = start
                while True:
                    n = epoll_wait(self.epfd, evs, 3, 0)
                    polls += 1
                    if n != 0:
                        err = errno
                        break
                    t = now_ns()
                    if t >= limit:
                        break
                    sched_yield()  # a task woken onto this CPU (the peer, the app) runs first
            self.counts[C_SPIN_POLLS] += polls
            self.counts[C_SPIN_NS] += <uint64_t>(t - start)
            if n > 0:
                self.counts[C_SPIN_HITS] += 1
            else:
                if t >= self.spin_until:
                    self.spin_until = 0  # the window passed without a frame: block from now on
                ms -= <int>((t - start) // 1000000)
                if ms < 0:
                    ms = 0
        if n == 0:
            with nogil:
                n = epoll_wait(self.epfd, evs, 3, ms)
                err = errno
        if n < 0:
            if err == EINTR:
                return 0
            raise OSError(err, "epoll_wait failed")
        self.counts[C_EPOLL] += 1
        seen = self.counts[C_TAP_RX_FRAMES] + self.counts[C_UDP_RX_DGRAMS]
        for i in range(n):
            if evs[i].data.fd == self.tap_fd:
                moved += self._from_tap()
            elif evs[i].data.fd == self.wake_fd:
                self._clear_wake()
            else:
                moved += self._from_udp()
        if self.busy_ns and self.counts[C_TAP_RX_FRAMES] + self.counts[C_UDP_RX_DGRAMS] != seen:
            self.spin_until = now_ns() + self.busy_ns
        return moved

    def run(self, stop, double timeout=0.05):
        while not stop.is_set():
            self.run_once(timeout)

    def stats(self):
        c = [self.counts[i] for i in range(C_COUNT)]
        drops = {REASONS[i]: self.drops[i] for i in range(1, R_COUNT) if self.drops[i]}
        hist = {i: self.gro_hist[i] for i in range(1, GRO_MAX + 1) if self.gro_hist[i]}
        return {
            "implementation": IMPLEMENTATION,
            "gso": bool(self.gso),
            "gro": bool(self.gro),
            "send_sockets": self.n_send if self.pooled else 0,
            "checksum_zero": bool(self.checksum_zero),
            "tap_rx_frames": c[C_TAP_RX_FRAMES],
            "tap_rx_bytes": c[C_TAP_RX_BYTES],
            "tap_rx_gso_frames": c[C_TAP_RX_GSO],
            "tso_segments": c[C_TSO_SEGMENTS],
            "udp_tx_datagrams": c[C_UDP_TX_DGRAMS],
            "udp_tx_bytes": c[C_UDP_TX_BYTES],
            "udp_rx_datagrams": c[C_UDP_RX_DGRAMS],
            "udp_rx_bytes": c[C_UDP_RX_BYTES],
            "tap_tx_frames": c[C_TAP_TX_FRAMES],
            "tap_tx_bytes": c[C_TAP_TX_BYTES],
            "gro_segments": c[C_GRO_SEGMENTS],
            "checksums_passed_on": c[C_CSUM_PASSED],
            "epoll_waits": c[C_EPOLL],
            "busy_poll": {
                "window_us": self.busy_ns // 1000,
                "polls": c[C_SPIN_POLLS],
                "hits": c[C_SPIN_HITS],
                "seconds": c[C_SPIN_NS] / 1e9,
            },
            "syscalls": {
                "tap_read": c[C_SYS_TAP_READ],
                "tap_write": c[C_SYS_TAP_WRITE],
                "udp_send": c[C_SYS_UDP_SEND],
                "udp_recv": c[C_SYS_UDP_RECV],
            },
            "drops": drops,
            "batch_avg": {
                "udp_tx": c[C_UDP_TX_DGRAMS] / c[C_SYS_UDP_SEND] if c[C_SYS_UDP_SEND] else 0.0,
                "udp_rx": c[C_UDP_RX_DGRAMS] / c[C_SYS_UDP_RECV] if c[C_SYS_UDP_RECV] else 0.0,
                "tap_rx_segments": c[C_TSO_SEGMENTS] / c[C_TAP_RX_FRAMES] if c[C_TAP_RX_FRAMES] else 0.0,
            },
            "gro_histogram": hist,
        }

    cdef void _clear_wake(self) noexcept:
        cdef uint8_t scratch[64]
        with nogil:
            c_read(self.wake_fd, scratch, 64)  # an eventfd's 8-byte counter, or a pipe's bytes

    # -- TAP -> underlay -----------------------------------------------------------------------

    cdef int _from_tap(self) except -1:
        cdef int i, count, k, d, g, first, last, segs, reason, fd
        cdef ssize_t r
        cdef Py_ssize_t seg_len, last_len, stride, flen, size
        cdef int hdr = self.vnet_hdr_size
        cdef int moved = 0
        cdef double now = _time.monotonic()
        cdef uint8_t* base
        cdef object reply
        for i in range(self.batch):
            with nogil:
                r = c_read(self.tap_fd, self.tap_buf, TAP_READ)
            if r < 0:
                if errno == EINTR:
                    continue
                break  # EAGAIN: drained (other errors surface on the next epoll round)
            self.counts[C_SYS_TAP_READ] += 1
            self.counts[C_TAP_RX_FRAMES] += 1
            if r < hdr:
                self.drops[R_VNET_HEADER] += 1
                continue
            flen = r - hdr
            self.counts[C_TAP_RX_BYTES] += flen
            if self.tx_used + SEG_SCRATCH > TX_BUFFER:
                self._flush()
            base = self.tx_buf + self.tx_used
            count = build(self.tap_buf, self.tap_buf + hdr, flen, VXLAN_LEN, base,
                          TX_BUFFER - self.tx_used, &seg_len, &last_len)
            if count < 0:
                self.drops[-count] += 1
                continue
            if self.tap_buf[1] & ~GSO_ECN:
                self.counts[C_TAP_RX_GSO] += 1
            self.counts[C_TSO_SEGMENTS] += count
            stride = VXLAN_LEN + seg_len
            self._ensure_dsts()
            k = self.handler.c_send(base + VXLAN_LEN, seg_len if count > 1 else last_len, now,
                                 self.dsts, self.dst_cap)
            if k <= 0:
                self.drops[R_VTEP_TX] += count
                if count == 1 and last_len > self.mtu + ETH_LEN:
                    reply = self.handler.c_frag_needed(base + VXLAN_LEN, last_len, now)
                    if reply is not None:
                        self._write_reply(reply)
                continue
            for g in range(count):
                self.handler.c_header(base + g * stride)
            fd = self.send_fds[0]
            if self.n_send > 1:
                fd = self.send_fds[slot_of(self.handler.c_source_port(base + VXLAN_LEN,
                                                                   seg_len if count > 1 else last_len),
                                           self.n_send)]
            self.tx_used += (count - 1) * stride + VXLAN_LEN + last_len
            for d in range(k):
                first = 0
                while first < count:
                    if self.gso and count > 1:
                        last = first + MAX_GSO_SEGMENTS
                        if last > first + MAX_GSO_BYTES // stride:
                            last = first + MAX_GSO_BYTES // stride
                        if last > count:
                            last = count
                    else:
                        last = first + 1
                    segs = last - first
                    size = (segs - 1) * stride + (VXLAN_LEN + (last_len if last == count else seg_len))
                    self._queue(base + first * stride, size, self.dsts[d], stride if segs > 1 else 0, segs,
                                fd)
                    first = last
            moved += count
        self._flush()
        return moved

    cdef int _ensure_dsts(self) except -1:
        cdef int peers = self.handler.c_peer_count()
        cdef uint32_t* grown
        if peers + 1 > self.dst_cap:
            grown = <uint32_t*>calloc(peers + 64, sizeof(uint32_t))
            if grown == NULL:
                raise MemoryError()
            free(self.dsts)
            self.dsts = grown
            self.dst_cap = peers + 64
        return 0

    cdef void _queue(self, uint8_t* data, Py_ssize_t size, uint32_t dst, Py_ssize_t gso_size,
                     int segs, int fd) noexcept:
        cdef mmsghdr* m
        cdef cmsghdr* c
        if self.tx_n == TX_MESSAGES:
            self._send_queued()
        m = &self.tx_msgs[self.tx_n]
        self.tx_iov[self.tx_n].iov_base = data
        self.tx_iov[self.tx_n].iov_len = size
        self.tx_addr[self.tx_n].sin_family = AF_INET
        self.tx_addr[self.tx_n].sin_port = htons(<uint16_t>self.port)
        self.tx_addr[self.tx_n].sin_addr.s_addr = htonl(dst)
        if gso_size:
            m.msg_hdr.msg_control = self.tx_ctrl + self.tx_n * CTRL_SPACE
            m.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t))
            c = CMSG_FIRSTHDR(&m.msg_hdr)
            c.cmsg_level = SOL_UDP
            c.cmsg_type = UDP_SEGMENT
            c.cmsg_len = CMSG_LEN(sizeof(uint16_t))
            st16n(<uint8_t*>CMSG_DATA(c), <uint32_t>gso_size)
        else:
            m.msg_hdr.msg_control = NULL
            m.msg_hdr.msg_controllen = 0
        self.tx_segs[self.tx_n] = segs
        self.tx_fd[self.tx_n] = fd
        if self.tx_n and fd != self.tx_fd[0]:
            self.tx_mixed = True
        self.tx_n += 1

    cdef void _flush(self) noexcept:
        self._send_queued()
        self.tx_used = 0

    cdef void _send_queued(self) noexcept:
        """Send everything queued: one sendmmsg run per send socket, each socket's messages in order."""
        cdef int n = self.tx_n, i, j, k = 0, start, fd
        if n == 0:
            return
        if not self.tx_mixed:
            self._send_run(self.tx_fd[0], self.tx_msgs, self.tx_segs, n)
        else:
            memset(self.tx_done, 0, n)
            for i in range(n):
                if self.tx_done[i]:
                    continue
                fd = self.tx_fd[i]
                start = k
                for j in range(i, n):
                    if not self.tx_done[j] and self.tx_fd[j] == fd:
                        self.tx_sorted[k] = self.tx_msgs[j]
                        self.tx_sorted_segs[k] = self.tx_segs[j]
                        self.tx_done[j] = 1
                        k += 1
                self._send_run(fd, self.tx_sorted + start, self.tx_sorted_segs + start, k - start)
        self.tx_n = 0
        self.tx_mixed = False

    cdef void _send_run(self, int fd, mmsghdr* msgs, int* segs, int n) noexcept:
        """sendmmsg ``msgs`` on ``fd``; on EAGAIN wait (bounded) for room, then drop the rest."""
        cdef int off = 0, r, err, waits = 0, j
        cdef pollfd pfd
        while off < n:
            with nogil:
                r = sendmmsg(fd, msgs + off, n - off, MSG_DONTWAIT)
                err = errno
            self.counts[C_SYS_UDP_SEND] += 1
            if r > 0:
                for j in range(off, off + r):
                    self.counts[C_UDP_TX_DGRAMS] += segs[j]
                    self.counts[C_UDP_TX_BYTES] += msgs[j].msg_hdr.msg_iov[0].iov_len
                self.counts[C_UDP_TX_MSGS] += r
                off += r
                continue
            if err == EINTR:
                continue
            if err == EAGAIN and waits < 20:
                waits += 1
                pfd.fd = fd
                pfd.events = POLLOUT
                with nogil:
                    poll(&pfd, 1, 5)
                continue
            # The first message failed: drop it, keep the rest.
            if err == EAGAIN:
                for j in range(off, n):
                    self.drops[R_UDP_EAGAIN] += segs[j]
                break
            if err == ENOBUFS:
                self.drops[R_UDP_ENOBUFS] += segs[off]
            else:
                self.drops[R_UDP_ERROR] += segs[off]
                if (err == EINVAL or err == EIO) and msgs[off].msg_hdr.msg_controllen:
                    self.gso = False  # the kernel or path refuses UDP GSO: segment ourselves from now
            off += 1

    cdef int _write_reply(self, object reply) except -1:
        cdef bytes data = bytes(reply)
        cdef uint8_t vh[12]
        cdef iovec iov[2]
        memset(vh, 0, 12)
        iov[0].iov_base = vh
        iov[0].iov_len = self.vnet_hdr_size
        iov[1].iov_base = PyBytes_AS_STRING(data)
        iov[1].iov_len = len(data)
        self._writev(iov, 2, len(data))
        return 0

    cdef bint _writev(self, iovec* iov, int n, Py_ssize_t frame_len) noexcept:
        cdef ssize_t r
        cdef int err
        while True:
            with nogil:
                r = writev(self.tap_fd, iov, n)
                err = errno
            self.counts[C_SYS_TAP_WRITE] += 1
            if r >= 0:
                self.counts[C_TAP_TX_FRAMES] += 1
                self.counts[C_TAP_TX_BYTES] += frame_len
                return True
            if err == EINTR:
                continue
            self.drops[R_TAP_EAGAIN if err == EAGAIN else R_TAP_ERROR] += 1
            return False

    # -- underlay -> TAP -----------------------------------------------------------------------

    cdef int _from_udp(self) except -1:
        cdef int rounds = 0, r, i, err, seg, rc
        cdef int max_rounds = (self.batch + self.rx_batch - 1) // self.rx_batch
        cdef Py_ssize_t length, start, dlen
        cdef uint32_t src
        cdef int moved = 0
        cdef double now
        cdef cmsghdr* c
        cdef uint8_t* data
        if max_rounds < 1:
            max_rounds = 1
        while rounds < max_rounds:
            rounds += 1
            for i in range(self.rx_batch):
                self.rx_iov[i].iov_len = self.rx_size
                self.rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)
                self.rx_msgs[i].msg_hdr.msg_controllen = CTRL_SPACE
                self.rx_msgs[i].msg_hdr.msg_flags = 0
            with nogil:
                r = recvmmsg(self.udp_fd, self.rx_msgs, self.rx_batch, MSG_DONTWAIT, NULL)
                err = errno
            if r <= 0:
                if r < 0 and err == EINTR:
                    continue
                break
            self.counts[C_SYS_UDP_RECV] += 1
            now = _time.monotonic()
            for i in range(r):
                length = self.rx_msgs[i].msg_len
                src = ntohl(self.rx_addr[i].sin_addr.s_addr)
                data = self.rx_buf + i * self.rx_size
                seg = 0
                c = CMSG_FIRSTHDR(&self.rx_msgs[i].msg_hdr)
                while c != NULL:
                    if c.cmsg_level == SOL_UDP and c.cmsg_type == UDP_GRO:
                        memcpy(&seg, CMSG_DATA(c), sizeof(int))
                    c = CMSG_NXTHDR(&self.rx_msgs[i].msg_hdr, c)
                if seg <= 0:
                    seg = <int>length
                start = 0
                while start < length:
                    dlen = length - start
                    if dlen > seg:
                        dlen = seg
                    self.counts[C_UDP_RX_DGRAMS] += 1
                    self.counts[C_UDP_RX_BYTES] += dlen
                    rc = self.handler.c_receive(data + start, dlen, src, now)
                    if rc == 0 and dlen > VXLAN_LEN:
                        moved += self._deliver(data + start + VXLAN_LEN, dlen - VXLAN_LEN)
                    else:
                        self.drops[R_VTEP_RX] += 1
                    start += dlen
            self._gro_flush()
            if r < self.rx_batch:
                break
        return moved

    cdef int _deliver(self, const uint8_t* frame, Py_ssize_t n) except -1:
        """Queue a TCP segment for coalescing, or write the frame alone."""
        cdef Py_ssize_t l3 = ETH_LEN, ihl, total_len, l4, doff, hlen, payload
        cdef uint32_t seq, field, seed, total
        cdef uint8_t tflags
        cdef int vh_flags
        if (self.soft_gro and n >= ETH_LEN + 40 and frame[12] == 0x08 and frame[13] == 0
                and frame[l3] >> 4 == 4 and frame[l3 + 9] == PROTO_TCP):
            ihl = (frame[l3] & 0x0F) * 4
            total_len = rd16(frame + l3 + 2)
            l4 = l3 + ihl
            if (ihl >= 20 and l3 + total_len <= n and not (frame[l3 + 6] & 0x3F) and not frame[l3 + 7]
                    and total_len >= ihl + 20):
                doff = (frame[l4 + 12] >> 4) * 4
                hlen = l4 + doff
                payload = l3 + total_len - hlen
                tflags = frame[l4 + 13]
                if doff >= 20 and payload > 0 and hlen <= MAX_HEADERS and (tflags & ~0x08) == 0x10:
                    field = rd16(frame + l4 + 16)
                    seed = pseudo(frame + l3, False, PROTO_TCP, <uint32_t>(total_len - ihl))
                    total = fold(<uint64_t>seed + csum(frame + l4, total_len - ihl))
                    if total == 0xFFFF:
                        vh_flags = F_DATA_VALID
                    elif field == seed:
                        vh_flags = F_NEEDS_CSUM
                        self.counts[C_CSUM_PASSED] += 1
                    else:
                        vh_flags = -1
                    if vh_flags > 0:
                        seq = rd32(frame + l4 + 4)
                        if self.gro_n and self._gro_match(frame, hlen, ihl, seq, payload):
                            self.gro_iov[self.gro_n + 1].iov_base = <void*>(frame + hlen)
                            self.gro_iov[self.gro_n + 1].iov_len = payload
                            self.gro_n += 1
                            self.gro_total += <uint32_t>payload
                            self.gro_next_seq = seq + <uint32_t>payload
                            self.gro_last_flags = tflags
                            self.gro_open = payload == self.gro_mss and not (tflags & 0x08)
                        else:
                            self._gro_flush()
                            self.gro_first = frame
                            self.gro_first_len = l3 + total_len
                            self.gro_first_vh = vh_flags
                            self.gro_hlen = <int>hlen
                            self.gro_ihl = <int>ihl
                            self.gro_mss = <uint32_t>payload
                            self.gro_total = <uint32_t>payload
                            self.gro_next_seq = seq + <uint32_t>payload
                            self.gro_last_flags = tflags
                            self.gro_open = not (tflags & 0x08)
                            self.gro_iov[1].iov_base = <void*>(frame + hlen)
                            self.gro_iov[1].iov_len = payload
                            self.gro_n = 1
                        if (not self.gro_open or self.gro_n == GRO_MAX
                                or self.gro_total + self.gro_mss + (hlen - l3) > 65535):
                            self._gro_flush()
                        return 1
        self._gro_flush()
        return self._write_single(frame, n)

    cdef bint _gro_match(self, const uint8_t* frame, Py_ssize_t hlen, Py_ssize_t ihl, uint32_t seq,
                         Py_ssize_t payload) noexcept:
        cdef const uint8_t* a = self.gro_first
        cdef Py_ssize_t l4 = ETH_LEN + ihl
        if not self.gro_open or hlen != self.gro_hlen or ihl != self.gro_ihl:
            return False
        if seq != self.gro_next_seq or payload > self.gro_mss:
            return False
        # Same Ethernet header, IP version/TOS, flags/TTL/protocol, addresses and options; same TCP
        # ports, ACK number, data offset, window, urgent pointer and options.
        if memcmp(a, frame, ETH_LEN + 2) != 0:
            return False
        if memcmp(a + ETH_LEN + 6, frame + ETH_LEN + 6, 4) != 0:
            return False
        if memcmp(a + ETH_LEN + 12, frame + ETH_LEN + 12, ihl - 12) != 0:
            return False
        if memcmp(a + l4, frame + l4, 4) != 0 or memcmp(a + l4 + 8, frame + l4 + 8, 5) != 0:
            return False
        if memcmp(a + l4 + 14, frame + l4 + 14, 2) != 0:
            return False
        return memcmp(a + l4 + 18, frame + l4 + 18, hlen - l4 - 18) == 0

    cdef void _gro_flush(self) noexcept:
        cdef int n = self.gro_n
        cdef int hdr = self.vnet_hdr_size
        cdef uint8_t* h = self.gro_head
        cdef uint8_t* ip
        cdef Py_ssize_t l4
        cdef uint32_t l4_total
        if n == 0:
            return
        self.gro_n = 0
        self.gro_hist[n] += 1
        if n == 1:
            memset(h, 0, hdr)
            h[0] = <uint8_t>self.gro_first_vh
            if self.gro_first_vh == F_NEEDS_CSUM:
                st16n(h + 6, ETH_LEN + self.gro_ihl)
                st16n(h + 8, 16)
            self.gro_iov[0].iov_base = h
            self.gro_iov[0].iov_len = hdr
            self.gro_iov[1].iov_base = <void*>self.gro_first
            self.gro_iov[1].iov_len = self.gro_first_len
            self._writev(self.gro_iov, 2, self.gro_first_len)
            return
        # One TCPV4 super-frame: the first segment's headers with the total length, and the TCP
        # checksum field holding the pseudo-header seed for the kernel to finish (NEEDS_CSUM).
        self.counts[C_GRO_SEGMENTS] += n
        memset(h, 0, hdr)
        h[0] = F_NEEDS_CSUM
        h[1] = GSO_TCPV4
        st16n(h + 2, self.gro_hlen)
        st16n(h + 4, self.gro_mss)
        st16n(h + 6, ETH_LEN + self.gro_ihl)
        st16n(h + 8, 16)
        memcpy(h + hdr, self.gro_first, self.gro_hlen)
        ip = h + hdr + ETH_LEN
        l4 = self.gro_ihl
        l4_total = <uint32_t>(self.gro_hlen - ETH_LEN - self.gro_ihl) + self.gro_total
        wr16(ip + 2, <uint32_t>self.gro_ihl + l4_total)
        wr16(ip + 10, 0)
        wr16(ip + 10, ~csum(ip, self.gro_ihl) & 0xFFFF)
        ip[l4 + 13] = self.gro_last_flags
        wr16(ip + l4 + 16, pseudo(ip, False, PROTO_TCP, l4_total))
        self.gro_iov[0].iov_base = h
        self.gro_iov[0].iov_len = hdr + self.gro_hlen
        self._writev(self.gro_iov, n + 1, self.gro_hlen + self.gro_total)

    cdef int _write_single(self, const uint8_t* frame, Py_ssize_t n) except -1:
        cdef uint8_t vh[12]
        cdef iovec iov[2]
        memset(vh, 0, 12)
        if deliver_flags(frame, n, vh) == F_NEEDS_CSUM:
            self.counts[C_CSUM_PASSED] += 1
        iov[0].iov_base = vh
        iov[0].iov_len = self.vnet_hdr_size
        iov[1].iov_base = <void*>frame
        iov[1].iov_len = n
        return 1 if self._writev(iov, 2, n) else 0


def _probe(sock, int option):
    try:
        sock.getsockopt(SOL_UDP, option)
    except OSError:
        return False
    return True

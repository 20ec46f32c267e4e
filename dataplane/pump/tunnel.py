"""The tunnel pump: TAP <-> frame handler <-> underlay UDP (pure-Python twin of ``_tunnel.pyx``).

The handler (:mod:`.handler`; the overlay's VTEP is one) decides where each frame goes and writes
its 8-byte encapsulation header; this module only moves batches between the two ports
(:mod:`dataplane.io`) and runs the frame builders of :mod:`dataplane.wire.gso` on them.

Theory of operation. One epoll waits on the TAP and the UDP socket; each round drains up to
``batch`` reads from each side.

* **TAP -> underlay.** A frame read from the TAP starts with a virtio-net header
  (``dataplane.wire.vnet``). A GSO super-frame (TCP over IPv4/IPv6, or UDP with USO) is cut into
  ``gso_size`` payload segments, each with its own IP total length/ID/header checksum, TCP sequence
  number and flags (FIN/PSH on the last only, CWR on the first only) and a complete TCP/UDP
  checksum: software TSO/USO (:func:`dataplane.wire.gso.segment`). A plain frame with ``NEEDS_CSUM``
  gets its checksum finished. The handler (the VTEP) says where each inner frame goes; the VXLAN
  payload of all segments of one super-frame to one peer goes out in one ``sendmsg`` with a
  ``UDP_SEGMENT`` cmsg when the socket has UDP GSO (the kernel cuts it into separate datagrams),
  else one ``sendto`` per datagram.
* **Source ports (RFC 7348 §5).** Given a pool of send sockets (``send_socks``, bound to ports
  spread over 49152-65535 by ``dataplane.io.udp.open_send_pool``), a TAP read's frames leave
  through socket :func:`source_slot` of the flow hash of its first frame
  (``Vtep.source_port``, i.e. ``dataplane.wire.vxlan.source_port_for``): one flow, one outer source
  port; flooded copies too. Without a pool everything leaves from the receive socket. A pool with
  ``SO_NO_CHECK`` (outer checksum 0) cannot use UDP GSO, so each datagram is its own send.
* **underlay -> TAP.** ``recvmsg`` returns one datagram, or with ``UDP_GRO`` a buffer of several
  cut at the ``gso_size`` given in a cmsg. Each datagram goes through the VTEP; a delivered inner
  frame is written to the TAP behind the vnet header :func:`dataplane.wire.gso.deliver_header`
  chooses: a TCP/UDP checksum left as the pseudo-header seed by a kernel VXLAN sender over veth
  (``spec/dataplane.md`` §5.3) is passed on as ``NEEDS_CSUM`` for the kernel to finish; one that
  verifies is marked ``DATA_VALID``.

* **Waking up.** ``wake_fd`` (an eventfd or the read end of a pipe) is a third descriptor in the
  epoll: the program writes to it to end a wait early (a control call queued for the data-path
  thread, a stop); the pump reads it empty and returns. With it, the program can wait for as long
  as the handler's next deadline instead of polling on a fixed tick.
* **Busy-polling.** Waking a sleeping thread costs tens of microseconds on a VM (an IPI to a halted
  vCPU), and a round trip through two agents wakes them four times. With ``busy_poll`` set, a round
  that read any frame opens a window of that many microseconds in which the next wait polls the
  epoll without sleeping (``epoll_wait`` with timeout 0, GIL released), so a reply that comes back
  within the window is picked up without a wake-up; every round with traffic re-opens the window,
  and once it passes without a frame the pump blocks in ``epoll_wait`` again: an idle pump never
  spins. The polls, the ones that found work and the time spent are in :meth:`Pump.stats`.

Bad frames are counted by reason and dropped; nothing raises out of :meth:`Pump.run_once` except a
dead descriptor. The compiled twin moves the same frames with ``recvmmsg``/``sendmmsg`` batches and
coalesces TCP segments into GSO super-frames for the TAP (software GRO).
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dataplane.io.udp import SOL_UDP, UDP_GRO, UDP_SEGMENT, no_check, probe_gso
from dataplane.wire.errors import MalformedPacket
from dataplane.wire.gso import deliver_header, segment
from dataplane.wire.vnet import VNET_F_NEEDS_CSUM, VNET_HDR_LEN, VNET_HDR_MRG_LEN
from dataplane.wire.vnet import VNET_GSO_ECN as GSO_ECN
from dataplane.wire.vxlan import VXLAN_PORT

from .handler import FrameHandler

__all__ = ["IMPLEMENTATION", "Pump", "source_slot"]

IMPLEMENTATION = "python"

PORT_BASE = 49152  # the dynamic range 49152-65535 of the flow-hash source port (RFC 7348 §5)
PORT_SPAN = 16384

MAX_GSO_BYTES = 65000  # one UDP_SEGMENT send: IPv4 total length 65535 less headers, with margin
MAX_GSO_SEGMENTS = 64  # UDP_MAX_SEGMENTS is 64 before Linux 6.3 (128 after)
MAX_BUSY_POLL_US = 1_000_000


def _check_size(size: int) -> None:
    if size not in (VNET_HDR_LEN, VNET_HDR_MRG_LEN):
        raise ValueError(f"vnet_hdr_size must be 10 or 12, not {size}")


def _check_busy_poll(busy_poll: int) -> int:
    value = operator.index(busy_poll)
    if not 0 <= value <= MAX_BUSY_POLL_US:
        raise ValueError(f"busy_poll must be 0..{MAX_BUSY_POLL_US} microseconds, not {busy_poll}")
    return value


def source_slot(port: int, count: int) -> int:
    """The send socket (0..count-1, in port order) for a flow whose RFC 7348 hash port is ``port``.

    ``(port - 49152) * count // 16384``: the pool's stripe of 49152-65535 holding ``port``; out of
    range ports are clamped to the ends.
    """
    if count <= 1:
        return 0
    offset = min(max(port - PORT_BASE, 0), PORT_SPAN - 1)
    return offset * count // PORT_SPAN


class Pump:
    """Moves frames between a TAP descriptor and the underlay UDP socket through ``handler``.

    ``handler``: a :class:`~.handler.FrameHandler` (the VTEP).
    ``gso``: True/False, or None for "if the send sockets support UDP_SEGMENT and do not have
    ``SO_NO_CHECK``". ``send_socks``: the source-port pool, in port order (empty or None: send
    from ``udp_sock``). ``busy_poll``: the busy-poll window in microseconds (0: off; see the
    module docstring). ``wake_fd``: a descriptor whose readability ends a wait (see the module
    docstring). The pump does not own the descriptors; :meth:`close` releases only its
    epoll.
    """

    def __init__(
        self,
        tap_fd: int,
        udp_sock: socket.socket,
        handler: FrameHandler,
        *,
        vnet_hdr_size: int = 10,
        gso: bool | None = None,
        batch: int = 64,
        port: int | None = None,
        send_socks: Sequence[socket.socket] | None = None,
        busy_poll: int = 0,
        wake_fd: int | None = None,
    ) -> None:
        _check_size(vnet_hdr_size)
        self._busy = _check_busy_poll(busy_poll) / 1e6
        self._spin_until = 0.0
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch must be 1..1024, not {batch}")
        self.tap_fd = tap_fd
        self.sock = udp_sock
        self.handler = handler
        self.vnet_hdr_size = vnet_hdr_size
        self.batch = batch
        self.port = port if port is not None else int(getattr(handler, "port", VXLAN_PORT))
        self.send_socks: tuple[socket.socket, ...] = tuple(send_socks or ()) or (udp_sock,)
        self.pooled = bool(send_socks)
        self.checksum_zero = no_check(self.send_socks[0])
        if gso is None:
            gso = probe_gso(self.send_socks[0]) and not self.checksum_zero
        self.gso = bool(gso)
        self.gro = _gro_enabled(udp_sock)
        self._cmsg_space = socket.CMSG_SPACE(4)
        self._rx_size = 65536 if self.gro else 16384
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._epoll = select.epoll()
        self._epoll.register(tap_fd, select.EPOLLIN)
        self._epoll.register(udp_sock.fileno(), select.EPOLLIN)
        self.wake_fd = -1 if wake_fd is None else wake_fd
        if wake_fd is not None:
            self._epoll.register(wake_fd, select.EPOLLIN)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._epoll.close()

    def __enter__(self) -> Pump:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- public loop ---------------------------------------------------------------------------

    @property
    def busy_poll(self) -> int:
        """The busy-poll window in microseconds (0: off); setting it closes any open window."""
        return round(self._busy * 1e6)

    @busy_poll.setter
    def busy_poll(self, value: int) -> None:
        self._busy = _check_busy_poll(value) / 1e6
        self._spin_until = 0.0

    def run_once(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for either descriptor, then drain both. Returns frames moved.

        Within ``busy_poll`` microseconds of the last round that read a frame, the wait polls
        without sleeping first (never longer than ``timeout``), then blocks for what is left.
        """
        timeout = max(timeout, 0.0)
        c = self._counts
        events: list[tuple[int, int]] = []
        try:
            if self._spin_until:
                start = now = time.perf_counter()
                limit = min(self._spin_until, start + timeout)
                polls = 0
                while True:
                    events = self._epoll.poll(0)
                    polls += 1
                    if events:
                        break
                    now = time.perf_counter()
                    if now >= limit:
                        break
                c["spin_polls"] += polls
                c["spin_ns"] += int((now - start) * 1e9)
                if events:
                    c["spin_hits"] += 1
                else:
                    if now >= self._spin_until:
                        self._spin_until = 0.0  # the window passed without a frame: block from now on
                    timeout = max(timeout - (now - start), 0.0)
            if not events:
                events = self._epoll.poll(timeout)
        except InterruptedError:
            return 0
        c["epoll_waits"] += 1
        seen = c["tap_rx_frames"] + c["udp_rx_datagrams"]
        moved = 0
        for fd, _mask in events:
            if fd == self.tap_fd:
                moved += self._from_tap()
            elif fd == self.wake_fd:
                _clear(fd)
            else:
                moved += self._from_udp()
        if self._busy and c["tap_rx_frames"] + c["udp_rx_datagrams"] != seen:
            self._spin_until = time.perf_counter() + self._busy
        return moved

    def run(self, stop: threading.Event, timeout: float = 0.05) -> None:
        while not stop.is_set():
            self.run_once(timeout)

    def stats(self) -> dict[str, Any]:
        c = self._counts
        result: dict[str, Any] = {
            "implementation": IMPLEMENTATION,
            "gso": self.gso,
            "gro": self.gro,
            "send_sockets": len(self.send_socks) if self.pooled else 0,
            "checksum_zero": self.checksum_zero,
            "tap_rx_frames": c["tap_rx_frames"],
            "tap_rx_bytes": c["tap_rx_bytes"],
            "tap_rx_gso_frames": c["tap_rx_gso_frames"],
            "tso_segments": c["tso_segments"],
            "udp_tx_datagrams": c["udp_tx_datagrams"],
            "udp_tx_bytes": c["udp_tx_bytes"],
            "udp_rx_datagrams": c["udp_rx_datagrams"],
            "udp_rx_bytes": c["udp_rx_bytes"],
            "tap_tx_frames": c["tap_tx_frames"],
            "tap_tx_bytes": c["tap_tx_bytes"],
            "gro_segments": c["gro_segments"],
            "checksums_passed_on": c["checksums_passed_on"],
            "epoll_waits": c["epoll_waits"],
            "busy_poll": {
                "window_us": self.busy_poll,
                "polls": c["spin_polls"],
                "hits": c["spin_hits"],
                "seconds": c["spin_ns"] / 1e9,
            },
            "syscalls": {
                "tap_read": c["sys_tap_read"],
                "tap_write": c["sys_tap_write"],
                "udp_send": c["sys_udp_send"],
                "udp_recv": c["sys_udp_recv"],
            },
            "drops": dict(self._drops),
        }
        result["batch_avg"] = {
            "udp_tx": c["udp_tx_datagrams"] / c["sys_udp_send"] if c["sys_udp_send"] else 0.0,
            "udp_rx": c["udp_rx_datagrams"] / c["sys_udp_recv"] if c["sys_udp_recv"] else 0.0,
            "tap_rx_segments": c["tso_segments"] / c["tap_rx_frames"] if c["tap_rx_frames"] else 0.0,
        }
        return result

    # -- TAP -> underlay -----------------------------------------------------------------------

    def _from_tap(self) -> int:
        moved = 0
        for _ in range(self.batch):
            try:
                data = os.read(self.tap_fd, 65536 + self.vnet_hdr_size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            self._counts["sys_tap_read"] += 1
            self._counts["tap_rx_frames"] += 1
            self._counts["tap_rx_bytes"] += len(data) - self.vnet_hdr_size
            try:
                frames = segment(data, self.vnet_hdr_size)
            except MalformedPacket as exc:
                self._drops[exc.field] += 1
                continue
            if len(frames) > 1 or data[1] & ~GSO_ECN:
                self._counts["tap_rx_gso_frames"] += 1
            self._counts["tso_segments"] += len(frames)
            moved += self._transmit(frames)
        return moved

    def _transmit(self, frames: list[bytes]) -> int:
        now = time.monotonic()
        sock = self.send_socks[0]
        if len(self.send_socks) > 1 and frames:
            sock = self.send_socks[source_slot(self.handler.source_port(frames[0]), len(self.send_socks))]
        groups: dict[str, list[bytes]] = {}
        for frame in frames:
            tx = self.handler.send(frame, now)
            if tx.reply:
                self._write_tap(bytes(self.vnet_hdr_size) + tx.reply)
            if not tx.destinations:
                self._drops["vtep_tx"] += 1
                continue
            for dst in tx.destinations:
                groups.setdefault(dst, []).append(tx.payload)
        sent = 0
        for dst, payloads in groups.items():
            sent += self._send_group(sock, dst, payloads)
        return sent

    def _send_group(self, sock: socket.socket, dst: str, payloads: list[bytes]) -> int:
        address = (dst, self.port)
        size = len(payloads[0])
        sent = 0
        i = 0
        while i < len(payloads):
            # One UDP_SEGMENT send for a run of equal sizes (the last may be shorter).
            j = i + 1
            if self.gso:
                while (
                    j < len(payloads)
                    and j - i < MAX_GSO_SEGMENTS
                    and (j - i + 1) * size <= MAX_GSO_BYTES
                    and len(payloads[j - 1]) == size
                    and len(payloads[j]) <= size
                ):
                    j += 1
            run = payloads[i:j]
            try:
                if len(run) > 1:
                    sock.sendmsg(run, [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, address)
                else:
                    sock.sendto(run[0], address)
            except BlockingIOError:
                self._drops["udp_send_eagain"] += len(run)
            except OSError as exc:
                self._drops["udp_send_enobufs" if exc.errno == errno.ENOBUFS else "udp_send_error"] += len(
                    run
                )
                if len(run) > 1 and exc.errno in (errno.EINVAL, errno.EIO):
                    self.gso = False
            else:
                self._counts["udp_tx_datagrams"] += len(run)
                self._counts["udp_tx_bytes"] += sum(len(p) for p in run)
                sent += len(run)
            self._counts["sys_udp_send"] += 1
            i = j
            if i < len(payloads):
                size = len(payloads[i])
        return sent

    # -- underlay -> TAP -----------------------------------------------------------------------

    def _from_udp(self) -> int:
        moved = 0
        for _ in range(self.batch):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(self._rx_size, self._cmsg_space)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            self._counts["sys_udp_recv"] += 1
            step = len(data)
            for level, kind, value in ancdata:
                if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    step = struct.unpack("=i", value[:4])[0] or len(data)
            now = time.monotonic()
            for start in range(0, len(data), max(step, 1)):
                moved += self._deliver(data[start : start + step], addr[0], now)
        return moved

    def _deliver(self, payload: bytes, src: str, now: float) -> int:
        self._counts["udp_rx_datagrams"] += 1
        self._counts["udp_rx_bytes"] += len(payload)
        frame = self.handler.receive(payload, src, now)
        if frame is None:
            self._drops["vtep_rx"] += 1
            return 0
        header = deliver_header(frame, self.vnet_hdr_size)
        if header[0] & VNET_F_NEEDS_CSUM:
            self._counts["checksums_passed_on"] += 1
        return self._write_tap(header + frame)

    def _write_tap(self, data: bytes) -> int:
        self._counts["sys_tap_write"] += 1
        try:
            os.write(self.tap_fd, data)
        except BlockingIOError:
            self._drops["tap_write_eagain"] += 1
            return 0
        except OSError:
            self._drops["tap_write_error"] += 1
            return 0
        self._counts["tap_tx_frames"] += 1
        self._counts["tap_tx_bytes"] += len(data) - self.vnet_hdr_size
        return 1


def _clear(fd: int) -> None:
    """Read a wake-up descriptor empty (an eventfd's counter, or what was written to a pipe)."""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        os.read(fd, 4096)


def _gro_enabled(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(SOL_UDP, UDP_GRO))
    except OSError:
        return False

"""DHCP packets in and out of a plain Linux interface, in batches, with group commit.

Theory of operation
-------------------
**One AF_PACKET socket does all the talking.** It is bound to the interface with a classic BPF
filter that passes only IPv4 UDP datagrams to port 67 (not fragments), so the kernel wakes us for
DHCP and nothing else, and we see every request with its Ethernet source. Replies are whole frames
built by :func:`dataplane.wire.build_udp_frame` (Ethernet + IPv4 + UDP, checksums computed; requests
are checked and unframed by :func:`dataplane.wire.parse_udp_frame`) and sent on the same socket,
addressed per RFC 2131 §4.1 (spec 4.3):
the core's :class:`~.events.Reply` names the IPv4 destination and port, and :func:`outgoing` the
Ethernet one:

1. ``giaddr`` set: to the relay, ``giaddr``:67, at the Ethernet source of the request (the relay,
   or the router in front of it);
2. else ``ciaddr`` set: to the client, ``ciaddr``:68, at the request's Ethernet source;
3. else broadcast flag or NAK: ``255.255.255.255``:68 at ``ff:ff:ff:ff:ff:ff``;
4. else ``yiaddr``:68 at ``chaddr``: the client has no address yet, so it cannot answer ARP.

Why not a UDP socket with ``SO_BINDTODEVICE``: rule 4 needs a frame whose MAC we choose, which a
UDP socket cannot send without an ARP entry for an address the client does not hold yet (dnsmasq
writes one into the kernel's table with ``SIOCSARP`` first; that is a netlink/ioctl write per
OFFER). Rule 2 from a UDP socket also needs the client to answer ARP for ``ciaddr``, which a client
whose hook script does not configure the address never does. Building every frame ourselves needs
no neighbour table at all, the way Kea's raw-socket mode works.

**A UDP socket on port 67 is still opened**, bound to the interface, with a filter that drops
everything: it claims the port, so a second DHCP server on the interface fails at start-up instead of
fighting ours, and unicast requests (renewals, relays) do not make the kernel answer ICMP port
unreachable, as it would with no socket on the port.

**Batches.** Python's ``socket`` has no ``recvmmsg``, so a batch is what one wake-up finds: reads
until ``EAGAIN`` (at most :data:`MAX_BATCH`). :class:`GroupCommitLoop` runs, per batch: the server
core over every request, **one** ``store.commit()`` (the fsync that makes the batch's leases
durable), then every reply. No ACK leaves before its lease is on disk, and a busier server writes
bigger batches per fsync, not more fsyncs: while one commit runs, requests queue in the socket.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dataplane.io.errors import DeviceMissing, IoError, PermissionDenied, PortInUse
from dataplane.wire import ETHERTYPE_IPV4, build_udp_frame, parse_udp_frame

from .events import Reply

__all__ = [
    "CLIENT_PORT",
    "MAX_BATCH",
    "SERVER_PORT",
    "DhcpPort",
    "GroupCommitLoop",
    "Outgoing",
    "Received",
    "build_frame",
    "parse_frame",
]

SERVER_PORT = 67
CLIENT_PORT = 68
MAX_BATCH = 256  # reads per wake-up; bounds the latency of the first reply in a batch
ETH_P_IP = ETHERTYPE_IPV4
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
PACKET_OUTGOING = 4
PACKET_OTHERHOST = 3
BUFFER_SIZE = 8 << 20  # absorbs a burst while a commit's fsync runs
BROADCAST_MAC = b"\xff" * 6
BROADCAST_IP = b"\xff\xff\xff\xff"
_FRAME_SIZE = 65536
_TOS = 0x10  # IPTOS_LOWDELAY (RFC 1349), as ISC dhcpd marks the frames it builds
_TTL = 64

# Classic BPF for "ip and udp dst port 67 and not a fragment" on Ethernet (what `tcpdump -dd` prints
# for that expression): (code, jt, jf, k).
_FILTER_DHCP = (
    (0x28, 0, 0, 12),  # ldh [12]           EtherType
    (0x15, 0, 8, ETH_P_IP),  # jeq #0x800
    (0x30, 0, 0, 23),  # ldb [23]           IPv4 protocol
    (0x15, 0, 6, 17),  # jeq #17 (UDP)
    (0x28, 0, 0, 20),  # ldh [20]           flags and fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff     a later fragment: drop
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)  IPv4 header length
    (0x48, 0, 0, 16),  # ldh [x + 16]       UDP destination port
    (0x15, 0, 1, SERVER_PORT),  # jeq #67
    (0x06, 0, 0, 0x40000),  # ret #262144      accept, whole frame
    (0x06, 0, 0, 0),  # ret #0             drop
)
_FILTER_NOTHING = ((0x06, 0, 0, 0),)  # ret #0


@dataclass(frozen=True, slots=True)
class Received:
    """A DHCP request as it arrived: the UDP payload and where it came from."""

    payload: bytes
    src_mac: bytes
    dst_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    src_port: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply to send: the DHCP payload and its destination (see :func:`reply_target`)."""

    payload: bytes
    dst_mac: bytes
    dst_ip: bytes
    dst_port: int


@dataclass(slots=True)
class PortStats:
    received: int = 0
    sent: int = 0
    send_errors: int = 0
    batches: int = 0
    largest_batch: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


def _attach(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """``SO_ATTACH_FILTER``: the kernel copies the program, so the ctypes buffer may go after."""
    raw = b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _buffers(sock: socket.socket) -> None:
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUFFER_SIZE)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_SIZE)  # capped at net.core.*mem_max


def parse_frame(frame: bytes, stats: PortStats | None = None) -> Received | None:
    """The DHCP request in an Ethernet frame, or None (counted in ``stats.drops``) if it is not one.

    The BPF filter already passed only UDP to port 67; this checks what it could not: lengths and
    the IPv4 header checksum.
    """
    reason = _check_frame(frame)
    if isinstance(reason, str):
        if stats is not None:
            stats.drop(reason)
        return None
    return reason


def _check_frame(frame: bytes) -> Received | str:
    found = parse_udp_frame(frame)
    if isinstance(found, str):
        return found
    payload, src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port = found
    if dst_port != SERVER_PORT:
        return "bad_udp"
    # The UDP checksum is not verified (see parse_udp_frame: CHECKSUM_PARTIAL frames over veth);
    # the IPv4 header checksum is, and the DHCP codec rejects what does not parse.
    return Received(payload, src_mac, dst_mac, src_ip, dst_ip, src_port)


def build_frame(src_mac: bytes, src_ip: bytes, reply: Outgoing, ident: int = 0) -> bytes:
    """Ethernet + IPv4 + UDP around ``reply.payload``, from ``src_ip``:67, checksums computed."""
    return build_udp_frame(
        reply.dst_mac,
        src_mac,
        src_ip,
        reply.dst_ip,
        SERVER_PORT,
        reply.dst_port,
        reply.payload,
        ident,
        _TOS,
        _TTL,
    )


class DhcpPort:
    """The interface's DHCP sockets (see the module docstring); nonblocking, ``fileno()`` to poll."""

    def __init__(self, interface: str, server_address: str) -> None:
        self.interface = interface
        self.server_ip = ipaddress.IPv4Address(server_address).packed
        self.stats = PortStats()
        self._ident = 0
        try:
            socket.if_nametoindex(interface)
        except OSError:
            raise DeviceMissing(f"no interface {interface!r} in this network namespace") from None
        self._guard = self._open_guard(interface)
        try:
            self._sock = self._open_packet(interface)
        except BaseException:
            self._guard.close()
            raise
        self.mac: bytes = self._sock.getsockname()[4][:6]

    @staticmethod
    def _open_guard(interface: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _attach(sock, _FILTER_NOTHING)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.bind(("0.0.0.0", SERVER_PORT))
        except PermissionError:
            sock.close()
            raise PermissionDenied(
                "permission denied: serving DHCP needs root or CAP_NET_RAW and CAP_NET_BIND_SERVICE"
            ) from None
        except OSError as exc:
            sock.close()
            if exc.errno == _errno.EADDRINUSE:
                raise PortInUse(
                    f"UDP port {SERVER_PORT} on {interface} is taken: is another DHCP server running there?",
                    exc.errno,
                ) from None
            raise IoError(
                f"cannot bind UDP port {SERVER_PORT} on {interface}: {exc.strerror}", exc.errno
            ) from None
        return sock

    @staticmethod
    def _open_packet(interface: str) -> socket.socket:
        try:
            # Protocol 0 receives nothing until bind(), so no frame slips in before the filter.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PermissionDenied("permission denied: serving DHCP needs root or CAP_NET_RAW") from None
        try:
            _attach(sock, _FILTER_DHCP)
            _buffers(sock)
            sock.bind((interface, ETH_P_IP))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise IoError(f"cannot open a packet socket on {interface}: {exc.strerror}", exc.errno) from None
        return sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()
        self._guard.close()

    def __enter__(self) -> DhcpPort:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def receive_batch(self, limit: int = MAX_BATCH) -> list[Received]:
        """Every request waiting, up to ``limit``: reads until EAGAIN (one wake-up, one batch)."""
        batch: list[Received] = []
        sock = self._sock
        stats = self.stats
        server_ip = self.server_ip
        for _ in range(limit):
            try:
                frame, address = sock.recvfrom(_FRAME_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            kind = address[2]
            if kind == PACKET_OUTGOING:  # our own replies to relays (port 67) pass the filter too
                continue
            stats.received += 1
            if kind == PACKET_OTHERHOST:
                stats.drop("not_for_us")
                continue
            packet = parse_frame(frame, stats)
            if packet is None:
                continue
            if packet.dst_ip not in (server_ip, BROADCAST_IP):
                stats.drop("not_for_us")  # another server's unicast (or a directed broadcast)
                continue
            batch.append(packet)
        if batch:
            stats.batches += 1
            stats.largest_batch = max(stats.largest_batch, len(batch))
        return batch

    def send(self, replies: Iterable[Outgoing]) -> int:
        """Send each reply as a frame; return how many left. Errors are counted, never raised."""
        sent = 0
        for reply in replies:
            self._ident = (self._ident + 1) & 0xFFFF
            frame = build_frame(self.mac, self.server_ip, reply, self._ident)
            try:
                self._sock.send(frame)
            except OSError:
                self.stats.send_errors += 1
                continue
            sent += 1
        self.stats.sent += sent
        return sent


# -- the group-commit loop -----------------------------------------------------------------------

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Core(Protocol):
    """What the loop needs of :class:`dataplane.dhcp.DhcpServer`."""

    def receive(self, payload: bytes, now: float, *, interface_mac: bytes | None = None) -> list[Reply]: ...


class Committer(Protocol):
    def commit(self) -> None: ...


@dataclass(slots=True)
class LoopStats:
    commits: int = 0
    commit_failures: int = 0
    commit_seconds: float = 0.0
    replies: dict[int, int] = field(default_factory=dict)  # by option 53 value
    withheld: int = 0  # durable replies not sent because their commit failed
    batch_sizes: dict[int, int] = field(default_factory=lambda: dict.fromkeys(BATCH_BUCKETS, 0))
    batch_sum: int = 0
    batch_count: int = 0


def outgoing(reply: Reply, src_mac: bytes) -> Outgoing:
    """The frame destination of a core reply: its ``dst_mac`` when set (rule 4, chaddr), broadcast
    for 255.255.255.255, else the Ethernet source of the request (the relay or the client itself,
    rules 1-2), so no ARP resolution is ever needed."""
    dst_ip = ipaddress.IPv4Address(reply.dst_ip).packed
    if reply.dst_mac is not None:
        mac = reply.dst_mac
    elif dst_ip == BROADCAST_IP:
        mac = BROADCAST_MAC
    else:
        mac = src_mac
    return Outgoing(reply.payload, mac, dst_ip, reply.dst_port)


class GroupCommitLoop:
    """Per batch: the core over every request, one ``store.commit()``, then every reply.

    :meth:`run_once` is called when the port's descriptor is readable; it never raises for traffic,
    and an ``OSError`` from the commit (disk full, I/O error) withholds the batch's durable replies
    (the ACKs whose leases are not on disk) and sends the rest.
    """

    def __init__(
        self,
        port: DhcpPort,
        core: Core,
        store: Committer,
        clock: Callable[[], float] = time.time,
        on_commit_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.port = port
        self.core = core
        self.store = store
        self.clock = clock
        self.stats = LoopStats()
        self._on_commit_error = on_commit_error

    def run_once(self) -> int:
        """Handle one batch; the number of requests in it (0: nothing was waiting)."""
        batch = self.port.receive_batch()
        if not batch:
            return 0
        now = self.clock()
        mac = self.port.mac
        pending: list[tuple[Reply, bytes]] = []
        receive = self.core.receive
        for packet in batch:
            for reply in receive(packet.payload, now, interface_mac=mac):
                pending.append((reply, packet.src_mac))
        stats = self.stats
        durable_ok = True
        started = time.perf_counter()
        try:
            self.store.commit()
        except OSError as exc:
            durable_ok = False
            stats.commit_failures += 1
            if self._on_commit_error is not None:
                self._on_commit_error(exc)
        stats.commits += 1
        stats.commit_seconds += time.perf_counter() - started
        frames = []
        for reply, src_mac in pending:
            if reply.durable and not durable_ok:
                stats.withheld += 1
                continue
            stats.replies[reply.message_type] = stats.replies.get(reply.message_type, 0) + 1
            frames.append(outgoing(reply, src_mac))
        self.port.send(frames)
        size = len(batch)
        stats.batch_sum += size
        stats.batch_count += 1
        for bucket in BATCH_BUCKETS:
            if size <= bucket:
                stats.batch_sizes[bucket] += 1
        return size

"""The underlay UDP sockets: the receive socket on the VXLAN port, and a pool of send sockets.

* ``SO_REUSEPORT`` lets one socket per worker bind the same address and port; the kernel spreads
  flows across them by hash.
* ``UDP_SEGMENT`` (103, Linux 4.18) sends many equal-size datagrams with one ``sendmsg``: the
  kernel segments (UDP GSO). It needs the UDP checksum on: ``udp_send_skb`` refuses GSO (EINVAL)
  on a socket with ``SO_NO_CHECK``.
* ``SO_NO_CHECK`` (11 at ``SOL_SOCKET``) makes the kernel send UDP checksum 0, as RFC 7348 §5 says
  a VTEP SHOULD over IPv4 (receivers MUST accept 0 and MAY verify a non-zero one).
* ``UDP_GRO`` (104, Linux 5.0) coalesces received datagrams of one flow into one buffer whose
  segment size arrives as a cmsg.
* Large ``SO_RCVBUF``/``SO_SNDBUF`` (``*FORCE`` as root, above ``net.core.*mem_max``) absorb bursts.

Python's ``socket`` lacks these constants; the raw numbers work (``spec/dataplane.md`` §6).

Source ports (RFC 7348 §5: the outer source port SHOULD hash the inner flow into 49152-65535)
---------------------------------------------------------------------------------------------
A socket sends from the one port it is bound to, so :func:`open_send_pool` binds ``count`` send
sockets spread over the dynamic range and the pump sends each flow through one of them:

* **ports**: the range 49152-65535 (16384 ports) is cut into ``count`` equal stripes; socket ``i``
  binds the first free port of stripe ``i``, ``49152 + i * (16384 // count)`` and up
  (:func:`pool_ports` gives the first choices). A port already in use is skipped; a stripe with no
  free port among its first :data:`PROBE_PORTS` leaves its socket out, so a pool may be smaller
  than asked (an empty pool: the pump sends from the receive socket, on the VXLAN port).
* **mapping**: a frame's socket is slot ``(source_port_for(frame) - 49152) * n // 16384`` of the
  ``n`` sockets opened, in port order (``dataplane.pump.tunnel.source_slot``): the stripe of the
  RFC 7348 flow-hash port when the pool is full, so every outer source port is in 49152-65535, all
  segments of a flow (one TSO super-frame: one flow key) leave from one port, and flows spread.
* Send sockets never receive (peers send to the VXLAN port): their receive buffer is the minimum
  and nobody polls them.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import socket
from dataclasses import dataclass

from .errors import AddressNotAvailable, IoError, PermissionDenied, PortInUse

__all__ = [
    "SOL_UDP",
    "SO_NO_CHECK",
    "UDP_GRO",
    "UDP_SEGMENT",
    "SendPool",
    "UdpPort",
    "open_send_pool",
    "open_udp",
    "pool_ports",
]

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_NO_CHECK = 11
DEFAULT_BUFFER = 8 << 20
DYNAMIC_PORTS = (49152, 65535)  # RFC 6335 §6, where RFC 7348 §5 wants the source port
PROBE_PORTS = 64  # ports tried per stripe before a send socket is left out
MAX_SEND_SOCKETS = 256


@dataclass
class UdpPort:
    """An open, nonblocking underlay socket and the offloads that are on."""

    sock: socket.socket
    local: str
    port: int
    gso: bool
    gro: bool
    rcvbuf: int
    sndbuf: int

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpPort:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _set_buffer(sock: socket.socket, force: int, plain: int, size: int) -> int:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)  # capped at net.core.*mem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return sock.getsockopt(socket.SOL_SOCKET, plain)


def probe_gso(sock: socket.socket) -> bool:
    """Whether this kernel knows ``UDP_SEGMENT`` (reading it fails with ENOPROTOOPT if not)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket, on: bool = True) -> bool:
    """Turn ``UDP_GRO`` on or off; False when the kernel lacks it."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1 if on else 0)
    except OSError:
        return False
    return on


def open_udp(
    local: str,
    port: int = 4789,
    *,
    reuseport: bool = False,
    gso: bool = True,
    gro: bool = True,
    buffer: int = DEFAULT_BUFFER,
) -> UdpPort:
    """Bind a nonblocking IPv4 UDP socket to ``local:port`` with the offloads asked for, as available."""
    address = str(ipaddress.IPv4Address(local))
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, not {port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        rcvbuf = _set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, buffer)
        sndbuf = _set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, buffer)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise _bind_error(address, port, exc) from None
        sock.setblocking(False)
        gso_on = gso and probe_gso(sock)
        gro_on = gro and enable_gro(sock)
        bound_port = sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise
    return UdpPort(sock, address, bound_port, gso_on, gro_on, rcvbuf, sndbuf)


def _bind_error(address: str, port: int, exc: OSError) -> IoError:
    if exc.errno == _errno.EADDRINUSE:
        return PortInUse(f"UDP {address}:{port} is already in use by another process", exc.errno)
    if exc.errno == _errno.EADDRNOTAVAIL:
        return AddressNotAvailable(
            f"cannot bind UDP {address}:{port}: {address} is not an address of this host", exc.errno
        )
    if exc.errno == _errno.EACCES:
        return PermissionDenied(f"cannot bind UDP {address}:{port}: permission denied", exc.errno)
    return IoError(f"cannot bind UDP {address}:{port}: {exc.strerror}", exc.errno)


@dataclass
class SendPool:
    """Send-only sockets bound to ports in 49152-65535, in port order (see the module docstring)."""

    socks: list[socket.socket]
    local: str
    ports: list[int]
    checksum_zero: bool
    gso: bool
    skipped: int  # sockets asked for but left out (their stripe had no free port)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def __len__(self) -> int:
        return len(self.socks)

    def __enter__(self) -> SendPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def pool_ports(count: int) -> list[int]:
    """The first-choice port of each of ``count`` send sockets: the start of its stripe."""
    if not 1 <= count <= MAX_SEND_SOCKETS:
        raise ValueError(f"a send pool has 1..{MAX_SEND_SOCKETS} sockets, not {count}")
    low, high = DYNAMIC_PORTS
    step = (high - low + 1) // count
    return [low + i * step for i in range(count)]


def set_no_check(sock: socket.socket, on: bool = True) -> bool:
    """``SO_NO_CHECK``: send UDP checksum 0 (IPv4). False when the kernel refuses it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1 if on else 0)
    except OSError:
        return False
    return on


def no_check(sock: socket.socket) -> bool:
    """Whether ``sock`` sends UDP checksum 0 (``SO_NO_CHECK``)."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, SO_NO_CHECK))
    except OSError:
        return False


def open_send_pool(
    local: str,
    count: int,
    *,
    checksum_zero: bool = True,
    gso: bool = True,
    buffer: int = DEFAULT_BUFFER,
) -> SendPool:
    """Bind up to ``count`` nonblocking send sockets to ``local`` on ports spread over 49152-65535.

    ``checksum_zero``: ``SO_NO_CHECK`` on each (outer UDP checksum 0), which rules out UDP GSO;
    otherwise ``gso`` asks for ``UDP_SEGMENT`` where the kernel has it. Ports in use are skipped
    (see the module docstring); other bind errors raise the typed errors of :func:`open_udp`.
    """
    address = str(ipaddress.IPv4Address(local))
    firsts = pool_ports(count)
    low, high = DYNAMIC_PORTS
    step = (high - low + 1) // count
    socks: list[socket.socket] = []
    ports: list[int] = []
    zero = checksum_zero
    try:
        for first in firsts:
            sock = _bind_in_stripe(address, first, min(step, PROBE_PORTS), buffer)
            if sock is None:
                continue
            if checksum_zero and not set_no_check(sock):
                zero = False
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    gso_on = bool(socks) and not zero and gso and probe_gso(socks[0])
    return SendPool(socks, address, ports, zero and bool(socks), gso_on, count - len(socks))


def _bind_in_stripe(address: str, first: int, tries: int, buffer: int) -> socket.socket | None:
    for port in range(first, first + tries):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the kernel's minimum
            _set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, buffer)
            sock.bind((address, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == _errno.EADDRINUSE:
                continue
            raise _bind_error(address, port, exc) from None
        except BaseException:
            sock.close()
            raise
        return sock
    return None

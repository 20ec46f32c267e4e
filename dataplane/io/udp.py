"""The underlay UDP socket: one per worker, batched and offloaded where the kernel allows.

* ``SO_REUSEPORT`` lets one socket per worker bind the same address and port; the kernel spreads
  flows across them by hash.
* ``UDP_SEGMENT`` (103, Linux 4.18) sends many equal-size datagrams with one ``sendmsg``: the
  kernel segments (UDP GSO). It needs the UDP checksum on, so our outer checksum is not 0: RFC 7348
  §5 only says SHOULD be 0, and receivers MUST accept a non-zero one.
* ``UDP_GRO`` (104, Linux 5.0) coalesces received datagrams of one flow into one buffer whose
  segment size arrives as a cmsg.
* Large ``SO_RCVBUF``/``SO_SNDBUF`` (``*FORCE`` as root, above ``net.core.*mem_max``) absorb bursts.

Python's ``socket`` lacks the two constants; the raw numbers work (``spec/dataplane.md`` §6).
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import socket
from dataclasses import dataclass

from .errors import AddressNotAvailable, IoError, PermissionDenied, PortInUse

__all__ = ["SOL_UDP", "UDP_GRO", "UDP_SEGMENT", "UdpPort", "open_udp"]

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
DEFAULT_BUFFER = 8 << 20


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

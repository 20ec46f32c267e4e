"""A TAP device opened (or adopted) through ``/dev/net/tun``, with virtio-net offloads.

Theory of operation. ``TUNSETIFF`` with ``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`` creates the device,
or attaches to an existing TAP of that name (drivers/net/tun.c ``tun_set_iff``). ``TUNSETPERSIST``
keeps it after our last descriptor closes, so an agent restart finds the same device with its
addresses and bridge membership and adopts it: kubelan deleted and recreated its device, which
detached every container on an LXD node from the LAN (``spec/dataplane.md`` §2.4, §2.6.2).

``TUNSETOFFLOAD`` tells the kernel which offloads our reader understands: with checksum and TSO/USO
on, the stack hands us GSO super-frames up to 64 KiB with a partial checksum, described by the
virtio-net header in front of each frame (``dataplane.wire.vnet``). Older kernels refuse USO with
EINVAL, so we retry without it, then without TSO, and record what was accepted.

Link settings (MTU, MAC, state, addresses, bridge master) go through pyroute2 (DESIGN: no ``ip``
subprocesses in product code).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import ipaddress
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    DeviceBusy,
    DeviceMissing,
    InterfaceConflict,
    IoError,
    PermissionDenied,
    Unsupported,
)

__all__ = [
    "IFF_MULTI_QUEUE",
    "IFF_NO_PI",
    "IFF_TAP",
    "IFF_VNET_HDR",
    "TUN_F_CSUM",
    "TUN_F_TSO4",
    "TUN_F_TSO6",
    "TUN_F_TSO_ECN",
    "TUN_F_USO4",
    "TUN_F_USO6",
    "Tap",
    "offload_names",
]

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8

IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40

_TSO = TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
_USO = TUN_F_USO4 | TUN_F_USO6
ALL_OFFLOADS = TUN_F_CSUM | _TSO | _USO

_NAMES = {
    TUN_F_CSUM: "csum",
    TUN_F_TSO4: "tso4",
    TUN_F_TSO6: "tso6",
    TUN_F_TSO_ECN: "tso_ecn",
    TUN_F_USO4: "uso4",
    TUN_F_USO6: "uso6",
}

IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, ifr_flags, padding to 40 bytes
TUN_PATH = "/dev/net/tun"


def offload_names(offloads: int) -> list[str]:
    """``TUN_F_*`` bits as names, for logs and health output."""
    return [name for bit, name in _NAMES.items() if offloads & bit]


def _check_name(name: str) -> bytes:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or "/" in name or name.strip() != name:
        raise ValueError(f"interface name must be 1..{IFNAMSIZ - 1} characters, not {name!r}")
    return raw


@dataclass
class Tap:
    """An open TAP: one descriptor per queue, nonblocking, each reading frames with a vnet header.

    Create with :meth:`open`; :meth:`close` releases the descriptors but, when ``persist`` was set,
    not the device.
    """

    name: str
    fds: list[int]
    vnet_hdr_size: int
    offloads: int
    persist: bool
    adopted: bool
    _closed: bool = field(default=False, repr=False)

    @property
    def fd(self) -> int:
        """The first queue's descriptor."""
        return self.fds[0]

    @property
    def queues(self) -> int:
        return len(self.fds)

    @classmethod
    def open(
        cls,
        name: str,
        *,
        queues: int = 1,
        vnet_hdr_size: int = 10,
        offloads: int = ALL_OFFLOADS,
        persist: bool = True,
    ) -> Tap:
        """Create the TAP ``name`` or adopt the existing one, with ``queues`` descriptors.

        ``offloads`` are the ``TUN_F_*`` bits to ask for; unsupported USO and then TSO are dropped
        (see :attr:`offloads` for the result). ``vnet_hdr_size`` is 10 or 12.
        """
        raw = _check_name(name)
        if vnet_hdr_size not in (10, 12):
            raise ValueError(f"vnet_hdr_size must be 10 or 12, not {vnet_hdr_size}")
        if not 1 <= queues <= 256:
            raise ValueError(f"queues must be 1..256, not {queues}")
        existed = _link_exists(name)
        flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (IFF_MULTI_QUEUE if queues > 1 else 0)
        fds: list[int] = []
        try:
            for _ in range(queues):
                fds.append(_attach(raw, name, flags, existed))
            accepted = _set_offloads(fds, offloads)
            for fd in fds:
                _ioctl_int(fd, TUNSETVNETHDRSZ, vnet_hdr_size, name, "TUNSETVNETHDRSZ")
            _ioctl_int(fds[0], TUNSETPERSIST, 1 if persist else 0, name, "TUNSETPERSIST")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return cls(name, fds, vnet_hdr_size, accepted, persist, existed)

    def close(self) -> None:
        """Close our descriptors; a persistent device stays, with its link settings."""
        if self._closed:
            return
        self._closed = True
        for fd in self.fds:
            os.close(fd)

    def destroy(self) -> None:
        """Clear persistence and close: the kernel removes the device with our last descriptor."""
        if not self._closed and self.persist:
            _ioctl_int(self.fds[0], TUNSETPERSIST, 0, self.name, "TUNSETPERSIST")
            self.persist = False
        self.close()

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def offload_names(self) -> list[str]:
        return offload_names(self.offloads)

    def configure(
        self,
        *,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool = True,
        addresses: list[str] | None = None,
        bridge: str | None = None,
    ) -> None:
        """Set the link through netlink (pyroute2). Each setting is applied only where it differs,
        so adopting a configured device changes nothing; addresses are added, never flushed."""
        configure_link(self.name, mtu=mtu, mac=mac, up=up, addresses=addresses, bridge=bridge)


def _attach(raw: bytes, name: str, flags: int, existed: bool) -> int:
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeviceMissing(f"{TUN_PATH} does not exist: the kernel lacks TUN/TAP support") from None
    except PermissionError as exc:
        raise PermissionDenied(
            f"cannot open {TUN_PATH}: run as root or grant CAP_NET_ADMIN", exc.errno
        ) from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
    except OSError as exc:
        os.close(fd)
        raise _tunsetiff_error(name, flags, existed, exc) from None
    return fd


def _tunsetiff_error(name: str, flags: int, existed: bool, exc: OSError) -> IoError:
    if exc.errno == _errno.EPERM:
        return PermissionDenied(
            f"cannot create or attach TAP {name!r}: run as root or grant CAP_NET_ADMIN "
            "(an adopted device must also be owned by our user)",
            exc.errno,
        )
    if exc.errno == _errno.EBUSY:
        return DeviceBusy(f"TAP {name!r} is already attached to another process", exc.errno)
    if exc.errno == _errno.EINVAL and existed:
        multi = "with" if flags & IFF_MULTI_QUEUE else "without"
        return InterfaceConflict(
            f"interface {name!r} exists but is not a TAP that can be adopted {multi} multiqueue; "
            "remove it or choose another name",
            exc.errno,
        )
    return IoError(f"TUNSETIFF {name!r} failed: {exc.strerror}", exc.errno)


def _ioctl_int(fd: int, request: int, value: int, name: str, what: str) -> None:
    try:
        fcntl.ioctl(fd, request, value if request != TUNSETVNETHDRSZ else struct.pack("i", value))
    except OSError as exc:
        if exc.errno == _errno.EPERM:
            raise PermissionDenied(f"{what} on {name!r}: run as root or grant CAP_NET_ADMIN") from None
        raise IoError(f"{what} on {name!r} failed: {exc.strerror}", exc.errno) from None


def _set_offloads(fds: list[int], wanted: int) -> int:
    """Ask for ``wanted``; on EINVAL drop USO, then TSO, then everything. Returns what was set."""
    candidates = [wanted, wanted & ~_USO, wanted & ~(_USO | _TSO), 0]
    for offloads in dict.fromkeys(candidates):  # ordered, without repeats
        try:
            for fd in fds:
                fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)
        except OSError as exc:
            if exc.errno == _errno.EINVAL:
                continue
            raise IoError(f"TUNSETOFFLOAD failed: {exc.strerror}", exc.errno) from None
        return offloads
    raise Unsupported("TUNSETOFFLOAD refused even no offloads")


# -- link settings through netlink ------------------------------------------------------------------


def _ipr() -> Any:
    from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only when configuring links

    return IPRoute()


def _link_exists(name: str) -> bool:
    with _ipr() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def configure_link(
    name: str,
    *,
    mtu: int | None = None,
    mac: str | None = None,
    up: bool = True,
    addresses: list[str] | None = None,
    bridge: str | None = None,
) -> None:
    """Apply link settings to ``name`` through pyroute2 where they differ from the current ones."""
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise DeviceMissing(f"interface {name!r} does not exist")
        index = found[0]
        try:
            link = ipr.get_links(index)[0]
            changes: dict[str, Any] = {}
            if mtu is not None and link.get_attr("IFLA_MTU") != mtu:
                changes["mtu"] = mtu
            if mac is not None and str(link.get_attr("IFLA_ADDRESS")).lower() != mac.lower():
                changes["address"] = mac
            if bridge is not None:
                masters = ipr.link_lookup(ifname=bridge)
                if not masters:
                    raise DeviceMissing(f"bridge {bridge!r} does not exist: create it first")
                if link.get_attr("IFLA_MASTER") != masters[0]:
                    changes["master"] = masters[0]
            if changes:
                ipr.link("set", index=index, **changes)
            for cidr in addresses or []:
                iface = ipaddress.ip_interface(cidr)
                have = {
                    (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(index=index, family=2 if iface.version == 4 else 10)
                }
                if (str(iface.ip), iface.network.prefixlen) not in have:
                    ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            if up and not link["flags"] & 1:  # IFF_UP
                ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            if exc.code == _errno.EPERM:
                raise PermissionDenied(
                    f"configuring {name!r}: run as root or grant CAP_NET_ADMIN", exc.code
                ) from None
            raise IoError(f"configuring {name!r} failed: {exc}", exc.code) from None

"""Errors raised by the I/O ports (TAP device, underlay UDP socket).

Each carries a message a person can act on ("run as root or grant CAP_NET_ADMIN"), because the node
agent prints it and exits non-zero. ``errno`` keeps the operating-system error when there was one.
"""

from __future__ import annotations

__all__ = [
    "AddressNotAvailable",
    "DeviceBusy",
    "DeviceMissing",
    "InterfaceConflict",
    "IoError",
    "PermissionDenied",
    "PortInUse",
    "Unsupported",
]


class IoError(Exception):
    """Root of every error raised by :mod:`dataplane.io`."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno


class PermissionDenied(IoError):  # noqa: N818 - names the issue documents
    """The process lacks CAP_NET_ADMIN (or cannot open ``/dev/net/tun``)."""


class DeviceMissing(IoError):  # noqa: N818 - names the issue documents
    """A device we were told to use does not exist (``/dev/net/tun``, the bridge, the interface)."""


class DeviceBusy(IoError):  # noqa: N818 - names the issue documents
    """The TAP exists and every queue is already attached to another process."""


class InterfaceConflict(IoError):  # noqa: N818 - names the issue documents
    """An interface of that name exists but is not a TAP we can adopt (or has other flags)."""


class PortInUse(IoError):  # noqa: N818 - names the issue documents
    """The underlay UDP address and port are bound by someone else."""


class AddressNotAvailable(IoError):  # noqa: N818 - names the issue documents
    """The local underlay address is not configured on any interface of this namespace."""


class Unsupported(IoError):  # noqa: N818 - names the issue documents
    """The kernel lacks a feature the caller insisted on."""

"""I/O ports of the packet engine and the data-path pump that joins them.

* :mod:`.tap` opens or adopts a persistent TAP device with ``IFF_VNET_HDR`` offloads and sets its
  link (MTU, MAC, addresses, bridge) through pyroute2.
* :mod:`.udp` opens the underlay UDP socket, with UDP GSO/GRO where the kernel has them.
* :mod:`.pump` (pure Python) and ``_pump`` (Cython, batched syscalls with the GIL released) move
  frames between the two through a VTEP; :func:`load_pump` picks the implementation in use.
"""

from __future__ import annotations

from types import ModuleType

from dataplane.wire import _select
from dataplane.wire._select import EXTENSIONS_DISABLED as EXTENSIONS_DISABLED

from .errors import IoError as IoError


def compiled_pump() -> ModuleType | None:
    """The compiled pump ``dataplane.io._pump``, or None when it was not built."""
    return _select.compiled("pump", "dataplane.io")


def load_pump() -> ModuleType:
    """The pump module this process should use (compiled unless disabled or absent)."""
    return _select.load("pump", "dataplane.io")

"""I/O ports of the packet engine and the data-path pump that joins them.

* :mod:`.tap` opens or adopts a persistent TAP device with ``IFF_VNET_HDR`` offloads and sets its
  link (MTU, MAC, addresses, bridge) through pyroute2.
* :mod:`.udp` opens the underlay UDP socket, with UDP GSO/GRO where the kernel has them.
* :mod:`.pump` (pure Python) and ``_pump`` (Cython, batched syscalls with the GIL released) move
  frames between the two through a VTEP; :func:`load_pump` picks the implementation in use.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from .errors import IoError as IoError

EXTENSIONS_DISABLED = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"


def compiled_pump() -> ModuleType | None:
    """The compiled pump ``dataplane.io._pump``, or None when it was not built."""
    try:
        return importlib.import_module("dataplane.io._pump")
    except ImportError:
        return None


def load_pump() -> ModuleType:
    """The pump module this process should use (compiled unless disabled or absent)."""
    if not EXTENSIONS_DISABLED:
        module = compiled_pump()
        if module is not None:
            return module
    return importlib.import_module("dataplane.io.pump")

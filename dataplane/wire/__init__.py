"""Packet codecs and checksums: the formats every other part of the engine speaks.

Each module exists twice with one API: a Cython build and its pure-Python twin. This package
namespace re-exports the implementation in use (compiled unless ``WEBSPACES_NO_EXTENSIONS=1`` or
not built); ``dataplane.wire.<module>`` always names the pure-Python twin.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from . import _select
from .errors import BufferWriteError as BufferWriteError
from .errors import MalformedPacket as MalformedPacket
from .errors import WireError as WireError

# This package's twinned modules, from the registry (in its dependency order). Each defines __all__,
# merged into this namespace.
MODULES = tuple(name for name, package in map(_select.split, _select.TWINS) if package == __name__)

if TYPE_CHECKING:  # mypy sees the pure-Python twins, whose API the compiled ones share
    from .arp import *  # noqa: F403
    from .batch import *  # noqa: F403
    from .buffer import *  # noqa: F403
    from .checksum import *  # noqa: F403
    from .datagram import *  # noqa: F403
    from .dhcp import *  # noqa: F403
    from .dns import *  # noqa: F403
    from .ethernet import *  # noqa: F403
    from .frame import *  # noqa: F403
    from .gso import *  # noqa: F403
    from .icmp import *  # noqa: F403
    from .ipv4 import *  # noqa: F403
    from .tcp import *  # noqa: F403
    from .udp import *  # noqa: F403
    from .vnet import *  # noqa: F403
    from .vxlan import *  # noqa: F403
_loaded: dict[str, ModuleType] = {}
if not TYPE_CHECKING:
    for _name in MODULES:
        try:
            importlib.import_module(f"{__name__}.{_name}")
        except ModuleNotFoundError:
            continue
        _module = _select.load(_name)
        _loaded[_name] = _module
        globals().update({key: getattr(_module, key) for key in _module.__all__})


def implementation_report() -> dict[str, str]:
    """Which implementation serves each module: ``"cython"`` or ``"python"``."""
    return {name: _select.implementation(module) for name, module in _loaded.items()}


def implementation() -> str:
    """``"cython"`` when every module is compiled, ``"python"`` when none is, else ``"mixed"``."""
    kinds = set(implementation_report().values())
    return kinds.pop() if len(kinds) == 1 else "mixed"

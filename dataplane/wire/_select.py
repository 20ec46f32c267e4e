"""The one answer to "is this module compiled?": every twinned module, and which twin is in use.

Every Cython module ``pkg._name`` has a pure-Python twin ``pkg.name`` with the same API
(DESIGN.md, "Every Cython module has a pure-Python twin"). :data:`TWINS` lists every such pair in
the engine, by the pure twin's dotted name; :func:`load` picks the compiled twin unless
``WEBSPACES_NO_EXTENSIONS=1`` (as ``setup.py`` honours at build time) or it was not built;
:func:`is_compiled` says which one a module (or a module's ``__name__``) is; :func:`report` says it
for the whole registry, for ``webspaces info`` and the guard test (``tests/unit/test_extensions.py``)
that fails where an extension was built but not loaded. Every engine package selects through this
module; it lives in ``dataplane.wire`` because that package imports nothing of the project, and it
imports nothing of the project itself.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
from pathlib import Path
from types import ModuleType

EXTENSIONS_DISABLED = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"
WIRE = "dataplane.wire"

# Every twinned module, by its pure twin's dotted name, in dependency order. Hand-written Cython
# twins (``_name.pyx``) and pure modules compiled from their own source (setup.py's FROM_SOURCE)
# alike; setup.py's HANDWRITTEN and FROM_SOURCE name the same modules (tests/unit/test_extensions.py
# checks it).
TWINS = (
    "dataplane.wire.buffer",
    "dataplane.wire.checksum",
    "dataplane.wire.ethernet",
    "dataplane.wire.arp",
    "dataplane.wire.ipv4",
    "dataplane.wire.udp",
    "dataplane.wire.tcp",
    "dataplane.wire.icmp",
    "dataplane.wire.vxlan",
    "dataplane.wire.dhcp",
    "dataplane.wire.dns",
    "dataplane.wire.vnet",
    "dataplane.wire.frame",
    "dataplane.wire.datagram",
    "dataplane.wire.batch",
    "dataplane.wire.gso",
    "dataplane.pump.handler",
    "dataplane.overlay.vtep",
    "dataplane.pump.tunnel",
    "dataplane.dhcp.pool",
    "dataplane.dhcp.leases",
    "dataplane.dhcp.replies",
    "dataplane.dhcp.server",
)


def compiled_name(dotted: str) -> str:
    """``pkg.name`` -> ``pkg._name``."""
    package, _, name = dotted.rpartition(".")
    return f"{package}._{name}"


def is_compiled(module: ModuleType | str) -> bool:
    """Is ``module`` (a module, or its ``__name__``) a compiled twin, ``pkg._name``?"""
    name = module if isinstance(module, str) else module.__name__
    return name.rpartition(".")[2].startswith("_")


def implementation(module: ModuleType | str) -> str:
    """``"cython"`` for a compiled twin, else ``"python"``."""
    return "cython" if is_compiled(module) else "python"


def compiled(name: str, package: str = WIRE) -> ModuleType | None:
    """The compiled twin ``<package>._<name>``, or None when it was not built."""
    try:
        return importlib.import_module(f"{package}._{name}")
    except ImportError:
        return None


def pure(name: str, package: str = WIRE) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def load(name: str, package: str = WIRE) -> ModuleType:
    """The implementation of ``<package>.<name>`` that this process should use."""
    if not EXTENSIONS_DISABLED:
        module = compiled(name, package)
        if module is not None:
            return module
    return pure(name, package)


def split(dotted: str) -> tuple[str, str]:
    """``pkg.name`` -> ``(name, pkg)``, the arguments of :func:`load`."""
    package, _, name = dotted.rpartition(".")
    return name, package


def built(dotted: str) -> Path | None:
    """The extension file of ``dotted``'s compiled twin when one was built, else None."""
    name, package = split(dotted)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(directory) / f"_{name}{suffix}"
            if candidate.exists():
                return candidate
    return None


def report() -> dict[str, str]:
    """Every twinned module that exists in this tree -> the implementation this process uses."""
    result: dict[str, str] = {}
    for dotted in TWINS:
        name, package = split(dotted)
        try:
            module = load(name, package)
        except ModuleNotFoundError:
            continue  # a module of a package not shipped in this tree
        result[dotted] = implementation(module)
    return result

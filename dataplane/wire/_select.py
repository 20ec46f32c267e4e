"""Pick the compiled twin of a module unless extensions are disabled or absent.

Every hand-written or compiled module ``pkg._name`` has a pure-Python twin ``pkg.name`` with the
same API. ``WEBSPACES_NO_EXTENSIONS=1`` forces the pure-Python twins (as ``setup.py`` does at build
time). The other engine packages (``dataplane.overlay``, ``dataplane.io``) select through this
module too, with their own ``package``; it imports nothing of the project itself.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

EXTENSIONS_DISABLED = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"
WIRE = "dataplane.wire"


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


def is_compiled(module: ModuleType) -> bool:
    return module.__name__.rpartition(".")[2].startswith("_")

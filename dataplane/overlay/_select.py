"""Pick the compiled VTEP (``_vtep``) unless extensions are disabled or it was not built.

``WEBSPACES_NO_EXTENSIONS=1`` forces the pure-Python twin, as it does for ``dataplane.wire``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

EXTENSIONS_DISABLED = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"


def compiled(name: str = "vtep") -> ModuleType | None:
    """The compiled twin of ``dataplane.overlay.<name>``, or None when it was not built."""
    try:
        return importlib.import_module(f"dataplane.overlay._{name}")
    except ImportError:
        return None


def pure(name: str = "vtep") -> ModuleType:
    return importlib.import_module(f"dataplane.overlay.{name}")


def load(name: str = "vtep") -> ModuleType:
    """The implementation of ``dataplane.overlay.<name>`` that this process should use."""
    if not EXTENSIONS_DISABLED:
        module = compiled(name)
        if module is not None:
            return module
    return pure(name)

"""Pick the compiled twin of a wire module unless extensions are disabled or absent.

``WEBSPACES_NO_EXTENSIONS=1`` forces the pure-Python twins (as ``setup.py`` does at build time).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

EXTENSIONS_DISABLED = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"


def compiled(name: str) -> ModuleType | None:
    """The compiled twin of ``dataplane.wire.<name>``, or None when it was not built."""
    try:
        return importlib.import_module(f"dataplane.wire._{name}")
    except ImportError:
        return None


def load(name: str) -> ModuleType:
    """The implementation of ``dataplane.wire.<name>`` that this process should use."""
    if not EXTENSIONS_DISABLED:
        module = compiled(name)
        if module is not None:
            return module
    return importlib.import_module(f"dataplane.wire.{name}")


def pure(name: str) -> ModuleType:
    return importlib.import_module(f"dataplane.wire.{name}")

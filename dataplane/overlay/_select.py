"""Pick the compiled VTEP (``_vtep``) unless extensions are disabled or it was not built.

The same rule as ``dataplane.wire`` (see :mod:`dataplane.wire._select`), for this package.
"""

from __future__ import annotations

from types import ModuleType

from dataplane.wire import _select
from dataplane.wire._select import EXTENSIONS_DISABLED

__all__ = ["EXTENSIONS_DISABLED", "compiled", "load", "pure"]

PACKAGE = "dataplane.overlay"


def compiled(name: str = "vtep") -> ModuleType | None:
    return _select.compiled(name, PACKAGE)


def pure(name: str = "vtep") -> ModuleType:
    return _select.pure(name, PACKAGE)


def load(name: str = "vtep") -> ModuleType:
    return _select.load(name, PACKAGE)

"""Guard: the implementation in use is the one the build and the environment promise.

A compiled twin that was built but silently not loaded (an ABI mismatch, a stale ``.so``, an import
error swallowed by the selector) would make every "compiled" test and benchmark measure Python.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import pytest

from dataplane import wire
from dataplane.wire import _select
from tests.conftest import IN_CI, require

WIRE_DIR = Path(wire.__file__).parent
HANDWRITTEN = {"buffer", "checksum", "batch", "gso"}


def built_extension(name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = WIRE_DIR / f"_{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def source_exists(name: str) -> bool:
    source = WIRE_DIR / (f"_{name}.pyx" if name in HANDWRITTEN else f"{name}.py")
    return source.exists()


MODULES = [name for name in wire.MODULES if source_exists(name)]


@pytest.mark.parametrize("name", MODULES)
def test_selected_implementation_matches_build(name: str) -> None:
    report = wire.implementation_report()
    assert name in report, f"dataplane.wire.{name} exists but the package did not load it"
    if _select.EXTENSIONS_DISABLED:
        assert report[name] == "python", "WEBSPACES_NO_EXTENSIONS=1 but a compiled twin was used"
        return
    built = built_extension(name)
    if IN_CI:
        # setup-host.sh installs Cython and a compiler, so CI must have built every twin.
        assert built is not None, f"dataplane.wire._{name} was not built"
    else:
        require(built is not None, f"dataplane.wire._{name} is not built (pure-Python install)")
    assert report[name] == "cython", f"{built} was built but the pure-Python twin was loaded"


# Hand-written twins outside dataplane.wire: (package, module name, the selector the product uses).
ENGINE_TWINS = [
    ("dataplane.overlay", "vtep"),
    ("dataplane.pump", "tunnel"),
    ("dataplane.pump", "handler"),
    ("dataplane.dhcp", "pool"),
    ("dataplane.dhcp", "server"),
]


def selected(package: str, name: str) -> str:
    if package == "dataplane.dhcp":
        from dataplane import dhcp  # noqa: PLC0415

        chosen = dhcp.DhcpServer if name == "server" else dhcp.Pool
        return _select.implementation(chosen.__module__)
    if package == "dataplane.overlay":
        from dataplane import overlay  # noqa: PLC0415 - imported per case, for its selection

        return "cython" if overlay.implementation() == "cython" else "python"
    return _select.implementation(_select.load(name, package))


@pytest.mark.parametrize(("package", "name"), ENGINE_TWINS)
def test_engine_twin_selection_matches_build(package: str, name: str) -> None:
    built = _select.compiled(name, package) is not None
    if _select.EXTENSIONS_DISABLED:
        assert selected(package, name) == "python"
        return
    if IN_CI:
        assert built, f"{package}._{name} was not built"
    else:
        require(built, f"{package}._{name} is not built")
    assert selected(package, name) == "cython", f"{package}._{name} was built but the pure twin was loaded"


@pytest.mark.parametrize("name", MODULES)
def test_twins_share_one_public_api(name: str) -> None:
    pure = _select.pure(name)
    compiled = _select.compiled(name)
    require(compiled is not None, f"dataplane.wire._{name} is not built")
    assert compiled is not None
    assert sorted(pure.__all__) == sorted(compiled.__all__)
    for symbol in pure.__all__:
        assert hasattr(compiled, symbol), f"_{name} lacks {symbol}"
        assert callable(getattr(pure, symbol)) == callable(getattr(compiled, symbol)), symbol


# -- the registry: every twinned module, one answer ----------------------------------------------

ROOT = WIRE_DIR.parent.parent


@pytest.mark.parametrize("dotted", _select.TWINS)
def test_every_registered_twin_is_loaded_as_built(dotted: str) -> None:
    """The guard for every twin the registry names (wire, GSO, the VTEP, the pump, DHCP)."""
    report = _select.report()
    assert dotted in report, f"{dotted} is registered but does not exist"
    if _select.EXTENSIONS_DISABLED:
        assert report[dotted] == "python", "WEBSPACES_NO_EXTENSIONS=1 but a compiled twin was used"
        return
    built = _select.built(dotted)
    if IN_CI:
        assert built is not None, f"{_select.compiled_name(dotted)} was not built"
    else:
        require(built is not None, f"{_select.compiled_name(dotted)} is not built (pure-Python install)")
    assert report[dotted] == "cython", f"{built} was built but the pure-Python twin was loaded"


@pytest.mark.parametrize("dotted", _select.TWINS)
def test_every_registered_twin_pair_shares_its_public_api(dotted: str) -> None:
    name, package = _select.split(dotted)
    pure = _select.pure(name, package)
    compiled = _select.compiled(name, package)
    require(compiled is not None, f"{_select.compiled_name(dotted)} is not built")
    assert compiled is not None
    assert sorted(pure.__all__) == sorted(compiled.__all__)
    for symbol in pure.__all__:
        assert hasattr(compiled, symbol), f"{compiled.__name__} lacks {symbol}"


def test_every_handwritten_extension_is_registered() -> None:
    """setup.py builds what the registry names, so a hand-written ``_name.pyx`` outside it would never
    be built (and a registered twin without a source would fail the build)."""
    registered = set(_select.TWINS)
    for pyx in (ROOT / "dataplane").rglob("_*.pyx"):
        package = ".".join(pyx.relative_to(ROOT).parent.parts)
        assert f"{package}.{pyx.stem.lstrip('_')}" in registered, f"{pyx} is not in the twin registry"
    for dotted in _select.TWINS:
        package, _, name = dotted.rpartition(".")
        directory = ROOT / package.replace(".", "/")
        assert (directory / f"_{name}.pyx").exists() or (directory / f"{name}.py").exists(), dotted

"""Build the Cython twins of the wire modules, or fall back to pure Python.

The compiled modules are optional: when Cython or a C compiler is missing, or when
``WEBSPACES_NO_EXTENSIONS=1`` is set, the package installs with its pure-Python twins only and says
so. It builds every module of the twin registry (``dataplane.wire._select.TWINS``), each one of two
kinds:

* hand-written ``.pyx`` modules (``_buffer``, ``_checksum``, ``_batch``, ``_gso``, the VTEP, the
  pump and its frame-handler base), typed for the hot path, used wherever ``pkg/_name.pyx`` exists;
* the others (the per-frame codecs, the DHCP core), compiled from their own pure-Python source under
  an underscore name (``ipv4.py`` -> ``_ipv4``), so the two twins cannot drift apart in behaviour.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The twin registry, dataplane/wire/_select.py's TWINS, is the one list of compiled modules: setup.py
# builds exactly what it names. It is read from the source (an assignment of string literals), since
# setup.py must not import the package it is building.
REGISTRY = "dataplane/wire/_select.py"


def twins() -> list[str]:
    """The pure twins' dotted names, in the registry's order."""
    for node in ast.parse(Path(REGISTRY).read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "TWINS" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"{REGISTRY} has no TWINS")


def twin_source(dotted: str) -> str:
    """What builds ``pkg._name``: the hand-written ``pkg/_name.pyx``, else ``pkg/name.py`` itself."""
    package, _, name = dotted.rpartition(".")
    handwritten = f"{package.replace('.', '/')}/_{name}.pyx"
    return handwritten if os.path.exists(handwritten) else dotted.replace(".", "/") + ".py"


def say(message: str) -> None:
    print(f"webspaces setup: {message}", file=sys.stderr)


def extensions() -> list[Any]:
    if os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1":
        say("WEBSPACES_NO_EXTENSIONS=1: installing the pure-Python twins only")
        return []
    try:
        from Cython.Build import cythonize  # noqa: PLC0415 - Cython is optional
    except ImportError:
        say("Cython is not installed: installing the pure-Python twins only")
        return []
    modules = []
    for dotted in twins():
        package, _, name = dotted.rpartition(".")
        source = twin_source(dotted)
        if os.path.exists(source):
            modules.append(Extension(f"{package}._{name}", [source]))
    only = os.environ.get("WEBSPACES_BUILD_ONLY")
    if only:  # development aid: rebuild just these modules, e.g. WEBSPACES_BUILD_ONLY=ipv4,_batch
        wanted = {n.lstrip("_") for n in only.split(",")}
        modules = [m for m in modules if m.name.rpartition(".")[2].lstrip("_") in wanted]
    for module in modules:
        module.extra_compile_args = ["-O3"]
    result: list[Any] = cythonize(  # type: ignore[no-untyped-call]
        modules,
        language_level=3,
        compiler_directives={"binding": True, "embedsignature": True},
        quiet=True,
    )
    return result


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """Build what compiles; a missing compiler falls back to pure Python instead of failing."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            say(f"could not build extensions ({exc}): installing the pure-Python twins only")
            return
        if self.extensions:
            say(f"built {len(self.extensions)} Cython extensions")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})

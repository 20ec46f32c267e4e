"""Build the Cython twins of the wire modules, or fall back to pure Python.

The compiled modules are optional: when Cython or a C compiler is missing, or when
``WEBSPACES_NO_EXTENSIONS=1`` is set, the package installs with its pure-Python twins only and says
so. Two kinds of extension are built:

* hand-written ``.pyx`` modules (``_buffer``, ``_checksum``, ``_batch``, ``_gso``, the VTEP, the
  pump and its frame-handler base), typed for the hot path;
* the per-frame codecs, compiled from their own pure-Python source under an underscore name
  (``ipv4.py`` -> ``_ipv4``), so the two twins cannot drift apart in behaviour.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Hand-written Cython modules, by dotted name; each has a pure-Python twin without the underscore.
HANDWRITTEN = [
    "dataplane.wire._buffer",
    "dataplane.wire._checksum",
    "dataplane.wire._batch",
    "dataplane.wire._gso",
    "dataplane.pump._handler",
    "dataplane.overlay._vtep",
    "dataplane.pump._tunnel",
]
CODECS = [
    "ethernet",
    "arp",
    "ipv4",
    "udp",
    "tcp",
    "icmp",
    "vxlan",
    "dhcp",
    "vnet",
    "frame",
    "dns",
    "datagram",
]
# Pure-Python modules compiled from their own source as `_name` twins, outside dataplane.wire.
FROM_SOURCE = [f"dataplane.wire.{name}" for name in CODECS] + [
    "dataplane.dhcp.pool",
    "dataplane.dhcp.leases",
    "dataplane.dhcp.replies",
    "dataplane.dhcp.server",
]


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
    modules = [
        Extension(name, [name.replace(".", "/") + ".pyx"])
        for name in HANDWRITTEN
        if os.path.exists(name.replace(".", "/") + ".pyx")
    ]
    for dotted in FROM_SOURCE:
        package, _, name = dotted.rpartition(".")
        source = dotted.replace(".", "/") + ".py"
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

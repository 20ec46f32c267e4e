"""Architecture names LXD accepts in a product's ``arch`` field (spec/simplestreams.md §1.8).

LXD drops a product whose ``arch`` is not a kernel name or one of its aliases, silently: the image
just is not there. We therefore validate every architecture against the same table before it reaches
the index, and the caller logs and skips the ones that fail (spec §9 item 3). The string itself is
published verbatim (publishers use Debian names such as ``amd64``); only the check uses this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .errors import UnknownArchError

# Kernel name -> the aliases LXD also accepts (spec §1.8; loong64 needs a newer LXD).
_ALIASES: dict[str, tuple[str, ...]] = {
    "x86_64": ("amd64",),
    "i686": ("i386", "i586", "386", "x86"),
    "aarch64": ("arm64",),
    "armv7l": ("armhf", "armhfp", "armv7"),
    "armv6l": ("armel", "arm"),
    "ppc64le": ("ppc64el",),
    "ppc64": ("powerpc64",),
    "s390x": (),
    "riscv64": (),
    "mips64": ("mips64el",),
    "loongarch64": ("loong64",),
}

KERNEL_NAMES: Mapping[str, str] = MappingProxyType(
    {name: kernel for kernel, aliases in _ALIASES.items() for name in (kernel, *aliases)}
)
"""Every accepted architecture string (kernel name or alias) -> its kernel name."""


def kernel_arch(name: str) -> str:
    """The kernel name of ``name`` (``"amd64"`` -> ``"x86_64"``).

    Matching is exact, as in LXD: ``"AMD64"`` or ``"x86-64"`` would make the product vanish, so they
    raise :class:`~simplestreams.errors.UnknownArchError` here.
    """
    try:
        return KERNEL_NAMES[name]
    except KeyError:
        raise UnknownArchError(f"unknown architecture {name!r} (spec §1.8)") from None

"""LXD's architecture table (spec/simplestreams.md §1.8): every row, and what makes a product vanish."""

from __future__ import annotations

import pytest

from simplestreams import arch, errors

# Spec §1.8, one (accepted string, kernel name) pair per table cell.
TABLE = [
    ("x86_64", "x86_64"),
    ("amd64", "x86_64"),
    ("i686", "i686"),
    ("i386", "i686"),
    ("i586", "i686"),
    ("386", "i686"),
    ("x86", "i686"),
    ("aarch64", "aarch64"),
    ("arm64", "aarch64"),
    ("armv7l", "armv7l"),
    ("armhf", "armv7l"),
    ("armhfp", "armv7l"),
    ("armv7", "armv7l"),
    ("armv6l", "armv6l"),
    ("armel", "armv6l"),
    ("arm", "armv6l"),
    ("ppc64le", "ppc64le"),
    ("ppc64el", "ppc64le"),
    ("ppc64", "ppc64"),
    ("powerpc64", "ppc64"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("mips64", "mips64"),
    ("mips64el", "mips64"),
    ("loongarch64", "loongarch64"),
    ("loong64", "loongarch64"),
]


@pytest.mark.parametrize(("name", "kernel"), TABLE)
def test_table_row(name: str, kernel: str) -> None:
    assert arch.kernel_arch(name) == kernel
    assert arch.KERNEL_NAMES[name] == kernel


def test_table_has_nothing_else() -> None:
    assert dict(arch.KERNEL_NAMES) == dict(TABLE)


@pytest.mark.parametrize("name", ["x86-64", "AMD64", "Amd64", "amd64 ", "", "arm64/v8", "x86_64\n", "i786"])
def test_unknown_arch_is_rejected(name: str) -> None:
    with pytest.raises(errors.UnknownArchError) as caught:
        arch.kernel_arch(name)
    assert isinstance(caught.value, errors.RejectedError)
    assert caught.value.reason == "unknown-arch"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        arch.KERNEL_NAMES["x86-64"] = "x86_64"  # type: ignore[index]

"""Synthetic releases: real image files for benchmarks and tests, written into a directory you give.

Everything here writes genuine formats, so the code under test (and the server a benchmark times)
reads what a publisher would upload. It lives in product code because benchmarks need it and
benchmarks never import tests:

- :func:`meta_bytes` / :func:`write_meta`: a meta tarball (``lxd.<arch>.tar.xz``) made with
  :mod:`tarfile`, holding ``metadata.yaml`` (optionally as ``./metadata.yaml``) and templates,
  compressed with xz (default), gzip, zstd or not at all; reproducible (mtime 0, sorted names, root).
- :func:`write_squashfs`: a small real squashfs made by ``mksquashfs`` (squashfs-tools) from a
  temporary directory; reproducible (``-mkfs-time 0 -all-time 0 -all-root``).
- :func:`write_fake_squashfs`: a cheap stand-in that has only a valid superblock (magic ``hsqs`` and
  ``bytes_used``), for bulk benchmark corpora where thousands of mksquashfs runs would take minutes.
- :func:`write_sidecar` / :func:`write_combined`: ``sha256sum``-style sidecar files.
- :func:`write_release`: a whole local release directory ``<root>/<name>/v<version>/`` in the
  directory backend's layout (spec/simplestreams.md §6), one meta and one rootfs per architecture.

The file names follow the GitHub asset names of spec §3.3 (``lxd.amd64.tar.xz``,
``rootfs.amd64.squashfs``, ``rootfs.amd64.squashfs.sha256``, ``combined.amd64.sha256``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
import zstandard

from .arch import kernel_arch

CREATED = datetime(2021, 8, 28, 15, 4, tzinfo=UTC)
"""The default creation_date: version keys come out as ``20210828_1504_v<version>``."""

COMPRESSIONS = ("xz", "gzip", "zstd", "none")


def metadata_document(
    architecture: str = "x86_64",
    *,
    creation_date: datetime | int | None = CREATED,
    expiry_date: datetime | int | None = None,
    properties: Mapping[str, str] | None = None,
) -> bytes:
    """A ``metadata.yaml`` as distrobuilder writes it (dates as Unix seconds, properties quoted)."""
    document: dict[str, object] = {"architecture": architecture}
    for key, value in (("creation_date", creation_date), ("expiry_date", expiry_date)):
        if isinstance(value, datetime):
            document[key] = int(value.timestamp())
        elif value is not None:
            document[key] = value
    document["properties"] = dict(
        properties
        if properties is not None
        else {"os": "busybox", "release": "1.35", "variant": "default", "description": "Busybox test"}
    )
    return yaml.safe_dump(document, sort_keys=True, default_style=None).encode()


def meta_bytes(
    architecture: str = "x86_64",
    *,
    compression: str = "xz",
    dot_slash: bool = False,
    metadata_yaml: bytes | None = None,
    templates: Mapping[str, bytes] | None = None,
    creation_date: datetime | int | None = CREATED,
    expiry_date: datetime | int | None = None,
    properties: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of a meta tarball; ``metadata_yaml`` replaces the generated document verbatim.

    ``dot_slash`` names the members ``./metadata.yaml`` and ``./templates/...`` (``tar -C dir .``).
    ``compression`` is one of :data:`COMPRESSIONS`.
    """
    if metadata_yaml is None:
        metadata_yaml = metadata_document(
            architecture, creation_date=creation_date, expiry_date=expiry_date, properties=properties
        )
    prefix = "./" if dot_slash else ""
    members: dict[str, bytes] = {f"{prefix}metadata.yaml": metadata_yaml}
    for name, content in (templates or {}).items():
        members[f"{prefix}templates/{name}"] = content
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        if templates:
            archive.addfile(_info(f"{prefix}templates", 0, directory=True))
        for name in sorted(members):
            archive.addfile(_info(name, len(members[name])), io.BytesIO(members[name]))
    return compress(raw.getvalue(), compression)


def compress(data: bytes, compression: str) -> bytes:
    """``data`` compressed as ``compression`` (one of :data:`COMPRESSIONS`), reproducibly."""
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def write_meta(
    path: Path,
    architecture: str = "x86_64",
    *,
    compression: str = "xz",
    dot_slash: bool = False,
    metadata_yaml: bytes | None = None,
    templates: Mapping[str, bytes] | None = None,
    creation_date: datetime | int | None = CREATED,
    expiry_date: datetime | int | None = None,
    properties: Mapping[str, str] | None = None,
) -> Path:
    """Write :func:`meta_bytes` (same options) to ``path``."""
    data = meta_bytes(
        architecture,
        compression=compression,
        dot_slash=dot_slash,
        metadata_yaml=metadata_yaml,
        templates=templates,
        creation_date=creation_date,
        expiry_date=expiry_date,
        properties=properties,
    )
    path.write_bytes(data)
    return path


def write_squashfs(path: Path, files: Mapping[str, bytes] | None = None) -> Path:
    """A real squashfs at ``path`` made by ``mksquashfs`` from ``files`` (relative path -> content).

    Default content: a tiny ``/etc/hostname`` and ``/bin/init``. Takes some tens of milliseconds.
    """
    files = files if files is not None else {"etc/hostname": b"test\n", "bin/init": b"#!/bin/sh\nexec sh\n"}
    with tempfile.TemporaryDirectory(prefix="squashfs-src.") as source:
        for relative, content in files.items():
            target = Path(source, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        path.unlink(missing_ok=True)
        subprocess.run(
            ["mksquashfs", source, str(path), "-noappend", "-quiet", "-no-progress", "-comp", "gzip",
             "-mkfs-time", "0", "-all-time", "0", "-all-root"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )  # fmt: skip
    return path


SUPERBLOCK = struct.Struct("<4sIIIIHHHHHHQQQQQQQQ")
"""The 96-byte squashfs 4.0 superblock: magic, inodes, mkfs_time, block_size, fragments, compression,
block_log, flags, ids, major, minor, root_inode, bytes_used, then six table offsets."""


def fake_squashfs_bytes(size: int = 4096, *, bytes_used: int | None = None, seed: bytes = b"") -> bytes:
    """``size`` bytes that start with a valid squashfs superblock and nothing else of use.

    ``bytes_used`` defaults to ``size`` (a complete image); set it above ``size`` to fake a truncated
    upload. ``seed`` varies the filler, so distinct fakes have distinct hashes.
    """
    if size < SUPERBLOCK.size:
        raise ValueError("a squashfs is at least 96 bytes")
    used = size if bytes_used is None else bytes_used
    header = SUPERBLOCK.pack(b"hsqs", 1, 0, 131072, 0, 1, 17, 0, 1, 4, 0, 0, used, *([used] * 6))
    filler = hashlib.sha256(seed).digest() * (1 + (size - SUPERBLOCK.size) // 32)
    return header + filler[: size - SUPERBLOCK.size]


def write_fake_squashfs(
    path: Path, size: int = 4096, *, bytes_used: int | None = None, seed: bytes = b""
) -> Path:
    """Write :func:`fake_squashfs_bytes` to ``path``."""
    path.write_bytes(fake_squashfs_bytes(size, bytes_used=bytes_used, seed=seed))
    return path


def sha256_file(*paths: Path) -> str:
    """sha256 of the files' concatenated bytes, lowercase hex."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_sidecar(of: Path, digest: str | None = None, *, text: str | None = None) -> Path:
    """``<of>.sha256`` holding ``sha256sum`` output for ``of`` (or ``digest``, or raw ``text``)."""
    sidecar = of.with_name(of.name + ".sha256")
    if text is None:
        text = f"{digest if digest is not None else sha256_file(of)}  {of.name}\n"
    sidecar.write_text(text)
    return sidecar


def write_combined(
    release_dir: Path,
    arch: str,
    meta: Path,
    rootfs: Path,
    *,
    ftype: str = "squashfs",
    digest: str | None = None,
) -> Path:
    """The combined sidecar sha256(meta ‖ rootfs): ``combined.<arch>.sha256`` for squashfs (OctoLXD's
    name), ``combined.<arch>.<ftype>.sha256`` for the other rootfs types."""
    name = f"combined.{arch}.sha256" if ftype == "squashfs" else f"combined.{arch}.{ftype}.sha256"
    path = release_dir / name
    path.write_text(f"{digest if digest is not None else sha256_file(meta, rootfs)}  -\n")
    return path


@dataclass
class ReleaseFiles:
    """What :func:`write_release` wrote: the directory and, per arch, the meta and rootfs paths."""

    directory: Path
    meta: dict[str, Path] = field(default_factory=dict)
    rootfs: dict[str, Path] = field(default_factory=dict)


def write_release(
    root: Path,
    name: str,
    version: str,
    archs: Iterable[str] = ("amd64",),
    *,
    squashfs: str = "fake",
    sidecars: bool = False,
    combined: bool = False,
    compression: str = "xz",
    creation_date: datetime | int | None = CREATED,
    properties: Mapping[str, str] | None = None,
    rootfs_size: int = 4096,
    hidden: bool = False,
) -> ReleaseFiles:
    """Lay out ``<root>/<name>/v<version>/`` with ``lxd.<arch>.tar.xz`` and ``rootfs.<arch>.squashfs``
    for each arch (Debian names; metadata.yaml gets the kernel name).

    ``squashfs`` is ``"fake"`` (:func:`write_fake_squashfs`, ``rootfs_size`` bytes, fast) or ``"real"``
    (:func:`write_squashfs`). ``sidecars`` adds ``rootfs.<arch>.squashfs.sha256``; ``combined`` adds
    ``combined.<arch>.sha256``. ``hidden`` writes ``.v<version>`` instead: an upload in progress that
    :func:`publish` renames into place. ``name`` may contain ``/``.
    """
    parent = root / name
    directory = parent / (f".v{version}" if hidden else f"v{version}")
    directory.mkdir(parents=True, exist_ok=True)
    files = ReleaseFiles(directory)
    for arch in archs:
        meta = write_meta(
            directory / f"lxd.{arch}.tar.xz",
            kernel_arch(arch),
            compression=compression,
            creation_date=creation_date,
            properties=properties,
        )
        rootfs = directory / f"rootfs.{arch}.squashfs"
        if squashfs == "real":
            write_squashfs(rootfs, {"etc/hostname": f"{name}-{version}-{arch}\n".encode()})
        elif squashfs == "fake":
            write_fake_squashfs(rootfs, rootfs_size, seed=f"{name}/{version}/{arch}".encode())
        else:
            raise ValueError(f"squashfs must be 'fake' or 'real', not {squashfs!r}")
        if sidecars:
            write_sidecar(rootfs)
        if combined:
            write_combined(directory, arch, meta, rootfs)
        files.meta[arch] = meta
        files.rootfs[arch] = rootfs
    return files


def publish(files: ReleaseFiles) -> ReleaseFiles:
    """Rename a ``hidden`` release directory to its visible name (how uploads are published)."""
    visible = files.directory.with_name(files.directory.name.removeprefix("."))
    os.rename(files.directory, visible)
    return ReleaseFiles(
        visible,
        {arch: visible / path.name for arch, path in files.meta.items()},
        {arch: visible / path.name for arch, path in files.rootfs.items()},
    )


def _info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info

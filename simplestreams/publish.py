"""Publish split LXD images into the directory backend: the atomic publishing ``webspaces images build``
and ``webspaces images add`` share, and ``add`` itself.

Theory of operation. An image version is one directory ``<DIR>/<name>/v<version>/`` holding files
named like GitHub release assets (spec/simplestreams.md §3.3, §6; the names are
:data:`.resolve.ASSET_NAMES`, the server's own table): per architecture A, the meta tarball
``lxd.A.tar.xz``, a rootfs (``rootfs.A.squashfs``, or ``rootfs.A.tar.xz`` for the ``root.tar.xz``
ftype) and its sidecars, ``<rootfs>.sha256`` and the combined sidecar holding the fingerprint
sha256(meta ‖ rootfs) (spec §1.5): ``combined.A.sha256`` for squashfs (OctoLXD's name),
``combined.A.root.tar.xz.sha256`` for a tarball. The directory backend ignores dot-entries and never
sees a published file change (spec §1.1), so publishing

1. takes an advisory ``flock`` on ``<DIR>/<name>/`` (:func:`image_directory`): one publisher per image
   name, which makes the default version ("bump the patch of the highest") race-free and lets it
   delete the temporary directories a killed publisher left behind;
2. writes every file into a dot-prefixed temporary directory inside ``<DIR>/<name>/``
   (:func:`staging`), on the same file system as the target, and fsyncs it;
3. publishes with renames (:func:`publish_staged`): a new version is one directory rename; an
   architecture added to an existing version moves its files in one at a time with the meta tarball
   **last**, because the backend treats an architecture without its meta tarball as absent (an
   interrupted publish is invisible, and the next one replaces its leftovers); a second rootfs type
   for a published architecture (same meta tarball) moves in with the rootfs last, since a sidecar
   without its file is ignored;
4. refuses to touch files that are already published, unless the new bytes are identical (publishing
   the same image again is a no-op), and removes everything it made on any failure.

``add`` (:func:`add_image`) publishes files built elsewhere: distrobuilder's ``lxd.tar.xz`` and
``rootfs.squashfs`` (or a ``rootfs.tar.xz``), or the ``meta-<fp>.tar.xz`` and ``<fp>.squashfs`` of
``lxc image export``. It checks them the way the server will (the meta tarball parses, its
architecture is known, a squashfs is not truncated), so what it publishes is served, and copies them
(the originals stay), hashing while it copies. Unified image tarballs are refused: the server serves
split images only (spec §3.3 "Scope").

This module publishes; the command line around it (arguments, progress on stderr, SIGTERM, exit
statuses) is :mod:`.command`, the progress display :mod:`.progress`.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import lzma
import os
import platform
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from . import model
from .arch import kernel_arch
from .errors import BadMetadataError, BadTagError, ConfigError, SimplestreamsError, TruncatedFileError
from .meta import MAX_MEMBERS, MAX_TAR_BYTES, parse_meta
from .progress import Progress, SilentProgress
from .resolve import ASSET_NAMES, META_LIMIT, SQUASHFS_HEAD
from .versions import parse_semver, parse_tag

# Debian architecture names of the kernel names platform.machine() reports (spec §1.8: publishers
# use Debian names, and the name is published verbatim in asset names and product IDs).
DEBIAN_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "i386": "i386",
    "i586": "i386",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64el",
    "loongarch64": "loong64",
}

FIRST_VERSION = "1.0.0"
TEMP_PREFIX = ".build-"  # a dot-entry: the directory backend ignores it (spec §6); build and add share it
ROOTFS_FTYPES = ("squashfs", "root.tar.xz")
"""The rootfs ftypes a version directory can hold for a container (spec §1.4), squashfs preferred."""

SCAN_MEMBERS = 1000
"""Tar members looked at to tell a rootfs tarball from a meta tarball or a unified image."""

_CHUNK = 1024 * 1024
_SEMVER_CORE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
_SQUASHFS_MAGIC = b"hsqs"
_SQUASHFS_USED = struct.Struct("<Q")  # bytes_used, at offset 40 of the 4.0 superblock
_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What reading an unknown compressed tar can raise; each means "not the tar we were looking for".
_TAR_ERRORS = (
    tarfile.TarError,
    lzma.LZMAError,
    zlib.error,
    zstandard.ZstdError,
    EOFError,
    OSError,
    ValueError,
    UnicodeError,
)


def host_arch() -> str:
    """The Debian name of this machine's architecture (``x86_64`` -> ``amd64``), else the raw name."""
    machine = platform.machine()
    return DEBIAN_ARCH.get(machine, machine)


def meta_name(arch: str) -> str:
    return ASSET_NAMES[model.META_FTYPE].format(arch=arch)


def rootfs_name(arch: str, ftype: str = "squashfs") -> str:
    return ASSET_NAMES[ftype].format(arch=arch)


def rootfs_sidecar_name(arch: str, ftype: str = "squashfs") -> str:
    return f"{rootfs_name(arch, ftype)}.sha256"


def combined_sidecar_name(arch: str, ftype: str = "squashfs") -> str:
    """OctoLXD's ``combined.A.sha256`` for squashfs, ``combined.A.<ftype>.sha256`` otherwise, as
    :mod:`.resolve` reads them."""
    return f"combined.{arch}.sha256" if ftype == "squashfs" else f"combined.{arch}.{ftype}.sha256"


@dataclass(frozen=True, slots=True)
class ArchFiles:
    """The names of one architecture's files in a version directory, for one rootfs type."""

    arch: str
    ftype: str = "squashfs"

    @property
    def meta(self) -> str:
        return meta_name(self.arch)

    @property
    def rootfs(self) -> str:
        return rootfs_name(self.arch, self.ftype)

    @property
    def rootfs_sidecar(self) -> str:
        return rootfs_sidecar_name(self.arch, self.ftype)

    @property
    def combined_sidecar(self) -> str:
        return combined_sidecar_name(self.arch, self.ftype)

    @property
    def rootfs_files(self) -> tuple[str, str, str]:
        """The rootfs and its sidecars in publishing order: the rootfs last, since sidecars without
        their file are ignored by the backend."""
        return (self.combined_sidecar, self.rootfs_sidecar, self.rootfs)


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """One published architecture of one image version."""

    name: str
    version: str
    arch: str
    directory: Path  # <DIR>/<name>/v<version>
    meta: Path
    rootfs: Path
    sidecars: tuple[Path, ...]  # rootfs sha256, combined sha256
    meta_sha256: str
    rootfs_sha256: str
    fingerprint: str  # sha256(meta ‖ rootfs), what LXD calls the image (spec §1.5)
    size: int  # meta + rootfs bytes: the image size LXD reports
    created: datetime  # UTC, whole seconds
    unchanged: bool = False  # True: this architecture was already published with these exact bytes
    ftype: str = "squashfs"  # the rootfs ftype (spec §1.4)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.meta, self.rootfs, *self.sidecars)


# Names and versions -------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """``name`` if it can be an image name; raises BadTagError.

    The name is the tag's name (spec §3.3), so it follows the same rules (no whitespace, no empty,
    ``.`` or ``..`` segment); it is also a directory path under the backend's root, so a segment may
    not start with ``.`` (the backend would ignore it as an upload in progress) nor look like a
    version directory ``v<semver>``.
    """
    try:
        parsed, _ = parse_tag(f"{name}/v0.0.0")
    except BadTagError:
        parsed = None
    if parsed != name:
        raise BadTagError(
            f"bad image name {name!r}: it must be a tag name (no whitespace, no empty, '.' or '..' "
            "segment, none of ?#%\\,)"
        )
    for segment in name.split("/"):
        if segment.startswith("."):
            raise BadTagError(f"bad image name {name!r}: a segment starting with '.' is a hidden entry")
        if segment.startswith("v") and _is_semver(segment[1:]):
            raise BadTagError(f"bad image name {name!r}: segment {segment!r} looks like a version directory")
    return name


def check_version(version: str) -> str:
    """``version`` if it is strict semver (spec §3.3); raises BadTagError."""
    try:
        parse_semver(version)
    except BadTagError:
        raise BadTagError(f"bad version {version!r}: not MAJOR.MINOR.PATCH[-pre][+build]") from None
    return version


def _is_semver(text: str) -> bool:
    try:
        parse_semver(text)
    except BadTagError:
        return False
    return True


def published_versions(image_dir: Path) -> list[str]:
    """The versions of ``image_dir`` (directories ``v<semver>``), lowest first by semver precedence."""
    found: list[str] = []
    try:
        entries = list(os.scandir(image_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith("v") and entry.is_dir(follow_symlinks=False) and _is_semver(entry.name[1:]):
            found.append(entry.name[1:])
    return sorted(found, key=parse_semver)


def next_version(image_dir: Path) -> str:
    """The highest published version with its patch bumped (build metadata and prerelease dropped),
    else :data:`FIRST_VERSION`. ``1.2.3-1`` becomes ``1.2.4``, above every 1.2.3 build."""
    versions = published_versions(image_dir)
    if not versions:
        return FIRST_VERSION
    core = _SEMVER_CORE.match(versions[-1])
    assert core is not None  # published_versions() keeps semver only
    return f"{core.group(1)}.{core.group(2)}.{int(core.group(3)) + 1}"


# Atomic publishing --------------------------------------------------------------------------------------


@contextlib.contextmanager
def image_directory(into: Path, name: str) -> Iterator[Path]:
    """``<into>/<name>/``, created if missing and locked, with stale temporary directories removed.

    On an exception the directories this call created are removed again (those left empty), so a
    failed first publish leaves no trace. SimplestreamsError when another publisher holds the lock.
    """
    image_dir = into / name
    made = _make_dirs(image_dir)
    try:
        with _locked(image_dir):
            _remove_stale_temp_dirs(image_dir)
            yield image_dir
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


@contextlib.contextmanager
def staging(image_dir: Path) -> Iterator[Path]:
    """A fresh temporary directory inside ``image_dir`` (a dot-entry, so not served), removed on exit
    unless :func:`publish_staged` renamed it into place."""
    workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=image_dir))
    try:
        workdir.chmod(0o755)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def check_publishable(
    target: Path,
    files: ArchFiles,
    meta: bytes,
    *,
    name: str,
    version: str,
    rootfs_size: int | None = None,
) -> None:
    """Refuse early, before any expensive work, what :func:`publish_staged` would refuse: a published
    meta tarball with other bytes, or (when ``rootfs_size`` is known) a published rootfs of another size."""
    published_meta = target / files.meta
    if not published_meta.exists():
        return
    if published_meta.read_bytes() != meta:
        raise already_published(name, version, files.arch)
    published_rootfs = target / files.rootfs
    if (
        rootfs_size is not None
        and published_rootfs.exists()
        and published_rootfs.stat().st_size != rootfs_size
    ):
        raise already_published(name, version, files.arch)


def publish_staged(
    workdir: Path,
    target: Path,
    files: ArchFiles,
    *,
    name: str,
    version: str,
    meta_sha256: str,
    rootfs_sha256: str,
    fingerprint: str,
    size: int,
    created: datetime | None,
    progress: Progress,
) -> BuiltImage:
    """Write the sidecars next to the meta tarball and rootfs already staged (and fsynced) in
    ``workdir``, then publish them as ``target`` (see the module docstring).

    ``created`` None (a metadata.yaml without creation_date) becomes the published meta tarball's
    mtime, which is the time the directory backend then uses (spec §1.6). Raises SimplestreamsError
    when ``target`` already holds other bytes for these names.
    """
    # sha256sum's format; "-" for the combined hash, which `cat meta rootfs | sha256sum -c` checks.
    write_file(workdir / files.rootfs_sidecar, f"{rootfs_sha256}  {files.rootfs}\n".encode())
    write_file(workdir / files.combined_sidecar, f"{fingerprint}  -\n".encode())
    fsync(workdir)

    progress.stage("publishing")
    unchanged = False
    if not target.exists():
        os.rename(workdir, target)
        fsync(target.parent)
    elif (target / files.meta).exists():
        if (target / files.meta).read_bytes() != (workdir / files.meta).read_bytes():
            raise already_published(name, version, files.arch)
        if (target / files.rootfs).exists():
            if not _same_files(workdir, target, files, rootfs_sha256):
                raise already_published(name, version, files.arch)
            unchanged = True
        else:
            _move_in(workdir, target, files.rootfs_files)
    else:
        _move_in(workdir, target, (*files.rootfs_files, files.meta))
    meta_path = target / files.meta
    if created is None:
        created = datetime.fromtimestamp(int(meta_path.stat().st_mtime), UTC)
    return BuiltImage(
        name=name,
        version=version,
        arch=files.arch,
        directory=target,
        meta=meta_path,
        rootfs=target / files.rootfs,
        sidecars=(target / files.rootfs_sidecar, target / files.combined_sidecar),
        meta_sha256=meta_sha256,
        rootfs_sha256=rootfs_sha256,
        fingerprint=fingerprint,
        size=size,
        created=created,
        unchanged=unchanged,
        ftype=files.ftype,
    )


def already_published(name: str, version: str, arch: str) -> SimplestreamsError:
    return SimplestreamsError(
        f"{name} v{version} {arch} is already published with different content; published files never "
        "change (spec §1.1): publish a new version (omit --version to bump the patch)"
    )


def hash_file(path: Path, digests: Sequence[Any], progress: Progress, done: int = 0) -> int:
    """Feed ``path``'s bytes to every hashlib object of ``digests``, reporting ``done`` plus the bytes
    read so far; returns the bytes read."""
    with path.open("rb", buffering=0) as source:
        return _stream(source, digests, progress, done, None)


def _stream(
    source: io.FileIO, digests: Sequence[Any], progress: Progress, done: int, sink: IO[bytes] | None
) -> int:
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    count = 0
    while read := source.readinto(buffer):
        chunk = view[:read]
        if sink is not None:
            sink.write(chunk)
        for digest in digests:
            digest.update(chunk)
        count += read
        progress.update(done + count)
    return count


def _same_files(workdir: Path, target: Path, files: ArchFiles, rootfs_sha256: str) -> bool:
    for file_name in files.rootfs_files:
        new, old = workdir / file_name, target / file_name
        if not old.is_file() or old.stat().st_size != new.stat().st_size:
            return False
        if file_name == files.rootfs:
            if _sha256_file(old) != rootfs_sha256:
                return False
        elif old.read_bytes() != new.read_bytes():
            return False
    return True


def _move_in(workdir: Path, target: Path, names: Sequence[str]) -> None:
    """Move files into an existing version, the last name last: until it is there the backend sees
    nothing new, so a crash part-way publishes nothing. Files of an earlier, interrupted publish
    are replaced; on an error the moved ones go again."""
    moved: list[Path] = []
    try:
        for file_name in names[:-1]:
            os.replace(workdir / file_name, target / file_name)
            moved.append(target / file_name)
        fsync(target)
        os.replace(workdir / names[-1], target / names[-1])
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    fsync(target)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    hash_file(path, [digest], SilentProgress())
    return digest.hexdigest()


def write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data``, mode 0644, fsynced."""
    with path.open("xb") as file:
        file.write(data)
        file.flush()
        os.fchmod(file.fileno(), 0o644)
        os.fsync(file.fileno())


def fsync(path: Path) -> None:
    """fsync a file or a directory (a directory's entries: a rename is durable once it is synced)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the directories it created, outermost first."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o755)
            except FileExistsError:
                continue
            created.append(directory)
        if not path.is_dir():
            raise ConfigError("into", f"{str(path)!r} is not a directory")
    except BaseException:
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return created


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SimplestreamsError(
                f"another build or add of this image is running (lock on {str(directory)!r})"
            ) from None
        yield
    finally:
        os.close(fd)


def _remove_stale_temp_dirs(image_dir: Path) -> None:
    """Temporary directories of killed publishers: with the lock held no live one owns one."""
    for entry in os.scandir(image_dir):
        if entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


# webspaces images add -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RootfsFile:
    """A rootfs to copy: its ftype and the identity it had when checked (size, mtime_ns, inode)."""

    path: Path
    ftype: str
    size: int
    identity: tuple[int, int, int]


_UNIFIED_HINT = (
    "it is a unified image (metadata.yaml and rootfs/ in one tarball, as `lxc image export` writes "
    "for a unified image); the server serves split images only: unpack it and publish "
    "`tar -cJf meta.tar.xz metadata.yaml templates` with `mksquashfs rootfs rootfs.squashfs`"
)


def read_meta(path: Path) -> tuple[bytes, model.Metadata]:
    """The bytes and metadata of the meta tarball at ``path``, checked as the server checks them.

    Raises ConfigError (missing, not a regular file, a unified image, a squashfs, too large) or
    BadMetadataError (it does not parse, spec §3.3).
    """
    size = _regular_file(path, "META").st_size
    if size > META_LIMIT:
        with path.open("rb") as handle:
            names = _member_names(handle, SCAN_MEMBERS, MAX_TAR_BYTES)
        if _unified(names):
            raise ConfigError("meta", f"META {str(path)!r}: {_UNIFIED_HINT}")
        raise ConfigError(
            "meta",
            f"META {str(path)!r} is {size} bytes, more than a meta tarball may be ({META_LIMIT}; the "
            "server skips larger ones)",
        )
    with path.open("rb") as handle:
        data = handle.read(META_LIMIT + 1)
    try:
        metadata = parse_meta(data)
    except BadMetadataError as exc:
        if data.startswith(_SQUASHFS_MAGIC):
            raise ConfigError(
                "meta", f"META {str(path)!r} is a squashfs: the arguments are META ROOTFS, meta tarball first"
            ) from None
        if _unified(_member_names(io.BytesIO(data), SCAN_MEMBERS, MAX_TAR_BYTES)):
            raise ConfigError("meta", f"META {str(path)!r}: {_UNIFIED_HINT}") from None
        raise BadMetadataError(f"META {str(path)!r} is not an LXD meta tarball: {exc}") from None
    # parse_meta read the whole stream within the budget, so this scan is bounded by it as well.
    if _unified(_member_names(io.BytesIO(data), MAX_MEMBERS, MAX_TAR_BYTES)):
        raise ConfigError("meta", f"META {str(path)!r}: {_UNIFIED_HINT}")
    return data, metadata


def inspect_rootfs(path: Path) -> RootfsFile:
    """The ftype of the rootfs at ``path`` by its magic bytes: a squashfs (whose superblock must not
    claim more bytes than the file has: a truncated copy is refused, as the server would skip it,
    spec §3.3) or an xz-compressed tar (``root.tar.xz``). ConfigError or TruncatedFileError otherwise."""
    info = _regular_file(path, "ROOTFS")
    identity = (info.st_size, info.st_mtime_ns, info.st_ino)
    with path.open("rb") as handle:
        head = handle.read(SQUASHFS_HEAD)
        if head.startswith(_SQUASHFS_MAGIC):
            if len(head) < SQUASHFS_HEAD:
                raise TruncatedFileError(
                    f"ROOTFS {str(path)!r} is {len(head)} bytes, shorter than a squashfs superblock"
                )
            (used,) = _SQUASHFS_USED.unpack_from(head, 40)
            if used > info.st_size:
                raise TruncatedFileError(
                    f"ROOTFS {str(path)!r} is truncated: {info.st_size} bytes, its superblock says "
                    f"{used} are used"
                )
            return RootfsFile(path, "squashfs", info.st_size, identity)
        handle.seek(0)
        names = _member_names(handle, SCAN_MEMBERS, MAX_TAR_BYTES)
    if _unified(names):
        raise ConfigError("rootfs", f"ROOTFS {str(path)!r}: {_UNIFIED_HINT}")
    if any(_strip(name) == "metadata.yaml" for name in names):
        raise ConfigError(
            "rootfs",
            f"ROOTFS {str(path)!r} is a meta tarball: the arguments are META ROOTFS, meta tarball first",
        )
    if head.startswith(_XZ_MAGIC):
        if not names:
            raise ConfigError("rootfs", f"ROOTFS {str(path)!r} is xz-compressed but not a tar archive")
        return RootfsFile(path, "root.tar.xz", info.st_size, identity)
    raise ConfigError(
        "rootfs",
        f"ROOTFS {str(path)!r} is neither a squashfs nor an xz-compressed tar (rootfs.squashfs or "
        "rootfs.tar.xz)",
    )


def image_arch(metadata: model.Metadata, arch: str | None) -> str:
    """The architecture the files are published under: ``arch`` when given (it must name the same
    kernel architecture as metadata.yaml, or LXD would be told one thing and run another), else the
    Debian name of metadata.yaml's (``x86_64`` -> ``amd64``, spec §1.8)."""
    meta_kernel = kernel_arch(metadata.architecture)
    if arch is None:
        return DEBIAN_ARCH.get(meta_kernel, meta_kernel)
    if kernel_arch(arch) != meta_kernel:
        raise ConfigError(
            "arch",
            f"--arch {arch} ({kernel_arch(arch)}) disagrees with metadata.yaml's architecture "
            f"{metadata.architecture!r} ({meta_kernel})",
        )
    return arch


def copy_file(
    source: RootfsFile, destination: Path, digests: Sequence[Any], progress: Progress, done: int
) -> None:
    """Copy ``source`` to the new file ``destination`` (mode 0644, fsynced), feeding ``digests``;
    SimplestreamsError when the source is not the file that was checked or changes while copied."""
    with source.path.open("rb", buffering=0) as reader, destination.open("xb") as writer:
        _same_identity(source, os.fstat(reader.fileno()))
        copied = _stream(reader, digests, progress, done, writer)
        _same_identity(source, os.fstat(reader.fileno()))
        if copied != source.size:
            raise SimplestreamsError(f"{str(source.path)!r} changed while it was copied")
        writer.flush()
        os.fchmod(writer.fileno(), 0o644)
        os.fsync(writer.fileno())


def _same_identity(source: RootfsFile, info: os.stat_result) -> None:
    if (info.st_size, info.st_mtime_ns, info.st_ino) != source.identity:
        raise SimplestreamsError(f"{str(source.path)!r} changed while it was being published")


def add_image(
    meta: Path,
    rootfs: Path,
    *,
    name: str,
    into: Path,
    version: str | None = None,
    arch: str | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Publish the meta tarball ``meta`` and the rootfs ``rootfs`` (built elsewhere) as
    ``<into>/<name>/v<version>/``, copied, atomically (see the module docstring).

    ``arch`` defaults to metadata.yaml's architecture by its Debian name; ``version`` to the highest
    published version with its patch bumped, else 1.0.0. Raises ConfigError (bad input),
    BadMetadataError, TruncatedFileError, BadTagError (bad name or version), UnknownArchError, or
    SimplestreamsError (the architecture is already published with other bytes, another publisher
    holds the lock, a source changed); on any failure nothing is left behind and the sources are
    never modified.
    """
    check_name(name)
    if version is not None:
        check_version(version)
    if arch is not None:
        kernel_arch(arch)
    meta_bytes, metadata = read_meta(meta)
    published_arch = image_arch(metadata, arch)
    source = inspect_rootfs(rootfs)
    files = ArchFiles(published_arch, source.ftype)
    shown = progress or SilentProgress()
    try:
        with image_directory(into, name) as image_dir:
            version = version or next_version(image_dir)
            target = image_dir / f"v{version}"
            check_publishable(target, files, meta_bytes, name=name, version=version, rootfs_size=source.size)
            with staging(image_dir) as workdir:
                write_file(workdir / files.meta, meta_bytes)
                meta_sha256 = hashlib.sha256(meta_bytes).hexdigest()
                combined, alone = hashlib.sha256(meta_bytes), hashlib.sha256()
                shown.stage("copying rootfs", source.size, "B")
                copy_file(source, workdir / files.rootfs, [combined, alone], shown, 0)
                return publish_staged(
                    workdir,
                    target,
                    files,
                    name=name,
                    version=version,
                    meta_sha256=meta_sha256,
                    rootfs_sha256=alone.hexdigest(),
                    fingerprint=combined.hexdigest(),
                    size=len(meta_bytes) + source.size,
                    created=metadata.creation_date,
                    progress=shown,
                )
    finally:
        shown.close()


def _regular_file(path: Path, role: str) -> os.stat_result:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(role.lower(), f"{role} {str(path)!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(role.lower(), f"{role} {str(path)!r} is not a regular file")
    return info


class _Capped(io.RawIOBase):
    """A read-only stream that ends (EOF) after ``limit`` bytes of ``source``."""

    def __init__(self, source: Any, limit: int) -> None:
        self._source = source
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk: bytes = self._source.read(min(len(view), self._left))
        self._left -= len(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)


def _member_names(handle: IO[bytes], max_members: int, max_bytes: int) -> list[str]:
    """The names of the first ``max_members`` members of the (xz, gzip, zstd or plain) tar stream
    ``handle``, reading at most ``max_bytes`` decompressed bytes; whatever could be read before the
    stream ended or turned out not to be a tar (so: empty for anything that is not a tar)."""
    magic = handle.read(6)
    handle.seek(0)
    names: list[str] = []
    with contextlib.ExitStack() as stack:
        stream: Any = handle
        if magic.startswith(_XZ_MAGIC):
            stream = stack.enter_context(lzma.LZMAFile(handle, format=lzma.FORMAT_XZ))
        elif magic.startswith(_GZIP_MAGIC):
            stream = stack.enter_context(gzip.GzipFile(fileobj=handle, mode="rb"))
        elif magic.startswith(_ZSTD_MAGIC):
            reader = zstandard.ZstdDecompressor().stream_reader(
                handle, read_across_frames=True, closefd=False
            )
            stream = stack.enter_context(reader)
        try:
            with tarfile.open(fileobj=_Capped(stream, max_bytes), mode="r|") as archive:
                for member in archive:
                    cast(Any, archive).members.clear()  # stream mode keeps every header otherwise
                    names.append(member.name)
                    if len(names) >= max_members:
                        break
        except _TAR_ERRORS:
            pass
    return names


def _strip(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _unified(names: Sequence[str]) -> bool:
    """A unified image holds its root file system under ``rootfs/`` next to metadata.yaml."""
    return any(_strip(name) == "rootfs" or _strip(name).startswith("rootfs/") for name in names)


__all__ = [
    "DEBIAN_ARCH",
    "FIRST_VERSION",
    "ROOTFS_FTYPES",
    "SCAN_MEMBERS",
    "TEMP_PREFIX",
    "ArchFiles",
    "BuiltImage",
    "RootfsFile",
    "add_image",
    "already_published",
    "check_name",
    "check_publishable",
    "check_version",
    "combined_sidecar_name",
    "copy_file",
    "fsync",
    "hash_file",
    "host_arch",
    "image_arch",
    "image_directory",
    "inspect_rootfs",
    "meta_name",
    "next_version",
    "publish_staged",
    "published_versions",
    "read_meta",
    "rootfs_name",
    "rootfs_sidecar_name",
    "staging",
    "write_file",
]

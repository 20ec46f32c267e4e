"""Build a split LXD image into the directory backend: ``webspaces images build``.

Theory of operation. An image version is one directory ``<DIR>/<name>/v<version>/`` holding files
named like GitHub release assets (spec/simplestreams.md §3.3, §6): per architecture A, the meta
tarball ``lxd.A.tar.xz``, the rootfs ``rootfs.A.squashfs`` and the sidecars
``rootfs.A.squashfs.sha256`` and ``combined.A.sha256`` (the fingerprint, sha256(meta ‖ rootfs),
spec §1.5). The directory backend ignores dot-entries and never sees a file change once published
(spec §1.1), so a build

1. packs the meta tarball and squashes the rootfs into a dot-prefixed temporary directory inside
   ``<DIR>/<name>/``, on the same file system as the target, and fsyncs every file;
2. publishes with renames: a new version is one directory rename; an architecture added to an
   existing version moves its files in one at a time with the meta tarball **last**, because the
   backend treats an architecture without its meta tarball as absent (an interrupted publish is
   invisible, and the next build replaces its leftovers);
3. refuses to touch an architecture that is already published, unless the new bytes are identical
   (a reproducible rebuild is then a no-op), and removes everything it made on any failure.

One build per image name runs at a time (an advisory ``flock`` on ``<DIR>/<name>/``): the lock makes
the default version ("bump the patch of the highest") race-free and lets a build delete temporary
directories left behind by a killed one.

Reproducibility: with a fixed creation date (``creation_date`` or ``SOURCE_DATE_EPOCH``) the tarball
entries are sorted, owned by root and dated at the creation date, and mksquashfs gets ``-mkfs-time``
and ``-all-time``, so two builds of one tree give byte-identical files and the same fingerprint
(spec §8).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import io
import lzma
import os
import platform
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

import yaml

from .arch import kernel_arch
from .errors import BadTagError, ConfigError, SimplestreamsError
from .versions import parse_semver, parse_tag, version_key

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

# mksquashfs -comp values that LXD's unsquashfs (and the kernel, for squashfs mounts) can read.
COMPRESSIONS = ("xz", "gzip", "zstd", "lzo", "lz4", "lzma")
DEFAULT_COMPRESSION = "xz"
DEFAULT_EXPIRY_DAYS = 30  # distrobuilder's expiry, 30 days after the build (spec §3.3)
MAX_EXPIRY_DAYS = 36500
DEFAULT_VARIANT = "default"
FIRST_VERSION = "1.0.0"
TEMPLATE_TRIGGERS = ("create", "copy")  # LXD renders the template when the instance is made or copied
TEMP_PREFIX = ".build-"  # a dot-entry: the directory backend ignores it (spec §6)

_CHUNK = 1024 * 1024
_OUTPUT_TAIL = 8192  # bytes of mksquashfs output kept for an error message
_SEMVER_CORE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
_MKSQUASHFS_BAR = re.compile(rb"\s([0-9]+)/([0-9]+)\s+[0-9]+%")
_MAX_EPOCH = 2**32 - 1  # mksquashfs -mkfs-time and -all-time take an unsigned 32-bit time


def host_arch() -> str:
    """The Debian name of this machine's architecture (``x86_64`` -> ``amd64``), else the raw name."""
    machine = platform.machine()
    return DEBIAN_ARCH.get(machine, machine)


def meta_name(arch: str) -> str:
    return f"lxd.{arch}.tar.xz"


def rootfs_name(arch: str) -> str:
    return f"rootfs.{arch}.squashfs"


def rootfs_sidecar_name(arch: str) -> str:
    return f"rootfs.{arch}.squashfs.sha256"


def combined_sidecar_name(arch: str) -> str:
    return f"combined.{arch}.sha256"


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

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.meta, self.rootfs, *self.sidecars)


class Progress(Protocol):
    """Where a build reports its stages; :func:`progress_for` picks one for a stream."""

    @property
    def detailed(self) -> bool:
        """True when :meth:`update` is shown (worth running mksquashfs under a pseudo-terminal)."""
        ...

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        """A new stage begins; ``total`` in ``unit`` ("B" for bytes) when known."""
        ...

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of the stage's total so far (and the total, when it was learned late)."""
        ...

    def close(self) -> None:
        """The build ended: finish the last line."""
        ...


class LineProgress:
    """One plain line per stage, for logs and pipes."""

    detailed = False

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self._stream.write(f"{title}\n")
        self._stream.flush()

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A one-line bar per stage, redrawn in place on a terminal at most ten times a second."""

    detailed = True
    _INTERVAL = 0.1

    def __init__(self, stream: IO[str], width: int | None = None) -> None:
        self._stream = stream
        self._width = width or shutil.get_terminal_size((80, 24)).columns
        self._title = ""
        self._total: int | None = None
        self._unit = ""
        self._done = 0
        self._drawn_at = 0.0
        self._open = False

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self._finish_line()
        self._title, self._total, self._unit, self._done = title, total, unit, 0
        self._open = True
        self._draw()

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = total
        self._done = done
        now = time.monotonic()
        if now - self._drawn_at >= self._INTERVAL or (self._total is not None and done >= self._total):
            self._draw()

    def close(self) -> None:
        self._finish_line()

    def _finish_line(self) -> None:
        if self._open:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
            self._open = False

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        head = f"{self._title:<18}"
        if self._total is None or self._total <= 0:
            line = head
        else:
            fraction = min(1.0, self._done / self._total)
            amounts = f"{_amount(self._done, self._unit)}/{_amount(self._total, self._unit)}"
            if self._unit not in ("", "B"):
                amounts += f" {self._unit}"
            tail = f" {fraction * 100:3.0f}% {amounts}"
            room = max(10, self._width - len(head) - len(tail) - 4)
            filled = int(room * fraction)
            line = f"{head} [{'#' * filled}{'.' * (room - filled)}]{tail}"
        self._stream.write(f"\r{line[: self._width - 1]}\x1b[K")
        self._stream.flush()


def _amount(value: int, unit: str) -> str:
    if unit != "B":
        return str(value)
    size = float(value)
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or suffix == "GiB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_for(stream: IO[str], *, quiet: bool = False) -> Progress | None:
    """A bar on a terminal, one line per stage otherwise, nothing when ``quiet``."""
    if quiet:
        return None
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return BarProgress(stream)
    return LineProgress(stream)


class _Silent:
    detailed = False

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        pass

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


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


def creation_time(creation_date: datetime | None) -> tuple[datetime, bool]:
    """(creation date in UTC, whole seconds; whether it was fixed, i.e. the build is reproducible).

    ``None`` means ``SOURCE_DATE_EPOCH`` when it is set (reproducible-builds.org), else now.
    """
    fixed = True
    if creation_date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if epoch:
            if not epoch.isdigit() or int(epoch) > _MAX_EPOCH:
                raise ConfigError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in 0..{_MAX_EPOCH}")
            creation_date = datetime.fromtimestamp(int(epoch), UTC)
        else:
            creation_date, fixed = datetime.now(UTC), False
    elif creation_date.tzinfo is None:
        creation_date = creation_date.replace(tzinfo=UTC)
    created = creation_date.astimezone(UTC).replace(microsecond=0)
    if not 0 <= int(created.timestamp()) <= _MAX_EPOCH:
        raise ConfigError(f"creation date {created.isoformat()} is outside 1970-01-01..2106-02-07")
    return created, fixed


def collect_templates(template_dir: Path) -> list[tuple[str, str, bytes]]:
    """(target path in the container, file name under ``templates/``, content) per template, sorted.

    The directory mirrors the container: ``<dir>/etc/hostname.tpl`` renders ``/etc/hostname``. In the
    tarball the template is ``templates/etc-hostname.tpl`` (flat, as distrobuilder writes them).
    """
    if not template_dir.is_dir():
        raise ConfigError(f"template directory {str(template_dir)!r} is not a directory")
    found: list[tuple[str, str, bytes]] = []
    flat_names: dict[str, str] = {}
    for path in sorted(template_dir.rglob("*")):
        relative = path.relative_to(template_dir).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode) or not relative.endswith(".tpl") or relative == ".tpl":
            raise ConfigError(
                f"template {relative!r}: every entry of the template directory must be a regular "
                "file named <target path>.tpl"
            )
        target = "/" + relative.removesuffix(".tpl")
        flat = relative.replace("/", "-")
        if flat in flat_names:
            raise ConfigError(f"templates {flat_names[flat]!r} and {relative!r} flatten to the same name")
        flat_names[flat] = relative
        found.append((target, flat, path.read_bytes()))
    if not found:
        raise ConfigError(f"template directory {str(template_dir)!r} holds no *.tpl file")
    return found


def metadata_document(
    *,
    arch: str,
    created: datetime,
    expiry_days: int,
    properties: dict[str, str],
    templates: Sequence[tuple[str, str, bytes]],
) -> bytes:
    """``metadata.yaml`` (the keys distrobuilder writes and LXD reads, spec §3.3), sorted, stable."""
    document: dict[str, object] = {
        "architecture": kernel_arch(arch),
        "creation_date": int(created.timestamp()),
        "expiry_date": int((created + timedelta(days=expiry_days)).timestamp()),
        "properties": dict(sorted(properties.items())),
    }
    if templates:
        document["templates"] = {
            target: {"template": flat, "when": list(TEMPLATE_TRIGGERS)} for target, flat, _ in templates
        }
    text = yaml.safe_dump(document, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.encode()


def pack_meta(metadata_yaml: bytes, templates: Sequence[tuple[str, str, bytes]], created: datetime) -> bytes:
    """The xz meta tarball: ``metadata.yaml`` at the root (OctoLXD reads only that exact name, spec
    §3.3), then ``templates/``; names sorted, owned by root, dated ``created``, so it is reproducible."""
    mtime = int(created.timestamp())
    entries: list[tuple[str, bytes | None]] = [("metadata.yaml", metadata_yaml)]
    if templates:
        entries.append(("templates", None))
        entries.extend((f"templates/{flat}", content) for _, flat, content in templates)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry_name, content in sorted(entries, key=lambda item: item[0]):
            info = tarfile.TarInfo(entry_name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, len(content)
                tar.addfile(info, io.BytesIO(content))
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)


def squash(
    rootfs: Path,
    output: Path,
    *,
    compression: str,
    created: datetime,
    reproducible: bool,
    progress: Progress,
    mksquashfs: str = "mksquashfs",
) -> None:
    """Run mksquashfs on ``rootfs``; raises SimplestreamsError with its output when it fails.

    Debian 12's mksquashfs 4.5.1 has no machine-readable progress (``-percentage`` came in 4.6) and
    draws its bar only on a terminal with a known width, so a detailed progress runs it under a
    pseudo-terminal and reads the ``done/total`` blocks off the bar; otherwise ``-no-progress``.
    """
    command = [mksquashfs, str(rootfs), str(output), "-noappend", "-comp", compression]
    command += ["-all-root", "-exit-on-error", "-quiet"]
    # mksquashfs reads SOURCE_DATE_EPOCH itself and refuses it together with the options; the
    # options carry the same time (or an explicit date, which wins), so it is not passed on.
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
    if reproducible:
        epoch = str(int(created.timestamp()))
        command += ["-mkfs-time", epoch, "-all-time", epoch]
    if not progress.detailed:
        command.append("-no-progress")
    progress.stage("squashing rootfs", None, "blocks")
    if progress.detailed:
        reader, writer = os.openpty()
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    else:
        reader, writer = os.pipe()
    tail = bytearray()
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=writer, stderr=writer, env=env)
    except OSError as exc:
        os.close(reader)
        os.close(writer)
        raise SimplestreamsError(f"cannot run {mksquashfs}: {exc}") from None
    os.close(writer)
    try:
        pending = b""
        while True:
            try:
                chunk = os.read(reader, 65536)
            except OSError as exc:  # a pseudo-terminal reports EIO once the child has closed it
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for line in lines:
                bar = _MKSQUASHFS_BAR.search(line)
                if bar is not None:
                    progress.update(int(bar.group(1)), int(bar.group(2)))
                elif line.strip():
                    tail += line + b"\n"
                    del tail[:-_OUTPUT_TAIL]
        tail += pending
        status = process.wait()
    finally:
        os.close(reader)
        if process.poll() is None:
            process.kill()
            process.wait()
    if status != 0:
        message = tail.decode(errors="replace").strip() or "no output"
        raise SimplestreamsError(f"mksquashfs failed with exit status {status}: {message}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as file:
        file.write(data)
        file.flush()
        os.fchmod(file.fileno(), 0o644)
        os.fsync(file.fileno())


def _fsync(path: Path) -> None:
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
            raise ConfigError(f"{str(path)!r} is not a directory")
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
                f"another build of this image is running (lock on {str(directory)!r})"
            ) from None
        yield
    finally:
        os.close(fd)


def _remove_stale_temp_dirs(image_dir: Path) -> None:
    """Temporary directories of killed builds: with the lock held no live build owns one."""
    for entry in os.scandir(image_dir):
        if entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def build_image(
    rootfs: Path,
    *,
    name: str,
    into: Path,
    version: str | None = None,
    arch: str | None = None,
    os_name: str | None = None,
    release: str | None = None,
    variant: str = DEFAULT_VARIANT,
    description: str | None = None,
    templates: Path | None = None,
    creation_date: datetime | None = None,
    expiry_days: int = DEFAULT_EXPIRY_DAYS,
    compression: str = DEFAULT_COMPRESSION,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build ``rootfs`` into ``<into>/<name>/v<version>/`` for ``arch`` and publish it atomically.

    Defaults: ``version`` bumps the patch of the highest published version (else 1.0.0); ``arch``
    is this machine's Debian name; ``os_name`` is the image name and ``release`` the version;
    ``creation_date`` is ``SOURCE_DATE_EPOCH`` when set, else now. Raises ConfigError (bad input),
    BadTagError (bad name or version), UnknownArchError, or SimplestreamsError (mksquashfs failed, the
    architecture is already published with other bytes, another build holds the lock); on any
    failure nothing is left behind.
    """
    check_name(name)
    if version is not None:
        check_version(version)
    arch = host_arch() if arch is None else arch
    kernel_arch(arch)
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if not 1 <= expiry_days <= MAX_EXPIRY_DAYS:
        raise ConfigError(f"expiry of {expiry_days} days: it must be 1 to {MAX_EXPIRY_DAYS}")
    created, reproducible = creation_time(creation_date)
    if not rootfs.exists():
        raise ConfigError(f"rootfs directory {str(rootfs)!r} does not exist")
    if not rootfs.is_dir():
        raise ConfigError(f"rootfs {str(rootfs)!r} is not a directory")
    mksquashfs = shutil.which("mksquashfs")
    if mksquashfs is None:
        raise SimplestreamsError("mksquashfs not found on PATH (Debian: apt-get install squashfs-tools)")
    template_files = collect_templates(templates) if templates is not None else []
    shown = progress or _Silent()

    image_dir = into / name
    made = _make_dirs(image_dir)
    try:
        with _locked(image_dir):
            _remove_stale_temp_dirs(image_dir)
            version = version or next_version(image_dir)
            serial = version_key(created, version)
            properties = {
                "architecture": arch,
                "description": description or f"{name} {version} ({arch})",
                "name": name,
                "os": os_name or name,
                "release": release or version,
                "serial": serial,
                "variant": variant,
            }
            shown.stage("packing metadata")
            meta = pack_meta(
                metadata_document(
                    arch=arch,
                    created=created,
                    expiry_days=expiry_days,
                    properties=properties,
                    templates=template_files,
                ),
                template_files,
                created,
            )
            target = image_dir / f"v{version}"
            published_meta = target / meta_name(arch)
            if published_meta.exists() and published_meta.read_bytes() != meta:
                raise _already_published(name, version, arch)
            workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=image_dir))
            try:
                workdir.chmod(0o755)
                return _build_and_publish(
                    rootfs,
                    workdir,
                    target,
                    meta=meta,
                    name=name,
                    version=version,
                    arch=arch,
                    created=created,
                    reproducible=reproducible,
                    compression=compression,
                    mksquashfs=mksquashfs,
                    progress=shown,
                )
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    finally:
        shown.close()


def _already_published(name: str, version: str, arch: str) -> SimplestreamsError:
    return SimplestreamsError(
        f"{name} v{version} {arch} is already published with different content; published files never "
        "change (spec §1.1): build a new version (omit --version to bump the patch)"
    )


def _build_and_publish(
    rootfs: Path,
    workdir: Path,
    target: Path,
    *,
    meta: bytes,
    name: str,
    version: str,
    arch: str,
    created: datetime,
    reproducible: bool,
    compression: str,
    mksquashfs: str,
    progress: Progress,
) -> BuiltImage:
    meta_file = workdir / meta_name(arch)
    _write_file(meta_file, meta)
    squashfs = workdir / rootfs_name(arch)
    squash(
        rootfs,
        squashfs,
        compression=compression,
        created=created,
        reproducible=reproducible,
        progress=progress,
        mksquashfs=mksquashfs,
    )
    squashfs.chmod(0o644)
    _fsync(squashfs)

    rootfs_size = squashfs.stat().st_size
    progress.stage("hashing", len(meta) + rootfs_size, "B")
    meta_sha256 = hashlib.sha256(meta).hexdigest()
    combined = hashlib.sha256(meta)
    rootfs_digest = hashlib.sha256()
    done = len(meta)
    with squashfs.open("rb") as file:
        while chunk := file.read(_CHUNK):
            combined.update(chunk)
            rootfs_digest.update(chunk)
            done += len(chunk)
            progress.update(done)
    rootfs_sha256, fingerprint = rootfs_digest.hexdigest(), combined.hexdigest()
    # sha256sum's format; "-" for the combined hash, which `cat meta rootfs | sha256sum -c` checks.
    _write_file(workdir / rootfs_sidecar_name(arch), f"{rootfs_sha256}  {squashfs.name}\n".encode())
    _write_file(workdir / combined_sidecar_name(arch), f"{fingerprint}  -\n".encode())
    _fsync(workdir)

    progress.stage("publishing")
    names = [combined_sidecar_name(arch), rootfs_sidecar_name(arch), rootfs_name(arch), meta_name(arch)]
    unchanged = False
    if not target.exists():
        os.rename(workdir, target)
        _fsync(target.parent)
    elif (target / meta_name(arch)).exists():
        if not _same_files(workdir, target, names, rootfs_sha256):
            raise _already_published(name, version, arch)
        unchanged = True
    else:
        _move_in(workdir, target, names)
    return BuiltImage(
        name=name,
        version=version,
        arch=arch,
        directory=target,
        meta=target / meta_name(arch),
        rootfs=target / rootfs_name(arch),
        sidecars=(target / rootfs_sidecar_name(arch), target / combined_sidecar_name(arch)),
        meta_sha256=meta_sha256,
        rootfs_sha256=rootfs_sha256,
        fingerprint=fingerprint,
        size=len(meta) + rootfs_size,
        created=created,
        unchanged=unchanged,
    )


def _same_files(workdir: Path, target: Path, names: Sequence[str], rootfs_sha256: str) -> bool:
    for file_name in names:
        new, old = workdir / file_name, target / file_name
        if not old.is_file() or old.stat().st_size != new.stat().st_size:
            return False
        if file_name.endswith(".squashfs"):
            if _sha256_file(old) != rootfs_sha256:
                return False
        elif old.read_bytes() != new.read_bytes():
            return False
    return True


def _move_in(workdir: Path, target: Path, names: Sequence[str]) -> None:
    """Move one architecture's files into an existing version, the meta tarball last: until it is
    there the backend sees no such architecture, so a crash part-way publishes nothing. Files of an
    earlier, interrupted publish (no meta tarball) are replaced; on an error the moved ones go again."""
    moved: list[Path] = []
    try:
        for file_name in names[:-1]:
            os.replace(workdir / file_name, target / file_name)
            moved.append(target / file_name)
        _fsync(target)
        os.replace(workdir / names[-1], target / names[-1])
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    _fsync(target)


# The command line -----------------------------------------------------------------------------------


def _creation_date_argument(text: str) -> datetime:
    try:
        if text.startswith("@"):
            return datetime.fromtimestamp(int(text[1:]), UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 date (2025-01-01T00:00:00Z) nor @<unix seconds>"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``webspaces images build``."""
    parser.add_argument("rootfs", type=Path, metavar="ROOTFS_DIR", help="the container's root directory")
    parser.add_argument(
        "--name", required=True, help="image name (the alias; may contain '/'), as in a tag <name>/v<semver>"
    )
    parser.add_argument(
        "--into",
        required=True,
        type=Path,
        metavar="DIR",
        help="root of the directory backend to publish into",
    )
    parser.add_argument(
        "--version",
        help="strict semver; default: the highest published version with its patch bumped, else "
        f"{FIRST_VERSION}",
    )
    parser.add_argument("--arch", help=f"Debian architecture name (default: this machine's, {host_arch()})")
    parser.add_argument("--os", dest="os_name", metavar="OS", help="properties.os (default: the name)")
    parser.add_argument("--release", help="properties.release (default: the version)")
    parser.add_argument(
        "--variant", default=DEFAULT_VARIANT, help=f"properties.variant (default {DEFAULT_VARIANT})"
    )
    parser.add_argument("--description", help="properties.description, LXD's image description and label")
    parser.add_argument(
        "--template-dir",
        type=Path,
        metavar="DIR",
        help="LXD templates mirroring the container, e.g. DIR/etc/hostname.tpl renders /etc/hostname "
        "when the instance is created or copied",
    )
    parser.add_argument(
        "--creation-date",
        type=_creation_date_argument,
        metavar="DATE",
        help="ISO 8601 or @<unix seconds>; fixes every timestamp, so the build is reproducible "
        "(default: SOURCE_DATE_EPOCH, else now)",
    )
    parser.add_argument(
        "--expiry-days",
        type=int,
        default=DEFAULT_EXPIRY_DAYS,
        metavar="N",
        help=f"metadata expiry_date, N days after the creation date (default {DEFAULT_EXPIRY_DAYS})",
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default=DEFAULT_COMPRESSION,
        help=f"squashfs compression (default {DEFAULT_COMPRESSION})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    """``webspaces images build``: 0 when published (or already published with the same bytes), 1 on
    an error, with one message on stderr. SIGTERM cleans up like an error."""
    progress = progress_for(sys.stderr, quiet=args.quiet)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        built = build_image(
            args.rootfs,
            name=args.name,
            into=args.into,
            version=args.version,
            arch=args.arch,
            os_name=args.os_name,
            release=args.release,
            variant=args.variant,
            description=args.description,
            templates=args.template_dir,
            creation_date=args.creation_date,
            expiry_days=args.expiry_days,
            compression=args.compression,
            progress=progress,
        )
    except (SimplestreamsError, OSError) as exc:
        print(f"webspaces images build: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("webspaces images build: interrupted; nothing was published", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if built.unchanged:
        print(f"{built.name} v{built.version} {built.arch} is already published with identical content")
    else:
        print(f"published {built.name} v{built.version} {built.arch} ({built.size} bytes)")
    for path in built.files:
        print(f"  {path}")
    print(f"fingerprint {built.fingerprint}")
    return 0


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m simplestreams.builder``), the same as the subcommand."""
    parser = argparse.ArgumentParser(
        prog="webspaces images build",
        description="Pack ROOTFS_DIR into a split LXD image (metadata tarball + squashfs) and publish "
        "it into a directory backend as DIR/NAME/v<version>/.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Build a split LXD image into the directory backend: ``webspaces images build``.

A build packs ``metadata.yaml`` (and templates) into the meta tarball ``lxd.A.tar.xz`` and squashes
the rootfs directory into ``rootfs.A.squashfs``, both straight into the staging directory of
:mod:`.publish`, which then writes the sidecars and publishes the version atomically: one build or
add per image name at a time, a new version by one rename, an architecture joining an existing
version with its meta tarball last, published bytes never rewritten (a different build of a
published architecture is refused, an identical one is a no-op), nothing left behind on failure
(spec/simplestreams.md §1.1, §1.5, §3.3, §6; the details are in :mod:`.publish`).

Reproducibility: with a fixed creation date (``creation_date`` or ``SOURCE_DATE_EPOCH``) the tarball
entries are sorted, owned by root and dated at the creation date, and mksquashfs gets ``-mkfs-time``
and ``-all-time``, so two builds of one tree give byte-identical files and the same fingerprint
(spec §8).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import termios
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from .arch import kernel_arch
from .command import run_command, standalone
from .errors import ConfigError, SimplestreamsError
from .progress import BarProgress, LineProgress, Progress, SilentProgress, progress_for
from .publish import (
    DEBIAN_ARCH,
    FIRST_VERSION,
    TEMP_PREFIX,
    ArchFiles,
    BuiltImage,
    check_name,
    check_publishable,
    check_version,
    combined_sidecar_name,
    fsync,
    hash_file,
    host_arch,
    image_directory,
    meta_name,
    next_version,
    publish_staged,
    published_versions,
    rootfs_name,
    rootfs_sidecar_name,
    staging,
    write_file,
)
from .versions import version_key

# The names tests and callers know from this module; some live in .publish and .progress, shared with
# `images add`.
__all__ = [
    "COMPRESSIONS",
    "DEBIAN_ARCH",
    "DEFAULT_COMPRESSION",
    "DEFAULT_EXPIRY_DAYS",
    "DEFAULT_VARIANT",
    "FIRST_VERSION",
    "MAX_EXPIRY_DAYS",
    "TEMPLATE_TRIGGERS",
    "TEMP_PREFIX",
    "BarProgress",
    "BuiltImage",
    "LineProgress",
    "Progress",
    "add_arguments",
    "build_image",
    "check_name",
    "check_version",
    "collect_templates",
    "combined_sidecar_name",
    "creation_time",
    "host_arch",
    "main",
    "meta_name",
    "metadata_document",
    "next_version",
    "pack_meta",
    "progress_for",
    "published_versions",
    "rootfs_name",
    "rootfs_sidecar_name",
    "run",
    "squash",
]

# mksquashfs -comp values that LXD's unsquashfs (and the kernel, for squashfs mounts) can read.
COMPRESSIONS = ("xz", "gzip", "zstd", "lzo", "lz4", "lzma")
DEFAULT_COMPRESSION = "xz"
DEFAULT_EXPIRY_DAYS = 30  # distrobuilder's expiry, 30 days after the build (spec §3.3)
MAX_EXPIRY_DAYS = 36500
DEFAULT_VARIANT = "default"
TEMPLATE_TRIGGERS = ("create", "copy")  # LXD renders the template when the instance is made or copied

_OUTPUT_TAIL = 8192  # bytes of mksquashfs output kept for an error message
_MKSQUASHFS_BAR = re.compile(rb"\s([0-9]+)/([0-9]+)\s+[0-9]+%")
_MAX_EPOCH = 2**32 - 1  # mksquashfs -mkfs-time and -all-time take an unsigned 32-bit time


def creation_time(creation_date: datetime | None) -> tuple[datetime, bool]:
    """(creation date in UTC, whole seconds; whether it was fixed, i.e. the build is reproducible).

    ``None`` means ``SOURCE_DATE_EPOCH`` when it is set (reproducible-builds.org), else now.
    """
    fixed = True
    if creation_date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if epoch:
            if not epoch.isdigit() or int(epoch) > _MAX_EPOCH:
                raise ConfigError(
                    "creation_date",
                    f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in 0..{_MAX_EPOCH}",
                    "SOURCE_DATE_EPOCH",
                )
            creation_date = datetime.fromtimestamp(int(epoch), UTC)
        else:
            creation_date, fixed = datetime.now(UTC), False
    elif creation_date.tzinfo is None:
        creation_date = creation_date.replace(tzinfo=UTC)
    created = creation_date.astimezone(UTC).replace(microsecond=0)
    if not 0 <= int(created.timestamp()) <= _MAX_EPOCH:
        raise ConfigError(
            "creation_date", f"creation date {created.isoformat()} is outside 1970-01-01..2106-02-07"
        )
    return created, fixed


def collect_templates(template_dir: Path) -> list[tuple[str, str, bytes]]:
    """(target path in the container, file name under ``templates/``, content) per template, sorted.

    The directory mirrors the container: ``<dir>/etc/hostname.tpl`` renders ``/etc/hostname``. In the
    tarball the template is ``templates/etc-hostname.tpl`` (flat, as distrobuilder writes them).
    """
    if not template_dir.is_dir():
        raise ConfigError("template_dir", f"template directory {str(template_dir)!r} is not a directory")
    found: list[tuple[str, str, bytes]] = []
    flat_names: dict[str, str] = {}
    for path in sorted(template_dir.rglob("*")):
        relative = path.relative_to(template_dir).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode) or not relative.endswith(".tpl") or relative == ".tpl":
            raise ConfigError(
                "template_dir",
                f"template {relative!r}: every entry of the template directory must be a regular "
                "file named <target path>.tpl",
            )
        target = "/" + relative.removesuffix(".tpl")
        flat = relative.replace("/", "-")
        if flat in flat_names:
            raise ConfigError(
                "template_dir", f"templates {flat_names[flat]!r} and {relative!r} flatten to the same name"
            )
        flat_names[flat] = relative
        found.append((target, flat, path.read_bytes()))
    if not found:
        raise ConfigError("template_dir", f"template directory {str(template_dir)!r} holds no *.tpl file")
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
        raise ConfigError(
            "compression", f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}"
        )
    if not 1 <= expiry_days <= MAX_EXPIRY_DAYS:
        raise ConfigError("expiry_days", f"expiry of {expiry_days} days: it must be 1 to {MAX_EXPIRY_DAYS}")
    created, reproducible = creation_time(creation_date)
    if not rootfs.exists():
        raise ConfigError("rootfs", f"rootfs directory {str(rootfs)!r} does not exist")
    if not rootfs.is_dir():
        raise ConfigError("rootfs", f"rootfs {str(rootfs)!r} is not a directory")
    mksquashfs = shutil.which("mksquashfs")
    if mksquashfs is None:
        raise SimplestreamsError("mksquashfs not found on PATH (Debian: apt-get install squashfs-tools)")
    template_files = collect_templates(templates) if templates is not None else []
    shown = progress or SilentProgress()
    try:
        with image_directory(into, name) as image_dir:
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
            files = ArchFiles(arch)
            target = image_dir / f"v{version}"
            check_publishable(target, files, meta, name=name, version=version)
            with staging(image_dir) as workdir:
                return _build_and_publish(
                    rootfs,
                    workdir,
                    target,
                    files,
                    meta=meta,
                    name=name,
                    version=version,
                    created=created,
                    reproducible=reproducible,
                    compression=compression,
                    mksquashfs=mksquashfs,
                    progress=shown,
                )
    finally:
        shown.close()


def _build_and_publish(
    rootfs: Path,
    workdir: Path,
    target: Path,
    files: ArchFiles,
    *,
    meta: bytes,
    name: str,
    version: str,
    created: datetime,
    reproducible: bool,
    compression: str,
    mksquashfs: str,
    progress: Progress,
) -> BuiltImage:
    write_file(workdir / files.meta, meta)
    squashfs = workdir / files.rootfs
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
    fsync(squashfs)

    rootfs_size = squashfs.stat().st_size
    progress.stage("hashing", len(meta) + rootfs_size, "B")
    combined, alone = hashlib.sha256(meta), hashlib.sha256()
    hash_file(squashfs, [combined, alone], progress, len(meta))
    return publish_staged(
        workdir,
        target,
        files,
        name=name,
        version=version,
        meta_sha256=hashlib.sha256(meta).hexdigest(),
        rootfs_sha256=alone.hexdigest(),
        fingerprint=combined.hexdigest(),
        size=len(meta) + rootfs_size,
        created=created,
        progress=progress,
    )


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
    """``webspaces images build``; see :func:`.command.run_command` for the exit status and output."""
    return run_command(
        "build",
        lambda progress: build_image(
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
        ),
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m simplestreams.builder``), the same as the subcommand."""
    return standalone(
        "webspaces images build",
        "Pack ROOTFS_DIR into a split LXD image (metadata tarball + squashfs) and publish it into a "
        "directory backend as DIR/NAME/v<version>/.",
        add_arguments,
        run,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())

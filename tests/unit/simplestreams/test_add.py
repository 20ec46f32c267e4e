"""simplestreams.publish: ``webspaces images add`` publishes image files built elsewhere into the
directory backend with the names, sidecars and atomicity of a build (spec/simplestreams.md §1.5,
§3.3, §6), and the directory backend then serves them with the fingerprint LXD computes.

Real files throughout: meta tarballs from simplestreams/synthetic.py and from the builder, squashfs
images from mksquashfs, rootfs tarballs from tarfile. No pytest-asyncio: ``asyncio.run`` per index.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simplestreams import builder, command, errors, publish
from simplestreams.directory import DirectoryBackend
from simplestreams.meta import parse_meta
from simplestreams.progress import BarProgress
from simplestreams.publish import BuiltImage, add_image
from simplestreams.synthetic import (
    CREATED,
    compress,
    fake_squashfs_bytes,
    meta_bytes,
    sha256_file,
    write_meta,
    write_squashfs,
)
from tests.conftest import require

REPO = Path(__file__).resolve().parents[3]
KEY = "20210828_1504"  # version-key prefix of CREATED, the helpers' creation_date


@pytest.fixture(autouse=True)
def _mksquashfs() -> None:
    require(shutil.which("mksquashfs") is not None, "mksquashfs (squashfs-tools) is not installed")


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """What distrobuilder leaves in its output directory: lxd.tar.xz and rootfs.squashfs (x86_64)."""
    directory = tmp_path / "dist"
    directory.mkdir()
    write_meta(directory / "lxd.tar.xz", "x86_64")
    write_squashfs(directory / "rootfs.squashfs")
    return directory


def add(dist: Path, into: Path, **kwargs: Any) -> BuiltImage:
    meta = kwargs.pop("meta", dist / "lxd.tar.xz")
    rootfs = kwargs.pop("rootfs", dist / "rootfs.squashfs")
    return add_image(meta, rootfs, name=kwargs.pop("name", "demo"), into=into, **kwargs)


def index(root: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The products of images.json and the skips, as the server indexes ``root``."""

    async def refresh() -> Any:
        return await asyncio.wait_for(DirectoryBackend(root).refresh(), 60)

    catalog = asyncio.run(refresh())
    products = json.loads(catalog.images_json)["products"]
    return products, [(s.subject, s.reason, s.detail) for s in catalog.skipped]


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rootfs_tarball(path: Path, members: dict[str, bytes], *, compression: str = "xz") -> Path:
    """A tarball of ``members`` (name -> content; a trailing '/' makes a directory)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 0
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                archive.addfile(info, io.BytesIO(content))
    path.write_bytes(compress(raw.getvalue(), compression))
    return path


UNIFIED = {
    "metadata.yaml": b"architecture: x86_64\ncreation_date: 1630163040\nproperties: {}\n",
    "rootfs/": b"",
    "rootfs/etc/": b"",
    "rootfs/etc/hostname": b"unified\n",
}


# -- publishing and indexing ---------------------------------------------------------------------------


def test_distrobuilder_files_are_served_with_lxds_fingerprint(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    built = add(dist, into)
    version_dir = into / "demo" / "v1.0.0"
    assert (built.name, built.version, built.arch, built.ftype) == ("demo", "1.0.0", "amd64", "squashfs")
    assert built.directory == version_dir
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "combined.amd64.sha256",
        "lxd.amd64.tar.xz",
        "rootfs.amd64.squashfs",
        "rootfs.amd64.squashfs.sha256",
    ]
    assert sorted(built.files) == sorted(version_dir.iterdir())
    meta, rootfs = (dist / "lxd.tar.xz").read_bytes(), (dist / "rootfs.squashfs").read_bytes()
    assert built.meta.read_bytes() == meta and built.rootfs.read_bytes() == rootfs
    fingerprint = sha256(meta + rootfs)
    assert built.fingerprint == fingerprint
    assert (built.meta_sha256, built.rootfs_sha256) == (sha256(meta), sha256(rootfs))
    assert built.size == len(meta) + len(rootfs)
    assert built.created == CREATED
    # sha256sum's format, as the builder writes it.
    assert (
        version_dir / "rootfs.amd64.squashfs.sha256"
    ).read_text() == f"{sha256(rootfs)}  rootfs.amd64.squashfs\n"
    assert (version_dir / "combined.amd64.sha256").read_text() == f"{fingerprint}  -\n"
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in built.files)

    products, skipped = index(into)
    assert skipped == []
    version = products["demo:amd64"]["versions"][f"{KEY}_v1.0.0"]
    assert version["items"]["lxd.tar.xz"]["combined_squashfs_sha256"] == fingerprint
    assert version["items"]["lxd.tar.xz"]["sha256"] == sha256(meta)
    assert version["items"]["rootfs.squashfs"]["sha256"] == sha256(rootfs)
    assert version["items"]["rootfs.squashfs"]["size"] == len(rootfs)


@pytest.mark.parametrize(("compression", "dot_slash"), [("gzip", True), ("zstd", False), ("none", True)])
def test_lxc_image_export_files(tmp_path: Path, compression: str, dot_slash: bool) -> None:
    """``lxc image export`` names the files meta-<fp>.tar.xz and <fp>.squashfs; the meta tarball may be
    gzip or zstd whatever its name, with ./metadata.yaml; the architecture comes from metadata.yaml."""
    export = tmp_path / "export"
    export.mkdir()
    meta = write_meta(
        export / "meta-0123abcd.tar.xz", "aarch64", compression=compression, dot_slash=dot_slash
    )
    rootfs = write_squashfs(export / "0123abcd.squashfs", {"etc/hostname": b"exported\n"})
    into = tmp_path / "images"
    built = add_image(meta, rootfs, name="team/exported", into=into, version="2.1.0-3")
    assert built.arch == "arm64"
    assert built.meta == into / "team" / "exported" / "v2.1.0-3" / "lxd.arm64.tar.xz"
    assert built.rootfs.name == "rootfs.arm64.squashfs"
    assert built.fingerprint == sha256_file(meta, rootfs)
    products, skipped = index(into)
    assert skipped == []
    item = products["team/exported:arm64"]["versions"][f"{KEY}_v2.1.0-3"]["items"]["lxd.tar.xz"]
    assert item["combined_squashfs_sha256"] == built.fingerprint


def test_a_tar_xz_rootfs_gets_the_root_tar_xz_names(tmp_path: Path) -> None:
    meta = write_meta(tmp_path / "lxd.tar.xz", "x86_64")
    rootfs = rootfs_tarball(tmp_path / "rootfs.tar.xz", {"./": b"", "./etc/": b"", "./etc/hostname": b"t\n"})
    into = tmp_path / "images"
    built = add_image(meta, rootfs, name="demo", into=into)
    assert built.ftype == "root.tar.xz"
    assert sorted(p.name for p in built.directory.iterdir()) == [
        "combined.amd64.root.tar.xz.sha256",
        "lxd.amd64.tar.xz",
        "rootfs.amd64.tar.xz",
        "rootfs.amd64.tar.xz.sha256",
    ]
    assert built.sidecars[0].read_text() == f"{sha256_file(rootfs)}  rootfs.amd64.tar.xz\n"
    assert built.sidecars[1].read_text() == f"{sha256_file(meta, rootfs)}  -\n"
    products, skipped = index(into)
    assert skipped == []
    items = products["demo:amd64"]["versions"][f"{KEY}_v1.0.0"]["items"]
    assert items["lxd.tar.xz"]["combined_rootxz_sha256"] == built.fingerprint == sha256_file(meta, rootfs)
    assert {item["ftype"] for item in items.values()} == {"lxd.tar.xz", "root.tar.xz"}


def test_a_second_rootfs_type_joins_a_published_arch_rootfs_last(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    squashfs = add(dist, into, version="1.0.0")
    before = tree(squashfs.directory)
    tarball = rootfs_tarball(tmp_path / "rootfs.tar.xz", {"etc/": b"", "etc/hostname": b"t\n"})
    moved: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        moved.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    rootxz = add(dist, into, version="1.0.0", rootfs=tarball)
    assert not rootxz.unchanged
    assert moved == ["combined.amd64.root.tar.xz.sha256", "rootfs.amd64.tar.xz.sha256", "rootfs.amd64.tar.xz"]
    assert {k: v for k, v in tree(squashfs.directory).items() if k in before} == before
    products, skipped = index(into)
    assert skipped == []
    meta_item = products["demo:amd64"]["versions"][f"{KEY}_v1.0.0"]["items"]["lxd.tar.xz"]
    assert meta_item["combined_squashfs_sha256"] == squashfs.fingerprint
    assert meta_item["combined_rootxz_sha256"] == rootxz.fingerprint


def test_a_builds_files_added_elsewhere_keep_their_fingerprint(tmp_path: Path) -> None:
    rootfs_dir = tmp_path / "tree"
    (rootfs_dir / "etc").mkdir(parents=True)
    (rootfs_dir / "etc" / "hostname").write_text("built\n")
    built = builder.build_image(
        rootfs_dir, name="origin", into=tmp_path / "a", arch="riscv64", creation_date=CREATED
    )
    added = add_image(built.meta, built.rootfs, name="copy", into=tmp_path / "b")
    assert added.arch == "riscv64"
    assert (added.fingerprint, added.meta_sha256, added.rootfs_sha256) == (
        built.fingerprint,
        built.meta_sha256,
        built.rootfs_sha256,
    )
    assert [p.read_bytes() for p in added.sidecars] == [p.read_bytes() for p in built.sidecars]


def test_metadata_without_creation_date_dates_by_the_published_file(tmp_path: Path) -> None:
    meta = write_meta(tmp_path / "lxd.tar.xz", "x86_64", creation_date=None)
    rootfs = write_squashfs(tmp_path / "rootfs.squashfs")
    os.utime(meta, (0, 0))
    built = add_image(meta, rootfs, name="demo", into=tmp_path / "images")
    assert built.created == datetime.fromtimestamp(int(built.meta.stat().st_mtime), UTC)
    assert built.created.year >= 2025  # the copy's time, not the original's mtime
    products, skipped = index(tmp_path / "images")
    assert skipped == []
    assert len(products["demo:amd64"]["versions"]) == 1


# -- architecture --------------------------------------------------------------------------------------


def test_arch_option_must_agree_with_metadata(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    with pytest.raises(errors.ConfigError, match=r"--arch arm64 \(aarch64\) disagrees.*'x86_64'"):
        add(dist, into, arch="arm64")
    with pytest.raises(errors.UnknownArchError, match="x86-64"):
        add(dist, into, arch="x86-64")
    assert not into.exists()
    built = add(dist, into, arch="x86_64")  # the kernel name, published verbatim
    assert built.meta.name == "lxd.x86_64.tar.xz"
    products, skipped = index(into)
    assert skipped == [] and list(products) == ["demo:x86_64"]


def test_arch_from_metadata_uses_debian_names(tmp_path: Path) -> None:
    rootfs = write_squashfs(tmp_path / "rootfs.squashfs")
    for kernel, debian in [("i686", "i386"), ("armv7l", "armhf"), ("ppc64le", "ppc64el"), ("amd64", "amd64")]:
        meta = write_meta(tmp_path / f"{kernel}.tar.xz", kernel)
        assert add_image(meta, rootfs, name=kernel, into=tmp_path / "images").arch == debian


# -- idempotence and refusals --------------------------------------------------------------------------


def test_adding_the_same_files_again_is_a_no_op(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    first = add(dist, into)
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in first.files}
    again = add(dist, into, version="1.0.0")
    assert again.unchanged and not first.unchanged
    assert again.fingerprint == first.fingerprint
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in first.files} == stamps
    assert leftovers(into) == []
    assert add(dist, into).version == "1.0.1"  # without --version: the next patch


def test_other_bytes_for_a_published_arch_are_refused(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    add(dist, into, version="1.0.0", rootfs=publish_fake(tmp_path / "a.squashfs", b"a"))
    before = tree(into)
    other_meta = write_meta(tmp_path / "other.tar.xz", "x86_64", properties={"os": "other"})
    cases = [
        {"rootfs": publish_fake(tmp_path / "b.squashfs", b"b")},  # same size, other bytes
        {"rootfs": dist / "rootfs.squashfs"},  # another size: refused before copying
        {"rootfs": publish_fake(tmp_path / "a2.squashfs", b"a"), "meta": other_meta},
    ]
    for case in cases:
        with pytest.raises(errors.SimplestreamsError, match="already published with different content"):
            add(dist, into, version="1.0.0", **case)
    assert tree(into) == before
    assert leftovers(into) == []


def publish_fake(path: Path, seed: bytes) -> Path:
    """A 64 KiB file with a valid squashfs superblock (inspect_rootfs checks only that)."""
    path.write_bytes(fake_squashfs_bytes(65536, seed=seed))
    return path


def test_a_truncated_squashfs_is_refused(dist: Path, tmp_path: Path) -> None:
    whole = (dist / "rootfs.squashfs").read_bytes()
    (bytes_used,) = struct.unpack_from("<Q", whole, 40)  # mksquashfs pads the file to 4 KiB after that
    cut = tmp_path / "cut.squashfs"
    cut.write_bytes(whole[: bytes_used - 1])
    into = tmp_path / "images"
    with pytest.raises(errors.TruncatedFileError, match="truncated"):
        add(dist, into, rootfs=cut)
    cut.write_bytes(whole[:50])
    with pytest.raises(errors.TruncatedFileError, match="shorter than a squashfs superblock"):
        add(dist, into, rootfs=cut)
    assert not into.exists()


def test_a_unified_image_is_refused(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    unified_gz = rootfs_tarball(tmp_path / "0123abcd.tar.gz", UNIFIED, compression="gzip")
    unified_xz = rootfs_tarball(tmp_path / "unified.tar.xz", UNIFIED)
    with pytest.raises(errors.ConfigError, match="unified image"):
        add(dist, into, meta=unified_gz)
    with pytest.raises(errors.ConfigError, match="unified image"):
        add(dist, into, rootfs=unified_gz)
    with pytest.raises(errors.ConfigError, match="unified image"):
        add(dist, into, rootfs=unified_xz)
    assert not into.exists()


def test_a_large_unified_image_as_meta_is_refused_without_reading_it_all(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "META_LIMIT", 1024)
    big = dict(UNIFIED)
    big["rootfs/blob"] = os.urandom(4096)
    unified = rootfs_tarball(tmp_path / "unified.tar.gz", big, compression="gzip")
    with pytest.raises(errors.ConfigError, match="unified image"):
        add(dist, tmp_path / "images", meta=unified)
    with pytest.raises(errors.ConfigError, match="more than a meta tarball may be"):
        add(dist, tmp_path / "images", meta=dist / "rootfs.squashfs")


def test_rootfs_of_unknown_type_is_refused(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    junk = tmp_path / "rootfs.img"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(errors.ConfigError, match="neither a squashfs nor an xz-compressed tar"):
        add(dist, into, rootfs=junk)
    gzip_tar = rootfs_tarball(tmp_path / "rootfs.tar.gz", {"etc/hostname": b"x\n"}, compression="gzip")
    with pytest.raises(errors.ConfigError, match="neither a squashfs nor an xz-compressed tar"):
        add(dist, into, rootfs=gzip_tar)
    not_a_tar = tmp_path / "rootfs.tar.xz"
    not_a_tar.write_bytes(lzma.compress(os.urandom(4096)))
    with pytest.raises(errors.ConfigError, match="xz-compressed but not a tar"):
        add(dist, into, rootfs=not_a_tar)
    with pytest.raises(errors.ConfigError, match="is a meta tarball"):
        add(dist, into, rootfs=dist / "lxd.tar.xz")
    assert not into.exists()


def test_meta_that_is_not_a_meta_tarball_is_refused(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(errors.BadMetadataError, match="not an LXD meta tarball"):
        add(dist, into, meta=junk)
    no_metadata = rootfs_tarball(tmp_path / "empty.tar.xz", {"templates/": b"", "templates/a.tpl": b"x"})
    with pytest.raises(errors.BadMetadataError, match=r"no metadata\.yaml"):
        add(dist, into, meta=no_metadata)
    bad_arch = tmp_path / "bad-arch.tar.xz"
    bad_arch.write_bytes(meta_bytes("x86-64"))
    with pytest.raises(errors.BadMetadataError, match="unknown architecture"):
        add(dist, into, meta=bad_arch)
    with pytest.raises(errors.ConfigError, match="is a squashfs: the arguments are META ROOTFS"):
        add(dist, into, meta=dist / "rootfs.squashfs", rootfs=dist / "lxd.tar.xz")
    assert not into.exists()


def test_missing_files_and_directories_are_refused(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    with pytest.raises(errors.ConfigError, match=r"META .* does not exist"):
        add(dist, into, meta=tmp_path / "nope.tar.xz")
    with pytest.raises(errors.ConfigError, match=r"ROOTFS .* does not exist"):
        add(dist, into, rootfs=tmp_path / "nope.squashfs")
    with pytest.raises(errors.ConfigError, match=r"ROOTFS .* is not a regular file"):
        add(dist, into, rootfs=tmp_path)
    assert not into.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"name": "bad name"}, "bad image name"), ({"version": "1.0"}, "bad version")]
)
def test_bad_name_or_version(dist: Path, tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(errors.BadTagError, match=message):
        add(dist, tmp_path / "images", **kwargs)
    assert not (tmp_path / "images").exists()


def test_the_originals_are_untouched(dist: Path, tmp_path: Path) -> None:
    originals = sorted(dist.iterdir())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_mode) for p in originals}
    built = add(dist, tmp_path / "images")
    add(dist, tmp_path / "images", version="1.0.0")
    assert sorted(dist.iterdir()) == originals
    assert {
        p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_mode) for p in originals
    } == before
    assert built.rootfs.stat().st_ino != (dist / "rootfs.squashfs").stat().st_ino  # a copy, not a link


# -- failures leave nothing behind ---------------------------------------------------------------------


def failing_copy(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make the rootfs copy write part of the file, then fail as a full disk would."""
    destinations: list[Path] = []

    def copy(source: publish.RootfsFile, destination: Path, *args: Any) -> None:
        destinations.append(destination)
        destination.write_bytes(source.path.read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(publish, "copy_file", copy)
    return destinations


def test_a_failure_mid_copy_leaves_nothing(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    into.mkdir()
    destinations = failing_copy(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        add(dist, into)
    assert destinations and destinations[0].parent.name.startswith(publish.TEMP_PREFIX)
    assert list(into.iterdir()) == []  # neither the temporary directory nor demo/ itself


def test_a_failure_mid_copy_keeps_a_published_version_as_it_was(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    add(dist, into, version="1.0.0")
    before = tree(into)
    failing_copy(monkeypatch)
    arm64 = write_meta(tmp_path / "arm64.tar.xz", "aarch64")
    with pytest.raises(OSError, match="No space left"):
        add(dist, into, version="1.0.0", meta=arm64)
    with pytest.raises(OSError, match="No space left"):
        add(dist, into)
    assert tree(into) == before
    assert leftovers(into) == []
    assert sorted(p.name for p in (into / "demo").iterdir()) == ["v1.0.0"]


def test_a_source_changed_since_it_was_checked_is_refused(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_inspect = publish.inspect_rootfs

    def inspect_then_change(path: Path) -> publish.RootfsFile:
        checked = real_inspect(path)
        with path.open("ab") as grow:
            grow.write(b"\0" * 4096)
        return checked

    monkeypatch.setattr(publish, "inspect_rootfs", inspect_then_change)
    into = tmp_path / "images"
    with pytest.raises(errors.SimplestreamsError, match="changed while it was being published"):
        add(dist, into)
    assert not into.exists()


def test_one_publisher_per_image_at_a_time(dist: Path, tmp_path: Path) -> None:
    image_dir = tmp_path / "images" / "demo"
    image_dir.mkdir(parents=True)
    fd = os.open(image_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(errors.SimplestreamsError, match="another build or add"):
            add(dist, tmp_path / "images")
    finally:
        os.close(fd)
    assert list(image_dir.iterdir()) == []


# -- progress and the command line ---------------------------------------------------------------------


class Recorder:
    detailed = True

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self.events.append(("stage", title, total, unit))

    def update(self, done: int, total: int | None = None) -> None:
        self.events.append(("update", done, total))

    def close(self) -> None:
        self.events.append(("close",))


def test_progress_counts_the_rootfs_bytes(dist: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    built = add(dist, tmp_path / "images", progress=recorder)
    size = built.rootfs.stat().st_size
    stages = [event[1:] for event in recorder.events if event[0] == "stage"]
    assert stages == [("copying rootfs", size, "B"), ("publishing", None, "")]
    assert ("update", size, None) in recorder.events
    assert recorder.events[-1] == ("close",)


def test_bar_progress_on_a_terminal(dist: Path, tmp_path: Path) -> None:
    stream = io.StringIO()
    add(dist, tmp_path / "images", progress=BarProgress(stream, width=70))
    text = stream.getvalue()
    assert "copying rootfs" in text and "100%" in text and "\r" in text


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webspaces.cli", "images", "add", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_paths_and_fingerprint(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    result = cli(dist / "lxd.tar.xz", dist / "rootfs.squashfs", "--name", "demo", "--into", into)
    assert result.returncode == 0, result.stderr
    version_dir = into / "demo" / "v1.0.0"
    fingerprint = sha256_file(version_dir / "lxd.amd64.tar.xz", version_dir / "rootfs.amd64.squashfs")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("published demo v1.0.0 amd64 (")
    assert f"  {version_dir / 'rootfs.amd64.squashfs'}" in lines
    assert f"  {version_dir / 'combined.amd64.sha256'}" in lines
    assert lines[-1] == f"fingerprint {fingerprint}"
    assert result.stderr.splitlines() == ["copying rootfs", "publishing"]

    again = cli(
        dist / "lxd.tar.xz",
        dist / "rootfs.squashfs",
        "--name",
        "demo",
        "--into",
        into,
        "--version",
        "1.0.0",
        "--quiet",
    )
    assert again.returncode == 0
    assert again.stdout.startswith("demo v1.0.0 amd64 is already published with identical content\n")
    assert again.stdout.splitlines()[-1] == f"fingerprint {fingerprint}"
    assert again.stderr == ""


def test_cli_errors_exit_1_with_one_message(dist: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    cases: Sequence[tuple[Sequence[str | Path], str]] = [
        ((tmp_path / "nope", dist / "rootfs.squashfs"), "does not exist"),
        ((dist / "lxd.tar.xz", dist / "rootfs.squashfs", "--arch", "arm64"), "disagrees"),
        ((dist / "lxd.tar.xz", dist / "rootfs.squashfs", "--version", "v1"), "bad version"),
        ((dist / "lxd.tar.xz", dist / "lxd.tar.xz"), "is a meta tarball"),
    ]
    for args, message in cases:
        result = cli(*args, "--name", "demo", "--into", into, "--quiet")
        assert result.returncode == 1, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("webspaces images add: ") and message in result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert not into.exists()


def test_cli_usage_errors_exit_2(dist: Path, tmp_path: Path) -> None:
    for args in [
        (dist / "lxd.tar.xz", dist / "rootfs.squashfs", "--into", tmp_path / "images"),  # no --name
        (dist / "lxd.tar.xz", "--name", "demo", "--into", tmp_path / "images"),  # no ROOTFS
    ]:
        result = cli(*args)
        assert result.returncode == 2
        assert "usage: webspaces images add" in result.stderr
    assert not (tmp_path / "images").exists()


def test_quiet_prints_nothing_on_stderr(
    dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(dist / "lxd.tar.xz"), str(dist / "rootfs.squashfs"), "--name", "demo"]
    assert command.main([*args, "--into", str(tmp_path / "images"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "fingerprint " in out
    assert parse_meta(
        (tmp_path / "images" / "demo" / "v1.0.0" / "lxd.amd64.tar.xz").read_bytes()
    ).architecture == ("x86_64")

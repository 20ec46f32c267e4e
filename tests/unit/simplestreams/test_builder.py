"""The image builder: files, metadata, reproducibility and crash-safe publishing (spec/simplestreams.md
§1.1, §1.5, §3.3, §6, §8), with the real mksquashfs.

Failures are injected with real programs (a failing ``mksquashfs`` first on PATH, SIGTERM to a real
build) or by making one rename fail, and every failure test checks that nothing was left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import lzma
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from simplestreams import builder, errors
from simplestreams.arch import kernel_arch
from simplestreams.builder import BuiltImage, build_image
from simplestreams.meta import parse_meta
from tests.conftest import require

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _mksquashfs(monkeypatch: pytest.MonkeyPatch) -> None:
    require(shutil.which("mksquashfs") is not None, "mksquashfs (squashfs-tools) is not installed")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "hostname").write_text("placeholder\n")
    (root / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    (root / "bin" / "hello").chmod(0o755)
    (root / "bin" / "sh").symlink_to("hello")
    root.chmod(0o755)
    return root


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    (directory / "etc").mkdir(parents=True)
    (directory / "etc" / "hostname.tpl").write_text("{{ container.name }}\n")
    return directory


def build(rootfs: Path, into: Path, **kwargs: Any) -> BuiltImage:
    kwargs.setdefault("creation_date", CREATED)
    kwargs.setdefault("arch", "amd64")
    return build_image(rootfs, name=kwargs.pop("name", "demo"), into=into, **kwargs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*"))


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def read_meta_tar(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, Any]]:
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(path.read_bytes()))) as tar:
        members = tar.getmembers()
        extracted = tar.extractfile("metadata.yaml")
        assert extracted is not None
        with extracted:
            document = yaml.safe_load(extracted.read())
    return members, document


# -- files, sidecars, metadata ------------------------------------------------------------------------


def test_publishes_the_asset_layout_with_sidecars(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    built = build(rootfs, into, version="1.2.3")
    directory = into / "demo" / "v1.2.3"
    assert built.directory == directory
    assert sorted(p.name for p in directory.iterdir()) == [
        "combined.amd64.sha256",
        "lxd.amd64.tar.xz",
        "rootfs.amd64.squashfs",
        "rootfs.amd64.squashfs.sha256",
    ]
    meta, squashfs = directory / "lxd.amd64.tar.xz", directory / "rootfs.amd64.squashfs"
    assert (built.meta, built.rootfs) == (meta, squashfs)
    assert squashfs.read_bytes()[:4] == b"hsqs"
    assert (
        directory / "rootfs.amd64.squashfs.sha256"
    ).read_text() == f"{sha256(squashfs)}  rootfs.amd64.squashfs\n"
    fingerprint = hashlib.sha256(meta.read_bytes() + squashfs.read_bytes()).hexdigest()
    assert (directory / "combined.amd64.sha256").read_text() == f"{fingerprint}  -\n"
    assert built.fingerprint == fingerprint
    assert (built.meta_sha256, built.rootfs_sha256) == (sha256(meta), sha256(squashfs))
    assert built.size == meta.stat().st_size + squashfs.stat().st_size
    assert not built.unchanged
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in built.files)
    assert directory.stat().st_mode & 0o777 == 0o755
    assert leftovers(into) == []


def test_sidecars_check_with_sha256sum(rootfs: Path, tmp_path: Path) -> None:
    require(shutil.which("sha256sum") is not None, "sha256sum (coreutils) is not installed")
    built = build(rootfs, tmp_path / "images")
    subprocess.run(
        ["sha256sum", "--quiet", "-c", "rootfs.amd64.squashfs.sha256"], cwd=built.directory, check=True
    )
    both = built.meta.read_bytes() + built.rootfs.read_bytes()
    subprocess.run(
        ["sha256sum", "--quiet", "-c", "combined.amd64.sha256"], cwd=built.directory, input=both, check=True
    )


def test_metadata_yaml(rootfs: Path, templates: Path, tmp_path: Path) -> None:
    built = build(
        rootfs,
        tmp_path / "images",
        name="team/web",
        version="2.0.0-1",
        os_name="busybox",
        release="1.35",
        description="a test image",
        templates=templates,
        expiry_days=10,
    )
    members, document = read_meta_tar(built.meta)
    assert [m.name for m in members] == ["metadata.yaml", "templates", "templates/etc-hostname.tpl"]
    assert all((m.uid, m.gid, m.uname, m.mtime) == (0, 0, "root", int(CREATED.timestamp())) for m in members)
    assert document == {
        "architecture": "x86_64",
        "creation_date": int(CREATED.timestamp()),
        "expiry_date": int((CREATED + timedelta(days=10)).timestamp()),
        "properties": {
            "architecture": "amd64",
            "description": "a test image",
            "name": "team/web",
            "os": "busybox",
            "release": "1.35",
            "serial": "20250102_0304_v2.0.0-1",
            "variant": "default",
        },
        "templates": {"/etc/hostname": {"template": "etc-hostname.tpl", "when": ["create", "copy"]}},
    }
    parsed = parse_meta(built.meta.read_bytes())
    assert parsed.architecture == "x86_64"
    assert parsed.creation_date == CREATED
    assert parsed.expiry_date == CREATED + timedelta(days=10)
    assert parsed.properties["release"] == "1.35"
    assert parsed.properties["description"] == "a test image"
    assert parsed.templates == ("etc-hostname.tpl",)
    assert built.directory == tmp_path / "images" / "team" / "web" / "v2.0.0-1"


def test_metadata_defaults(rootfs: Path, tmp_path: Path) -> None:
    built = build(rootfs, tmp_path / "images", arch="arm64", version="3.1.4")
    _, document = read_meta_tar(built.meta)
    assert document["architecture"] == "aarch64"
    assert "templates" not in document
    assert document["properties"] == {
        "architecture": "arm64",
        "description": "demo 3.1.4 (arm64)",
        "name": "demo",
        "os": "demo",
        "release": "3.1.4",
        "serial": "20250102_0304_v3.1.4",
        "variant": "default",
    }
    assert built.meta.name == "lxd.arm64.tar.xz"


def test_squashfs_is_root_owned_and_dated(rootfs: Path, tmp_path: Path) -> None:
    require(shutil.which("unsquashfs") is not None, "unsquashfs (squashfs-tools) is not installed")
    built = build(rootfs, tmp_path / "images")
    listing = subprocess.run(
        ["unsquashfs", "-lln", str(built.rootfs)], capture_output=True, text=True, check=True
    ).stdout
    entries = [line.split() for line in listing.splitlines() if "squashfs-root" in line]
    assert {line[-1] for line in entries} >= {"squashfs-root/bin/hello", "squashfs-root/etc/hostname"}
    assert {line[1] for line in entries} == {"0/0"}
    assert {f"{line[3]} {line[4]}" for line in entries} == {CREATED.strftime("%Y-%m-%d %H:%M")}
    hello = next(line for line in entries if line[-1] == "squashfs-root/bin/hello")
    assert hello[0] == "-rwxr-xr-x"


def test_default_arch_is_the_hosts_debian_name() -> None:
    assert builder.host_arch() == builder.DEBIAN_ARCH.get(platform.machine(), platform.machine())
    if platform.machine() in builder.DEBIAN_ARCH:
        assert kernel_arch(builder.host_arch()) == kernel_arch(platform.machine())


def test_every_debian_name_is_a_known_arch() -> None:
    for debian in builder.DEBIAN_ARCH.values():
        kernel_arch(debian)


# -- reproducibility --------------------------------------------------------------------------------


def test_two_builds_with_one_date_are_byte_identical(rootfs: Path, templates: Path, tmp_path: Path) -> None:
    first = build(rootfs, tmp_path / "a", templates=templates)
    (rootfs / "etc" / "hostname").touch()  # a new mtime must not matter
    second = build(rootfs, tmp_path / "b", templates=templates)
    assert first.fingerprint == second.fingerprint
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_source_date_epoch_makes_the_build_reproducible(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(CREATED.timestamp())))
    first = build(rootfs, tmp_path / "a", creation_date=None)
    build(rootfs, tmp_path / "b", creation_date=None)
    assert first.created == CREATED
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_without_a_date_now_is_used(rootfs: Path, tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    built = build(rootfs, tmp_path / "images", creation_date=None)
    assert before <= built.created <= datetime.now(UTC)
    assert parse_meta(built.meta.read_bytes()).creation_date == built.created


@pytest.mark.parametrize("epoch", ["yesterday", "-5", "99999999999"])
def test_bad_source_date_epoch(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epoch: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    with pytest.raises(errors.ConfigError, match="SOURCE_DATE_EPOCH"):
        build(rootfs, tmp_path / "images", creation_date=None)
    assert not (tmp_path / "images").exists()


# -- versions -------------------------------------------------------------------------------------------


def test_first_version_then_patch_bumps(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    assert build(rootfs, into).version == "1.0.0"
    assert build(rootfs, into).version == "1.0.1"
    build(rootfs, into, version="1.10.0-3+build.7")
    (into / "demo" / ".v9.0.0").mkdir()  # dot-entries and non-version directories do not count
    (into / "demo" / "v9.x").mkdir()
    assert build(rootfs, into).version == "1.10.1"
    assert builder.published_versions(into / "demo") == ["1.0.0", "1.0.1", "1.10.0-3+build.7", "1.10.1"]


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0 ", ""])
def test_bad_version_is_refused(rootfs: Path, tmp_path: Path, version: str) -> None:
    with pytest.raises(errors.BadTagError, match="bad version"):
        build(rootfs, tmp_path / "images", version=version)
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("name", ["busybox", "team/web", "a-b_c.d", "x/y/z"])
def test_good_names(name: str) -> None:
    assert builder.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "two words",
        "tab\there",
        "a//b",
        "a/./b",
        "../up",
        "a/..",
        ".hidden",
        "a/.b",
        "a/v1.0.0",
        "a,b",
        "q?",
    ],
)
def test_bad_names_are_refused(rootfs: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.BadTagError, match="bad image name"):
        build(rootfs, tmp_path / "images", name=name)
    assert not (tmp_path / "images").exists()


def test_unknown_arch_is_refused(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.UnknownArchError):
        build(rootfs, tmp_path / "images", arch="x86-64")
    assert not (tmp_path / "images").exists()


# -- publishing ---------------------------------------------------------------------------------------


def test_a_published_arch_is_never_overwritten(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    build(rootfs, into, version="1.0.0")
    before = tree(into)
    with pytest.raises(errors.SimplestreamsError, match="already published with different content"):
        build(rootfs, into, version="1.0.0", creation_date=CREATED + timedelta(hours=1))
    (rootfs / "etc" / "hostname").write_text("changed\n")  # same metadata, other rootfs
    with pytest.raises(errors.SimplestreamsError, match="already published with different content"):
        build(rootfs, into, version="1.0.0")
    assert tree(into) == before
    assert leftovers(into) == []


def test_an_identical_rebuild_is_a_no_op(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    first = build(rootfs, into, version="1.0.0")
    before = {p: p.stat().st_mtime_ns for p in first.files}
    again = build(rootfs, into, version="1.0.0")
    assert again.unchanged
    assert again.fingerprint == first.fingerprint
    assert {p: p.stat().st_mtime_ns for p in first.files} == before
    assert leftovers(into) == []


def test_a_second_arch_joins_an_existing_version_meta_last(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    amd64 = build(rootfs, into, version="1.0.0")
    amd64_files = tree(amd64.directory)
    moved: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        moved.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    arm64 = build(rootfs, into, version="1.0.0", arch="arm64")
    assert arm64.directory == amd64.directory
    assert moved[-1] == "lxd.arm64.tar.xz"
    assert sorted(moved) == sorted(p.name for p in arm64.files)
    assert sorted(p.name for p in amd64.directory.iterdir()) == sorted(
        [p.name for p in amd64.files] + [p.name for p in arm64.files]
    )
    assert {k: v for k, v in tree(amd64.directory).items() if "amd64" in k} == amd64_files
    assert parse_meta(arm64.meta.read_bytes()).architecture == "aarch64"


def test_leftovers_of_an_interrupted_publish_are_replaced(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    amd64 = build(rootfs, into, version="1.0.0")
    (amd64.directory / "rootfs.arm64.squashfs").write_bytes(b"half a file")  # no meta: not published
    arm64 = build(rootfs, into, version="1.0.0", arch="arm64")
    assert arm64.rootfs.read_bytes()[:4] == b"hsqs"
    assert arm64.rootfs_sha256 == sha256(arm64.rootfs)


def test_a_failed_move_takes_back_what_it_moved(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    amd64 = build(rootfs, into, version="1.0.0")
    before = tree(into)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name.startswith("lxd."):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        build(rootfs, into, version="1.0.0", arch="arm64")
    assert tree(into) == before
    assert sorted(p.name for p in amd64.directory.iterdir()) == sorted(p.name for p in amd64.files)
    assert leftovers(into) == []


def fake_mksquashfs(tmp_path: Path, body: str) -> str:
    """A directory holding a ``mksquashfs`` shell script, to put first on PATH."""
    directory = tmp_path / "fakebin"
    directory.mkdir()
    script = directory / "mksquashfs"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


def test_a_failing_mksquashfs_leaves_nothing(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PATH", fake_mksquashfs(tmp_path, 'echo partial > "$2"; echo "FATAL ERROR: disk on fire" >&2; exit 1')
    )
    into = tmp_path / "images"
    with pytest.raises(errors.SimplestreamsError, match="exit status 1: FATAL ERROR: disk on fire"):
        build(rootfs, into)
    assert not into.exists()


def test_a_failure_in_an_existing_tree_keeps_the_tree(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "images"
    build(rootfs, into, version="1.0.0")
    before = tree(into)
    monkeypatch.setenv("PATH", fake_mksquashfs(tmp_path, "exit 3"))
    with pytest.raises(errors.SimplestreamsError, match="exit status 3: no output"):
        build(rootfs, into, version="1.0.0", arch="arm64")
    with pytest.raises(errors.SimplestreamsError, match="exit status 3"):
        build(rootfs, into)
    assert tree(into) == before
    assert leftovers(into) == []


def test_missing_mksquashfs(rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(errors.SimplestreamsError, match="mksquashfs not found"):
        build(rootfs, tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_missing_or_wrong_rootfs(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="does not exist"):
        build(tmp_path / "nothing", tmp_path / "images")
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.ConfigError, match="not a directory"):
        build(tmp_path / "file", tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_templates_must_be_tpl_files(rootfs: Path, templates: Path, tmp_path: Path) -> None:
    (templates / "README").write_text("not a template")
    with pytest.raises(errors.ConfigError, match="README"):
        build(rootfs, tmp_path / "images", templates=templates)
    with pytest.raises(errors.ConfigError, match="not a directory"):
        build(rootfs, tmp_path / "images", templates=tmp_path / "none")
    assert not (tmp_path / "images").exists()


def test_stale_temporary_directories_are_removed(rootfs: Path, tmp_path: Path) -> None:
    into = tmp_path / "images"
    stale = into / "demo" / ".build-killed"
    (stale / "deep").mkdir(parents=True)
    (stale / "deep" / "rootfs.amd64.squashfs").write_bytes(b"x")
    (into / "demo" / ".upload-by-someone-else").mkdir()
    build(rootfs, into)
    assert leftovers(into) == [".upload-by-someone-else"]


def test_one_build_per_image_at_a_time(rootfs: Path, tmp_path: Path) -> None:
    image_dir = tmp_path / "images" / "demo"
    image_dir.mkdir(parents=True)
    fd = os.open(image_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(errors.SimplestreamsError, match="another build"):
            build(rootfs, tmp_path / "images")
    finally:
        os.close(fd)
    assert list(image_dir.iterdir()) == []
    assert build(rootfs, tmp_path / "images").version == "1.0.0"


def test_sigterm_during_mksquashfs_cleans_up(rootfs: Path, tmp_path: Path) -> None:
    path = fake_mksquashfs(tmp_path, 'echo partial > "$2"; exec sleep 30')
    into = tmp_path / "images"
    command = [
        sys.executable,
        "-m",
        "simplestreams.builder",
        str(rootfs),
        "--name",
        "demo",
        "--into",
        str(into),
    ]
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 20
        while not list((into / "demo").glob(".build-*/rootfs.amd64.squashfs")):
            assert time.monotonic() < deadline, "the build never started mksquashfs"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert not into.exists()


# -- progress -------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, detailed: bool) -> None:
        self.detailed = detailed
        self.events: list[tuple[Any, ...]] = []

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self.events.append(("stage", title, total, unit))

    def update(self, done: int, total: int | None = None) -> None:
        self.events.append(("update", done, total))

    def close(self) -> None:
        self.events.append(("close",))


@pytest.mark.parametrize("detailed", [True, False])
def test_progress_stages(rootfs: Path, tmp_path: Path, detailed: bool) -> None:
    recorder = Recorder(detailed)
    built = build(rootfs, tmp_path / "images", progress=recorder)
    stages = [event[1] for event in recorder.events if event[0] == "stage"]
    assert stages == ["packing metadata", "squashing rootfs", "hashing", "publishing"]
    assert recorder.events[-1] == ("close",)
    assert ("stage", "hashing", built.size, "B") in recorder.events
    assert ("update", built.size, None) in recorder.events
    # mksquashfs's own bar, read through a pseudo-terminal: blocks done of the total.
    squash_updates = [e for e in recorder.events if e[0] == "update" and e[2] is not None]
    if detailed:
        assert squash_updates and squash_updates[-1][1] == squash_updates[-1][2] > 0
    else:
        assert squash_updates == []


def test_bar_progress_draws_in_place() -> None:
    stream = io.StringIO()
    bar = builder.BarProgress(stream, width=60)
    bar.stage("hashing", 2048, "B")
    bar.update(2048)
    bar.stage("publishing")
    bar.close()
    text = stream.getvalue()
    lines = text.split("\n")
    assert len(lines) == 3 and lines[-1] == ""
    assert "100% 2.0 KiB/2.0 KiB" in lines[0]
    assert lines[0].startswith("\rhashing")
    assert all(len(part.replace("\x1b[K", "")) <= 60 for part in text.replace("\n", "\r").split("\r"))
    assert lines[1].startswith("\rpublishing")


def test_progress_for_picks_by_stream() -> None:
    assert builder.progress_for(io.StringIO(), quiet=True) is None
    assert isinstance(builder.progress_for(io.StringIO()), builder.LineProgress)


# -- the command line -----------------------------------------------------------------------------------


def test_main_prints_paths_and_fingerprint(
    rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    into = tmp_path / "images"
    args = [
        str(rootfs),
        "--name",
        "demo",
        "--into",
        str(into),
        "--arch",
        "amd64",
        "--creation-date",
        "@1735786800",
    ]
    assert builder.main(args) == 0
    out, err = capsys.readouterr()
    built = into / "demo" / "v1.0.0"
    fingerprint = (built / "combined.amd64.sha256").read_text().split()[0]
    assert out.splitlines()[0].startswith("published demo v1.0.0 amd64 (")
    assert f"  {built / 'lxd.amd64.tar.xz'}" in out.splitlines()
    assert out.splitlines()[-1] == f"fingerprint {fingerprint}"
    assert err.splitlines() == ["packing metadata", "squashing rootfs", "hashing", "publishing"]
    assert parse_meta((built / "lxd.amd64.tar.xz").read_bytes()).creation_date == datetime.fromtimestamp(
        1735786800, UTC
    )

    assert builder.main([*args, "--version", "1.0.0", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("demo v1.0.0 amd64 is already published with identical content\n")
    assert err == ""


def test_quiet_prints_nothing_on_stderr(
    rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert builder.main([str(rootfs), "--name", "demo", "--into", str(tmp_path / "i"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "fingerprint " in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "bad name"], "bad image name"),
        (["--version", "1.0"], "bad version"),
        (["--arch", "x86-64"], "unknown architecture"),
        (["--expiry-days", "0"], "it must be 1 to 36500"),
        (["--expiry-days", "36501"], "it must be 1 to 36500"),
        (["--creation-date", "1969-12-31T23:59:59Z"], "outside 1970-01-01..2106-02-07"),
        (["--into", "/dev/null/x"], "Not a directory"),
    ],
)
def test_errors_exit_1_with_one_message(
    rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = [str(rootfs), "--name", "demo", "--into", str(tmp_path / "images"), *extra]
    assert builder.main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("webspaces images build: ") and message in err
    assert not (tmp_path / "images").exists()


def test_missing_rootfs_and_existing_version_exit_1(
    rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    into = str(tmp_path / "images")
    assert builder.main([str(tmp_path / "nope"), "--name", "demo", "--into", into, "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err
    args = [str(rootfs), "--name", "demo", "--into", into, "--version", "1.0.0", "--quiet"]
    assert builder.main([*args, "--creation-date", "@0"]) == 0
    assert builder.main([*args, "--creation-date", "@1"]) == 1
    assert "already published with different content" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["ROOT", "--into", "X"],  # no --name
        ["ROOT", "--name", "demo"],  # no --into
        ["ROOT", "--name", "demo", "--into", "X", "--compression", "bzip2"],
        ["ROOT", "--name", "demo", "--into", "X", "--expiry-days", "soon"],
        ["ROOT", "--name", "demo", "--into", "X", "--creation-date", "last tuesday"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        builder.main([str(tmp_path / a) if a in ("ROOT", "X") else a for a in args])
    assert exit_info.value.code == 2
    assert "usage: webspaces images build" in capsys.readouterr().err
    assert not (tmp_path / "X").exists()


# -- the busybox test image (scripts/build-test-image.sh) -------------------------------------------------


def busybox_from_package() -> bool:
    """The script would otherwise fetch the .deb from the network, which the unit tests never do."""
    if shutil.which("dpkg") is None:
        return False
    owner = subprocess.run(["dpkg", "-S", "/bin/busybox"], capture_output=True, text=True, check=False)
    return owner.stdout.startswith("busybox-static:")


@pytest.fixture
def busybox_images(tmp_path: Path) -> Iterator[Path]:
    require(busybox_from_package(), "busybox-static is not installed")
    yield tmp_path / "images"


def run_script(outdir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PY": sys.executable}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "build-test-image.sh"), str(outdir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_busybox_image_is_reproducible_and_idempotent(busybox_images: Path, tmp_path: Path) -> None:
    first = run_script(busybox_images)
    assert first.returncode == 0, first.stderr
    versions = list((busybox_images / "busybox").iterdir())
    assert len(versions) == 1
    directory = versions[0]
    again = run_script(busybox_images)
    assert again.returncode == 0, again.stderr
    assert "already published with identical content" in again.stdout
    elsewhere = run_script(tmp_path / "elsewhere")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert tree(busybox_images) == tree(tmp_path / "elsewhere")

    meta = parse_meta(next(directory.glob("lxd.*.tar.xz")).read_bytes())
    assert meta.properties["os"] == "busybox"
    assert meta.properties["release"] == "1.35"
    assert meta.properties["description"] == "busybox test image"
    assert set(meta.templates) == {"etc-hostname.tpl", "etc-hosts.tpl"}
    fingerprint = first.stdout.splitlines()[-1].removeprefix("fingerprint ")
    assert next(directory.glob("combined.*.sha256")).read_text() == f"{fingerprint}  -\n"

    require(shutil.which("unsquashfs") is not None, "unsquashfs (squashfs-tools) is not installed")
    squashfs = next(directory.glob("rootfs.*.squashfs"))
    listing = subprocess.run(
        ["unsquashfs", "-lln", str(squashfs)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[-3] if " -> " in line else line.split()[-1]: line for line in listing.splitlines()}
    for path in ("bin/busybox", "etc/inittab", "etc/init.d/rcS", "usr/share/udhcpc/default.script"):
        assert f"squashfs-root/{path}" in paths
    assert paths["squashfs-root/sbin/init"].endswith("-> /bin/busybox")
    assert paths["squashfs-root/sbin/udhcpc"].endswith("-> /bin/busybox")
    assert paths["squashfs-root/etc/init.d/rcS"].startswith("-rwxr-xr-x 0/0")
    assert paths["squashfs-root/tmp"].startswith("drwxrwxrwt 0/0")

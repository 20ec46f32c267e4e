"""simplestreams.resolve over real files: complete builds, every skip reason, and the cache that makes a
second resolve read and hash nothing (spec/simplestreams.md §3.3, §3.4, §4 items 4, 7, 13, §9 14-16).

No pytest-asyncio: each test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
from collections.abc import Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simplestreams import model, resolve
from simplestreams.directory import LocalReader, scan
from simplestreams.hashcache import HashCache
from simplestreams.resolve import resolve_release
from simplestreams.synthetic import (
    CREATED,
    fake_squashfs_bytes,
    sha256_file,
    write_combined,
    write_fake_squashfs,
    write_meta,
    write_release,
    write_sidecar,
)

T = TypeVar("T")
Result = tuple[list[model.ArchBuild], list[model.Skip]]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(autouse=True)
def _fresh_log_memory() -> Iterator[None]:
    """Each test sees first-time skip logging (resolve logs a repeated skip at debug level)."""
    resolve._logged.clear()
    yield
    resolve._logged.clear()


class PlainReader:
    """A model.AssetReader over local files that records every call (no sha256_pair capability)."""

    def __init__(self) -> None:
        self.inner = LocalReader()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def read(self, asset: model.Asset, limit: int) -> bytes:
        self.calls.append(("read", (asset.name,)))
        return await self.inner.read(asset, limit)

    async def head(self, asset: model.Asset, length: int) -> bytes:
        self.calls.append(("head", (asset.name,)))
        return await self.inner.head(asset, length)

    async def sha256(self, assets: Sequence[model.Asset]) -> str:
        self.calls.append(("sha256", tuple(asset.name for asset in assets)))
        return await self.inner.sha256(assets)


class PairReader(PlainReader):
    """PlainReader plus resolve.PairHasher (what LocalReader and the GitHub reader offer)."""

    async def sha256_pair(self, first: model.Asset, second: model.Asset) -> tuple[str, str]:
        self.calls.append(("sha256_pair", (first.name, second.name)))
        return await self.inner.sha256_pair(first, second)


def only_release(root: Path) -> model.Release:
    releases = scan(root)
    assert len(releases) == 1
    return releases[0]


def resolve_one(
    release: model.Release,
    reader: PlainReader | None = None,
    cache: HashCache | None = None,
    **options: bool,
) -> Result:
    return run(
        resolve_release(
            release,
            reader if reader is not None else PairReader(),
            cache if cache is not None else HashCache(),
            **options,
        )
    )


def reasons(skips: list[model.Skip]) -> list[tuple[str, str]]:
    return [(skip.subject, skip.reason) for skip in skips]


def replace_asset(release: model.Release, name: str, **changes: Any) -> model.Release:
    assets = tuple(dataclasses.replace(a, **changes) if a.name == name else a for a in release.assets)
    return dataclasses.replace(release, assets=assets)


# -- complete builds ---------------------------------------------------------------------------------


def test_complete_release_with_real_squashfs_and_sidecars(tmp_path: Path) -> None:
    files = write_release(
        tmp_path, "busybox", "1.35.0-1", ("amd64", "arm64"), squashfs="real", sidecars=True, combined=True
    )
    builds, skips = resolve_one(only_release(tmp_path))
    assert skips == []
    assert [build.arch for build in builds] == ["amd64", "arm64"]
    for build in builds:
        meta, rootfs = files.meta[build.arch], files.rootfs[build.arch]
        assert (build.name, build.version, build.created, build.prerelease) == (
            "busybox",
            "1.35.0-1",
            CREATED,
            False,
        )
        assert build.metadata.architecture == {"amd64": "x86_64", "arm64": "aarch64"}[build.arch]
        assert build.meta == model.FileRef("lxd.tar.xz", meta.stat().st_size, sha256_file(meta), str(meta))
        ((ref, combined),) = build.rootfs
        assert ref == model.FileRef("squashfs", rootfs.stat().st_size, sha256_file(rootfs), str(rootfs))
        assert combined == sha256_file(meta, rootfs)


def test_hashes_are_computed_when_there_are_no_sidecars(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    reader = PairReader()
    (build,), skips = resolve_one(only_release(tmp_path), reader)
    assert skips == []
    ((ref, combined),) = build.rootfs
    assert ref.sha256 == sha256_file(files.rootfs["amd64"])
    assert combined == sha256_file(files.meta["amd64"], files.rootfs["amd64"])
    # The rootfs is streamed once, for both its own hash and the combined one.
    assert [call for call in reader.calls if call[0].startswith("sha256")] == [
        ("sha256_pair", ("lxd.amd64.tar.xz", "rootfs.amd64.squashfs"))
    ]


def test_plain_reader_streams_the_combined_and_trusts_the_rootfs_sidecar(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",), sidecars=True)
    reader = PlainReader()
    (build,), _ = resolve_one(only_release(tmp_path), reader)
    assert build.rootfs[0][0].sha256 == sha256_file(files.rootfs["amd64"])
    assert [call for call in reader.calls if call[0] == "sha256"] == [
        ("sha256", ("lxd.amd64.tar.xz", "rootfs.amd64.squashfs"))
    ]


def test_plain_reader_hashes_the_rootfs_alone_without_a_sidecar(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    reader = PlainReader()
    (build,), _ = resolve_one(only_release(tmp_path), reader)
    assert build.rootfs[0][0].sha256 == sha256_file(files.rootfs["amd64"])
    assert sorted(call for call in reader.calls if call[0] == "sha256") == [
        ("sha256", ("lxd.amd64.tar.xz", "rootfs.amd64.squashfs")),
        ("sha256", ("rootfs.amd64.squashfs",)),
    ]


def test_every_rootfs_type_in_preference_order(tmp_path: Path) -> None:
    files = write_release(tmp_path, "vm", "2.0.0", ("amd64",))
    directory = files.directory
    meta = files.meta["amd64"]
    tarball = directory / "rootfs.amd64.tar.xz"
    tarball.write_bytes(b"\xfd7zXZ\x00 not really but nobody unpacks it here")
    disk = directory / "disk-kvm.amd64.img"
    disk.write_bytes(b"QFI\xfb" + bytes(1000))
    write_combined(directory, "amd64", meta, tarball, ftype="root.tar.xz")
    write_combined(directory, "amd64", meta, disk, ftype="disk-kvm.img")
    write_sidecar(disk)
    (build,), skips = resolve_one(only_release(tmp_path))
    assert skips == []
    assert [(ref.ftype, ref.sha256, combined) for ref, combined in build.rootfs] == [
        ("squashfs", sha256_file(files.rootfs["amd64"]), sha256_file(meta, files.rootfs["amd64"])),
        ("root.tar.xz", sha256_file(tarball), sha256_file(meta, tarball)),
        ("disk-kvm.img", sha256_file(disk), sha256_file(meta, disk)),
    ]


def test_names_in_other_forms_are_ignored(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    for name in (
        "README.md",
        "lxd.amd64.tar.gz",
        "rootfs.squashfs",
        "combined.amd64.squashfs.sha256",
        "x.sha256",
    ):
        (files.directory / name).write_text("ignored\n")
    builds, skips = resolve_one(only_release(tmp_path))
    assert len(builds) == 1 and skips == []


def test_uppercase_sidecar_is_accepted_and_lowercased(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    rootfs = files.rootfs["amd64"]
    write_sidecar(rootfs, text=sha256_file(rootfs).upper())  # no name, no newline
    write_combined(
        files.directory,
        "amd64",
        files.meta["amd64"],
        rootfs,
        digest=sha256_file(files.meta["amd64"], rootfs).upper(),
    )
    (build,), skips = resolve_one(only_release(tmp_path))
    assert skips == [] and build.rootfs[0][0].sha256 == sha256_file(rootfs)


def test_creation_date_falls_back_to_the_release_time(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",), creation_date=None)
    release = only_release(tmp_path)
    published = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    (build,), _ = resolve_one(dataclasses.replace(release, published=published))
    assert build.created == published and build.metadata.creation_date is None


def test_arch_aliases_match_between_names_and_metadata(tmp_path: Path) -> None:
    directory = tmp_path / "busybox" / "v1.0.0"
    directory.mkdir(parents=True)
    write_meta(directory / "lxd.x86_64.tar.xz", "amd64")
    write_fake_squashfs(directory / "rootfs.x86_64.squashfs")
    (build,), skips = resolve_one(only_release(tmp_path))
    assert skips == [] and build.arch == "x86_64"


def test_result_does_not_depend_on_asset_order(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64", "riscv64"), sidecars=True, combined=True)
    (tmp_path / "busybox" / "v1.0.0" / "lxd.x86-64.tar.xz").write_bytes(b"")
    release = only_release(tmp_path)
    cache = HashCache()
    expected = resolve_one(release, cache=cache)
    shuffled = list(release.assets)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert resolve_one(dataclasses.replace(release, assets=tuple(shuffled)), cache=cache) == expected


# -- the cache ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader_type", [PairReader, PlainReader])
def test_second_resolve_reads_and_hashes_nothing(tmp_path: Path, reader_type: type[PlainReader]) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64"), sidecars=True, combined=True)
    write_release(tmp_path, "busybox", "1.1.0", ("amd64",))
    (tmp_path / "busybox" / "v1.1.0" / "lxd.arm64.tar.xz").write_bytes(b"broken")  # a cached failure
    (tmp_path / "busybox" / "v1.1.0" / "rootfs.arm64.squashfs").write_bytes(fake_squashfs_bytes())
    cache = HashCache()
    first = [resolve_one(release, reader_type(), cache) for release in scan(tmp_path)]
    assert [len(builds) for builds, _ in first] == [2, 1]
    again = reader_type()
    second = [resolve_one(release, again, cache) for release in scan(tmp_path)]
    assert second == first
    assert again.calls == []


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    write_release(tmp_path / "images", "busybox", "1.0.0", ("amd64",), sidecars=True, combined=True)
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    release = only_release(tmp_path / "images")
    expected = resolve_one(release, PairReader(), cache)
    cache.save()
    reader = PairReader()
    assert resolve_one(release, reader, HashCache(path)) == expected
    assert reader.calls == []


def test_a_new_identity_is_resolved_again(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    cache = HashCache()
    resolve_one(only_release(tmp_path), PairReader(), cache)
    write_fake_squashfs(files.rootfs["amd64"], 8192, seed=b"rebuilt")
    reader = PairReader()
    (build,), _ = resolve_one(only_release(tmp_path), reader, cache)
    assert build.rootfs[0][0].sha256 == sha256_file(files.rootfs["amd64"])
    assert ("sha256_pair", ("lxd.amd64.tar.xz", "rootfs.amd64.squashfs")) in reader.calls
    assert not any(call[0] == "read" for call in reader.calls)  # the meta tarball is unchanged


def test_malformed_cache_entries_are_recomputed(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",), sidecars=True)
    cache = HashCache()
    release = only_release(tmp_path)
    expected = resolve_one(release, PairReader(), cache)
    for key in list(cache._entries):
        cache._entries[key] = {"sha256": "not hex", "metadata": 5, "bytes_used": "x"}
    assert resolve_one(release, PairReader(), cache) == expected


# -- skips -------------------------------------------------------------------------------------------


def test_draft_is_skipped(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    builds, skips = resolve_one(dataclasses.replace(only_release(tmp_path), draft=True))
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0", "draft")]


def test_bad_tag_is_one_skip_for_the_release(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_release(tmp_path, "wordpress", "5.7-1", ("amd64", "arm64"))
    with caplog.at_level(logging.INFO, "simplestreams.resolve"):
        builds, skips = resolve_one(only_release(tmp_path))
    assert builds == [] and reasons(skips) == [("tag wordpress/v5.7-1", "bad-tag")]
    assert len(caplog.records) == 1 and "tag wordpress/v5.7-1" in caplog.records[0].getMessage()


def test_prereleases_follow_the_flag(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    release = dataclasses.replace(only_release(tmp_path), prerelease=True)
    (build,), _ = resolve_one(release)
    assert build.prerelease
    builds, skips = resolve_one(release, include_prereleases=False)
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0", "prerelease")]


def test_each_architecture_is_skipped_on_its_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    directory = files.directory
    write_meta(directory / "lxd.x86-64.tar.xz", "x86_64")  # not an LXD architecture name
    write_fake_squashfs(directory / "rootfs.x86-64.squashfs")
    write_fake_squashfs(directory / "rootfs.arm64.squashfs")  # no meta
    write_meta(directory / "lxd.riscv64.tar.xz", "riscv64")  # no rootfs
    write_meta(directory / "lxd.s390x.tar.xz", "x86_64")  # metadata says another architecture
    write_fake_squashfs(directory / "rootfs.s390x.squashfs")
    with caplog.at_level(logging.INFO, "simplestreams.resolve"):
        builds, skips = resolve_one(only_release(tmp_path))
    assert [build.arch for build in builds] == ["amd64"]
    assert reasons(skips) == [
        ("busybox/v1.0.0 arm64", "missing-meta"),
        ("busybox/v1.0.0 riscv64", "missing-rootfs"),
        ("busybox/v1.0.0 s390x", "arch-mismatch"),
        ("busybox/v1.0.0 x86-64", "unknown-arch"),
    ]
    assert len(caplog.records) == 4 and all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_repeated_skip_is_logged_at_debug_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_release(tmp_path, "wordpress", "5.7", ("amd64",))
    with caplog.at_level(logging.DEBUG, "simplestreams.resolve"):
        resolve_one(only_release(tmp_path))
        resolve_one(only_release(tmp_path))
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.DEBUG]


@pytest.mark.parametrize(
    "text",
    ["", "nothex\n", "a" * 63 + "\n", "a" * 65 + "\n", "a" * 64 + "g  rootfs\n", "sha256:" + "a" * 64 + "\n"],
    ids=["empty", "words", "63-hex", "65-hex", "trailing-junk", "prefixed"],
)
def test_bad_sidecar(tmp_path: Path, text: str) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    write_sidecar(files.rootfs["amd64"], text=text)
    builds, skips = resolve_one(only_release(tmp_path))
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "bad-sidecar")]


def test_oversized_sidecar(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    write_sidecar(
        files.rootfs["amd64"], text=sha256_file(files.rootfs["amd64"]) + " " * resolve.SIDECAR_LIMIT
    )
    _, skips = resolve_one(only_release(tmp_path))
    assert reasons(skips) == [("busybox/v1.0.0 amd64", "bad-sidecar")]


@pytest.mark.parametrize("which", ["rootfs", "combined", "meta"])
def test_sidecar_that_disagrees_with_the_bytes(tmp_path: Path, which: str) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64"), sidecars=True, combined=True)
    wrong = "0" * 64
    if which == "rootfs":
        write_sidecar(files.rootfs["arm64"], wrong)
    elif which == "combined":
        write_combined(files.directory, "arm64", files.meta["arm64"], files.rootfs["arm64"], digest=wrong)
    else:
        write_sidecar(files.meta["arm64"], wrong)
    builds, skips = resolve_one(only_release(tmp_path))
    assert [build.arch for build in builds] == ["amd64"]
    assert reasons(skips) == [("busybox/v1.0.0 arm64", "hash-mismatch")]


def test_combined_sidecar_is_verified_with_a_plain_reader_too(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",), sidecars=True)
    write_combined(files.directory, "amd64", files.meta["amd64"], files.rootfs["amd64"], digest="1" * 64)
    _, skips = resolve_one(only_release(tmp_path), PlainReader())
    assert reasons(skips) == [("busybox/v1.0.0 amd64", "hash-mismatch")]


def test_digest_is_used_and_checked(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",), sidecars=True)
    release = only_release(tmp_path)
    rootfs_sha = sha256_file(files.rootfs["amd64"])
    with_digest = replace_asset(release, "rootfs.amd64.squashfs", sha256=rootfs_sha)
    (build,), _ = resolve_one(with_digest, PlainReader())
    assert build.rootfs[0][0].sha256 == rootfs_sha
    # A digest that disagrees with the sidecar, the file, or (for the meta) the bytes read.
    for name, digest in (
        ("rootfs.amd64.squashfs", "2" * 64),
        ("lxd.amd64.tar.xz", "3" * 64),
    ):
        builds, skips = resolve_one(replace_asset(release, name, sha256=digest))
        assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "hash-mismatch")], name
    (files.directory / "rootfs.amd64.squashfs.sha256").unlink()
    builds, skips = resolve_one(
        replace_asset(only_release(tmp_path), "rootfs.amd64.squashfs", sha256="4" * 64)
    )
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "hash-mismatch")]


@pytest.mark.parametrize(
    "content",
    [
        fake_squashfs_bytes(4096, bytes_used=4097),
        fake_squashfs_bytes(4096)[:95],
        b"sqsh" + fake_squashfs_bytes(4096)[4:],
    ],
    ids=["bytes-used-beyond-end", "shorter-than-superblock", "wrong-magic"],
)
def test_truncated_squashfs(tmp_path: Path, content: bytes) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    files.rootfs["amd64"].write_bytes(content)
    builds, skips = resolve_one(only_release(tmp_path))
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "truncated")]


def test_truncated_real_squashfs(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",), squashfs="real")
    rootfs = files.rootfs["amd64"]
    rootfs.write_bytes(rootfs.read_bytes()[:200])
    _, skips = resolve_one(only_release(tmp_path))
    assert reasons(skips) == [("busybox/v1.0.0 amd64", "truncated")]


def test_bad_metadata_is_parsed_once(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    files.meta["amd64"].write_bytes(b"\xfd7zXZ\x00 truncated")
    cache = HashCache()
    for expected_reads in (1, 0):
        reader = PairReader()
        builds, skips = resolve_one(only_release(tmp_path), reader, cache)
        assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "bad-metadata")]
        assert sum(call[0] == "read" for call in reader.calls) == expected_reads


def test_no_creation_date_and_no_release_time(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",), creation_date=None)
    release = dataclasses.replace(only_release(tmp_path), published=None)
    builds, skips = resolve_one(release)
    assert builds == [] and reasons(skips) == [("busybox/v1.0.0 amd64", "bad-metadata")]


def test_oversized_meta_is_not_read(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0", ("amd64",))
    release = replace_asset(only_release(tmp_path), "lxd.amd64.tar.xz", size=resolve.META_LIMIT + 1)
    reader = PairReader()
    _, skips = resolve_one(release, reader)
    assert reasons(skips) == [("busybox/v1.0.0 amd64", "bad-metadata")]
    assert reader.calls == []


def test_files_that_vanish_or_change_after_the_scan(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64"))
    release = only_release(tmp_path)
    os.unlink(files.rootfs["amd64"])
    with open(files.meta["arm64"], "ab") as handle:
        handle.write(b"appended")
    builds, skips = resolve_one(release)
    assert builds == []
    assert reasons(skips) == [("busybox/v1.0.0 amd64", "unreadable"), ("busybox/v1.0.0 arm64", "changed")]

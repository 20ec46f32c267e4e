"""simplestreams.directory: the scan layout, building on first use, change detection by run(), the
identity rule for cached hashes and persistence of the cache (spec/simplestreams.md §6, §9 item 20).

No pytest-asyncio: each test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simplestreams import model
from simplestreams.catalog import CatalogOptions
from simplestreams.directory import DirectoryBackend, LocalReader, scan
from simplestreams.errors import UpstreamError
from simplestreams.hashcache import HashCache
from simplestreams.synthetic import publish, sha256_file, write_fake_squashfs, write_release

T = TypeVar("T")
INTERVAL = 0.05


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class CountingReader(LocalReader):
    """LocalReader that counts what it reads and hashes."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read(self, asset: model.Asset, limit: int) -> bytes:
        self.calls.append(f"read {asset.name}")
        return await super().read(asset, limit)

    async def head(self, asset: model.Asset, length: int) -> bytes:
        self.calls.append(f"head {asset.name}")
        return await super().head(asset, length)

    async def sha256(self, assets: Sequence[model.Asset]) -> str:
        self.calls.append("sha256 " + " ".join(asset.name for asset in assets))
        return await super().sha256(assets)

    async def sha256_pair(self, first: model.Asset, second: model.Asset) -> tuple[str, str]:
        self.calls.append(f"sha256_pair {first.name} {second.name}")
        return await super().sha256_pair(first, second)


def served(catalog: model.Catalog) -> dict[str, str]:
    """Item path -> sha256 of everything the catalog serves."""
    return {path: ref.sha256 for path, ref in catalog.files.items()}


def versions(catalog: model.Catalog) -> set[str]:
    return {path.rsplit("/", 2)[-2] for path in catalog.files}


# -- scanning ----------------------------------------------------------------------------------------


def test_scan_layout(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0")
    write_release(tmp_path, "tools/v2ray", "1.2.3")  # a name may contain "/" and start with "v"
    write_release(tmp_path, "busybox", "2.0.0", hidden=True)  # an upload in progress
    write_release(tmp_path, ".trash/busybox", "0.1.0")
    (tmp_path / "busybox" / "v1.0.0" / ".rootfs.amd64.squashfs.part").write_bytes(b"partial")
    (tmp_path / "README").write_text("files at the root are not releases\n")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "lxd.amd64.tar.xz").write_bytes(b"misplaced")
    (tmp_path / "empty" / "v1.0.0").mkdir(parents=True)
    releases = scan(tmp_path)
    assert [release.tag for release in releases] == ["busybox/v1.0.0", "loose", "tools/v2ray/v1.2.3"]
    busybox = releases[0]
    assert [asset.name for asset in busybox.assets] == ["lxd.amd64.tar.xz", "rootfs.amd64.squashfs"]
    for asset in busybox.assets:
        info = os.stat(tmp_path / "busybox" / "v1.0.0" / asset.name)
        assert asset.path == str(tmp_path / "busybox" / "v1.0.0" / asset.name)
        assert asset.identity == (asset.path, info.st_size, info.st_mtime_ns, info.st_ino)
        assert (asset.size, asset.sha256, asset.url) == (info.st_size, None, None)


def test_published_is_the_oldest_meta_mtime(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64"))
    os.utime(files.meta["amd64"], (1_700_000_000, 1_700_000_000))
    os.utime(files.meta["arm64"], (1_600_000_000, 1_600_000_000))
    os.utime(files.rootfs["arm64"], (1_500_000_000, 1_500_000_000))
    (release,) = scan(tmp_path)
    assert release.published == datetime.fromtimestamp(1_600_000_000, UTC)


def test_symlink_loops_end(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0")
    os.symlink(tmp_path, tmp_path / "busybox" / "loop")
    assert [release.tag for release in scan(tmp_path)] == ["busybox/v1.0.0"]


# -- building ----------------------------------------------------------------------------------------


def test_get_builds_once_for_concurrent_callers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0", ("amd64", "arm64"))
    write_release(tmp_path, "wordpress", "5.7", ("amd64",))
    backend = DirectoryBackend(tmp_path, options=CatalogOptions(), scan_interval=INTERVAL)

    async def scenario() -> list[model.CatalogState]:
        return await asyncio.gather(*(backend.get() for _ in range(5)))

    with caplog.at_level(logging.INFO, "simplestreams.directory"):
        states = run(scenario())
    assert backend.rebuilds == 1
    assert all(state.catalog is states[0].catalog and state.fresh for state in states)
    catalog = states[0].catalog
    assert list(catalog.products) == ["busybox:amd64", "busybox:arm64"]
    ref = catalog.files["images/busybox/arm64/v1.0.0/rootfs.squashfs"]
    assert ref.path == str(files.rootfs["arm64"]) and ref.sha256 == sha256_file(files.rootfs["arm64"])
    assert [(skip.subject, skip.reason) for skip in catalog.skipped] == [("tag wordpress/v5.7", "bad-tag")]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "simplestreams.directory"]
    assert "2 products, 2 versions, 1 skipped, bad-tag=1 in" in line


def test_missing_root_fails_the_first_build(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path / "absent")
    with pytest.raises(UpstreamError, match="cannot read the image directory"):
        run(backend.get())


def test_empty_root_is_an_empty_catalog(tmp_path: Path) -> None:
    state = run(DirectoryBackend(tmp_path).get())
    assert state.fresh and list(state.catalog.products) == [] and state.catalog.files == {}


def test_prerelease_policy_comes_from_the_options(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0")
    # A local release has no prerelease flag; a semver prerelease field never means "unstable".
    write_release(tmp_path, "busybox", "1.1.0-rc.1")
    state = run(DirectoryBackend(tmp_path, options=CatalogOptions(include_prereleases=False)).get())
    assert versions(state.catalog) == {"v1.0.0", "v1.1.0-rc.1"}


# -- change detection --------------------------------------------------------------------------------


def test_run_picks_up_new_hidden_published_and_removed_versions(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0")
    backend = DirectoryBackend(tmp_path, scan_interval=INTERVAL)

    async def current() -> set[str]:
        return versions((await backend.get()).catalog)

    async def scenario() -> None:
        assert await current() == {"v1.0.0"}
        task = asyncio.create_task(backend.run())
        try:
            write_release(tmp_path, "busybox", "1.1.0")
            await until(
                lambda: backend._catalog is not None and "v1.1.0" in versions(backend._catalog), "v1.1.0"
            )
            hidden = write_release(tmp_path, "busybox", "1.2.0", hidden=True)
            rebuilds = backend.rebuilds
            await asyncio.sleep(INTERVAL * 4)
            assert await current() == {"v1.0.0", "v1.1.0"}
            assert backend.rebuilds == rebuilds  # the hidden upload is no change at all
            publish(hidden)
            await until(
                lambda: backend._catalog is not None and "v1.2.0" in versions(backend._catalog), "v1.2.0"
            )
            shutil.rmtree(tmp_path / "busybox" / "v1.0.0")
            await until(
                lambda: backend._catalog is not None and "v1.0.0" not in versions(backend._catalog), "removal"
            )
            assert await current() == {"v1.1.0", "v1.2.0"}
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())


def test_run_builds_when_nothing_was_built_yet(tmp_path: Path) -> None:
    write_release(tmp_path, "busybox", "1.0.0")
    backend = DirectoryBackend(tmp_path, scan_interval=INTERVAL)

    async def scenario() -> None:
        task = asyncio.create_task(backend.run())
        try:
            await until(lambda: backend._catalog is not None, "the first build")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())
    assert backend.rebuilds == 1


def test_run_waits_for_a_missing_root_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "images"
    backend = DirectoryBackend(root, scan_interval=INTERVAL)

    async def scenario() -> None:
        task = asyncio.create_task(backend.run())
        try:
            await asyncio.sleep(INTERVAL * 5)
            assert backend._catalog is None
            write_release(root, "busybox", "1.0.0")
            await until(lambda: backend._catalog is not None, "the build")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.WARNING, "simplestreams.directory"):
        run(scenario())
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [f"cannot scan {root}"]


def test_in_place_rewrite_is_noticed_by_run(tmp_path: Path) -> None:
    files = write_release(tmp_path, "busybox", "1.0.0")
    rootfs = files.rootfs["amd64"]
    backend = DirectoryBackend(tmp_path, scan_interval=INTERVAL)
    path = "images/busybox/amd64/v1.0.0/rootfs.squashfs"

    async def scenario() -> None:
        before = (await backend.get()).catalog.files[path].sha256
        task = asyncio.create_task(backend.run())
        try:
            info = rootfs.stat()
            write_fake_squashfs(rootfs, 4096, seed=b"rewritten in place")  # same size, same inode
            os.utime(rootfs, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
            assert rootfs.stat().st_ino == info.st_ino
            await until(
                lambda: backend._catalog is not None and backend._catalog.files[path].sha256 != before,
                "rehash",
            )
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (await backend.get()).catalog.files[path].sha256 == sha256_file(rootfs)

    run(scenario())


def test_corruption_with_restored_mtime_keeps_the_old_hash(tmp_path: Path) -> None:
    """Documented behaviour: identity is (path, size, mtime_ns, inode), so bytes changed behind an
    unchanged identity keep the hash computed before (LXD then refuses the file with a hash mismatch);
    any ordinary rewrite changes the mtime and is re-verified."""
    files = write_release(tmp_path, "busybox", "1.0.0")
    rootfs = files.rootfs["amd64"]
    backend = DirectoryBackend(tmp_path)
    path = "images/busybox/amd64/v1.0.0/rootfs.squashfs"
    original = sha256_file(rootfs)
    assert run(backend.get()).catalog.files[path].sha256 == original

    info = rootfs.stat()
    with open(rootfs, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff\xff")
    os.utime(rootfs, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert sha256_file(rootfs) != original
    assert run(backend.refresh()).files[path].sha256 == original

    os.utime(rootfs, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert run(backend.refresh()).files[path].sha256 == sha256_file(rootfs) != original


def test_unreadable_root_keeps_the_old_catalog_marked_stale(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_release(root, "busybox", "1.0.0")
    backend = DirectoryBackend(root, scan_interval=INTERVAL)

    async def scenario() -> None:
        catalog = (await backend.get()).catalog
        task = asyncio.create_task(backend.run())
        try:
            root.rename(tmp_path / "moved")
            await until(lambda: backend._problem is not None, "the failed scan")
            state = await backend.get()
            assert (
                state.catalog is catalog
                and not state.fresh
                and state.problem
                and "cannot scan" in state.problem
            )
            with pytest.raises(UpstreamError):
                await backend.refresh()
            (tmp_path / "moved").rename(root)
            await until(lambda: backend._problem is None, "recovery")
            assert (await backend.get()).fresh
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())


# -- the cache ---------------------------------------------------------------------------------------


def test_cache_persists_across_backend_instances(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_release(root, "busybox", "1.0.0", ("amd64", "arm64"), squashfs="real", sidecars=True, combined=True)
    write_release(root, "busybox", "1.1.0", ("amd64",))
    cache_file = tmp_path / "cache.json"
    first = DirectoryBackend(root, cache=HashCache(cache_file))
    first.reader = CountingReader()
    catalog = run(first.get()).catalog
    assert first.reader.calls
    assert json.loads(cache_file.read_bytes())["entries"]

    second = DirectoryBackend(root, cache=HashCache(cache_file))
    second.reader = reader = CountingReader()
    again = run(second.get()).catalog
    assert reader.calls == []
    assert served(again) == served(catalog) and again.images_json == catalog.images_json
    assert second.cache.misses == 0


def test_cache_drops_entries_of_removed_files(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_release(root, "busybox", "1.0.0")
    write_release(root, "busybox", "1.1.0")
    cache = HashCache(tmp_path / "cache.json")
    backend = DirectoryBackend(root, cache=cache)
    run(backend.get())
    full = len(cache)
    shutil.rmtree(root / "busybox" / "v1.0.0")
    run(backend.refresh())
    assert 0 < len(cache) < full
    assert len(HashCache(tmp_path / "cache.json")) == len(cache)

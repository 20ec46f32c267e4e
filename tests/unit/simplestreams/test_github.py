"""The GitHub releases backend against a replay of GitHub's REST API over real sockets
(spec/simplestreams.md §3-§6, §9 items 9, 12-15, 18).

Every test starts :mod:`tests.github_replay` on 127.0.0.1 (a port the OS picks) and points a
:class:`~simplestreams.github.GitHubBackend` at it; the assets are real meta tarballs and squashfs
images from :mod:`simplestreams.synthetic`. No pytest-asyncio: each test drives its own event loop
with :func:`run`, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import pathlib
import socket
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn.server
import uvloop

from simplestreams import errors, model
from simplestreams.arch import kernel_arch
from simplestreams.catalog import CatalogOptions
from simplestreams.github import GitHubBackend, next_link, valid_repository
from simplestreams.hashcache import HashCache
from simplestreams.listener import FastCache, Listener, bind, protocol_factory
from simplestreams.server import DirectoryMount, create_app
from simplestreams.synthetic import CREATED, fake_squashfs_bytes, meta_bytes, write_squashfs
from tests.github_replay import GitHubReplay, releases_of, serve

T = TypeVar("T")

OWNER, REPO = "netsoc", "webspace-images"
TOKEN = "ghp_" + "Zq8TopSecretValue" * 2


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_assets(
    arch: str = "amd64",
    *,
    seed: str = "",
    rootfs: bytes | pathlib.Path | None = None,
    sidecar: bool = False,
    combined: bool = True,
    combined_digest: str | None = None,
    creation_date: datetime = CREATED,
) -> dict[str, bytes | pathlib.Path]:
    """One architecture's assets as a publisher uploads them (spec §3.3 names)."""
    meta = meta_bytes(kernel_arch(arch), creation_date=creation_date)
    if rootfs is None:
        rootfs = fake_squashfs_bytes(4096, seed=f"{seed}/{arch}".encode())
    rootfs_bytes = rootfs if isinstance(rootfs, bytes) else rootfs.read_bytes()
    assets: dict[str, bytes | pathlib.Path] = {f"lxd.{arch}.tar.xz": meta, f"rootfs.{arch}.squashfs": rootfs}
    if sidecar:
        assets[f"rootfs.{arch}.squashfs.sha256"] = f"{sha(rootfs_bytes)}  rootfs.{arch}.squashfs\n".encode()
    if combined:
        digest = combined_digest or sha(meta + rootfs_bytes)
        assets[f"combined.{arch}.sha256"] = f"{digest}  -\n".encode()
    return assets


def run(scenario: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """Run ``scenario`` on asyncio's loop or on uvloop (what the service runs), within 60 s."""

    async def bounded() -> T:
        async with asyncio.timeout(60):
            return await scenario

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our loopback requests must reach the replay, not a proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def github() -> Iterator[tuple[GitHubReplay, str]]:
    replay = GitHubReplay(token=TOKEN)
    with serve(replay) as origin:
        yield replay, origin


@contextlib.asynccontextmanager
async def backend_at(origin: str, **options: Any) -> AsyncIterator[GitHubBackend]:
    options.setdefault("token", TOKEN)
    backend = GitHubBackend(api_base=origin, timeout=10.0, **options)
    try:
        yield backend
    finally:
        await backend.aclose()


def products(catalog: model.Catalog) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(catalog.images_json)["products"]
    return document


def skipped(catalog: model.Catalog) -> dict[str, str]:
    return {skip.subject: skip.reason for skip in catalog.skipped}


def list_requests(replay: GitHubReplay) -> list[Any]:
    return [r for r in replay.recorded(api=True) if r.path.endswith("/releases")]


# -- listing ------------------------------------------------------------------------------------


def test_pagination_follows_link_over_three_pages(github: tuple[GitHubReplay, str]) -> None:
    """250 releases: three pages of per_page=100, pages 2 and 3 taken from the Link header (GitHub's
    /repositories/<id>/ form, so computed page URLs would not match the log), none missed."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))  # oldest: last page
    for number in range(248):
        replay.add_release(OWNER, REPO, f"fill{number:03d}/v1.0.0", {"lxd.amd64.tar.xz": b"meta only"})
    replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2"))  # newest: first page

    async def scenario() -> model.CatalogState:
        async with backend_at(origin) as backend:
            return await backend.source(OWNER, REPO).get()

    state = run(scenario())
    lists = list_requests(replay)
    assert [r.status for r in lists] == [200, 200, 200]
    assert lists[0].path == f"/repos/{OWNER}/{REPO}/releases"
    assert lists[0].query == "per_page=100"
    assert [r.path.split("/")[1] for r in lists[1:]] == ["repositories", "repositories"]
    assert [r.query for r in lists[1:]] == ["per_page=100&page=2", "per_page=100&page=3"]
    assert state.fresh
    versions = products(state.catalog)["busybox:amd64"]["versions"]
    assert sorted(versions) == ["20210828_1504_v1.0.0", "20210828_1504_v2.0.0"]
    reasons = skipped(state.catalog)
    fillers = {subject: reason for subject, reason in reasons.items() if subject.startswith("fill")}
    assert len(fillers) == 248
    assert set(fillers.values()) == {"missing-rootfs"}
    assert not any("fill" in r.path for r in replay.recorded(download=True))  # incomplete: nothing read


def test_etag_304_keeps_catalog_and_downloads_nothing(github: tuple[GitHubReplay, str]) -> None:
    """A second refresh sends If-None-Match per page, gets 304s (free with a token), and neither
    downloads nor rebuilds; a new release changes page 1 and only its own assets are fetched."""
    replay, origin = github
    for number in range(150):  # two pages
        replay.add_release(OWNER, REPO, f"fill{number:03d}/v1.0.0", {"notes.txt": b"x"})
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))
    cache = HashCache()

    async def scenario() -> None:
        async with backend_at(origin, cache=cache) as backend:
            source = backend.source(OWNER, REPO)
            first = await source.get()
            etags = {r.query: None for r in list_requests(replay)}
            assert len(etags) == 2
            misses = cache.misses
            replay.clear_log()

            # Our downloads moved download_count on page 1: a new ETag, but the same releases.
            assert (await source.refresh()).catalog is first.catalog
            assert replay.recorded(download=True) == []
            replay.clear_log()
            remaining = replay.remaining

            second = await source.refresh()
            lists = list_requests(replay)
            assert [r.status for r in lists] == [304, 304]
            assert all(r.headers["if-none-match"].startswith('W/"') for r in lists)
            assert replay.recorded(download=True) == [] and replay.recorded(cdn=True) == []
            assert second.catalog is first.catalog and second.fresh
            assert cache.misses == misses
            assert replay.remaining == remaining  # 304s to a token do not count

            replay.add_release(OWNER, REPO, "busybox/v1.1.0", image_assets(seed="2"))
            replay.clear_log()
            third = await source.refresh()
            statuses = [r.status for r in list_requests(replay)]
            assert statuses[0] == 200  # page 1 changed (and the release pushed one onto page 2)
            downloads = {r.path for r in replay.recorded(download=True)}
            assert downloads and all("/busybox/v1.1.0/" in path for path in downloads)
            assert f"/{OWNER}/{REPO}/releases/download/busybox/v1.1.0/lxd.amd64.tar.xz" in downloads
            versions = products(third.catalog)["busybox:amd64"]["versions"]
            assert sorted(versions) == ["20210828_1504_v1.0.0", "20210828_1504_v1.1.0"]

    run(scenario())


def test_replaced_asset_is_read_again(github: tuple[GitHubReplay, str]) -> None:
    """Replacing an asset gives it a new (id, updated_at, digest) identity: its meta is downloaded
    once more (once: the combined hash reuses the bytes), the fingerprint is recomputed, and the
    untouched architecture reads nothing."""
    replay, origin = github
    assets = image_assets("amd64") | image_assets("arm64")
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets)
    new_meta = meta_bytes("x86_64", creation_date=CREATED + timedelta(hours=1))
    rootfs = assets["rootfs.amd64.squashfs"]
    assert isinstance(rootfs, bytes)
    new_combined = f"{sha(new_meta + rootfs)}  -\n".encode()

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            await source.get()
            replay.replace_asset(OWNER, REPO, "busybox/v1.0.0", "lxd.amd64.tar.xz", new_meta)
            replay.replace_asset(OWNER, REPO, "busybox/v1.0.0", "combined.amd64.sha256", new_combined)
            replay.clear_log()
            return (await source.refresh()).catalog

    catalog = run(scenario())
    fetched = sorted(r.path.rsplit("/", 1)[1] for r in replay.recorded(download=True))
    assert fetched == ["combined.amd64.sha256", "lxd.amd64.tar.xz", "rootfs.amd64.squashfs"]
    amd64 = products(catalog)["busybox:amd64"]["versions"]
    assert list(amd64) == ["20210828_1604_v1.0.0"]
    meta_item = amd64["20210828_1604_v1.0.0"]["items"]["lxd.tar.xz"]
    assert meta_item["sha256"] == sha(new_meta)
    assert meta_item["combined_squashfs_sha256"] == sha(new_meta + rootfs)
    assert "busybox:arm64" in products(catalog)


# -- hashes: digest and sidecars -------------------------------------------------------------------


def test_digest_is_used_as_the_item_sha256(github: tuple[GitHubReplay, str], tmp_path: pathlib.Path) -> None:
    """With GitHub's digest a rootfs needs no sidecar; a real squashfs file, streamed once for the
    combined fingerprint, which equals sha256(meta ‖ rootfs) as LXD computes it."""
    replay, origin = github
    rootfs = write_squashfs(tmp_path / "rootfs.squashfs")
    assets = image_assets(rootfs=rootfs, combined=False)
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets)

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    items = products(catalog)["busybox:amd64"]["versions"]["20210828_1504_v1.0.0"]["items"]
    meta = assets["lxd.amd64.tar.xz"]
    assert isinstance(meta, bytes)
    assert items["rootfs.squashfs"]["sha256"] == sha(rootfs.read_bytes())
    assert items["rootfs.squashfs"]["size"] == rootfs.stat().st_size
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"] == sha(meta + rootfs.read_bytes())
    rootfs_reads = [r for r in replay.recorded(download=True) if r.path.endswith(".squashfs")]
    assert len(rootfs_reads) == 2  # the superblock check (a Range request) and one full stream
    cdn_ranges = [r.headers.get("range") for r in replay.recorded(cdn=True)]
    assert "bytes=0-95" in cdn_ranges


def test_digest_that_disagrees_with_the_bytes_is_a_hash_mismatch(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets("amd64") | image_assets("arm64"))
    replay.set_digest(OWNER, REPO, "busybox/v1.0.0", "rootfs.arm64.squashfs", "sha256:" + "ab" * 32)

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    assert list(products(catalog)) == ["busybox:amd64"]
    assert skipped(catalog) == {"busybox/v1.0.0 arm64": "hash-mismatch"}


def test_null_digest_uses_the_sidecar(github: tuple[GitHubReplay, str]) -> None:
    """Uploads from before June 2025 have ``digest: null``: the sidecar gives the rootfs sha256 and
    is checked against the streamed bytes; a sidecar that lies skips that architecture alone."""
    replay, origin = github
    assets = image_assets("amd64", sidecar=True) | image_assets("arm64", sidecar=True)
    assets["rootfs.arm64.squashfs.sha256"] = f"{'0' * 64}  rootfs.arm64.squashfs\n".encode()
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets, digests=False)

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    rootfs = assets["rootfs.amd64.squashfs"]
    assert isinstance(rootfs, bytes)
    items = products(catalog)["busybox:amd64"]["versions"]["20210828_1504_v1.0.0"]["items"]
    assert items["rootfs.squashfs"]["sha256"] == sha(rootfs)
    fetched = {r.path.rsplit("/", 1)[1] for r in replay.recorded(download=True)}
    assert "rootfs.amd64.squashfs.sha256" in fetched
    assert skipped(catalog) == {"busybox/v1.0.0 arm64": "hash-mismatch"}


def test_lying_combined_sidecar_skips_that_arch(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    assets = image_assets("amd64", combined_digest="c" * 64) | image_assets("arm64")
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets)

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    assert list(products(catalog)) == ["busybox:arm64"]
    assert skipped(catalog) == {"busybox/v1.0.0 amd64": "hash-mismatch"}
    detail = next(s.detail for s in catalog.skipped)
    assert "c" * 64 in detail


# -- what is left out -------------------------------------------------------------------------------


def test_incomplete_arch_is_skipped_alone_and_deterministically(github: tuple[GitHubReplay, str]) -> None:
    """arm64 lacks its rootfs: amd64 is still published (OctoLXD dropped the whole release, §4 item 4),
    and the documents do not depend on the order GitHub lists assets in."""
    replay, origin = github
    complete = image_assets("amd64")
    incomplete = {"lxd.arm64.tar.xz": meta_bytes("aarch64"), "combined.arm64.sha256": b"0" * 64 + b"  -\n"}
    replay.add_release(OWNER, "forward", "busybox/v1.0.0", complete | incomplete)
    replay.add_release(OWNER, "backward", "busybox/v1.0.0", dict(reversed((incomplete | complete).items())))

    async def scenario() -> tuple[model.Catalog, model.Catalog]:
        async with backend_at(origin) as backend:
            first = (await backend.source(OWNER, "forward").get()).catalog
            second = (await backend.source(OWNER, "backward").get()).catalog
            return first, second

    first, second = run(scenario())
    assert list(first.products) == ["busybox:amd64"]
    assert skipped(first) == {"busybox/v1.0.0 arm64": "missing-rootfs"}
    assert (first.index_json, first.images_json, first.etag) == (
        second.index_json,
        second.images_json,
        second.etag,
    )
    assert first.skipped == second.skipped


def test_drafts_and_assets_not_uploaded_are_skipped(github: tuple[GitHubReplay, str]) -> None:
    """Drafts (listed because the token has push access) never publish; an asset whose state is
    ``open`` (an upload in progress) is as good as absent."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="draft"), draft=True)
    assets = image_assets("amd64") | image_assets("arm64")
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets, states={"rootfs.arm64.squashfs": "open"})

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    assert list(catalog.products) == ["busybox:amd64"]
    assert list(products(catalog)["busybox:amd64"]["versions"]) == ["20210828_1504_v1.0.0"]
    assert skipped(catalog) == {"busybox/v2.0.0": "draft", "busybox/v1.0.0 arm64": "missing-rootfs"}
    assert not any("untagged" in r.path or "v2.0.0" in r.path for r in replay.recorded(download=True))


@pytest.mark.parametrize("include", [True, False])
def test_prerelease_policy(github: tuple[GitHubReplay, str], include: bool) -> None:
    """GitHub prereleases are images unless configured otherwise; a semver prerelease field
    (``-1``, the packaging revision) never means unstable (§4 item 13)."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0-1", image_assets(seed="1"))
    later = CREATED + timedelta(days=1)
    replay.add_release(
        OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2", creation_date=later), prerelease=True
    )

    async def scenario() -> model.Catalog:
        async with backend_at(origin, options=CatalogOptions(include_prereleases=include)) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    versions = sorted(products(catalog)["busybox:amd64"]["versions"])
    if include:
        assert versions == ["20210828_1504_v1.0.0-1", "20210829_1504_v2.0.0"]
        assert skipped(catalog) == {}
    else:
        assert versions == ["20210828_1504_v1.0.0-1"]
        assert skipped(catalog) == {"busybox/v2.0.0": "prerelease"}


def test_malformed_tag_is_skipped_without_downloads(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "wordpress/v5.7-1", image_assets(seed="wp"))
    replay.add_release(OWNER, REPO, "latest", image_assets(seed="latest"))
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="ok"))

    async def scenario() -> model.Catalog:
        async with backend_at(origin) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    assert list(catalog.products) == ["busybox:amd64"]
    assert skipped(catalog) == {"tag wordpress/v5.7-1": "bad-tag", "tag latest": "bad-tag"}
    assert all("/busybox/v1.0.0/" in r.path for r in replay.recorded(download=True))


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_primary_rate_limit_serves_stale_then_503(status: int) -> None:
    """Remaining 0: pause until X-RateLimit-Reset with no API call, serve the last catalog marked
    stale, and raise RateLimitedError (503 + Retry-After) only where there is no catalog."""
    replay = GitHubReplay(token=TOKEN, rate_limit_status=status)
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())
    replay.add_release(OWNER, "other", "busybox/v1.0.0", image_assets())

    async def scenario(origin: str) -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            good = await source.get()
            replay.exhaust_rate_limit(reset_in=120)
            stale = await source.refresh()
            assert stale.catalog is good.catalog
            assert not stale.fresh and stale.problem is not None and "rate limit" in stale.problem
            calls = len(replay.recorded(api=True))
            assert (await source.refresh()).catalog is good.catalog
            with pytest.raises(errors.RateLimitedError) as caught:
                await backend.source(OWNER, "other").get()
            assert 110 <= caught.value.retry_after <= 122
            assert caught.value.status == 503
            assert len(replay.recorded(api=True)) == calls  # paused: nothing sent

        async with backend_at(origin) as fresh_backend:
            with pytest.raises(errors.RateLimitedError) as caught:
                await fresh_backend.source(OWNER, "other").get()
            assert 110 <= caught.value.retry_after <= 122

    with serve(replay) as origin:
        run(scenario(origin))
    last = replay.recorded(api=True)[-1]
    assert last.status == status


def test_secondary_rate_limit_pauses_for_retry_after(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())
    replay.secondary_limit(42)

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            with pytest.raises(errors.RateLimitedError) as caught:
                await backend.source(OWNER, REPO).get()
            assert 40 <= caught.value.retry_after <= 42
            replay.secondary_limit(None)
            with pytest.raises(errors.RateLimitedError):  # still paused, without asking
                await backend.source(OWNER, REPO).refresh()

    run(scenario())
    assert len(replay.recorded(api=True)) == 1


def test_upstream_failure_serves_stale_then_502(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())
    replay.add_release(OWNER, "other", "busybox/v1.0.0", image_assets())

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            good = await source.get()
            replay.fail_api = 502
            stale = await source.refresh()
            assert stale.catalog is good.catalog and not stale.fresh
            assert stale.problem is not None and "502" in stale.problem
            with pytest.raises(errors.UpstreamError) as caught:
                await backend.source(OWNER, "other").get()
            assert caught.value.status == 502
            replay.fail_api = None
            recovered = await source.refresh()
            assert recovered.fresh and recovered.problem is None

    run(scenario())


def test_failed_download_keeps_the_last_catalog_and_is_retried(github: tuple[GitHubReplay, str]) -> None:
    """A 5xx from the download host fails the refresh (no index with images missing for a passing
    reason), and the next refresh tries again even though the listing answers 304 by then."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            good = await source.get()
            replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2"))
            replay.fail_downloads = 503
            stale = await source.refresh()
            assert stale.catalog is good.catalog and not stale.fresh
            replay.fail_downloads = None
            fixed = await source.refresh()
            assert fixed.fresh
            assert sorted(products(fixed.catalog)["busybox:amd64"]["versions"]) == [
                "20210828_1504_v1.0.0",
                "20210828_1504_v2.0.0",
            ]

    run(scenario())


def test_network_error_without_catalog_is_502() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    # nothing listens there now: connection refused

    async def scenario() -> None:
        async with backend_at(f"http://127.0.0.1:{port}") as backend:
            with pytest.raises(errors.UpstreamError, match="ConnectError"):
                await backend.source(OWNER, REPO).get()

    run(scenario())


def test_unknown_repository_is_404_and_not_asked_again_at_once(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, "nope")
            for _ in range(3):
                with pytest.raises(errors.NotFoundError) as caught:
                    await source.get()
                assert caught.value.status == 404

    run(scenario())
    assert len(replay.recorded(api=True)) == 1
    assert replay.recorded(api=True)[0].status == 404


def test_allow_list_and_names(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())

    async def scenario() -> None:
        async with backend_at(origin, allow=[f"{OWNER.upper()}/{REPO}"]) as backend:
            source = backend.source(OWNER, REPO.upper())
            assert backend.source(OWNER, REPO) is source  # GitHub names are case-insensitive
            assert list((await source.get()).catalog.products) == ["busybox:amd64"]
            for owner, repo in [
                (OWNER, "other"),
                ("someone", REPO),
                ("-bad", REPO),
                (OWNER, ".."),
                ("a b", "c"),
            ]:
                with pytest.raises(errors.NotFoundError):
                    backend.source(owner, repo)

    run(scenario())
    assert {r.path for r in replay.recorded(api=True)} == {
        f"/repos/{OWNER}/{REPO.upper()}/releases",
        f"/repos/{OWNER}/{REPO.upper()}",  # is it private? (asked with the listing's first answer)
    }
    with pytest.raises(errors.ConfigError):
        GitHubBackend(allow=["no-slash"])
    assert valid_repository("Netsoc", "webspace.images_2") and not valid_repository("x" * 40, "r")


# -- requests and the token -----------------------------------------------------------------------


def test_headers_and_token_never_logged(
    github: tuple[GitHubReplay, str], caplog: pytest.LogCaptureFixture
) -> None:
    """API calls carry the User-Agent, API version, Accept and the Bearer token; downloads carry no
    token; the token appears in no log line and no error message."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            await backend.source(OWNER, REPO).get()
            replay.fail_api = 500
            try:
                await backend.source(OWNER, "other").get()
            except errors.UpstreamError as exc:
                messages.append(str(exc))
        async with backend_at(origin, token="ghp_WrongTokenValue") as wrong:
            replay.fail_api = None
            with pytest.raises(errors.UpstreamError) as caught:
                await wrong.source(OWNER, REPO).get()
            messages.append(str(caught.value))

    run(scenario())
    api = replay.recorded(api=True)
    for request in api[:1]:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["user-agent"].startswith("webspaces-simplestreams/")
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
    assert api[-1].status == 401 and "401" in messages[-1]
    transfers = replay.recorded(download=True) + replay.recorded(cdn=True)
    assert transfers and all("authorization" not in r.headers for r in transfers)
    assert len(messages) == 2
    for text in [caplog.text, *messages]:
        assert TOKEN not in text and "ghp_WrongTokenValue" not in text
    assert "github" in caplog.text  # the backend did log; just not the secret


def test_anonymous_requests_send_no_authorization(github: tuple[GitHubReplay, str]) -> None:
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets())
    replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="d"), draft=True)

    async def scenario() -> model.Catalog:
        async with backend_at(origin, token=None) as backend:
            return (await backend.source(OWNER, REPO).get()).catalog

    catalog = run(scenario())
    assert all("authorization" not in r.headers for r in replay.recorded())
    assert skipped(catalog) == {}  # drafts are invisible without push access


# -- TTL, concurrency, misses, the cache -------------------------------------------------------------


def test_ttl_single_flight_and_refresh_for_miss(github: tuple[GitHubReplay, str]) -> None:
    """Concurrent callers share one refresh; the catalog is reused until the TTL; a download path not
    in the catalog refreshes at most once per ttl/10 (spec §4 item 9)."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))
    clock = FakeClock()
    new_path = "images/busybox/amd64/v2.0.0/rootfs.squashfs"

    async def scenario() -> None:
        async with backend_at(origin, ttl=300, clock=clock) as backend:
            source = backend.source(OWNER, REPO)
            assert source.current() is None
            states = await asyncio.gather(*(source.get() for _ in range(10)))
            assert len({id(s.catalog) for s in states}) == 1
            assert len(list_requests(replay)) == 1

            clock.now += 299
            await source.get()
            current = source.current()
            assert current is not None and current.catalog is states[0].catalog and current.fresh
            assert len(list_requests(replay)) == 1
            clock.now += 2
            assert source.current() is None  # expired: the fast path must ask get()
            await source.get()
            assert len(list_requests(replay)) == 2

            replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2"))
            clock.now += 1
            with pytest.raises(errors.NotFoundError):
                await source.lookup(new_path)  # the last refresh was 1 s ago: no new one
            assert len(list_requests(replay)) == 2
            clock.now += 30
            ref = await source.lookup(new_path)
            assert len(list_requests(replay)) == 3
            assert ref.url is not None and ref.url.endswith(
                "/releases/download/busybox/v2.0.0/rootfs.amd64.squashfs"
            )
            clock.now += 1
            await source.refresh_for_miss()
            assert len(list_requests(replay)) == 3

    run(scenario())


def test_a_slow_refresh_does_not_hold_requests_past_max_wait(github: tuple[GitHubReplay, str]) -> None:
    """LXD drops a response whose header takes 30 s (spec §2.2): while a refresh downloads a new
    release slowly, get() answers from the catalog it has after max_wait, and the refresh finishes
    in the background."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))
    clock = FakeClock()

    async def scenario() -> None:
        async with backend_at(origin, ttl=300, clock=clock, max_wait=0.2) as backend:
            source = backend.source(OWNER, REPO)
            first = await source.get()
            replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2"))
            replay.cdn_delay = 1.5
            clock.now += 301
            started = time.monotonic()
            state = await source.get()
            assert time.monotonic() - started < 1.2
            assert state.catalog is first.catalog
            assert source.refreshing
            for _ in range(300):
                if not source.refreshing:
                    break
                await asyncio.sleep(0.1)
            assert "busybox:amd64" in products((await source.get()).catalog)
            versions = products((await source.get()).catalog)["busybox:amd64"]["versions"]
            assert sorted(key.rsplit("_", 1)[1] for key in versions) == ["v1.0.0", "v2.0.0"]

    run(scenario())


def test_lookup_answers_browser_download_url(github: tuple[GitHubReplay, str]) -> None:
    """The redirect target is the stable browser_download_url, and following it (GitHub's 302 to the
    CDN) yields exactly the bytes the catalog describes, with a 200."""
    replay, origin = github
    assets = image_assets()
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets)

    async def scenario() -> tuple[model.FileRef, httpx.Response]:
        async with backend_at(origin) as backend:
            ref = await backend.source(OWNER, REPO).lookup("images/busybox/amd64/v1.0.0/lxd.tar.xz")
            assert ref.url is not None
            async with httpx.AsyncClient(follow_redirects=True, trust_env=False) as client:
                return ref, await client.get(ref.url)

    ref, response = run(scenario())
    assert ref.url == f"{origin}/{OWNER}/{REPO}/releases/download/busybox/v1.0.0/lxd.amd64.tar.xz"
    assert response.status_code == 200 and [r.status_code for r in response.history] == [302]
    assert response.content == assets["lxd.amd64.tar.xz"]
    assert ref.size == len(response.content) and ref.sha256 == sha(response.content)


def test_saved_cache_makes_a_cold_start_download_nothing(
    github: tuple[GitHubReplay, str], tmp_path: pathlib.Path
) -> None:
    """save_cache keeps what every repository uses (they refresh at different times), so a restart
    with the saved cache lists releases but reads no asset at all (meta only per new identity)."""
    replay, origin = github
    replay.add_release(
        OWNER, REPO, "busybox/v1.0.0", image_assets("amd64") | image_assets("arm64", sidecar=True)
    )
    replay.add_release(OWNER, "other", "busybox/v1.0.0", image_assets(seed="other"))
    path = tmp_path / "hashes-github.json"

    async def first_run() -> None:
        async with backend_at(origin, cache=HashCache(path)) as backend:
            await backend.source(OWNER, REPO).get()
            await backend.source(OWNER, "other").get()
            await backend.save_cache()
            size = len(backend.cache)
            await backend.source(OWNER, REPO).refresh()  # only one repository touched since
            await backend.save_cache()
            assert len(backend.cache) == size

    async def second_run() -> model.Catalog:
        async with backend_at(origin, cache=HashCache(path)) as backend:
            await backend.source(OWNER, "other").get()
            return (await backend.source(OWNER, REPO).get()).catalog

    run(first_run())
    replay.clear_log()
    catalog = run(second_run())
    assert replay.recorded(download=True) == [] and replay.recorded(cdn=True) == []
    assert list(catalog.products) == ["busybox:amd64", "busybox:arm64"]


# -- pieces ------------------------------------------------------------------------------------------


def test_next_link_parsing() -> None:
    header = (
        '<https://api.github.com/repositories/1300192/releases?per_page=100&page=1>; rel="prev", '
        '<https://api.github.com/repositories/1300192/releases?per_page=100&page=3>; rel="next", '
        '<https://api.github.com/repositories/1300192/releases?per_page=100&page=5>; rel="last", '
        '<https://api.github.com/repositories/1300192/releases?per_page=100&page=1>; rel="first"'
    )
    assert next_link(header) == "https://api.github.com/repositories/1300192/releases?per_page=100&page=3"
    assert next_link('<https://x/a?page=1>; rel="first", <https://x/a?page=1>; rel="prev"') is None
    assert next_link("<https://x/b>; rel=next") == "https://x/b"
    assert next_link(None) is None and next_link("garbage") is None


def test_replay_speaks_github(github: tuple[GitHubReplay, str]) -> None:
    """The replay itself: default and clamped per_page, Link format, weak ETag and 304, GitHub's 404
    body, the by-tag route with a / in the tag, and the download 302 with Range support."""
    replay, origin = github
    for number in range(35):
        replay.add_release(OWNER, REPO, f"img{number}/v1.0.0", {"a.bin": bytes(range(256))})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(trust_env=False, headers=headers) as client:
        default = client.get(f"{origin}/repos/{OWNER}/{REPO}/releases")
        assert len(default.json()) == 30
        assert default.headers["link"].endswith('page=2>; rel="last"')
        assert 'rel="next"' in default.headers["link"]
        assert len(client.get(f"{origin}/repos/{OWNER}/{REPO}/releases?per_page=500").json()) == 35
        etag = default.headers["etag"]
        assert etag.startswith('W/"')
        again = client.get(f"{origin}/repos/{OWNER}/{REPO}/releases", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        missing = client.get(f"{origin}/repos/{OWNER}/missing/releases")
        assert missing.status_code == 404
        assert missing.json()["message"] == "Not Found" and "documentation_url" in missing.json()
        release = client.get(f"{origin}/repos/{OWNER}/{REPO}/releases/tags/img7/v1.0.0").json()
        asset = release["assets"][0]
        assert set(asset) >= {
            "id", "name", "state", "content_type", "size", "created_at", "updated_at",
            "browser_download_url", "url", "digest",
        }  # fmt: skip
        assert asset["digest"] == "sha256:" + sha(bytes(range(256)))
        hop = client.get(asset["browser_download_url"])
        assert hop.status_code == 302 and "/cdn/" in hop.headers["location"]
        part = client.get(hop.headers["location"], headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == bytes(range(10))
        assert part.headers["content-range"] == "bytes 0-9/256"
        whole = client.get(asset["browser_download_url"], follow_redirects=True)
        assert whole.status_code == 200 and whole.headers["content-length"] == "256"
        replay.exhaust_rate_limit(reset_in=60)
        limited = client.get(f"{origin}/repos/{OWNER}/{REPO}/releases")
        assert limited.status_code == 403 and limited.headers["x-ratelimit-remaining"] == "0"
        assert limited.json()["message"].startswith("API rate limit exceeded")


# -- private repositories (spec §5: the API URL with the token; bytes proxied) ------------------------

ROOTFS_PATH = "images/busybox/amd64/v1.0.0/rootfs.squashfs"
META_PATH = "images/busybox/amd64/v1.0.0/lxd.tar.xz"
ROOTFS_URL, META_URL = f"/{OWNER}/{REPO}/{ROOTFS_PATH}", f"/{OWNER}/{REPO}/{META_PATH}"


def private_repo(replay: GitHubReplay, rootfs_size: int = 4096) -> dict[str, bytes | pathlib.Path]:
    """A private repository with one release: sha256 sidecar and null digests, so the reader has to
    fetch the meta, the sidecars and the rootfs (for the combined hash) through the asset API."""
    replay.add_repo(OWNER, REPO, private=True)
    assets = image_assets(rootfs=fake_squashfs_bytes(rootfs_size, seed=b"private"), sidecar=True)
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", assets, digests=False)
    return assets


def repo_requests(replay: GitHubReplay) -> list[Any]:
    return [r for r in replay.recorded(api=True) if r.path == f"/repos/{OWNER}/{REPO}"]


def test_private_repository_is_read_through_the_asset_api(github: tuple[GitHubReplay, str]) -> None:
    """GitHub says the repository is private: assets are located by their API URLs and fetched with
    Accept: application/octet-stream and the token; GitHub's 302 to its CDN is followed without the
    token; browser_download_url (which needs a browser session) is never used; every file is proxied."""
    replay, origin = github
    assets = private_repo(replay)

    async def scenario() -> tuple[model.CatalogState, bool]:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            return await source.get(), source.private

    state, private = run(scenario())
    assert private and state.fresh and list(state.catalog.products) == ["busybox:amd64"]
    files = state.catalog.files
    assert files and all(ref.proxy for ref in files.values())
    assert all(ref.url and "/releases/assets/" in ref.url for ref in files.values())
    rootfs = assets["rootfs.amd64.squashfs"]
    assert isinstance(rootfs, bytes) and files[ROOTFS_PATH].sha256 == sha(rootfs)
    assert [r.status for r in repo_requests(replay)] == [200]
    fetched = [r for r in replay.recorded() if r.is_asset]
    assert fetched and all(r.status == 302 for r in fetched)
    for request in fetched:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/octet-stream"
        assert request.headers["x-github-api-version"] == "2022-11-28"
    cdn = replay.recorded(cdn=True)
    assert len(cdn) == len(fetched) and all("authorization" not in r.headers for r in cdn)
    assert replay.recorded(download=True) == []


def test_private_repository_without_a_token_is_not_found(github: tuple[GitHubReplay, str]) -> None:
    """Anonymous callers do not see private repositories (GitHub: 404), and an anonymous backend does
    not ask whether a repository is private (what it can see is public)."""
    replay, origin = github
    private_repo(replay)
    replay.add_release(OWNER, "open", "busybox/v1.0.0", image_assets())

    async def scenario() -> model.Catalog:
        async with backend_at(origin, token=None) as backend:
            with pytest.raises(errors.NotFoundError):
                await backend.source(OWNER, REPO).get()
            return (await backend.source(OWNER, "open").get()).catalog

    public = run(scenario())
    assert [(r.path, r.status) for r in replay.recorded(api=True)] == [
        (f"/repos/{OWNER}/{REPO}/releases", 404),
        (f"/repos/{OWNER}/open/releases", 200),
    ]
    assert public.files and not any(ref.proxy for ref in public.files.values())


def test_repository_metadata_adds_nothing_to_a_warm_refresh(github: tuple[GitHubReplay, str]) -> None:
    """The repository is asked about only when the listing changed, with its ETag: a 304 (free with a
    token) keeps the catalog as it is; a warm refresh whose pages answer 304 sends nothing more."""
    replay, origin = github
    private_repo(replay)

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            first = await source.get()
            replay.clear_log()
            remaining = replay.remaining

            # our downloads moved download_count: the listing changed, its releases did not
            second = await source.refresh()
            asked = repo_requests(replay)
            assert [r.status for r in asked] == [304] and asked[0].headers["if-none-match"].startswith('W/"')
            assert second.catalog is first.catalog
            assert [r for r in replay.recorded() if r.is_asset or r.is_cdn] == []
            replay.clear_log()

            third = await source.refresh()
            assert [(r.path, r.status) for r in replay.recorded()] == [
                (f"/repos/{OWNER}/{REPO}/releases", 304)
            ]
            assert third.catalog is first.catalog and third.fresh
            assert replay.remaining == remaining - 1  # the one 200 listing; 304s to a token are free

    run(scenario())


def test_visibility_change_follows_the_next_changed_listing(github: tuple[GitHubReplay, str]) -> None:
    """A public repository made private (and back) switches between redirects and proxying at the
    next refresh whose listing changed, without reading any asset it already knows again."""
    replay, origin = github
    replay.add_release(OWNER, REPO, "busybox/v1.0.0", image_assets(seed="1"))

    async def scenario() -> None:
        async with backend_at(origin) as backend:
            source = backend.source(OWNER, REPO)
            public = (await source.get()).catalog
            assert not source.private and not any(ref.proxy for ref in public.files.values())
            assert public.files[META_PATH].url == (
                f"{origin}/{OWNER}/{REPO}/releases/download/busybox/v1.0.0/lxd.amd64.tar.xz"
            )
            replay.add_repo(OWNER, REPO, private=True)
            replay.add_release(OWNER, REPO, "busybox/v2.0.0", image_assets(seed="2"))
            replay.clear_log()
            private = (await source.refresh()).catalog
            assert source.private and all(ref.proxy for ref in private.files.values())
            assert len(private.files) == 2 * len(public.files)
            read = {int(r.path.rsplit("/", 1)[1]) for r in replay.recorded() if r.is_asset}
            newer = next(r for r in releases_of(replay, OWNER, REPO) if r.tag == "busybox/v2.0.0")
            assert read and read <= {asset.id for asset in newer.assets}  # v1.0.0's are cached
            replay.add_repo(OWNER, REPO, private=False)
            replay.remove_release(OWNER, REPO, "busybox/v2.0.0")
            again = (await source.refresh()).catalog
            assert not source.private and again.files == public.files

    run(scenario())


# -- the download route: a real listener, the Starlette app and the backend in one loop --------------


@contextlib.asynccontextmanager
async def image_server(
    backend: GitHubBackend | None, *mounts: DirectoryMount
) -> AsyncIterator[httpx.AsyncClient]:
    """Our server (plain HTTP on a loopback port the OS picks) in front of ``backend``, and a client."""
    fast = FastCache()
    app, _ = create_app(github=backend, directories=mounts, fast=fast)
    state = uvicorn.server.ServerState()
    listener = Listener(bind("127.0.0.1", 0), protocol_factory(app, fast, state), None)
    listener.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{listener.address[1]}",
            trust_env=False,
            timeout=10.0,
        ) as client:
            yield client
    finally:
        listener.close()
        for connection in list(state.connections):
            connection.shutdown()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_private_file_is_proxied_with_its_exact_length(github: tuple[GitHubReplay, str], loop: str) -> None:
    """GET streams the bytes from GitHub (200, Content-Length = the indexed size, several chunks);
    HEAD answers the same headers without asking GitHub; the token reaches only the asset API."""
    replay, origin = github
    assets = private_repo(replay, rootfs_size=3 * 1024 * 1024 + 17)
    rootfs = assets["rootfs.amd64.squashfs"]
    assert isinstance(rootfs, bytes)

    async def scenario() -> None:
        async with backend_at(origin) as backend, image_server(backend) as client:
            await backend.source(OWNER, REPO).get()
            replay.clear_log()
            head = await client.head(ROOTFS_URL)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(rootfs))
            assert replay.recorded() == []  # HEAD costs GitHub nothing
            response = await client.get(ROOTFS_URL)
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(rootfs))
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.content == rootfs
            meta = await client.get(META_URL)
            assert meta.status_code == 200 and meta.content == assets["lxd.amd64.tar.xz"]

    run(scenario(), loop)
    asked = [r for r in replay.recorded() if r.is_asset]
    assert len(asked) == 2 and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in asked)
    cdn = replay.recorded(cdn=True)
    assert [r.status for r in cdn] == [200, 200] and all("authorization" not in r.headers for r in cdn)
    assert replay.recorded(download=True) == []


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("error", [-100, 100], ids=["short", "long"])
def test_a_body_of_the_wrong_length_aborts_the_connection(
    github: tuple[GitHubReplay, str], caplog: pytest.LogCaptureFixture, error: int, loop: str
) -> None:
    """Upstream sends fewer or more bytes than the index says: the client never gets a complete 200
    (fewer bytes than Content-Length, then the connection closes), and the server logs why."""
    replay, origin = github
    private_repo(replay, rootfs_size=200_000)

    async def scenario() -> None:
        async with backend_at(origin) as backend, image_server(backend) as client:
            await backend.source(OWNER, REPO).get()
            replay.cdn_size_error = error
            received = 0
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("GET", ROOTFS_URL) as response:
                    assert response.status_code == 200
                    assert response.headers["content-length"] == "200000"
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
            assert received < 200_000

    with caplog.at_level(logging.WARNING, logger="simplestreams.server"):
        run(scenario(), loop)
    assert "proxy aborted: upstream sent" in caplog.text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_client_that_goes_away_stops_the_upstream_transfer(
    github: tuple[GitHubReplay, str], caplog: pytest.LogCaptureFixture, loop: str
) -> None:
    """A client that reads the head of a large file and hangs up: the transfer from GitHub stops
    (32 MB is more than the socket buffers between a silent client and the server can hold)."""
    replay, origin = github
    private_repo(replay, rootfs_size=32 * 1024 * 1024)

    async def scenario() -> None:
        async with backend_at(origin) as backend, image_server(backend) as client:
            await backend.source(OWNER, REPO).get()
            port = client.base_url.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {ROOTFS_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200 ")
            finally:
                writer.close()
                await writer.wait_closed()
            for _ in range(100):
                if "the client went away" in caplog.text:
                    break
                await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO, logger="simplestreams.server"):
        run(scenario(), loop)
    assert "the client went away; upstream transfer stopped" in caplog.text
    assert "proxy aborted" not in caplog.text


@dataclass
class ProxiedSource:
    """A catalog source with one proxied file whose upstream sends ``body`` in 1000-byte chunks."""

    ref: model.FileRef
    body: bytes

    def current(self) -> model.CatalogState:
        catalog = model.Catalog(b"{}", b"{}", '"x"', {ROOTFS_PATH: self.ref}, ())
        return model.CatalogState(catalog, fresh=True)

    async def get(self) -> model.CatalogState:
        return self.current()

    @contextlib.asynccontextmanager
    async def open(self, ref: model.FileRef) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for offset in range(0, len(self.body), 1000):
                yield self.body[offset : offset + 1000]

        yield chunks()


def test_bytes_other_than_the_indexed_ones_abort_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Upstream sends the right number of bytes but not the indexed ones: the last chunk is held back,
    so the client gets no complete response; the indexed bytes go through whole."""
    right, wrong = b"r" * 10_000, b"r" * 9_999 + b"w"
    ref = model.FileRef("squashfs", len(right), sha(right), url="https://example.invalid/asset", proxy=True)

    async def scenario() -> None:
        for body, complete in ((right, True), (wrong, False)):
            async with image_server(None, DirectoryMount("/local", ProxiedSource(ref, body))) as client:
                if complete:
                    response = await client.get(f"/local/{ROOTFS_PATH}")
                    assert response.status_code == 200 and response.content == right
                    continue
                received = 0
                with pytest.raises(httpx.RemoteProtocolError):
                    async with client.stream("GET", f"/local/{ROOTFS_PATH}") as streamed:
                        assert streamed.status_code == 200
                        async for chunk in streamed.aiter_raw():
                            received += len(chunk)
                assert received < len(right)

    with caplog.at_level(logging.WARNING, logger="simplestreams.server"):
        run(scenario())
    assert "upstream bytes do not have the indexed sha256" in caplog.text


def test_upstream_failure_before_the_first_byte_is_a_problem(github: tuple[GitHubReplay, str]) -> None:
    """GitHub's 500 becomes 502 problem+json; a rate limit 503 with Retry-After; public repositories
    are still answered with a 302 to browser_download_url, asking GitHub nothing."""
    replay, origin = github
    private_repo(replay)
    replay.add_release(OWNER, "open", "busybox/v1.0.0", image_assets())

    async def scenario() -> None:
        async with backend_at(origin) as backend, image_server(backend) as client:
            await backend.source(OWNER, REPO).get()
            await backend.source(OWNER, "open").get()
            replay.clear_log()
            public = await client.get(f"/{OWNER}/open/{META_PATH}")
            assert public.status_code == 302
            assert public.headers["location"] == (
                f"{origin}/{OWNER}/open/releases/download/busybox/v1.0.0/lxd.amd64.tar.xz"
            )
            assert replay.recorded() == []

            replay.fail_downloads = 500
            failed = await client.get(ROOTFS_URL)
            assert failed.status_code == 502
            assert failed.headers["content-type"] == "application/problem+json"
            assert "500" in failed.json()["message"]

            replay.fail_downloads = None
            replay.exhaust_rate_limit(reset_in=90)
            limited = await client.get(ROOTFS_URL)
            assert limited.status_code == 503
            assert limited.headers["content-type"] == "application/problem+json"
            assert 80 <= int(limited.headers["retry-after"]) <= 92
            calls = len(replay.recorded(api=True))
            again = await client.get(META_URL)  # paused: not even asked
            assert again.status_code == 503 and len(replay.recorded(api=True)) == calls

    run(scenario())

"""A real LXD pulls the busybox image through our GitHub backend (issue 5, "LXD tier"; spec §3, §5, §6).

The busybox image is published as a release ``busybox/v<version>`` of a unique owner/repo on the
local GitHub replay (tests/github_replay.py); our server runs ``--backend github`` against it, and LXD
pulls ``https://127.0.0.1:PORT/<owner>/<repo>``. Our download route answers 302 to the stable
``browser_download_url``, the replay's download host answers 302 to its CDN, and LXD follows both
(§2.2). The replay's request log shows which way the bytes went.

A private repository's assets need a token, which LXD does not have: our server fetches them from the
asset API with its token and proxies the bytes (§5), so LXD never talks to GitHub at all.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.github_replay import GitHubReplay, serve
from tests.lxd.conftest import IMAGE, Busybox, ImageServer, LxdOps, ServerFactory

pytestmark = pytest.mark.lxd

TOKEN = "ghp_" + "LxdTierPrivateToken" * 2


@pytest.fixture
def replay() -> Iterator[tuple[GitHubReplay, str]]:
    github = GitHubReplay()
    with serve(github) as origin:
        yield github, origin


@pytest.fixture
def repository(
    replay: tuple[GitHubReplay, str], busybox: Busybox, start_image_server: ServerFactory
) -> tuple[GitHubReplay, str, ImageServer]:
    """A unique owner/repo with release busybox/v<first>, and our server in front of the replay."""
    github, origin = replay
    slug = f"ws-{uuid.uuid4().hex[:10]}/images"
    owner, repo = slug.split("/")
    github.add_release(owner, repo, f"{IMAGE}/v{busybox.first.version}", busybox.first.assets)
    server = start_image_server(
        ["--backend", "github", "--github-api", origin, "--ttl", "1"], base_path=f"/{slug}"
    )
    return github, slug, server


def test_pull_and_launch_through_github(
    repository: tuple[GitHubReplay, str, ImageServer], lxd_ops: LxdOps, busybox: Busybox
) -> None:
    github, slug, server = repository
    lxd_ops.forget(busybox.first.fingerprint)
    github.clear_log()
    name = f"ws-gh-{uuid.uuid4().hex[:8]}"

    outcome = lxd_ops.launch(name, lxd_ops.image_source(server, alias=IMAGE))

    assert outcome.ok, outcome.error
    assert lxd_ops.instance(name)["config"]["volatile.base_image"] == busybox.first.fingerprint
    assert lxd_ops.read_file(name, "/etc/hostname").decode().strip() == name
    # LXD's own requests (its User-Agent, copied to every redirect hop, §2.2): each file went
    # browser_download_url (302) -> CDN (200, the whole file; never a Range request). The server's
    # own fetches (meta tarball, sidecars, hashing) carry its User-Agent and are left out.
    by_lxd = [r for r in github.recorded() if r.headers.get("user-agent", "").startswith("LXD")]
    assert not [r for r in by_lxd if r.is_api], "LXD must never call the GitHub API"
    tag_path = f"/{slug}/releases/download/{IMAGE}/v{busybox.first.version}/"
    downloads = [r for r in by_lxd if r.is_download]
    fetched = {r.path.removeprefix(tag_path) for r in downloads if r.path.startswith(tag_path)}
    assert fetched == {busybox.first.meta.name, busybox.first.rootfs.name}, [r.path for r in by_lxd]
    assert all(r.status == 302 for r in downloads), [(r.path, r.status) for r in downloads]
    cdn = [r for r in by_lxd if r.is_cdn]
    assert len(cdn) == len(downloads), [(r.path, r.status) for r in by_lxd]
    assert all(r.status == 200 and "range" not in r.headers for r in cdn), [(r.path, r.status) for r in cdn]


def test_refresh_follows_new_release(
    repository: tuple[GitHubReplay, str, ImageServer], lxd_ops: LxdOps, busybox: Busybox
) -> None:
    """A release published later appears after the TTL (1 s), and a refresh moves the alias."""
    github, slug, server = repository
    first, newer = busybox.first.fingerprint, busybox.newer.fingerprint
    lxd_ops.forget(first, newer)
    alias = f"ws-gh-{uuid.uuid4().hex[:8]}"
    pulled = lxd_ops.pull(server, alias=IMAGE, auto_update=True, local_alias=alias)
    assert pulled.ok, pulled.error
    assert pulled.fingerprint == first

    owner, repo = slug.split("/")
    github.add_release(owner, repo, f"{IMAGE}/v{busybox.newer.version}", busybox.newer.assets)
    started = time.monotonic()
    server.wait_for_fingerprint(newer, timeout=20)
    assert time.monotonic() - started < 10
    shutil.rmtree(lxd_ops.stream_cache(server.base_url))

    refreshed = lxd_ops.refresh(first)

    assert refreshed.ok, refreshed.error
    assert lxd_ops.alias_target(alias) == newer
    assert lxd_ops.image(first) is None


def test_pull_and_launch_from_a_private_repository(
    replay: tuple[GitHubReplay, str],
    busybox: Busybox,
    start_image_server: ServerFactory,
    lxd_ops: LxdOps,
    tmp_path: Path,
) -> None:
    """A private repository (browser_download_url answers 404 there): our server, holding a token,
    reads the assets through the asset API and proxies them; LXD pulls and launches the image
    without ever reaching GitHub, and the token reaches neither the CDN nor the log."""
    github, origin = replay
    github.token = TOKEN
    owner, repo = f"ws-{uuid.uuid4().hex[:10]}", "private-images"
    github.add_repo(owner, repo, private=True)
    github.add_release(owner, repo, f"{IMAGE}/v{busybox.first.version}", busybox.first.assets)
    token_file = tmp_path / "github-token"
    token_file.write_text(TOKEN + "\n")
    server = start_image_server(
        [
            "--backend",
            "github",
            "--github-api",
            origin,
            "--github-token-file",
            str(token_file),
            "--ttl",
            "60",
        ],
        base_path=f"/{owner}/{repo}",
    )
    assert busybox.first.fingerprint in server.fingerprints()  # the catalog is built (and read)
    lxd_ops.forget(busybox.first.fingerprint)
    github.clear_log()
    served = server.metric("webspaces_images_requests_total", {"kind": "download", "status": "200"})
    name = f"ws-ghp-{uuid.uuid4().hex[:8]}"

    outcome = lxd_ops.launch(name, lxd_ops.image_source(server, alias=IMAGE))

    assert outcome.ok, outcome.error
    assert lxd_ops.instance(name)["config"]["volatile.base_image"] == busybox.first.fingerprint
    assert lxd_ops.read_file(name, "/etc/hostname").decode().strip() == name
    log = github.recorded()
    assert not [r for r in log if r.headers.get("user-agent", "").startswith("LXD")], "LXD reached GitHub"
    # Each file LXD took (meta and rootfs) is one proxied 200 of ours: one asset API call with the
    # token, answered 302, and one CDN fetch without it.
    assert (
        server.metric("webspaces_images_requests_total", {"kind": "download", "status": "200"}) - served == 2
    )
    assets = [r for r in log if r.is_asset]
    assert len(assets) == 2 and all(r.status == 302 for r in assets), [(r.path, r.status) for r in log]
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in assets)
    assert all(r.headers.get("accept") == "application/octet-stream" for r in assets)
    cdn = [r for r in log if r.is_cdn]
    assert len(cdn) == 2 and all(r.status == 200 and "authorization" not in r.headers for r in cdn)
    assert not [r for r in log if r.is_download], "browser_download_url is no use for a private repository"
    assert TOKEN not in server.log_text()

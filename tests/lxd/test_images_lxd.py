"""A real LXD pulls the busybox image from our server over HTTPS (issue 5, "LXD tier"; spec §2, §8).

Each test runs its own server at a unique base URL (LXD caches stream JSON per base URL for an hour,
§2.3), pins the server's self-signed certificate per request (``source.certificate``, §2.5) and
deletes local images with the fingerprints it pulls first (LXD does not download a fingerprint it
holds). Launched containers get no NIC.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from simplestreams.arch import kernel_arch
from simplestreams.builder import host_arch
from tests.lxd.conftest import IMAGE, Busybox, ImageServer, LxdOps, sha256_file

pytestmark = pytest.mark.lxd

NOT_FOUND = "The requested image couldn't be found"


def _download_counters(server: ImageServer) -> dict[str, float]:
    requests = "webspaces_images_requests_total"
    ok = server.metric(requests, {"kind": "download", "status": "200"})
    return {
        "download 200": ok,
        "download other": server.metric(requests, {"kind": "download"}) - ok,
        "plain": server.metric("webspaces_images_connections_total", {"protocol": "plain"}),
    }


def test_pull_by_alias_over_https(image_server: ImageServer, lxd_ops: LxdOps, busybox: Busybox) -> None:
    """The local image is our fingerprint, sha256(meta ‖ rootfs), and the files came through the
    plain-HTTP probe on the TLS port (§2.2)."""
    expected = busybox.first.fingerprint
    lxd_ops.forget(expected)
    before = _download_counters(image_server)

    outcome = lxd_ops.pull(image_server, alias=IMAGE)

    assert outcome.ok, outcome.error
    assert outcome.fingerprint == expected
    image = lxd_ops.image(expected)
    assert image is not None
    assert image["size"] == busybox.first.meta.stat().st_size + busybox.first.rootfs.stat().st_size
    assert image["architecture"] == kernel_arch(host_arch())
    assert image["type"] == "container"
    assert image["properties"]["os"] == "busybox"
    # Both files were answered 200 on first asking, and plaintext connections reached the TLS
    # port: LXD's plain-HTTP probes (§2.2) were served, so it had no reason to retry over HTTPS.
    after = _download_counters(image_server)
    assert after["download 200"] - before["download 200"] == 2, after
    assert after["download other"] == before["download other"], after
    assert after["plain"] - before["plain"] >= 1, after
    assert lxd_ops.stream_cache(image_server.base_url).is_dir(), (
        "LXD's stream cache is not where spec §2.3 says"
    )


def test_pull_by_fingerprint_and_prefix(image_server: ImageServer, lxd_ops: LxdOps, busybox: Busybox) -> None:
    """Pulling by full fingerprint and by a unique prefix needs no alias (§1.7)."""
    expected = busybox.first.fingerprint
    lxd_ops.forget(expected)

    full = lxd_ops.pull(image_server, fingerprint=expected)
    assert full.ok, full.error
    assert full.fingerprint == expected

    lxd_ops.forget(expected)
    prefix = lxd_ops.pull(image_server, fingerprint=expected[:12])
    assert prefix.ok, prefix.error
    assert prefix.fingerprint == expected


def test_launch_container(image_server: ImageServer, lxd_ops: LxdOps, busybox: Busybox) -> None:
    """``lxc launch ws:busybox``: the container runs busybox's init and the hostname template made
    /etc/hostname the container's name."""
    lxd_ops.forget(busybox.first.fingerprint)
    name = f"ws-bb-{uuid.uuid4().hex[:8]}"

    outcome = lxd_ops.launch(name, lxd_ops.image_source(image_server, alias=IMAGE))

    assert outcome.ok, outcome.error
    instance = lxd_ops.instance(name)
    assert instance["status"] == "Running"
    assert instance["config"]["volatile.base_image"] == busybox.first.fingerprint
    assert not [d for d in instance["expanded_devices"].values() if d.get("type") == "nic"]
    assert lxd_ops.read_file(name, "/etc/hostname").decode().strip() == name
    status, stdout = lxd_ops.execute(name, ["/bin/busybox", "cat", "/etc/hostname"])
    assert (status, stdout.strip()) == (0, name)


def test_refresh_moves_alias_to_newer_version(
    image_server: ImageServer, lxd_ops: LxdOps, busybox: Busybox
) -> None:
    """After a newer version is published, ``lxc image refresh`` replaces the image and moves its
    aliases (§2.4); LXD's hour-long JSON cache is wiped first (§2.3)."""
    assert image_server.directory is not None
    first, newer = busybox.first.fingerprint, busybox.newer.fingerprint
    lxd_ops.forget(first, newer)
    alias = f"ws-bb-{uuid.uuid4().hex[:8]}"
    pulled = lxd_ops.pull(image_server, alias=IMAGE, auto_update=True, local_alias=alias)
    assert pulled.ok, pulled.error
    assert lxd_ops.alias_target(alias) == first

    busybox.newer.publish(image_server.directory)
    image_server.wait_for_fingerprint(newer)
    cache = lxd_ops.stream_cache(image_server.base_url)
    assert cache.is_dir(), "LXD's stream cache is not where spec §2.3 says"
    shutil.rmtree(cache)

    refreshed = lxd_ops.refresh(first)

    assert refreshed.ok, refreshed.error
    assert lxd_ops.alias_target(alias) == newer
    assert lxd_ops.image(first) is None, "the replaced image was not deleted"
    updated = lxd_ops.image(newer)
    assert updated is not None
    assert updated["auto_update"] is True
    assert updated["update_source"]["alias"] == IMAGE


def test_corrupted_rootfs_is_refused(image_server: ImageServer, lxd_ops: LxdOps, busybox: Busybox) -> None:
    """Bytes changed in place with size and mtime kept: the server keeps its cached hashes (§6), and
    LXD refuses the download with its hash error (§8 table)."""
    assert image_server.directory is not None
    expected = busybox.first.fingerprint
    lxd_ops.forget(expected)
    rootfs = image_server.directory / IMAGE / f"v{busybox.first.version}" / busybox.first.rootfs.name
    info = rootfs.stat()
    with rootfs.open("r+b") as handle:
        handle.seek(info.st_size // 2)
        original = handle.read(64)
        handle.seek(info.st_size // 2)
        handle.write(bytes(b ^ 0xFF for b in original))
    os.utime(rootfs, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert rootfs.stat().st_size == info.st_size

    corrupted = sha256_file(rootfs)

    outcome = lxd_ops.pull(image_server, fingerprint=expected)

    assert not outcome.ok
    assert lxd_ops.image(expected) is None
    # Debian's 5.0.2 checks each file ("Hash mismatch for <url>: <got> != <expected>"), after
    # retrying the plain-HTTP probe's failure over HTTPS (§2.2); newer LXD may report the combined
    # fingerprint instead (§1.5).
    url = f"{image_server.base_url}/images/{IMAGE}/{host_arch()}/v{busybox.first.version}/rootfs.squashfs"
    per_file = f"Hash mismatch for {url}: {corrupted} != {sha256_file(busybox.first.rootfs)}"
    assert outcome.error == per_file or "Image fingerprint doesn't match" in outcome.error, outcome.error


def test_unknown_alias_is_not_found(image_server: ImageServer, lxd_ops: LxdOps) -> None:
    outcome = lxd_ops.pull(image_server, alias="no-such-image")

    assert not outcome.ok
    assert outcome.error == f"Failed getting remote image info: Failed getting image: {NOT_FOUND}"

"""Products, versions, items and both documents (spec/simplestreams.md §1, §4, §7, §9 items 1-8, 17, 19, 21).

The vectors under ``tests/data/simplestreams/catalog`` were written by hand from spec §1.2/§1.3 and
compacted with ``json.dumps(sort_keys=True, separators=(",", ":"))``; they are compared byte for
byte. The pairing check re-reads images.json the way LXD does (§1.4) without using the catalog code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplestreams import model
from simplestreams.arch import KERNEL_NAMES
from simplestreams.catalog import ITEM_FILES, CatalogOptions, build_catalog, item_path
from tests.vectors import DATA

VECTORS = DATA / "simplestreams" / "catalog"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
HEX64 = re.compile(r"[0-9a-f]{64}")


def h(char: str) -> str:
    return char * 64


def make_build(
    name: str,
    version: str,
    arch: str,
    created: datetime,
    *,
    meta: tuple[int, str] = (100, h("1")),
    rootfs: tuple[tuple[str, int, str, str], ...] = (("squashfs", 1000, h("2"), h("3")),),
    properties: dict[str, str] | None = None,
    expiry: datetime | None = None,
    prerelease: bool = False,
) -> model.ArchBuild:
    """A build with fixed hashes; rootfs entries are (ftype, size, sha256, combined sha256)."""
    base = f"/srv/images/{name}/v{version}"
    return model.ArchBuild(
        name=name,
        version=version,
        arch=arch,
        created=created,
        metadata=model.Metadata(
            architecture=arch,
            creation_date=created,
            expiry_date=expiry,
            properties={"os": "debian", "release": "bookworm"} if properties is None else properties,
        ),
        meta=model.FileRef(model.META_FTYPE, meta[0], meta[1], path=f"{base}/lxd.{arch}.tar.xz"),
        rootfs=tuple(
            (model.FileRef(ftype, size, sha, path=f"{base}/{ftype}.{arch}"), combined)
            for ftype, size, sha, combined in rootfs
        ),
        prerelease=prerelease,
    )


def vector_builds() -> list[model.ArchBuild]:
    docker_old = {"os": "ubuntu", "release": "focal", "description": "Docker 20.10.8"}
    docker_new = {
        "os": "ubuntu",
        "release": "jammy",
        "release_codename": "jammy",
        "version": "22.04",
        "variant": "default",
        "description": "Docker 20.10.9",
        "serial": "ignored",
    }
    return [
        make_build(
            "docker",
            "20.10.8-1",
            "amd64",
            datetime(2021, 8, 28, 15, 4, 30, tzinfo=UTC),
            meta=(1234, h("1")),
            rootfs=(("squashfs", 98765432, h("2"), h("3")),),
            properties=docker_old,
        ),
        make_build(
            "docker",
            "20.10.8-1",
            "arm64",
            datetime(2021, 8, 28, 15, 4, 30, tzinfo=UTC),
            meta=(1111, h("4")),
            rootfs=(("squashfs", 91234567, h("5"), h("6")),),
            properties=docker_old,
        ),
        make_build(
            "docker",
            "20.10.9-1",
            "amd64",
            datetime(2021, 9, 30, 8, 15, tzinfo=UTC),
            meta=(1240, h("7")),
            rootfs=(("squashfs", 98770000, h("8"), h("9")), ("root.tar.xz", 87654321, h("a"), h("b"))),
            properties=docker_new,
        ),
        make_build(
            "busybox",
            "1.36.1",
            "amd64",
            datetime(2026, 11, 26, 1, 30, tzinfo=timezone(timedelta(hours=1))),
            meta=(512, h("c")),
            rootfs=(("squashfs", 901120, h("d"), h("e")),),
            properties={"os": "busybox", "release": "1.36"},
            expiry=datetime(2026, 12, 26, 0, 30, tzinfo=UTC),
        ),
    ]


VECTOR_OPTIONS = CatalogOptions(extra_aliases={"busybox": ("bb", "tiny"), "docker": ("bb", "moby")})


def images(catalog: model.Catalog) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(catalog.images_json)
    return document


def products(catalog: model.Catalog) -> dict[str, Any]:
    found: dict[str, Any] = images(catalog)["products"]
    return found


def test_vector_documents() -> None:
    catalog = build_catalog(vector_builds(), VECTOR_OPTIONS, now=NOW)
    assert catalog.index_json == (VECTORS / "index.json").read_bytes()
    assert catalog.images_json == (VECTORS / "images.json").read_bytes()
    assert catalog.products == ("busybox:amd64", "docker:amd64", "docker:arm64")
    assert [(s.subject, s.reason) for s in catalog.skipped] == [("docker alias bb", "alias-conflict")]
    assert catalog.built_at == NOW


def test_vector_twin_and_support_eol() -> None:
    options = CatalogOptions(incus_twin=True, support_eol=True)
    catalog = build_catalog(vector_builds()[3:], options, now=NOW)
    assert catalog.images_json == (VECTORS / "images_twin.json").read_bytes()


def test_vector_empty() -> None:
    catalog = build_catalog([], CatalogOptions(), now=NOW)
    assert catalog.index_json == (VECTORS / "index_empty.json").read_bytes()
    assert catalog.images_json == (VECTORS / "images_empty.json").read_bytes()
    assert catalog.products == ()
    assert catalog.files == {}


def test_index_agrees_with_images() -> None:
    catalog = build_catalog(vector_builds(), VECTOR_OPTIONS, now=NOW)
    index = json.loads(catalog.index_json)
    assert index["format"] == "index:1.0"
    assert list(index["index"]) == ["images"]
    entry = index["index"]["images"]
    assert entry["datatype"] == "image-downloads"
    assert entry["format"] == "products:1.0"
    assert entry["path"] == "streams/v1/images.json"
    assert entry["products"] == sorted(products(catalog)) == list(catalog.products)
    document = images(catalog)
    assert (document["content_id"], document["datatype"], document["format"]) == (
        "images",
        "image-downloads",
        "products:1.0",
    )
    assert document["updated"] == index["updated"] == "Thu, 26 Nov 2026 00:30:00 +0000"


def lxd_pairs(document: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(product, version, rootfs ftype, fingerprint) for every image LXD would see (spec §1.4, §1.6).

    Written from the spec's tables, independently of the catalog code.
    """
    meta_ftypes = {"lxd.tar.xz", "incus.tar.xz"}
    fingerprint_fields = {
        "squashfs": ("combined_squashfs_sha256",),
        "root.tar.xz": ("combined_rootxz_sha256", "combined_sha256"),
        "disk-kvm.img": ("combined_disk-kvm-img_sha256",),
        "disk1.img": ("combined_disk1-img_sha256",),
        "uefi1.img": ("combined_uefi1-img_sha256",),
    }
    pairs = []
    for product_id, product in document["products"].items():
        assert product["arch"] in KERNEL_NAMES
        for key, version in product["versions"].items():
            assert len(key) >= 8
            datetime.strptime(key[:8], "%Y%m%d")
            items = list(version["items"].values())
            for item in items:
                assert item["path"]
                assert type(item["size"]) is int
                assert item["size"] >= 0
                assert HEX64.fullmatch(item["sha256"])
            for meta in (item for item in items if item["ftype"] in meta_ftypes):
                for rootfs in (item for item in items if item["ftype"] in fingerprint_fields):
                    values = [meta[f] for f in fingerprint_fields[rootfs["ftype"]] if meta.get(f)]
                    if values:
                        pairs.append((product_id, key, rootfs["ftype"], values[0]))
    return pairs


def test_lxd_pairing_reading() -> None:
    catalog = build_catalog(vector_builds(), dataclasses.replace(VECTOR_OPTIONS, incus_twin=True), now=NOW)
    pairs = lxd_pairs(images(catalog))
    # 4 (product, version) entries, 5 (meta, rootfs) combinations, each twice with the twin.
    assert len(pairs) == 10
    for *_, fingerprint in pairs:
        assert HEX64.fullmatch(fingerprint)
    # Every rootfs item of every version got a fingerprint: none is silently unpaired.
    for product in products(catalog).values():
        for version in product["versions"].values():
            meta = version["items"]["lxd.tar.xz"]
            for item in version["items"].values():
                if item["ftype"] in model.COMBINED_FIELD:
                    assert HEX64.fullmatch(meta[model.COMBINED_FIELD[item["ftype"]]])


def test_files_map_every_item_path() -> None:
    builds = vector_builds()
    catalog = build_catalog(builds, dataclasses.replace(VECTOR_OPTIONS, incus_twin=True), now=NOW)
    paths = {
        item["path"]
        for product in products(catalog).values()
        for version in product["versions"].values()
        for item in version["items"].values()
    }
    assert set(catalog.files) == paths
    for build in builds:
        assert catalog.files[item_path(build.name, build.arch, build.version, "lxd.tar.xz")] is build.meta
        for ref, _ in build.rootfs:
            assert (
                catalog.files[item_path(build.name, build.arch, build.version, ITEM_FILES[ref.ftype])] is ref
            )


def test_item_paths() -> None:
    assert item_path("a/b", "amd64", "1.0.0", "rootfs.squashfs") == "images/a/b/amd64/v1.0.0/rootfs.squashfs"
    assert dict(ITEM_FILES) == {
        "lxd.tar.xz": "lxd.tar.xz",
        "squashfs": "rootfs.squashfs",
        "root.tar.xz": "root.tar.xz",
        "disk-kvm.img": "disk-kvm.img",
    }


def test_vm_disk_item() -> None:
    build = make_build(
        "vm",
        "1.0.0",
        "amd64",
        NOW,
        rootfs=(("disk-kvm.img", 4096, h("5"), h("6")),),
    )
    version = products(build_catalog([build], CatalogOptions(), now=NOW))["vm:amd64"]["versions"]
    items = version["20261126_0000_v1.0.0"]["items"]
    assert items["disk-kvm.img"] == {
        "ftype": "disk-kvm.img",
        "path": "images/vm/amd64/v1.0.0/disk-kvm.img",
        "size": 4096,
        "sha256": h("5"),
    }
    assert items["lxd.tar.xz"]["combined_disk-kvm-img_sha256"] == h("6")


# Product fields (spec §1.3, §4 item 5, §9 items 3 and 7).


def test_product_fields_come_from_newest_version() -> None:
    older = make_build("img", "2.0.0", "amd64", NOW, properties={"os": "debian", "release": "trixie"})
    newer = make_build(
        "img", "1.0.1", "amd64", NOW + timedelta(minutes=1), properties={"os": "alpine", "release": "3.20"}
    )
    for order in ([older, newer], [newer, older]):
        product = products(build_catalog(order, CatalogOptions(), now=NOW))["img:amd64"]
        assert (product["os"], product["release"], product["release_title"]) == ("alpine", "3.20", "3.20")


def test_optional_product_and_version_fields() -> None:
    bare = make_build("bare", "1.0.0", "amd64", NOW, properties={}, expiry=NOW + timedelta(days=30))
    product = products(build_catalog([bare], CatalogOptions(), now=NOW))["bare:amd64"]
    assert set(product) == {"aliases", "arch", "variant", "versions"}
    assert product["variant"] == "default"
    (version,) = product["versions"].values()
    assert set(version) == {"items"}  # no description, no label


def test_support_eol() -> None:
    expiry = datetime(2026, 12, 27, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    build = make_build("img", "1.0.0", "amd64", NOW, expiry=expiry)
    assert "support_eol" not in products(build_catalog([build], CatalogOptions(), now=NOW))["img:amd64"]
    product = products(build_catalog([build], CatalogOptions(support_eol=True), now=NOW))["img:amd64"]
    assert product["support_eol"] == "2026-12-26"
    no_expiry = make_build("img", "1.0.0", "amd64", NOW)
    assert "support_eol" not in products(
        build_catalog([no_expiry], CatalogOptions(support_eol=True), now=NOW)
    )


# Version keys and ordering (spec §1.6, §9 item 6).


def test_same_day_versions_are_ordered_by_time() -> None:
    morning = make_build(
        "img", "1.9.0", "amd64", datetime(2026, 3, 1, 10, 0, tzinfo=UTC), properties={"os": "a"}
    )
    afternoon = make_build(
        "img", "1.10.0", "amd64", datetime(2026, 3, 1, 14, 0, tzinfo=UTC), properties={"os": "b"}
    )
    product = products(build_catalog([afternoon, morning], CatalogOptions(), now=NOW))["img:amd64"]
    keys = sorted(product["versions"])
    assert keys == ["20260301_1000_v1.9.0", "20260301_1400_v1.10.0"]
    assert max(keys) == "20260301_1400_v1.10.0"  # LXD's newest: lexically greatest
    assert product["os"] == "b"


def test_a_later_backport_is_newest() -> None:
    """Newest means latest build, as LXD sees it, even when its semver is lower."""
    main = make_build("img", "2.0.0", "amd64", datetime(2026, 3, 1, tzinfo=UTC), properties={"os": "main"})
    backport = make_build("img", "1.9.1", "amd64", datetime(2026, 3, 2, tzinfo=UTC), properties={"os": "bp"})
    product = products(build_catalog([main, backport], CatalogOptions(), now=NOW))["img:amd64"]
    assert max(product["versions"]) == "20260302_0000_v1.9.1"
    assert product["os"] == "bp"


def test_duplicate_version_keeps_the_later_build() -> None:
    first = make_build("img", "1.0.0", "amd64", datetime(2026, 3, 1, tzinfo=UTC), meta=(100, h("1")))
    second = make_build("img", "1.0.0", "amd64", datetime(2026, 3, 2, tzinfo=UTC), meta=(200, h("4")))
    results = [
        build_catalog(order, CatalogOptions(), now=NOW) for order in ([first, second], [second, first])
    ]
    assert results[0].images_json == results[1].images_json
    assert results[0].skipped == results[1].skipped
    (kept,) = products(results[0])["img:amd64"]["versions"].items()
    assert kept[0] == "20260302_0000_v1.0.0"
    assert kept[1]["items"]["lxd.tar.xz"]["sha256"] == h("4")
    assert [(s.subject, s.reason) for s in results[0].skipped] == [("img/v1.0.0 amd64", "duplicate-version")]
    assert results[0].files["images/img/amd64/v1.0.0/lxd.tar.xz"] is second.meta


def test_duplicate_key_is_resolved_deterministically() -> None:
    """Two builds claiming the very same version key (same minute, same version)."""
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    one = make_build("img", "1.0.0", "amd64", moment, meta=(100, h("1")))
    two = make_build("img", "1.0.0", "amd64", moment + timedelta(seconds=5), meta=(100, h("4")))
    three = make_build("img", "1.0.0", "amd64", moment, meta=(100, h("7")))
    outputs = {
        (catalog.images_json, catalog.skipped)
        for order in itertools.permutations([one, two, three])
        for catalog in [build_catalog(order, CatalogOptions(), now=NOW)]
    }
    assert len(outputs) == 1
    catalog = build_catalog([one, two, three], CatalogOptions(), now=NOW)
    assert len(products(catalog)["img:amd64"]["versions"]) == 1
    assert [s.reason for s in catalog.skipped] == ["duplicate-version", "duplicate-version"]


def test_naive_and_aware_times_agree() -> None:
    aware = make_build("img", "1.0.0", "amd64", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    naive = dataclasses.replace(aware, created=datetime(2026, 3, 1, 12, 0))
    assert (
        build_catalog([aware], CatalogOptions(), now=NOW).images_json
        == build_catalog([naive], CatalogOptions(), now=NOW).images_json
    )


# Aliases (spec §1.7).


def test_aliases_are_one_comma_string_on_every_arch() -> None:
    builds = [make_build("img", "1.0.0", arch, NOW) for arch in ("amd64", "arm64", "riscv64")]
    builds.append(make_build("img", "0.9.0", "amd64", NOW - timedelta(days=1)))
    options = CatalogOptions(extra_aliases={"img": ("img-lts", "img", "stable")})
    found = products(build_catalog(builds, options, now=NOW))
    assert {product["aliases"] for product in found.values()} == {"img,img-lts,stable"}
    for product in found.values():
        assert isinstance(product["aliases"], str)
        assert not any("/" in alias for alias in product["aliases"].split(","))


def test_contested_alias_goes_to_the_lexically_first_name() -> None:
    builds = [make_build("zeta", "1.0.0", "amd64", NOW), make_build("alpha", "1.0.0", "arm64", NOW)]
    options = CatalogOptions(extra_aliases={"zeta": ("web", "z"), "alpha": ("web",)})
    for order in (builds, builds[::-1]):
        catalog = build_catalog(order, options, now=NOW)
        found = products(catalog)
        assert found["alpha:arm64"]["aliases"] == "alpha,web"
        assert found["zeta:amd64"]["aliases"] == "zeta,z"
        assert [(s.subject, s.reason) for s in catalog.skipped] == [("zeta alias web", "alias-conflict")]


def test_an_image_name_beats_another_images_extra_alias() -> None:
    builds = [make_build("alpha", "1.0.0", "amd64", NOW), make_build("beta", "1.0.0", "amd64", NOW)]
    catalog = build_catalog(builds, CatalogOptions(extra_aliases={"alpha": ("beta",)}), now=NOW)
    found = products(catalog)
    assert found["alpha:amd64"]["aliases"] == "alpha"
    assert found["beta:amd64"]["aliases"] == "beta"
    assert [s.reason for s in catalog.skipped] == ["alias-conflict"]


def test_alias_clashing_with_an_arch_form() -> None:
    """LXD also registers ``docker/amd64``; an image named ``docker/amd64`` must not claim it too."""
    builds = [make_build("docker", "1.0.0", "amd64", NOW), make_build("docker/amd64", "1.0.0", "amd64", NOW)]
    catalog = build_catalog(builds, CatalogOptions(), now=NOW)
    found = products(catalog)
    assert found["docker:amd64"]["aliases"] == "docker"
    assert "aliases" not in found["docker/amd64:amd64"]
    assert [(s.subject, s.reason) for s in catalog.skipped] == [
        ("docker/amd64 alias docker/amd64", "alias-conflict")
    ]
    assert "images/docker/amd64/amd64/v1.0.0/lxd.tar.xz" in catalog.files


@pytest.mark.parametrize("alias", ["", "a,b", "with space", "/lead", "trail/", "tab\there"])
def test_unusable_alias_is_dropped(alias: str) -> None:
    catalog = build_catalog(
        [make_build("img", "1.0.0", "amd64", NOW)],
        CatalogOptions(extra_aliases={"img": (alias, "ok")}),
        now=NOW,
    )
    assert products(catalog)["img:amd64"]["aliases"] == "img,ok"
    assert [s.reason for s in catalog.skipped] == ["bad-alias"]


# Incus twin (spec §7, §9 item 21).


def test_incus_twin() -> None:
    builds = vector_builds()
    plain = build_catalog(builds, CatalogOptions(), now=NOW)
    twin = build_catalog(builds, CatalogOptions(incus_twin=True), now=NOW)
    assert twin.files == plain.files
    for product in products(plain).values():
        for version in product["versions"].values():
            assert "incus.tar.xz" not in version["items"]
    for product in products(twin).values():
        for version in product["versions"].values():
            items = version["items"]
            assert items["incus.tar.xz"]["ftype"] == "incus.tar.xz"
            assert {**items["incus.tar.xz"], "ftype": "lxd.tar.xz"} == items["lxd.tar.xz"]


# Prereleases and builds LXD would mishandle (spec §4 items 4 and 13, §1.8).


def test_prereleases_included_by_default_and_filtered_on_request() -> None:
    stable = make_build("img", "1.0.0", "amd64", NOW)
    candidate = make_build("img", "1.1.0-rc.1", "amd64", NOW + timedelta(hours=1), prerelease=True)
    only_pre = make_build("beta", "0.1.0", "amd64", NOW, prerelease=True)
    everything = build_catalog([stable, candidate, only_pre], CatalogOptions(), now=NOW)
    assert everything.products == ("beta:amd64", "img:amd64")
    assert len(products(everything)["img:amd64"]["versions"]) == 2
    filtered = build_catalog(
        [stable, candidate, only_pre], CatalogOptions(include_prereleases=False), now=NOW
    )
    assert filtered.products == ("img:amd64",)
    assert list(products(filtered)["img:amd64"]["versions"]) == ["20261126_0000_v1.0.0"]
    assert {(s.subject, s.reason) for s in filtered.skipped} == {
        ("img/v1.1.0-rc.1 amd64", "prerelease"),
        ("beta/v0.1.0 amd64", "prerelease"),
    }


def test_semver_prerelease_field_alone_is_not_a_prerelease() -> None:
    build = make_build("docker", "20.10.8-1", "amd64", NOW)
    catalog = build_catalog([build], CatalogOptions(include_prereleases=False), now=NOW)
    assert catalog.products == ("docker:amd64",)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (make_build("img", "1.0.0", "x86-64", NOW), "unknown-arch"),
        (make_build("img", "1.0.0", "amd64", NOW, rootfs=()), "missing-rootfs"),
        (make_build("img", "1.0.0", "amd64", NOW, meta=(1, h("A"))), "bad-hash"),
        (make_build("img", "1.0.0", "amd64", NOW, meta=(1, "ab")), "bad-hash"),
        (make_build("img", "1.0.0", "amd64", NOW, meta=(-1, h("a"))), "bad-hash"),
        (make_build("img", "1.0.0", "amd64", NOW, rootfs=(("squashfs", 1, h("a"), h("B")),)), "bad-hash"),
        (
            make_build("img", "1.0.0", "amd64", NOW, rootfs=(("disk1.img", 1, h("a"), h("b")),)),
            "unknown-ftype",
        ),
        (
            make_build("img", "1.0.0", "amd64", NOW, rootfs=(("squashfs", 1, h("a"), h("b")),) * 2),
            "duplicate-ftype",
        ),
        (make_build("a/../b", "1.0.0", "amd64", NOW), "bad-tag"),
        (make_build("img", "1.0", "amd64", NOW), "bad-tag"),
    ],
)
def test_unpublishable_build_is_skipped(build: model.ArchBuild, reason: str) -> None:
    good = make_build("ok", "1.0.0", "amd64", NOW)
    earlier = model.Skip("tag ok/latest", "bad-tag")
    catalog = build_catalog([build, good], CatalogOptions(), skipped=[earlier], now=NOW)
    assert catalog.products == ("ok:amd64",)
    assert catalog.skipped[0] is earlier
    assert [s.reason for s in catalog.skipped[1:]] == [reason]
    assert catalog.skipped[1].subject == f"{build.name}/v{build.version} {build.arch}"


# Determinism and the ETag (spec §4 item 17, §9 item 19).


def test_updated_is_the_newest_build_time_not_the_clock() -> None:
    builds = vector_builds()
    early = build_catalog(builds, VECTOR_OPTIONS, now=NOW)
    late = build_catalog(builds, VECTOR_OPTIONS, now=NOW + timedelta(days=3))
    assert early.index_json == late.index_json
    assert early.images_json == late.images_json
    assert early.etag == late.etag
    assert late.built_at == NOW + timedelta(days=3)


def test_etag_is_strong_quoted_and_follows_content() -> None:
    builds = vector_builds()
    catalog = build_catalog(builds, VECTOR_OPTIONS, now=NOW)
    assert re.fullmatch(r'"[0-9a-f]{64}"', catalog.etag)
    twin = build_catalog(builds, dataclasses.replace(VECTOR_OPTIONS, incus_twin=True), now=NOW)
    fewer = build_catalog(builds[:3], VECTOR_OPTIONS, now=NOW)
    assert len({catalog.etag, twin.etag, fewer.etag}) == 3
    expected = hashlib.sha256()
    for document in (catalog.index_json, catalog.images_json):
        expected.update(len(document).to_bytes(8, "big") + document)
    assert catalog.etag == f'"{expected.hexdigest()}"'


def many_builds() -> list[model.ArchBuild]:
    builds = vector_builds()
    for i in range(6):
        builds.append(
            make_build(
                f"img{i % 3}",
                f"1.{i}.0",
                ("amd64", "arm64")[i % 2],
                NOW - timedelta(hours=i),
                prerelease=i == 4,
                properties={"os": f"os{i}", "description": f"build {i}"},
            )
        )
    for days in (9, 8):  # two more builds of img0 1.0.0 amd64: duplicate versions
        builds.append(make_build("img0", "1.0.0", "amd64", NOW - timedelta(days=days)))
    builds.append(make_build("img1", "1.0.0", "s390", NOW))  # unknown arch
    return builds


@settings(max_examples=50, deadline=None)
@given(st.permutations(many_builds()), st.booleans(), st.booleans())
def test_output_is_independent_of_input_order(order: list[model.ArchBuild], twin: bool, pre: bool) -> None:
    options = dataclasses.replace(
        VECTOR_OPTIONS,
        incus_twin=twin,
        include_prereleases=pre,
        extra_aliases={"img1": ("bb",), "busybox": ("bb",)},
    )
    reference = build_catalog(many_builds(), options, now=NOW)
    shuffled = build_catalog(order, options, now=NOW)
    assert shuffled.index_json == reference.index_json
    assert shuffled.images_json == reference.images_json
    assert shuffled.etag == reference.etag
    assert shuffled.files == reference.files
    assert shuffled.skipped == reference.skipped
    assert shuffled.products == reference.products

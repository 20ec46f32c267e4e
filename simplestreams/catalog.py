"""Map verified builds to simplestreams products and render both documents (spec/simplestreams.md §1).

Theory of operation: every :class:`~simplestreams.model.ArchBuild` becomes one *version* of the
product ``<name>:<arch>``, keyed by :func:`.versions.version_key`. Products take their fields from
their newest version, i.e. the lexically greatest key, because that is the one LXD shows (spec §1.6,
§4 item 5). ``index.json`` and ``images.json`` are rendered from the same product table, so their
product lists cannot disagree (§4 item 12), with sorted keys and compact separators, so the same builds
always give the same bytes and the same strong ETag (§4 item 17, §9 item 19). ``updated`` is the newest
build time rather than the clock for the same reason.

What LXD would mishandle is left out here, deterministically, and reported as a
:class:`~simplestreams.model.Skip` instead (spec §4 item 4):

- a name or version that is not a valid tag (§3.3), and an architecture outside §1.8 (LXD drops the
  product silently);
- a build without a known rootfs type or with a malformed hash (LXD skips the pair or refuses it);
- a second build of one product with the same version: both would claim the same key and the same
  item paths, and the bytes behind a path must never change (§1.1). The later-created one is kept;
- an alias another image name already holds (§1.7: two names never share one);
- prereleases, when :attr:`CatalogOptions.include_prereleases` is off.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from . import model
from .arch import KERNEL_NAMES
from .errors import BadTagError
from .versions import parse_semver, parse_tag, version_key

ITEM_FILES: Mapping[str, str] = MappingProxyType(
    {
        model.META_FTYPE: "lxd.tar.xz",
        "squashfs": "rootfs.squashfs",
        "root.tar.xz": "root.tar.xz",
        "disk-kvm.img": "disk-kvm.img",
    }
)
"""ftype -> item key, which is also the file name in the item path (OctoLXD's keys, spec §1.4)."""

INDEX_PATH = "streams/v1/index.json"
IMAGES_PATH = "streams/v1/images.json"

_HEX64 = re.compile(r"[0-9a-f]{64}")
# LXD splits ``aliases`` at commas; a slash at either end would make an empty path segment.
_ALIAS = re.compile(r"(?!/)[^\s,]+(?<!/)")


def item_path(name: str, arch: str, version: str, filename: str) -> str:
    """``images/<name>/<arch>/v<version>/<filename>``, relative to the base URL (spec §9 item 8)."""
    return f"images/{name}/{arch}/v{version}/{filename}"


@dataclass(frozen=True)
class CatalogOptions:
    """How builds become products (spec §6 "Configuration")."""

    incus_twin: bool = False
    """Add an ``incus.tar.xz`` twin of each meta item, so Incus can pull too (spec §7)."""
    extra_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Image name -> aliases beyond the name itself (spec §1.7)."""
    support_eol: bool = False
    """Publish ``support_eol`` from ``expiry_date``; off because LXD prunes images at it (§2.4, §4.15)."""
    include_prereleases: bool = True
    """GitHub prereleases are images like any other unless configured otherwise (spec §4 item 13)."""


@dataclass(slots=True)
class _Product:
    name: str
    arch: str
    builds: dict[str, list[model.ArchBuild]] = field(default_factory=dict)  # version -> its builds


def build_catalog(
    builds: Iterable[model.ArchBuild],
    options: CatalogOptions,
    *,
    skipped: Iterable[model.Skip] = (),
    now: datetime,
) -> model.Catalog:
    """Render the catalog of ``builds``; ``skipped`` (from resolving) is carried into the result.

    The output depends only on the set of builds and the options, never on their order; ``now`` is
    used for ``updated`` only when there are no builds, and becomes ``built_at``.
    """
    skips: list[model.Skip] = []
    products: dict[str, _Product] = {}
    for build in builds:
        problem = _problem(build, options)
        if problem is not None:
            skips.append(model.Skip(_subject(build), *problem))
            continue
        product_id = f"{build.name}:{build.arch}"
        product = products.get(product_id)
        if product is None:
            product = products[product_id] = _Product(build.name, build.arch)
        product.builds.setdefault(build.version, []).append(build)

    aliases = _assign_aliases(products.values(), options.extra_aliases, skips)
    files: dict[str, model.FileRef] = {}
    rendered: dict[str, Any] = {}
    newest_time: datetime | None = None
    for product_id in sorted(products):
        product = products[product_id]
        versions: dict[str, Any] = {}
        newest_key = ""
        newest: model.ArchBuild | None = None
        for candidates in product.builds.values():
            build = candidates[0] if len(candidates) == 1 else _keep_one(product_id, candidates, skips)
            key = version_key(build.created, build.version)
            versions[key] = _version(build, options.incus_twin, files)
            if key > newest_key:
                newest_key, newest = key, build
            created = _utc(build.created)
            if newest_time is None or created > newest_time:
                newest_time = created
        assert newest is not None
        rendered[product_id] = _product_fields(product, newest, aliases[product.name], options, versions)

    product_ids = tuple(rendered)
    updated = email.utils.format_datetime(newest_time if newest_time is not None else _utc(now))
    index_entries: dict[str, Any] = {}
    if product_ids:
        index_entries["images"] = {
            "datatype": "image-downloads",
            "format": "products:1.0",
            "path": IMAGES_PATH,
            "products": list(product_ids),
        }
    index_json = _dumps({"format": "index:1.0", "updated": updated, "index": index_entries})
    images_json = _dumps(
        {
            "content_id": "images",
            "datatype": "image-downloads",
            "format": "products:1.0",
            "updated": updated,
            "products": rendered,
        }
    )
    digest = hashlib.sha256()
    for document in (index_json, images_json):
        digest.update(len(document).to_bytes(8, "big"))
        digest.update(document)
    skips.sort(key=lambda skip: (skip.subject, skip.reason, skip.detail))
    return model.Catalog(
        index_json=index_json,
        images_json=images_json,
        etag=f'"{digest.hexdigest()}"',
        files=files,
        products=product_ids,
        skipped=(*skipped, *skips),
        built_at=now,
    )


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken as UTC already (the model's convention)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _subject(build: model.ArchBuild) -> str:
    return f"{build.name}/v{build.version} {build.arch}"


def _rank(build: model.ArchBuild) -> tuple[Any, ...]:
    """Which same-version build of one product stays: a total order, so input order is moot."""
    return (_utc(build.created), parse_semver(build.version), repr(build))


def _keep_one(product_id: str, candidates: list[model.ArchBuild], skips: list[model.Skip]) -> model.ArchBuild:
    """The build that keeps a contested version (and its item paths); the others become skips."""
    keep = max(candidates, key=_rank)
    for drop in candidates:
        if drop is not keep:
            skips.append(
                model.Skip(
                    _subject(drop),
                    "duplicate-version",
                    f"another build of {product_id} v{keep.version}, created "
                    f"{_utc(keep.created):%Y-%m-%d %H:%M:%S}, is kept",
                )
            )
    return keep


def _hash_ok(ref: model.FileRef) -> bool:
    return type(ref.size) is int and ref.size >= 0 and _HEX64.fullmatch(ref.sha256) is not None


def _problem(build: model.ArchBuild, options: CatalogOptions) -> tuple[str, str] | None:
    """Why ``build`` cannot be published as it is (a Skip's reason and detail), or None."""
    if build.prerelease and not options.include_prereleases:
        return "prerelease", "prereleases are excluded by configuration"
    try:
        tag_ok = parse_tag(f"{build.name}/v{build.version}") == (build.name, build.version)
    except BadTagError as error:
        return error.reason, str(error)
    if not tag_ok:
        return BadTagError.reason, "the name and version do not round-trip through a tag"
    if build.arch not in KERNEL_NAMES:
        return "unknown-arch", f"architecture {build.arch!r} is not in LXD's table (spec §1.8)"
    if not build.rootfs:
        return "missing-rootfs", "no rootfs or disk item"
    if not _hash_ok(build.meta):
        return "bad-hash", "the meta item's size or sha256 is malformed"
    seen: set[str] = set()
    for ref, combined in build.rootfs:
        if ref.ftype not in model.COMBINED_FIELD or ref.ftype not in ITEM_FILES:
            return "unknown-ftype", f"rootfs ftype {ref.ftype!r} is not one we publish"
        if ref.ftype in seen:
            return "duplicate-ftype", f"two {ref.ftype} items"
        seen.add(ref.ftype)
        if not _hash_ok(ref) or _HEX64.fullmatch(combined) is None:
            return "bad-hash", f"the {ref.ftype} item's size, sha256 or combined sha256 is malformed"
    return None


def _assign_aliases(
    products: Iterable[_Product], extra: Mapping[str, tuple[str, ...]], skips: list[model.Skip]
) -> dict[str, tuple[str, ...]]:
    """Each image name's aliases: its name first, then its configured extras (spec §1.7).

    LXD registers every alias ``A`` and also ``A/<arch>`` for each architecture, and the first
    image in its sort order wins a clash, whichever name that is. So no string either form produces
    may be claimed twice. Claims are granted in a fixed order: every name's own name first (so an
    image can always be pulled by its name unless that string is genuinely taken), then the extras,
    each pass in lexical order of the names; a claim that clashes with an earlier one is dropped and
    reported as ``alias-conflict``. The result is one alias set per name, used on all its archs.
    """
    archs: dict[str, set[str]] = {}
    for product in products:
        archs.setdefault(product.name, set()).add(product.arch)
    names = sorted(archs)
    taken: dict[str, str] = {}  # registered string -> the name holding it
    granted: dict[str, list[str]] = {name: [] for name in names}

    def claim(name: str, alias: str) -> None:
        if alias in granted[name]:
            return
        if _ALIAS.fullmatch(alias) is None:
            skips.append(
                model.Skip(f"{name} alias {alias!r}", "bad-alias", "not usable in LXD's aliases string")
            )
            return
        forms = (alias, *(f"{alias}/{arch}" for arch in sorted(archs[name])))
        for form in forms:
            holder = taken.get(form)
            if holder is not None and holder != name:
                skips.append(
                    model.Skip(
                        f"{name} alias {alias}", "alias-conflict", f"{form!r} already belongs to {holder}"
                    )
                )
                return
        for form in forms:
            taken[form] = name
        granted[name].append(alias)

    for name in names:
        claim(name, name)
    for name in names:
        for alias in extra.get(name, ()):
            claim(name, alias)
    return {name: tuple(aliases) for name, aliases in granted.items()}


def _version(build: model.ArchBuild, incus_twin: bool, files: dict[str, model.FileRef]) -> dict[str, Any]:
    """One version: its items and label (spec §1.3), registering each item path in ``files``."""
    name, arch, version = build.name, build.arch, build.version
    meta = build.meta
    meta_path = item_path(name, arch, version, ITEM_FILES[model.META_FTYPE])
    meta_item: dict[str, Any] = {
        "ftype": model.META_FTYPE,
        "path": meta_path,
        "size": meta.size,
        "sha256": meta.sha256,
    }
    files[meta_path] = meta
    items: dict[str, Any] = {}
    for ref, combined in build.rootfs:
        filename = ITEM_FILES[ref.ftype]
        path = item_path(name, arch, version, filename)
        items[filename] = {"ftype": ref.ftype, "path": path, "size": ref.size, "sha256": ref.sha256}
        meta_item[model.COMBINED_FIELD[ref.ftype]] = combined
        files[path] = ref
    items[ITEM_FILES[model.META_FTYPE]] = meta_item
    if incus_twin:
        items[model.INCUS_META_FTYPE] = {**meta_item, "ftype": model.INCUS_META_FTYPE}
    rendered: dict[str, Any] = {"items": items}
    label = build.metadata.properties.get("description")
    if label:
        rendered["label"] = str(label)
    return rendered


def _product_fields(
    product: _Product,
    newest: model.ArchBuild,
    aliases: tuple[str, ...],
    options: CatalogOptions,
    versions: dict[str, Any],
) -> dict[str, Any]:
    """A product's fields from its newest version's metadata (spec §1.3, §4 item 5)."""
    properties = newest.metadata.properties
    fields: dict[str, Any] = {"arch": product.arch, "versions": versions}
    if aliases:
        fields["aliases"] = ",".join(aliases)
    for key in ("os", "release", "version", "release_codename"):
        value = properties.get(key)
        if value:
            fields[key] = str(value)
    if "release" in fields:
        fields["release_title"] = fields["release"]
    fields["variant"] = str(properties.get("variant") or "default")
    expiry = newest.metadata.expiry_date
    if options.support_eol and expiry is not None:
        fields["support_eol"] = f"{_utc(expiry):%Y-%m-%d}"
    return fields

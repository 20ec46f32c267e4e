"""From one release's assets to verified per-architecture builds (spec/simplestreams.md §3.3, §3.4, §4, §6).

Theory of operation. :func:`resolve_release` parses the tag, applies the draft and prerelease policy,
groups the assets by the architecture written in their names (:data:`ASSET_NAMES`) and resolves each
architecture on its own, in sorted order, so one bad architecture never takes its siblings down and
the result never depends on listing order (fixing OctoLXD's all-or-nothing, nondeterministic releases,
§4 item 4). An architecture is published only with a meta tarball that parses, at least one rootfs,
the sha256 of every file and a combined sha256(meta ‖ rootfs) that we computed ourselves (§1.5 "we
MUST NOT publish a combined value we have not verified", §4 item 7). Anything else becomes one
:class:`~simplestreams.model.Skip` with a reason, logged once.

Everything learnt from file contents is cached in the :class:`~.hashcache.HashCache` under the
identities of the files it came from (§6), so with a warm cache resolving a release reads, hashes and
parses nothing:

====================================  =======================================================
key                                   value
====================================  =======================================================
``("meta", M)``                       ``{"sha256", "metadata"}`` or ``{"sha256", "error"}``
``("sidecar", S)``                    ``{"sha256"}`` or ``{"error"}`` (parsed sidecar)
``("squashfs", R)``                   ``{"bytes_used"}`` or ``{"error"}`` (superblock check)
``("sha256", R)``                     ``{"sha256"}`` of the rootfs alone, when computed
``("combined", M, R)``                ``{"sha256"}`` of meta ‖ rootfs, computed by streaming
====================================  =======================================================

where M, R and S are :attr:`Asset.identity` values. Sources of each hash, in order:

- meta sha256: computed from the bytes read for parsing (the whole file is read anyway); it must equal
  the backend's ``digest`` and a ``lxd.<arch>.tar.xz.sha256`` sidecar when either is present;
- rootfs sha256: the backend's ``digest``, else the sidecar, else streamed; a reader that offers
  :meth:`PairHasher.sha256_pair` gets the rootfs hash from the same pass as the combined one, and then
  sidecar and digest are verified against the bytes as well, at no extra read;
- combined: always streamed once per (meta, rootfs) identity pair; a combined sidecar is compared to it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from . import model
from .arch import kernel_arch
from .errors import (
    BadMetadataError,
    BadSidecarError,
    BadTagError,
    HashMismatchError,
    RejectedError,
    TruncatedFileError,
    UnknownArchError,
)
from .hashcache import HashCache
from .meta import metadata_from_json, metadata_to_json, parse_meta
from .versions import parse_tag

log = logging.getLogger("simplestreams.resolve")

META_LIMIT = 64 * 1024 * 1024
"""Largest meta tarball read (it is read whole, hashed and parsed)."""

SIDECAR_LIMIT = 64 * 1024
"""Largest sidecar read; ``sha256sum`` output for one file is under 4 KiB."""

SQUASHFS_HEAD = 96
"""Bytes of a squashfs read for the truncation check: the 4.0 superblock."""

ROOTFS_ORDER = ("squashfs", "root.tar.xz", "disk-kvm.img")
"""Rootfs and disk ftypes we publish, in LXD's order of preference (spec §1.4)."""

ASSET_NAMES = {
    model.META_FTYPE: "lxd.{arch}.tar.xz",
    "squashfs": "rootfs.{arch}.squashfs",
    "root.tar.xz": "rootfs.{arch}.tar.xz",
    "disk-kvm.img": "disk-kvm.{arch}.img",
}
"""ftype -> asset (and local file) name per arch ``A`` as written; ``<name>.sha256`` is its sidecar.
The combined sidecar is ``combined.{arch}.sha256`` for squashfs (OctoLXD's name) and
``combined.{arch}.<ftype>.sha256`` for the other rootfs types. Other names are ignored."""

_HEX64 = re.compile(rb"[0-9A-Fa-f]{64}(?=\s|\Z)")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SUPERBLOCK_USED = struct.Struct("<Q")
_NAME = re.compile(
    r"(?:lxd\.(?P<meta>[^./]+)\.tar\.xz"
    r"|rootfs\.(?P<squashfs>[^./]+)\.squashfs"
    r"|rootfs\.(?P<rootxz>[^./]+)\.tar\.xz"
    r"|disk-kvm\.(?P<disk>[^./]+)\.img)(?P<sidecar>\.sha256)?"
    r"|combined\.(?P<combined>[^./]+)(?:\.(?P<cftype>root\.tar\.xz|disk-kvm\.img))?\.sha256"
)
_GROUP_FTYPE = {
    "meta": model.META_FTYPE,
    "squashfs": "squashfs",
    "rootxz": "root.tar.xz",
    "disk": "disk-kvm.img",
}
_POLICY_REASONS = frozenset({"draft", "prerelease"})


@runtime_checkable
class PairHasher(Protocol):
    """An optional capability of a :class:`~simplestreams.model.AssetReader`."""

    async def sha256_pair(self, first: model.Asset, second: model.Asset) -> tuple[str, str]:
        """``(sha256(second), sha256(first ‖ second))`` in one pass over ``second``: the rootfs hash and
        the combined hash for the price of one read of the (large) rootfs."""
        ...


@dataclass
class _Arch:
    """The assets of one architecture of a release, by role."""

    meta: model.Asset | None = None
    files: dict[str, model.Asset] = field(default_factory=dict)  # ftype -> meta or rootfs asset
    sidecars: dict[str, model.Asset] = field(default_factory=dict)  # ftype -> <asset>.sha256
    combined: dict[str, model.Asset] = field(default_factory=dict)  # rootfs ftype -> combined sidecar


async def resolve_release(
    release: model.Release,
    reader: model.AssetReader,
    cache: HashCache,
    *,
    include_prereleases: bool = True,
) -> tuple[list[model.ArchBuild], list[model.Skip]]:
    """The verified builds of ``release``, one per complete architecture, and what was skipped and why.

    Raises only what ``reader`` raises beyond :class:`~simplestreams.errors.RejectedError` and
    :class:`OSError` (an upstream failure, which the backend handles by keeping its last good catalog).
    """
    if release.draft:
        return [], [_skip(release.tag, "draft", "drafts are never published")]
    try:
        name, version = parse_tag(release.tag)
    except BadTagError as exc:
        return [], [_skip(f"tag {release.tag}", exc.reason, str(exc))]
    if release.prerelease and not include_prereleases:
        return [], [_skip(release.tag, "prerelease", "prereleases are excluded by configuration")]

    archs: dict[str, _Arch] = {}
    for asset in release.assets:
        role = classify(asset.name)
        if role is None:
            continue
        arch, kind, ftype = role
        group = archs.get(arch)
        if group is None:
            group = archs[arch] = _Arch()
        if kind == "file":
            group.files[ftype] = asset
            if ftype == model.META_FTYPE:
                group.meta = asset
        elif kind == "sidecar":
            group.sidecars[ftype] = asset
        else:
            group.combined[ftype] = asset

    builds: list[model.ArchBuild] = []
    skips: list[model.Skip] = []
    for arch in sorted(archs):
        try:
            builds.append(
                await _resolve_arch(release, name, version, arch, archs[arch], reader=reader, cache=cache)
            )
        except RejectedError as exc:
            skips.append(_skip(f"{release.tag} {arch}", exc.reason, str(exc)))
        except OSError as exc:
            skips.append(_skip(f"{release.tag} {arch}", "unreadable", f"{type(exc).__name__}: {exc}"))
    return builds, skips


def rejected(reason: str, detail: str) -> RejectedError:
    """A :class:`RejectedError` counted under ``reason`` (for reasons without a class of their own)."""
    error = RejectedError(detail)
    error.reason = reason
    return error


async def _resolve_arch(
    release: model.Release,
    name: str,
    version: str,
    arch: str,
    group: _Arch,
    *,
    reader: model.AssetReader,
    cache: HashCache,
) -> model.ArchBuild:
    try:
        kernel = kernel_arch(arch)
    except UnknownArchError as exc:
        raise UnknownArchError(f"{exc}; its files are ignored") from None
    meta = group.meta
    if meta is None:
        raise rejected("missing-meta", f"no {ASSET_NAMES[model.META_FTYPE].format(arch=arch)}")
    rootfs_types = [ftype for ftype in ROOTFS_ORDER if ftype in group.files]
    if not rootfs_types:
        names = ", ".join(ASSET_NAMES[ftype].format(arch=arch) for ftype in ROOTFS_ORDER)
        raise rejected("missing-rootfs", f"none of {names}")

    meta_sha, metadata = await _meta(meta, reader, cache)
    if meta.sha256 is not None and meta.sha256.lower() != meta_sha:
        raise HashMismatchError(f"{meta.name}: the digest {meta.sha256} is not the file's sha256 {meta_sha}")
    meta_sidecar = group.sidecars.get(model.META_FTYPE)
    if meta_sidecar is not None:
        expected = await _sidecar(meta_sidecar, reader, cache)
        if expected != meta_sha:
            raise HashMismatchError(f"{meta_sidecar.name} says {expected}, {meta.name} hashes to {meta_sha}")
    try:
        meta_kernel = kernel_arch(metadata.architecture)
    except UnknownArchError:  # parse_meta validated it; a foreign cache file may not have
        meta_kernel = ""
    if meta_kernel != kernel:
        raise rejected(
            "arch-mismatch",
            f"{meta.name} says architecture {metadata.architecture!r}, the assets say {arch!r}",
        )
    created = metadata.creation_date or release.published
    if created is None:
        raise BadMetadataError(f"{meta.name} has no creation_date and the release no publication time")

    rootfs: list[tuple[model.FileRef, str]] = []
    for ftype in rootfs_types:
        asset = group.files[ftype]
        sha, combined = await _rootfs(meta, asset, ftype, group, reader=reader, cache=cache)
        rootfs.append((model.FileRef(ftype, asset.size, sha, asset.path, asset.url), combined))
    return model.ArchBuild(
        name=name,
        version=version,
        arch=arch,
        created=created,
        metadata=metadata,
        meta=model.FileRef(model.META_FTYPE, meta.size, meta_sha, meta.path, meta.url),
        rootfs=tuple(rootfs),
        prerelease=release.prerelease,
    )


async def _meta(
    asset: model.Asset, reader: model.AssetReader, cache: HashCache
) -> tuple[str, model.Metadata]:
    """(sha256, metadata) of a meta tarball: read, hashed and parsed once per identity."""
    key = ("meta", asset.identity)
    value = cache.get(key)
    if value is not None:
        try:
            return _cached_meta(value)
        except ValueError:
            cache.discard(key)
    if asset.size > META_LIMIT:
        raise BadMetadataError(f"{asset.name} is {asset.size} bytes, over the {META_LIMIT} byte limit")
    data = await reader.read(asset, META_LIMIT)
    if len(data) != asset.size:
        raise rejected("changed", f"{asset.name}: read {len(data)} bytes, listed as {asset.size}")
    sha, metadata, error = await asyncio.to_thread(_hash_and_parse, data)
    if error is not None:
        cache.put(key, {"sha256": sha, "error": str(error)})
        raise error
    assert metadata is not None
    cache.put(key, {"sha256": sha, "metadata": metadata_to_json(metadata)})
    return sha, metadata


def _hash_and_parse(data: bytes) -> tuple[str, model.Metadata | None, BadMetadataError | None]:
    sha = hashlib.sha256(data).hexdigest()
    try:
        return sha, parse_meta(data), None
    except BadMetadataError as exc:
        return sha, None, exc


def _cached_meta(value: Any) -> tuple[str, model.Metadata]:
    """Decode a ``("meta", M)`` entry; raises the cached BadMetadataError, or ValueError if malformed."""
    if not isinstance(value, dict):
        raise ValueError("not a mapping")
    sha = value.get("sha256")
    if not isinstance(sha, str) or _DIGEST.fullmatch(sha) is None:
        raise ValueError("no sha256")
    error = value.get("error")
    if isinstance(error, str):
        raise BadMetadataError(error)
    return sha, metadata_from_json(value.get("metadata"))


async def _sidecar(asset: model.Asset, reader: model.AssetReader, cache: HashCache) -> str:
    """The lowercase hex a sidecar holds: exactly 64 hex digits, then whitespace or the end."""
    key = ("sidecar", asset.identity)
    value = cache.get(key)
    if isinstance(value, dict):
        sha = value.get("sha256")
        if isinstance(sha, str) and _DIGEST.fullmatch(sha):
            return sha
        error = value.get("error")
        if isinstance(error, str):
            raise BadSidecarError(error)
    if asset.size > SIDECAR_LIMIT:
        raise BadSidecarError(f"{asset.name} is {asset.size} bytes, over the {SIDECAR_LIMIT} byte limit")
    data = await reader.read(asset, SIDECAR_LIMIT)
    match = _HEX64.match(data)
    if match is None:
        detail = f"{asset.name} does not start with 64 hex digits followed by whitespace or the end"
        cache.put(key, {"error": detail})
        raise BadSidecarError(detail)
    sha = match.group().decode("ascii").lower()
    cache.put(key, {"sha256": sha})
    return sha


async def _check_squashfs(asset: model.Asset, reader: model.AssetReader, cache: HashCache) -> None:
    """A squashfs whose superblock's bytes_used exceeds the file is truncated (an interrupted upload)."""
    key = ("squashfs", asset.identity)
    value = cache.get(key)
    used: Any = value.get("bytes_used") if isinstance(value, dict) else None
    error: Any = value.get("error") if isinstance(value, dict) else None
    if type(used) is not int and not isinstance(error, str):
        head = await reader.head(asset, SQUASHFS_HEAD)
        if len(head) < SQUASHFS_HEAD:
            error = f"{asset.name} is {len(head)} bytes, shorter than a squashfs superblock"
            cache.put(key, {"error": error})
        elif head[:4] != b"hsqs":
            error = f"{asset.name} is not a squashfs (no hsqs magic)"
            cache.put(key, {"error": error})
        else:
            (used,) = _SUPERBLOCK_USED.unpack_from(head, 40)
            cache.put(key, {"bytes_used": used})
    if isinstance(error, str):
        raise TruncatedFileError(error)
    if used > asset.size:
        raise TruncatedFileError(f"{asset.name} is {asset.size} bytes, its superblock says {used} are used")


async def _rootfs(
    meta: model.Asset,
    asset: model.Asset,
    ftype: str,
    group: _Arch,
    *,
    reader: model.AssetReader,
    cache: HashCache,
) -> tuple[str, str]:
    """(sha256 of the rootfs, verified sha256(meta ‖ rootfs))."""
    if ftype == "squashfs":
        await _check_squashfs(asset, reader, cache)
    sidecar_asset = group.sidecars.get(ftype)
    sidecar = None if sidecar_asset is None else await _sidecar(sidecar_asset, reader, cache)
    sidecar_name = "" if sidecar_asset is None else sidecar_asset.name
    combined_asset = group.combined.get(ftype)
    combined_sidecar = None if combined_asset is None else await _sidecar(combined_asset, reader, cache)
    digest = None if asset.sha256 is None else asset.sha256.lower()
    if digest is not None and sidecar is not None and digest != sidecar:
        raise HashMismatchError(f"{sidecar_name} says {sidecar}, the digest of {asset.name} is {digest}")

    alone_key = ("sha256", asset.identity)
    combined_key = ("combined", meta.identity, asset.identity)
    streamed = _cached_sha(cache, alone_key)
    combined = _cached_sha(cache, combined_key)
    if combined is None:
        if isinstance(reader, PairHasher):
            streamed, combined = await reader.sha256_pair(meta, asset)
            cache.put(alone_key, {"sha256": streamed})
        else:
            combined = await reader.sha256([meta, asset])
        cache.put(combined_key, {"sha256": combined})

    sha = digest or streamed or sidecar
    if sha is None:
        sha = streamed = await reader.sha256([asset])
        cache.put(alone_key, {"sha256": sha})
    if streamed is not None:
        for claim, source in ((digest, "its digest"), (sidecar, sidecar_name)):
            if claim is not None and claim != streamed:
                raise HashMismatchError(f"{asset.name} hashes to {streamed}, {source} says {claim}")
    if combined_sidecar is not None and combined_sidecar != combined:
        combined_name = "" if combined_asset is None else combined_asset.name
        raise HashMismatchError(
            f"{combined_name} says {combined_sidecar}, sha256({meta.name} ‖ {asset.name}) is {combined}"
        )
    return sha, combined


def _cached_sha(cache: HashCache, key: tuple[Any, ...]) -> str | None:
    value = cache.get(key)
    if isinstance(value, dict):
        sha = value.get("sha256")
        if isinstance(sha, str) and _DIGEST.fullmatch(sha):
            return sha
    return None


@functools.lru_cache(maxsize=4096)
def classify(name: str) -> tuple[str, str, str] | None:
    """(arch, kind, ftype) of an asset name; kind is "file", "sidecar" or "combined"; None: ignored."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    groups = match.groupdict()
    if groups["combined"] is not None:
        return groups["combined"], "combined", groups["cftype"] or "squashfs"
    for group, ftype in _GROUP_FTYPE.items():
        arch = groups[group]
        if arch is not None:
            return arch, "sidecar" if groups["sidecar"] else "file", ftype
    return None  # pragma: no cover  (the pattern has no other alternative)


_logged: set[tuple[str, str, str]] = set()


def _skip(subject: str, reason: str, detail: str) -> model.Skip:
    """A Skip, logged: a warning the first time this process sees it (policy skips at info level),
    debug afterwards, so a backend that rebuilds every few minutes does not repeat itself."""
    skip = model.Skip(subject, reason, detail)
    seen = (subject, reason, detail)
    if seen in _logged:
        level = logging.DEBUG
    else:
        if len(_logged) >= 100_000:
            _logged.clear()
        _logged.add(seen)
        level = logging.INFO if reason in _POLICY_REASONS else logging.WARNING
    log.log(level, "skipped %s: %s (%s)", subject, reason, detail)
    return skip

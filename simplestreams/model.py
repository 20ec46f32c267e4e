"""The backend-neutral model every part of the image server shares.

Theory of operation (spec/simplestreams.md §6): a backend lists :class:`Release` objects (a tag, a
time, flags and :class:`Asset` files named like GitHub release assets). :mod:`.resolve` groups a
release's assets by architecture, hashes what is unknown through the backend's :class:`AssetReader`
(each hash cached by the immutable identity of the files it covers) and yields one
:class:`ArchBuild` per complete, verified architecture, or a :class:`Skip` saying why not.
:mod:`.catalog` maps the builds to products and renders ``index.json`` and ``images.json`` from one
:class:`Catalog`, which also maps every item path to the :class:`FileRef` a download serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Item ftypes (spec §1.4) and the asset-name stems that carry them. A rootfs ftype maps to the
# combined_* field that holds sha256(meta ‖ rootfs) on the meta item.
META_FTYPE = "lxd.tar.xz"
INCUS_META_FTYPE = "incus.tar.xz"
COMBINED_FIELD = {
    "squashfs": "combined_squashfs_sha256",
    "root.tar.xz": "combined_rootxz_sha256",
    "disk-kvm.img": "combined_disk-kvm-img_sha256",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of a release as the backend lists it (no I/O has happened yet).

    ``identity`` changes whenever the bytes may have changed: (path, size, mtime_ns, inode) for a
    local file, (id, updated_at, digest) for a GitHub asset. Hash caches key on it.
    """

    name: str  # as published, e.g. "lxd.amd64.tar.xz", "rootfs.amd64.squashfs.sha256"
    size: int
    identity: tuple[Any, ...]
    sha256: str | None = None  # known without reading (GitHub's "digest"), lowercase hex
    path: str | None = None  # a local file a download streams (directory backend)
    url: str | None = None  # a stable URL a download redirects to (GitHub browser_download_url)


@dataclass(frozen=True, slots=True)
class Release:
    """A tag ``<name>/v<version>`` and its assets."""

    tag: str
    assets: tuple[Asset, ...]
    published: datetime | None = None  # UTC; GitHub's published_at; None for a local directory
    draft: bool = False
    prerelease: bool = False


@dataclass(frozen=True, slots=True)
class Metadata:
    """What ``metadata.yaml`` in a meta tarball says (spec §3.3)."""

    architecture: str
    creation_date: datetime | None  # UTC
    expiry_date: datetime | None
    properties: Mapping[str, str]
    templates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileRef:
    """One item of a version: what images.json says of it and where a download finds it."""

    ftype: str
    size: int
    sha256: str
    path: str | None = None  # local file: served as 200 with exact Content-Length
    url: str | None = None  # remote: answered with a redirect
    proxy: bool = False  # remote that needs our credentials (a private repository): ``url`` is proxied


@dataclass(frozen=True, slots=True)
class ArchBuild:
    """One complete, verified architecture of one release."""

    name: str  # image name (tag group 1); may contain "/"
    version: str  # tag group 2, without the "v"
    arch: str  # as written in the asset names ("amd64"), validated against spec §1.8
    created: datetime  # UTC: creation_date, else the release's published time, else the meta mtime
    metadata: Metadata
    meta: FileRef
    rootfs: tuple[tuple[FileRef, str], ...]  # (rootfs or disk item, sha256(meta ‖ it)), verified
    prerelease: bool = False


@dataclass(frozen=True, slots=True)
class Skip:
    """Something left out of the index, and why; logged once and counted by ``reason``."""

    subject: str  # "docker/v1.2.3", "docker/v1.2.3 arm64", "tag docker/latest"
    reason: str  # a short machine-friendly key: "bad-tag", "missing-rootfs", "hash-mismatch", ...
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    """One rendering of a backend's products: the two documents and the download map."""

    index_json: bytes
    images_json: bytes
    etag: str  # strong ETag over both documents, quoted
    files: Mapping[str, FileRef]  # item path relative to the base URL -> the file
    products: Sequence[str]  # sorted product IDs
    skipped: Sequence[Skip] = field(default_factory=tuple)
    built_at: datetime | None = None


class AssetReader(Protocol):
    """The I/O a backend offers to :mod:`.resolve`."""

    async def read(self, asset: Asset, limit: int) -> bytes:
        """The whole file (a meta tarball or a sidecar); more than ``limit`` bytes is an error."""
        ...

    async def head(self, asset: Asset, length: int) -> bytes:
        """The first ``length`` bytes (fewer if the file is shorter): format checks such as the
        squashfs superblock's bytes_used, which catches a truncated rootfs without reading it all."""
        ...

    async def sha256(self, assets: Sequence[Asset]) -> str:
        """sha256 of the files' concatenated bytes, streamed, as lowercase hex."""
        ...


@dataclass(frozen=True, slots=True)
class CatalogState:
    """What a :class:`CatalogSource` hands the server: the catalog and whether it is current."""

    catalog: Catalog
    fresh: bool  # False: the last refresh failed (or is rate limited) and this is the last good one
    problem: str | None = None  # why it is stale


class CatalogSource(Protocol):
    """One base URL's catalog (the directory backend has one; GitHub one per owner/repo)."""

    def current(self) -> CatalogState | None:
        """What :meth:`get` would return right now without waiting, or None when it would have to
        build or refresh first. Synchronous and cheap: the listener's fast path calls it per request."""
        ...

    async def get(self) -> CatalogState:
        """The current catalog, building or refreshing it first when there is none or it expired.

        At most one refresh runs at a time; concurrent callers wait for it. Raises
        :class:`~simplestreams.errors.RequestError` subclasses only when there is no catalog at all
        to serve (NotFoundError for an unknown repository, RateLimitedError, UpstreamError).
        """
        ...

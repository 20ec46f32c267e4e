"""The GitHub releases backend: OctoLXD's routes, fixed (spec/simplestreams.md §3, §4, §5, §6).

Theory of operation. :class:`GitHubBackend` hands out one :class:`RepoSource` per ``owner/repo`` (the
base URL ``/<owner>/<repo>``). A source keeps the last catalog it built and refreshes it when it is
older than ``ttl`` (spec §9 item 18); one refresh runs at a time and concurrent callers await it.

A refresh lists the releases (``GET {api}/repos/{o}/{r}/releases?per_page=100``), follows the
``Link`` header's ``rel="next"`` and never computes page numbers (§5). Every page is requested with
the ``If-None-Match`` of the ETag stored for that exact URL and credential; a 304 reuses the stored
body. When every page is unchanged the catalog is kept and only its age is renewed, so a warm repository
costs one conditional request per page per ``ttl`` (free against the primary limit with a token), and
no download. A page can also change in fields we do not use (``download_count`` moves with every
download); when the releases parsed from it equal those the catalog was built from, it is kept too.
Otherwise each release becomes a :class:`~simplestreams.model.Release` whose assets carry the
identity ``(id, updated_at, digest)`` and GitHub's ``digest`` as their sha256 (§5, §9 item 14),
:func:`.resolve.resolve_release` turns it into verified builds through a :class:`GitHubReader` (which
downloads only what the hash cache does not already know, keyed by those identities), and
:func:`.catalog.build_catalog` renders the documents. Stored ETags are replaced only after a build
succeeded, so a failed build is retried in full next time instead of being mistaken for "unchanged".

Failures never cost the last good catalog (§6): a network error or 5xx keeps it, marked stale, and is
retried after ``ttl / 10``; a rate limit (403/429 with ``X-RateLimit-Remaining: 0``, or a
``Retry-After``) pauses every API call of the backend until GitHub says so, and the stale catalog is
served meanwhile. Only a source with no catalog at all raises: :class:`~.errors.RateLimitedError`
(503 with Retry-After), :class:`~.errors.UpstreamError` (502), or :class:`~.errors.NotFoundError` for a
repository GitHub does not know (404, which also drops a catalog: the repository is gone or private).

Downloads (spec §9 item 9) are answered by the server from the cached catalog: it looks the path up in
``catalog.files`` and redirects to the asset's stable ``browser_download_url``; a path that is not
there costs at most one refresh per ``ttl / 10`` (:meth:`RepoSource.refresh_for_miss`, §4 item 9), so
a release published since the last refresh is found without letting unknown paths drive API calls.

Private repositories (§5): ``browser_download_url`` needs a browser session, so a client could not
follow a redirect to it. When the listing changed, a refresh asks ``GET /repos/{o}/{r}`` (conditionally,
so usually a free 304) whether the repository is private; if it is, assets are located by their API
``url``, the reader fetches them there with the token, and every file of the catalog is marked
:attr:`~simplestreams.model.FileRef.proxy`: the server streams it through :meth:`RepoSource.open`
instead of redirecting. Without a token a private repository is invisible (GitHub answers 404).

The token is sent only to the API origin, as ``Authorization: Bearer``, and never logged or put in an
error. Asset downloads go without it, except the first request of a private asset's download, which
is an API request; the signed URL GitHub redirects that to is fetched without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from . import errors, model
from .catalog import CatalogOptions, build_catalog
from .hashcache import HashCache
from .resolve import resolve_release

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
"""The REST API version we are written against (sent as ``X-GitHub-Api-Version``, spec §5)."""

PER_PAGE = 100
"""GitHub's maximum page size (OctoLXD used 50, spec §4 item 3)."""

MAX_PAGES = 100
"""At most 10,000 releases per repository: a bound on a ``Link`` chain that never ends."""

MAX_PAGE_BYTES = 64 * 1024 * 1024
"""A release page with 100 releases of many assets is a few MB; anything near this is not GitHub."""

MAX_REDIRECTS = 5
"""API redirects GitHub documents (301 for a renamed repository, 302/307 temporarily)."""

MAX_ERROR_BYTES = 64 * 1024
"""Of an error answer to an asset request, only this much is read (for GitHub's ``message``)."""

MIN_DOWNLOAD_RATE = 1024 * 1024
"""Bytes per second a download must at least make: its total timeout is ``timeout + size / rate``."""

RECENT_FILE_BYTES = 8 * 1024 * 1024
RECENT_TOTAL_BYTES = 32 * 1024 * 1024
"""Meta tarballs up to this size are kept in memory after a read, within this total (see GitHubReader)."""

RESOLVE_CONCURRENCY = 4
"""Releases resolved at once on a cold refresh (downloads overlap; the result does not depend on it)."""

MAX_REPOS = 1024
"""Per-repository sources kept; the least recently used one without a refresh running is dropped."""

_DEFAULT_PAUSE = 60.0
"""GitHub: with neither Retry-After nor a reset time, wait at least a minute before retrying."""

_MAX_PAUSE = 3600.0 + 60.0
"""The primary limit resets within the hour; a reset time further out is not believed."""

# GitHub's rules: an owner is 1-39 letters, digits and hyphens, not starting with a hyphen (old
# accounts may end with one; Enterprise Managed Users carry an "_shortcode" suffix); a repository
# name is 1-100 of letters, digits, ".", "-" and "_", and not "." or "..".
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def user_agent() -> str:
    """``webspaces-simplestreams/<version>``: GitHub rejects API requests without a User-Agent (§5)."""
    try:
        version = importlib.metadata.version("webspaces")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"webspaces-simplestreams/{version}"


def valid_repository(owner: str, repo: str) -> bool:
    """Whether ``owner/repo`` is a name GitHub could have given (§6: anything else is a 404 at once)."""
    return bool(_OWNER.fullmatch(owner) and _REPO.fullmatch(repo) and repo not in (".", ".."))


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header, as GitHub sends it (§5)."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                return match.group(1).strip()
    return None


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``2021-08-28T15:04:05Z``) as an aware UTC datetime; None when absent/bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _retry_after(value: str) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.timestamp() - time.time()


def _message(body: bytes) -> str:
    """GitHub's error ``message`` (JSON ``{"message": ...}``), shortened; empty when there is none."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    message = document.get("message") if isinstance(document, dict) else None
    return message[:200] if isinstance(message, str) else ""


def asset_from_json(document: Any, *, private: bool = False) -> model.Asset | None:
    """One entry of a release's ``assets`` (spec §5), or None when it is not an ``uploaded`` asset with
    the fields we need. ``digest`` ``"sha256:<64 hex>"`` becomes :attr:`~model.Asset.sha256`; any other
    value is kept only in the identity, so a changed digest still means changed bytes.

    The locator is the stable ``browser_download_url``, or for a ``private`` repository the asset's API
    ``url``: github.com serves a private asset only to a browser session, the API to a token (§5)."""
    if not isinstance(document, dict) or document.get("state") != "uploaded":
        return None
    name, size, ident = document.get("name"), document.get("size"), document.get("id")
    updated, url, digest = (
        document.get("updated_at"),
        document.get("url" if private else "browser_download_url"),
        document.get("digest"),
    )
    if not isinstance(name, str) or not name or not isinstance(url, str):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    if not isinstance(ident, int) or isinstance(ident, bool) or not isinstance(updated, str):
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        return None
    if digest is not None and not isinstance(digest, str):
        digest = None
    sha256 = None
    if digest is not None:
        match = _DIGEST.fullmatch(digest)
        if match is not None:
            sha256 = match.group(1).lower()
        else:
            log.debug("asset %s: digest %r is not sha256:<64 hex>; not used", name, digest[:80])
    return model.Asset(name=name, size=size, identity=(ident, updated, digest), sha256=sha256, url=url)


def release_from_json(document: Any, *, private: bool = False) -> model.Release | None:
    """One release of a listing (spec §5 fields), or None when it has no usable ``tag_name``;
    ``private`` as for :func:`asset_from_json`."""
    if not isinstance(document, dict):
        return None
    tag = document.get("tag_name")
    if not isinstance(tag, str) or not tag:
        return None
    raw_assets = document.get("assets")
    assets = [asset_from_json(a, private=private) for a in raw_assets] if isinstance(raw_assets, list) else []
    return model.Release(
        tag=tag,
        assets=tuple(a for a in assets if a is not None),
        published=_parse_time(document.get("published_at")),
        draft=document.get("draft") is True,
        prerelease=document.get("prerelease") is True,
    )


@dataclass(frozen=True, slots=True)
class _Page:
    """One listing page as last fetched: the validator, the body and the ``rel="next"`` URL."""

    etag: str | None
    body: bytes
    next_url: str | None


@dataclass(slots=True)
class _Listing:
    pages: list[_Page]
    store: dict[tuple[str, str], _Page]  # (credential, URL) -> page, to commit after a good build
    changed: bool


class GitHubReader:
    """:class:`~simplestreams.model.AssetReader` over GitHub's download locators (spec §5 "Downloads").

    A public asset is fetched from its ``browser_download_url``, which answers 302 to GitHub's CDN. A
    private one (its locator is the asset's API ``url``, :func:`asset_from_json`) is fetched from the
    API with ``Accept: application/octet-stream`` and the token, which answers 302 to a short-lived
    signed URL on another host (or, GitHub documents, the bytes themselves). The token goes only to that
    first request on the API origin: a redirect is followed without it, whatever its host, so a signed
    URL never sees it. The API request counts against the rate limit and honours the backend's pause.

    Each fetch has a connect, a read and a total timeout (§4 item 14); the total grows with the file
    (``timeout + size / MIN_DOWNLOAD_RATE``). A 404 or 410 means the asset went away (a
    :class:`~.errors.MissingAssetError`: that architecture is skipped); a byte count other than the
    listed size is a :class:`~.errors.TruncatedFileError`; anything else (network, 5xx, timeouts) is an
    :class:`~.errors.UpstreamError`, which fails the refresh and keeps the last catalog rather than
    publishing an index with images missing for a passing reason. :meth:`proxy` hands the bytes of a
    private asset to the server, which streams them on to its client.
    """

    def __init__(self, client: httpx.AsyncClient, timeout: float, api: GitHubBackend | None = None) -> None:
        self._client = client
        self._timeout = timeout
        self._api = api
        self._headers = {"User-Agent": user_agent(), "Accept": "application/octet-stream"}
        self.downloads = 0  # files fetched (in part or whole), for tests and logs
        # Files read whole lately (meta tarballs), by identity: resolve reads a meta to parse it and
        # then streams it again, ahead of its rootfs, for the combined hash; this saves the second fetch.
        self._recent: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._recent_bytes = 0

    def _deadline(self, size: int) -> float:
        return self._timeout + size / MIN_DOWNLOAD_RATE

    @contextlib.asynccontextmanager
    async def _get(self, url: str, extra: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """The first answer to GET ``url`` that is not a redirect. Redirects are followed by hand so that
        the token (sent only when ``url`` is an asset's API URL) never leaves the first request. An API
        answer that is a rate limit or a credential failure raises here (and pauses the backend)."""
        api = self._api
        on_api = api is not None and api.is_asset_url(url)
        current = url
        where = _redact(url)
        try:
            for hop in range(MAX_REDIRECTS + 1):
                headers = {**self._headers, **extra}
                if hop == 0 and on_api:
                    assert api is not None
                    api._check_pause()
                    api.api_calls += 1
                    headers = {**api._api_headers(), **headers}
                async with self._client.stream(
                    "GET", current, headers=headers, follow_redirects=False
                ) as reply:
                    location = reply.headers.get("location")
                    if reply.status_code in (301, 302, 303, 307, 308) and location:
                        current = urljoin(current, location)
                        if urlsplit(current).scheme not in ("http", "https"):
                            raise errors.UpstreamError(f"downloading {where} redirected to a non-HTTP URL")
                        continue
                    if hop == 0 and on_api:
                        assert api is not None
                        api._note_limits(reply)
                        if reply.status_code in (401, 403, 429):
                            body = bytearray()
                            async for chunk in reply.aiter_bytes():
                                body += chunk
                                if len(body) >= MAX_ERROR_BYTES:
                                    break
                            raise api._failure(reply, bytes(body), f"asset {where}")
                    yield reply
                    return
            raise errors.UpstreamError(f"downloading {where} redirected more than {MAX_REDIRECTS} times")
        except httpx.HTTPError as exc:
            raise errors.UpstreamError(f"downloading {where} failed: {type(exc).__name__}: {exc}") from None

    @contextlib.asynccontextmanager
    async def _fetch(self, asset: model.Asset, first: int | None = None) -> AsyncIterator[httpx.Response]:
        """The asset's response after GitHub's redirect to its CDN: 200, or for a ``first`` bytes
        Range request also 206 (or 416 for an empty file)."""
        if asset.url is None:
            raise errors.MissingAssetError(f"{asset.name} has no download URL")
        extra = {} if first is None else {"Range": f"bytes=0-{first - 1}"}
        self.downloads += 1
        async with self._get(asset.url, extra) as response:
            status = response.status_code
            if status in (404, 410):
                raise errors.MissingAssetError(f"{asset.name}: the download answered {status}")
            if status != 200 and not (first is not None and status in (206, 416)):
                raise errors.UpstreamError(f"downloading {_redact(asset.url)} answered {status}")
            yield response

    @contextlib.asynccontextmanager
    async def proxy(self, url: str, size: int) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes behind ``url`` (a private asset's API URL), for the server to proxy (spec §5).

        Entering waits for GitHub's 200 and raises :class:`~.errors.RequestError` subclasses (nothing
        has been sent to the client yet): RateLimitedError while paused or limited, UpstreamError for
        anything else, a vanished asset included (the catalog still lists it). The iterator raises
        UpstreamError when the transfer fails or stalls: each read has the client's read timeout, and the
        time spent waiting for GitHub is bounded by ``timeout + size / MIN_DOWNLOAD_RATE`` (time spent
        waiting for a slow client does not count). Counting the bytes is the caller's business.
        """
        where = _redact(url)
        self.downloads += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self._timeout):
                    response = await stack.enter_async_context(self._get(url, {}))
            except TimeoutError:
                raise errors.UpstreamError(
                    f"GitHub did not answer {where} within {self._timeout:g} s"
                ) from None
            if response.status_code != 200:
                gone = " (the asset is gone)" if response.status_code in (404, 410) else ""
                raise errors.UpstreamError(f"downloading {where} answered {response.status_code}{gone}")
            chunks = self._chunks(response, self._deadline(size) - (loop.time() - started), where)
            try:
                yield chunks
            finally:
                await chunks.aclose()

    @staticmethod
    async def _chunks(response: httpx.Response, budget: float, where: str) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        iterator = response.aiter_bytes()
        try:
            while True:
                began = loop.time()
                try:
                    async with asyncio.timeout(max(0.0, budget)):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise errors.UpstreamError(f"downloading {where} took too long") from None
                except httpx.HTTPError as exc:
                    raise errors.UpstreamError(
                        f"downloading {where} failed: {type(exc).__name__}: {exc}"
                    ) from None
                budget -= loop.time() - began
                if chunk:
                    yield chunk
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await closer()

    async def read(self, asset: model.Asset, limit: int) -> bytes:
        if asset.size > limit:
            raise errors.RejectedError(f"{asset.name} is {asset.size} bytes, more than the {limit} allowed")
        data = bytearray()
        try:
            async with asyncio.timeout(self._deadline(asset.size)), self._fetch(asset) as response:
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise errors.RejectedError(f"{asset.name} is larger than the {limit} bytes allowed")
        except TimeoutError:
            raise errors.UpstreamError(f"downloading {asset.name} took too long") from None
        if len(data) != asset.size:
            raise errors.TruncatedFileError(
                f"{asset.name}: {len(data)} bytes downloaded, {asset.size} listed"
            )
        self._remember(asset, bytes(data))
        return bytes(data)

    def _remember(self, asset: model.Asset, data: bytes) -> None:
        if len(data) > RECENT_FILE_BYTES:
            return
        if asset.identity in self._recent:
            self._recent_bytes -= len(self._recent.pop(asset.identity))
        self._recent[asset.identity] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_TOTAL_BYTES:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= len(dropped)

    async def head(self, asset: model.Asset, length: int) -> bytes:
        """A ``Range`` request for the first bytes; a server that ignores Range answers 200, and the
        stream is then closed after ``length`` bytes."""
        if length <= 0 or asset.size == 0:
            return b""
        data = bytearray()
        try:
            async with asyncio.timeout(self._deadline(length)), self._fetch(asset, length) as response:
                if response.status_code == 416:
                    return b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) >= length:
                        break
        except TimeoutError:
            raise errors.UpstreamError(f"downloading the start of {asset.name} took too long") from None
        return bytes(data[:length])

    async def sha256(self, assets: Sequence[model.Asset]) -> str:
        digest = hashlib.sha256()
        for asset in assets:
            await self._stream(asset, (digest,))
        return digest.hexdigest()

    async def sha256_pair(self, first: model.Asset, second: model.Asset) -> tuple[str, str]:
        """``(sha256(second), sha256(first ‖ second))`` with one download of each file: the rootfs hash
        and the combined fingerprint for the price of one read of the large rootfs
        (:class:`~.resolve.PairHasher`)."""
        combined = hashlib.sha256()
        alone = hashlib.sha256()
        for asset, digests in ((first, (combined,)), (second, (combined, alone))):
            await self._stream(asset, digests)
        return alone.hexdigest(), combined.hexdigest()

    async def _stream(self, asset: model.Asset, digests: Sequence[Any]) -> None:
        """Feed the asset's bytes to ``digests``; exactly ``asset.size`` of them, or TruncatedFileError."""
        recent = self._recent.get(asset.identity)
        if recent is not None and len(recent) == asset.size:
            for digest in digests:
                digest.update(recent)
            return
        count = 0
        try:
            async with asyncio.timeout(self._deadline(asset.size)), self._fetch(asset) as response:
                async for chunk in response.aiter_bytes():
                    for digest in digests:
                        digest.update(chunk)
                    count += len(chunk)
                    if count > asset.size:
                        break
        except TimeoutError:
            raise errors.UpstreamError(f"downloading {asset.name} took too long") from None
        if count != asset.size:
            more = "more than " if count > asset.size else ""
            raise errors.TruncatedFileError(
                f"{asset.name}: {more}{count} bytes downloaded, {asset.size} listed"
            )


def _redact(url: str) -> str:
    """A URL without its query (a CDN signature) or user info, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class GitHubBackend:
    """Catalogs of GitHub repositories' releases, one :class:`RepoSource` per ``owner/repo``.

    ``api_base`` is ``https://api.github.com`` or a GitHub Enterprise Server's ``https://HOST/api/v3``
    (§5). ``token`` (from the environment, never logged) raises the limit from 60 to 5,000 requests an
    hour and makes 304s free. ``allow`` restricts the repositories served (§6); names compare
    case-insensitively, as GitHub's do. ``cache`` is shared by all repositories; save it with
    :meth:`save_cache`, which prunes only entries no repository uses. A ``client`` passed in is used
    as it is (and not closed); ours has the timeouts of §4 item 14 and follows redirects only where
    this module says so.
    """

    def __init__(
        self,
        *,
        api_base: str = "https://api.github.com",
        token: str | None = None,
        ttl: float = 300.0,
        allow: Collection[str] | None = None,
        options: CatalogOptions | None = None,
        cache: HashCache | None = None,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
        max_repos: int = MAX_REPOS,
        clock: Callable[[], float] = time.monotonic,
        max_wait: float = 10.0,
    ) -> None:
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.ConfigError("github_api", f"github API base {api_base!r} is not an http(s) URL")
        if ttl <= 0 or timeout <= 0:
            raise errors.ConfigError("ttl", "github ttl and timeout must be positive")
        self.api_base = api_base.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._asset_path = re.compile(
            re.escape(parts.path.rstrip("/")) + r"/(?:repos/[^/]+/[^/]+|repositories/\d+)/releases/assets/\d+"
        )
        self._token = token or None
        # ETags are stored per credential (§5): a token's view (drafts, limits) is not anonymous'.
        self._credential = "anonymous" if self._token is None else "token:" + _fingerprint(self._token)
        self.ttl = float(ttl)
        self.retry_interval = max(1.0, self.ttl / 10)
        self.allow: frozenset[str] | None = None
        if allow is not None:
            entries = set()
            for entry in allow:
                owner, slash, repo = entry.strip().partition("/")
                if not slash or not valid_repository(owner, repo):
                    raise errors.ConfigError("allow", f"github allow-list entry {entry!r} is not OWNER/REPO")
                entries.add(f"{owner}/{repo}".lower())
            self.allow = frozenset(entries)
        self.options = options if options is not None else CatalogOptions()
        self.cache = cache if cache is not None else HashCache()
        self.timeout = float(timeout)
        self.max_repos = max(1, max_repos)
        self.max_wait = max_wait  # longest a request waits for a refresh when a catalog exists
        self.clock = clock  # monotonic seconds; tests pass a fake one to step through TTLs
        self._owns_client = client is None
        self._client = client if client is not None else _make_client(self.timeout)
        self.reader = GitHubReader(self._client, self.timeout, self)
        self._sources: OrderedDict[str, RepoSource] = OrderedDict()
        self._paused_until = 0.0  # clock(); no API call before it (rate limited)
        self._pause_reason = ""
        self.api_calls = 0  # API requests sent, for tests and metrics

    # -- per repository -------------------------------------------------------------------------

    def source(self, owner: str, repo: str) -> RepoSource:
        """The catalog source of ``/<owner>/<repo>``; NotFoundError for names GitHub cannot have or
        repositories outside the allow-list (no API call is made for either)."""
        if not valid_repository(owner, repo):
            raise errors.NotFoundError("not a GitHub owner/repository name")
        key = f"{owner}/{repo}".lower()
        if self.allow is not None and key not in self.allow:
            raise errors.NotFoundError(f"repository {owner}/{repo} is not served here")
        source = self._sources.get(key)
        if source is not None:
            self._sources.move_to_end(key)
            return source
        source = self._sources[key] = RepoSource(self, owner, repo)
        while len(self._sources) > self.max_repos:
            idle = next((k for k, s in self._sources.items() if not s.refreshing and k != key), None)
            if idle is None:
                break
            del self._sources[idle]
        return source

    async def aclose(self) -> None:
        """Cancel refreshes in flight and close our HTTP client."""
        for source in list(self._sources.values()):
            await source.cancel()
        if self._owns_client:
            await self._client.aclose()

    async def save_cache(self) -> None:
        """Save the shared hash cache, pruning only what no repository still serves.

        :meth:`.HashCache.save` drops entries unused since the previous save, and repositories are
        refreshed at different times, so every source first re-resolves the releases its catalog was
        built from: all cache hits, no I/O (a miss would need a download, which :class:`_NoReader`
        refuses), and each entry in use is marked as such. Entries of repositories this process has not
        served (since its start, or since they were dropped as least recently used) are pruned: after
        a restart such a repository costs one download per meta tarball when it is next requested.
        Call it periodically and at shutdown, instead of ``cache.save()``.
        """
        for source in list(self._sources.values()):
            for release in source.releases:
                with contextlib.suppress(errors.SimplestreamsError, OSError):
                    await resolve_release(
                        release, _NoReader(), self.cache, include_prereleases=self.options.include_prereleases
                    )
        await asyncio.to_thread(self.cache.save)

    # -- the REST API ---------------------------------------------------------------------------

    @property
    def paused_for(self) -> float:
        """Seconds left of a rate-limit pause (0 when API calls may be made)."""
        return max(0.0, self._paused_until - self.clock())

    def _api_headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": user_agent(),
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc.lower()) == self._origin

    def is_asset_url(self, url: str) -> bool:
        """Whether ``url`` is an asset's API URL (``{api}/repos/{o}/{r}/releases/assets/{id}``), the only
        download URL the token goes to. The origin alone would not do: GitHub Enterprise Server serves
        ``browser_download_url`` and its storage from the API's host."""
        parts = urlsplit(url)
        return self._same_origin(url) and not parts.query and bool(self._asset_path.fullmatch(parts.path))

    def _check_pause(self) -> None:
        left = self.paused_for
        if left > 0:
            raise errors.RateLimitedError(self._pause_reason, retry_after=math.ceil(left))

    def _pause(self, seconds: float, reason: str) -> None:
        seconds = min(max(1.0, seconds), _MAX_PAUSE)
        until = self.clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pause_reason = reason
            log.warning("github: %s; no API calls for %d s", reason, math.ceil(seconds))

    def _note_limits(self, response: httpx.Response) -> None:
        """An exhausted primary limit on a good answer: the next call would fail, so pause now."""
        headers = response.headers
        if headers.get("x-ratelimit-remaining") == "0" and response.status_code < 400:
            reset = headers.get("x-ratelimit-reset", "")
            if reset.isdigit():
                self._pause(int(reset) - time.time() + 1, "GitHub API rate limit used up")

    def _failure(self, response: httpx.Response, body: bytes, what: str) -> errors.RequestError:
        """The error for a non-2xx/304 API answer; a rate limit also starts a pause (§5)."""
        status, headers = response.status_code, response.headers
        message = _message(body)
        if status in (403, 429):
            seconds: float | None = None
            if "retry-after" in headers:
                seconds = _retry_after(headers["retry-after"])
                kind = "GitHub secondary rate limit"
            elif headers.get("x-ratelimit-remaining") == "0":
                reset = headers.get("x-ratelimit-reset", "")
                seconds = int(reset) - time.time() + 1 if reset.isdigit() else None
                kind = "GitHub API rate limit exceeded"
            else:
                kind = "GitHub rate limit"
            if seconds is None and (status == 429 or "rate limit" in message.lower()):
                seconds = _DEFAULT_PAUSE
            if seconds is not None:
                self._pause(seconds, kind)
                return errors.RateLimitedError(f"{kind} ({what})", retry_after=math.ceil(self.paused_for))
        if status == 404:
            return errors.NotFoundError(f"GitHub has no {what}")
        if status == 401:
            return errors.UpstreamError(f"GitHub rejected the credentials ({what}: 401 {message})")
        detail = f" {message}" if message else ""
        return errors.UpstreamError(f"GitHub answered {status}{detail} ({what})")

    async def api_get(self, url: str, etag: str | None) -> tuple[httpx.Response, bytes]:
        """One API GET (the body read, bounded), following GitHub's documented redirects on the API
        origin only, so the token never travels elsewhere. Raises RateLimitedError during a pause and
        UpstreamError for network failures and timeouts; statuses are the caller's to judge."""
        self._check_pause()
        if not self._same_origin(url):
            raise errors.UpstreamError(f"GitHub pointed at {_redact(url)}, outside the API base")
        headers = self._api_headers()
        if etag is not None:
            headers["If-None-Match"] = etag
        current = url
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    self.api_calls += 1
                    async with self._client.stream(
                        "GET", current, headers=headers, follow_redirects=False
                    ) as response:
                        location = response.headers.get("location")
                        if response.status_code in (301, 302, 307, 308) and location:
                            target = urljoin(current, location)
                            if not self._same_origin(target):
                                raise errors.UpstreamError(
                                    f"GitHub redirected {_redact(current)} outside the API base"
                                )
                            log.debug("github: %s moved to %s", _redact(current), _redact(target))
                            current = target
                            continue
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > MAX_PAGE_BYTES:
                                raise errors.UpstreamError(
                                    f"{_redact(current)} answered more than MAX_PAGE_BYTES"
                                )
                        log.debug("github: GET %s -> %d", _redact(current), response.status_code)
                        self._note_limits(response)
                        return response, bytes(body)
                raise errors.UpstreamError(
                    f"GitHub redirected {_redact(url)} more than {MAX_REDIRECTS} times"
                )
        except TimeoutError:
            raise errors.UpstreamError(
                f"GitHub did not answer {_redact(url)} within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise errors.UpstreamError(
                f"GitHub request {_redact(url)} failed: {type(exc).__name__}"
            ) from None


class RepoSource:
    """The catalog of one repository's releases (a :class:`~simplestreams.model.CatalogSource`).

    The server calls :meth:`get` for the documents and for downloads; when a download path is not in
    ``catalog.files`` it calls :meth:`refresh_for_miss` once and looks again (or uses :meth:`lookup`,
    which does both and raises NotFoundError).
    """

    def __init__(self, backend: GitHubBackend, owner: str, repo: str) -> None:
        self.owner = owner
        self.repo = repo
        self._backend = backend
        self._catalog: model.Catalog | None = None
        self._problem: str | None = None  # why the catalog is stale; None when fresh
        self._failure: tuple[type[errors.RequestError], str] | None = None  # when there is no catalog
        self._next_check = 0.0  # clock() of the next refresh
        self._last_attempt = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._store: dict[tuple[str, str], _Page] = {}
        self._logged_skips: frozenset[model.Skip] = frozenset()
        # what the catalog was built from: the releases resolved and the entries that were not releases
        self._seen: tuple[tuple[model.Release, ...], tuple[model.Skip, ...]] = ((), ())
        # (credential, ETag, private) of the last GET /repos/{o}/{r}, for conditional requests
        self._visibility: tuple[str, str | None, bool] | None = None
        self.refreshes = 0  # refreshes attempted, for tests and metrics

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def releases(self) -> tuple[model.Release, ...]:
        """The releases the current catalog was built from."""
        return self._seen[0]

    @property
    def refreshing(self) -> bool:
        return self._task is not None

    @property
    def private(self) -> bool:
        """Whether GitHub last said the repository is private (its files are then proxied)."""
        return self._visibility is not None and self._visibility[2]

    @property
    def repository_url(self) -> str:
        return f"{self._backend.api_base}/repos/{quote(self.owner)}/{quote(self.repo)}"

    @property
    def url(self) -> str:
        return f"{self.repository_url}/releases?per_page={PER_PAGE}"

    # -- what the server calls ----------------------------------------------------------------

    def current(self) -> model.CatalogState | None:
        """What :meth:`get` would return now without waiting: None while a refresh is due or running,
        or when there is no catalog (get would raise); for the listener's fast path."""
        if self._task is not None or self._catalog is None or self._backend.clock() >= self._next_check:
            return None
        return model.CatalogState(self._catalog, fresh=self._problem is None, problem=self._problem)

    async def get(self) -> model.CatalogState:
        """The catalog, refreshed first when it is older than the TTL (or absent); see the class.
        With a catalog in hand, a refresh is awaited for at most the backend's ``max_wait``."""
        if self._task is not None or self._backend.clock() >= self._next_check:
            await self._join_refresh(bounded=True)
        return self._state()

    async def refresh(self) -> model.CatalogState:
        """Refresh now, regardless of the TTL (a rate-limit pause still holds), and return what
        :meth:`get` would: the catalog, stale when this refresh failed, or the error when there is none."""
        await self._join_refresh()
        return self._state()

    async def refresh_for_miss(self) -> model.CatalogState:
        """A download path was not in the catalog: refresh, unless a refresh started less than
        ``ttl / 10`` ago (spec §4 item 9), so unknown paths cannot drive API calls."""
        clock = self._backend.clock
        if self._task is not None or clock() - self._last_attempt >= self._backend.retry_interval:
            await self._join_refresh()
        return self._state()

    def open(self, ref: model.FileRef) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The bytes of a proxied file (``ref.proxy``: a private repository's asset), from GitHub's API
        with the token (spec §5); see :meth:`GitHubReader.proxy` for the errors and timeouts."""
        if ref.url is None or not self._backend.is_asset_url(ref.url):
            raise errors.NotFoundError(f"{self.name}: that file has no API URL to proxy")
        return self._backend.reader.proxy(ref.url, ref.size)

    async def lookup(self, path: str) -> model.FileRef:
        """The file behind an item path (``images/<name>/<arch>/v<version>/<file>``), with at most one
        refresh on a miss; NotFoundError when it is not published."""
        ref = (await self.get()).catalog.files.get(path)
        if ref is None:
            ref = (await self.refresh_for_miss()).catalog.files.get(path)
        if ref is None:
            raise errors.NotFoundError(f"{self.name} has no file {path}")
        return ref

    # -- state ----------------------------------------------------------------------------------

    def _state(self) -> model.CatalogState:
        if self._catalog is not None:
            return model.CatalogState(self._catalog, fresh=self._problem is None, problem=self._problem)
        kind, message = self._failure or (errors.UpstreamError, f"no catalog of {self.name} yet")
        if kind is errors.RateLimitedError:
            raise errors.RateLimitedError(message, retry_after=math.ceil(max(1.0, self._backend.paused_for)))
        raise kind(message)

    async def _join_refresh(self, bounded: bool = False) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_guarded(), name=f"github refresh {self.name}")
        if bounded and self._catalog is not None:
            # A refresh that downloads new images can take long; LXD gives up on a response header
            # after 30 s (spec §2.2), so with a catalog to serve we wait at most ``max_wait`` and let
            # the refresh finish in the background.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self._backend.max_wait)
            return
        await asyncio.shield(self._task)

    async def cancel(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_guarded(self) -> None:
        """Run one refresh and record its outcome; never raises (waiters read the state)."""
        self.refreshes += 1
        self._last_attempt = self._backend.clock()
        try:
            await self._refresh_once()
        except errors.RequestError as error:
            self._failed(error)
        except Exception as error:
            log.exception("github %s: refresh failed unexpectedly", self.name)
            self._failed(
                errors.RequestError(f"internal error refreshing {self.name}: {type(error).__name__}")
            )
        finally:
            self._task = None

    def _failed(self, error: errors.RequestError) -> None:
        now = self._backend.clock()
        self._next_check = max(now + self._backend.retry_interval, now + self._backend.paused_for)
        if isinstance(error, errors.NotFoundError):
            if self._catalog is not None:
                log.warning("github %s: the repository is gone (%s); dropping its catalog", self.name, error)
            self._catalog, self._store, self._seen, self._visibility = None, {}, ((), ()), None
        if self._catalog is not None:
            self._problem = str(error)
            log.warning("github %s: refresh failed, serving the last catalog: %s", self.name, error)
        else:
            self._failure = (type(error), str(error))
            level = logging.INFO if isinstance(error, errors.NotFoundError) else logging.WARNING
            log.log(level, "github %s: no catalog: %s", self.name, error)

    # -- the refresh ----------------------------------------------------------------------------

    async def _refresh_once(self) -> None:
        listing = await self._list()
        backend = self._backend
        if not listing.changed and self._catalog is not None:
            log.debug("github %s: releases unchanged (%d pages, all 304)", self.name, len(listing.pages))
        else:
            private = await self._private()
            releases, skips = self._releases(listing.pages, private)
            if self._catalog is not None and (tuple(releases), tuple(skips)) == self._seen:
                # Pages change with fields we do not use (download_count moves with every download).
                log.debug("github %s: the listing changed, its releases did not", self.name)
            else:
                builds, resolve_skips = await self._resolve(releases)
                catalog = build_catalog(
                    builds, backend.options, skipped=[*skips, *resolve_skips], now=datetime.now(UTC)
                )
                if private:
                    proxied = {path: replace(ref, proxy=True) for path, ref in catalog.files.items()}
                    catalog = replace(catalog, files=proxied)
                self._log_skips([s for s in catalog.skipped if s not in set(resolve_skips)])
                log.info(
                    "github %s: catalog built: %d products from %d releases (%d pages), %d skipped%s",
                    self.name,
                    len(catalog.products),
                    len(releases),
                    len(listing.pages),
                    len(catalog.skipped),
                    "; private, downloads are proxied" if private else "",
                )
                self._catalog = catalog
                self._seen = (tuple(releases), tuple(skips))
        self._store = listing.store
        self._problem = None
        self._failure = None
        self._next_check = backend.clock() + backend.ttl

    async def _list(self) -> _Listing:
        """Every page of the listing, conditionally (§5); ``changed`` is False only when every page
        answered 304 (or the same body) along the same ``Link`` chain."""
        backend = self._backend
        credential = backend._credential
        url: str | None = self.url
        pages: list[_Page] = []
        store: dict[tuple[str, str], _Page] = {}
        changed = False
        for number in range(1, MAX_PAGES + 1):
            assert url is not None
            key = (credential, url)
            if key in store:
                raise errors.UpstreamError(f"GitHub's release pages of {self.name} link back to page {url}")
            stored = self._store.get(key)
            response, body = await backend.api_get(url, stored.etag if stored is not None else None)
            what = f"repository {self.name}" if number == 1 else f"page {number} of {self.name}'s releases"
            if response.status_code == 304 and stored is not None:
                page = stored
            elif response.status_code == 200:
                following = next_link(response.headers.get("link"))
                if following is not None:
                    following = urljoin(url, following)
                page = _Page(response.headers.get("etag"), body, following)
                changed = changed or stored is None or stored.body != body or stored.next_url != following
            elif response.status_code == 404 and number > 1:  # the repository is there; its pages are not
                raise errors.UpstreamError(f"GitHub answered 404 for {what}")
            else:
                raise backend._failure(response, body, what)
            store[key] = page
            pages.append(page)
            if page.next_url is None:
                break
            url = page.next_url
        else:
            raise errors.UpstreamError(f"{self.name} has more than {MAX_PAGES} pages of releases")
        changed = changed or set(store) != set(self._store)
        return _Listing(pages, store, changed)

    async def _private(self) -> bool:
        """Whether the repository is private (or internal), from ``GET /repos/{o}/{r}`` (spec §5).

        Asked only when the listing changed (a warm refresh whose pages all answer 304 sends nothing
        more), with the ETag of the last answer for this credential, so it is usually a 304: free with a
        token. Without a token the question does not arise: GitHub shows anonymous callers public
        repositories only, and answers 404 for the rest.
        """
        backend = self._backend
        if backend._token is None:
            return False
        credential = backend._credential
        stored = (
            self._visibility if self._visibility is not None and self._visibility[0] == credential else None
        )
        response, body = await backend.api_get(self.repository_url, stored[1] if stored is not None else None)
        if response.status_code == 304 and stored is not None:
            return stored[2]
        if response.status_code != 200:
            raise backend._failure(response, body, f"repository {self.name}")
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        flag = document.get("private") if isinstance(document, dict) else None
        if not isinstance(flag, bool):
            raise errors.UpstreamError(f"GitHub's answer for repository {self.name} has no 'private' flag")
        assert isinstance(document, dict)
        # "internal" (GitHub Enterprise) repositories also need a token to download from
        private = flag or document.get("visibility") in ("private", "internal")
        if stored is not None and stored[2] != private:
            log.warning("github %s: the repository is now %s", self.name, "private" if private else "public")
        self._visibility = (credential, response.headers.get("etag"), private)
        return private

    def _releases(
        self, pages: Sequence[_Page], private: bool = False
    ) -> tuple[list[model.Release], list[model.Skip]]:
        """The releases of every page, sorted by tag so resolving is deterministic. A tag seen twice (a
        release published while we paged shifts one onto two pages) counts once, and a draft never
        displaces a published release of the same tag; drafts are passed on for resolve to skip.
        A private repository's assets are located by their API URLs (:func:`asset_from_json`)."""
        published: dict[str, model.Release] = {}
        drafts: dict[str, model.Release] = {}
        skips: list[model.Skip] = []
        for number, page in enumerate(pages, 1):
            try:
                documents = json.loads(page.body)
            except ValueError:
                raise errors.UpstreamError(f"page {number} of {self.name}'s releases is not JSON") from None
            if not isinstance(documents, list):
                raise errors.UpstreamError(f"page {number} of {self.name}'s releases is not a JSON list")
            for document in documents:
                release = release_from_json(document, private=private)
                if release is None:
                    ident = document.get("id") if isinstance(document, dict) else None
                    skips.append(model.Skip(f"release {ident}", "bad-release", "no tag_name"))
                else:
                    (drafts if release.draft else published).setdefault(release.tag, release)
        ordered = [published[tag] for tag in sorted(published)]
        ordered += [drafts[tag] for tag in sorted(drafts) if tag not in published]
        return ordered, skips

    async def _resolve(
        self, releases: Sequence[model.Release]
    ) -> tuple[list[model.ArchBuild], list[model.Skip]]:
        """Resolve releases a few at a time; results are gathered in the releases' order. The first
        upstream failure cancels the rest and fails the refresh."""
        backend = self._backend
        limit = asyncio.Semaphore(RESOLVE_CONCURRENCY)

        async def one(release: model.Release) -> tuple[list[model.ArchBuild], list[model.Skip]]:
            async with limit:
                return await resolve_release(
                    release,
                    backend.reader,
                    backend.cache,
                    include_prereleases=backend.options.include_prereleases,
                )

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(release)) for release in releases]
        except ExceptionGroup as failures:
            first = failures.exceptions[0]
            for failure in failures.exceptions:
                if isinstance(failure, errors.RequestError):
                    raise failure from None
            raise first from None
        builds: list[model.ArchBuild] = []
        skips: list[model.Skip] = []
        for task in tasks:
            found, skipped = task.result()
            builds.extend(found)
            skips.extend(skipped)
        return builds, skips

    def _log_skips(self, skips: Sequence[model.Skip]) -> None:
        """Skips that resolve did not already log (ours and the catalog's), once per repository
        rather than at every refresh."""
        current = frozenset(skips)
        for skip in sorted(current - self._logged_skips, key=lambda s: (s.subject, s.reason)):
            detail = f" ({skip.detail})" if skip.detail else ""
            log.warning("github %s: skipped %s: %s%s", self.name, skip.subject, skip.reason, detail)
        self._logged_skips = current


class _NoReader:
    """An :class:`~simplestreams.model.AssetReader` that reads nothing (see ``save_cache``); its
    refusal is a rejection, so resolve moves on to the next architecture."""

    async def read(self, asset: model.Asset, limit: int) -> bytes:
        raise errors.RejectedError("no reads while saving the cache")

    async def head(self, asset: model.Asset, length: int) -> bytes:
        raise errors.RejectedError("no reads while saving the cache")

    async def sha256(self, assets: Sequence[model.Asset]) -> str:
        raise errors.RejectedError("no reads while saving the cache")


def _fingerprint(secret: str) -> str:
    """A short, one-way name for a credential: a key for stored ETags that is safe to keep around."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _make_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,
        max_redirects=MAX_REDIRECTS,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )

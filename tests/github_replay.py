"""A stand-in for GitHub's REST release API and its download host, on 127.0.0.1.

It replays what GitHub documents (REST API "Releases" and "Release assets", "Using pagination in the
REST API", "Rate limits for the REST API", "Best practices": conditional requests; summarised in
spec/simplestreams.md §5), so the GitHub backend, the LXD tier and the benchmarks exercise real HTTP:

* ``GET /repos/{owner}/{repo}/releases`` (and ``/repositories/{id}/releases``, the form GitHub's own
  ``Link`` URLs use): newest first, ``per_page`` 1..100 (default 30, larger values clamp to 100),
  ``page`` from 1; a ``Link`` header ``<url>; rel="prev", <url>; rel="next", <url>; rel="last",
  <url>; rel="first"`` with only the relations that apply; a weak ``ETag`` (``W/"..."``) and 304 on a
  matching ``If-None-Match``;
* ``GET /repos/{owner}/{repo}/releases/tags/{tag}``, the tag in the path unchanged even with ``/``;
* drafts are listed only to an authenticated caller (GitHub shows them only with push access);
* unknown repositories, releases and tags: 404 ``{"message": "Not Found", "documentation_url": ...,
  "status": "404"}``; a wrong token: 401 ``Bad credentials``;
* the primary rate limit: every API response carries ``X-RateLimit-Limit/-Remaining/-Reset/-Used/
  -Resource``; once ``remaining`` is 0 the answer is 403 (or 429) with GitHub's message; a 304 to an
  authenticated request does not count; a secondary limit answers 403 with ``Retry-After``;
* assets carry every field of §5 (``digest`` is ``"sha256:<hex>"``, or null for "older uploads");
* ``browser_download_url`` = ``http://127.0.0.1:PORT/{owner}/{repo}/releases/download/{tag}/{name}``
  answers 302 to a short-lived ``/cdn/...`` URL that serves the bytes: 200 with the exact
  ``Content-Length``, or 206 for a ``Range`` request. Downloads do not count against the API limit;
* ``GET /repos/{owner}/{repo}``: the repository, with ``private`` and ``visibility`` (conditional, like
  every API answer);
* ``GET /repos/{owner}/{repo}/releases/assets/{id}``: the asset's JSON, or with ``Accept:
  application/octet-stream`` a 302 to the same kind of ``/cdn/...`` URL (an API request: it counts);
* private repositories (``add_repo(..., private=True)``): every API route answers 404 to a caller
  without a token, as GitHub does, and ``browser_download_url`` answers 404 to everyone (GitHub serves
  it only to a browser session); the bytes are reachable only through the asset's API URL.

The same routes also answer under ``/api/v3`` (GitHub Enterprise Server's API base).

Tests drive a :class:`GitHubReplay` (``add_release``, ``replace_asset``, ``set_asset_state``,
``remove_release``, ``fail_api``/``fail_next``/``fail_downloads``, ``cdn_size_error``,
``exhaust_rate_limit``, ``secondary_limit``) and read :attr:`GitHubReplay.requests`. :func:`serve`
runs it with uvicorn in a background thread (own event loop), so synchronous code (the LXD tier,
benchmarks) can use it too.
Every method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pathlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.replay_server import loopback_socket, quiet_server

Json = dict[str, Any]

DOCS = "https://docs.github.com/rest"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_CHUNK = 64 * 1024


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ReplayAsset:
    """One uploaded file. ``data`` or ``file`` holds the bytes; the rest is what the API shows."""

    name: str
    id: int
    data: bytes | None
    file: pathlib.Path | None
    size: int
    sha256: str
    created_at: datetime
    updated_at: datetime
    state: str = "uploaded"
    with_digest: bool = True
    content_type: str = "application/octet-stream"
    download_count: int = 0
    digest_text: str | None = None  # a digest to show instead of the real one (a lying listing)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start..end`` (end exclusive), in chunks."""
        if self.data is not None:
            for offset in range(start, end, _CHUNK):
                yield self.data[offset : min(end, offset + _CHUNK)]
            return
        assert self.file is not None
        with self.file.open("rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


@dataclass
class ReplayRelease:
    id: int
    tag: str
    assets: list[ReplayAsset]
    created_at: datetime
    published_at: datetime | None
    draft: bool = False
    prerelease: bool = False
    name: str = ""
    body: str = ""


@dataclass
class ReplayRepo:
    owner: str
    name: str
    id: int
    releases: list[ReplayRelease] = field(default_factory=list)
    private: bool = False


@dataclass(frozen=True)
class Recorded:
    """One request as the replay saw it; header names are lower-case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    status: int

    @property
    def is_api(self) -> bool:
        return self.path.startswith(("/repos/", "/repositories/", "/api/v3/"))

    @property
    def is_download(self) -> bool:
        return "/releases/download/" in self.path

    @property
    def is_cdn(self) -> bool:
        return self.path.startswith("/cdn/")

    @property
    def is_asset(self) -> bool:
        """An API request for one asset (its JSON, or its bytes with ``Accept: application/octet-stream``)."""
        return self.is_api and "/releases/assets/" in self.path


class GitHubReplay:
    """Repositories, releases, the rate limit and the request log of one fake GitHub."""

    def __init__(
        self,
        *,
        token: str | None = None,
        rate_limit: int = 5000,
        rate_limit_status: int = 403,
        etags: bool = True,
    ) -> None:
        self.token = token  # when set, a request with another Bearer token gets 401
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.reset_at = int(time.time()) + 3600
        self.rate_limit_status = rate_limit_status  # GitHub answers 403 or 429
        self.etags = etags
        self.retry_after: int | None = None  # a secondary limit is in force while set
        self.fail_api: int | None = None  # every API request answers this status while set
        self.fail_next: list[int] = []  # statuses for the next API requests, one each
        self.fail_downloads: int | None = None  # every download answers this status while set
        self.cdn_delay = 0.0  # seconds the CDN waits before answering (a slow link)
        # bytes the CDN sends more (> 0, zeros appended) or fewer (< 0) than the file has, with a
        # Content-Length that matches what it sends: a body whose length disagrees with the listing
        self.cdn_size_error = 0
        self.requests: list[Recorded] = []
        self._repos: dict[tuple[str, str], ReplayRepo] = {}
        self._cdn: dict[str, tuple[tuple[str, str], int]] = {}  # CDN token -> (repo key, asset id)
        self._ids = 1000
        self._clock = EPOCH
        self._lock = threading.RLock()

    # -- driving ----------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _tick(self) -> datetime:
        """A strictly increasing timestamp, one second apart, so updated_at always changes."""
        self._clock += timedelta(seconds=1)
        return self._clock

    def add_repo(self, owner: str, repo: str, *, private: bool | None = None) -> None:
        """Create the repository (public unless ``private``); ``private`` also changes an existing one."""
        with self._lock:
            key = (owner.lower(), repo.lower())
            if key not in self._repos:
                self._repos[key] = ReplayRepo(owner, repo, self._next_id())
            if private is not None:
                self._repos[key].private = private

    def _repo(self, owner: str, repo: str) -> ReplayRepo:
        return self._repos[(owner.lower(), repo.lower())]

    def _make_asset(
        self, name: str, content: bytes | pathlib.Path, *, digest: bool, state: str
    ) -> ReplayAsset:
        now = self._tick()
        if isinstance(content, bytes):
            data: bytes | None = content
            path: pathlib.Path | None = None
            size, sha = len(content), hashlib.sha256(content).hexdigest()
        else:
            data, path = None, content
            size, sha = content.stat().st_size, hashlib.sha256(content.read_bytes()).hexdigest()
        return ReplayAsset(name, self._next_id(), data, path, size, sha, now, now, state, digest)

    def add_release(
        self,
        owner: str,
        repo: str,
        tag: str,
        assets: Mapping[str, bytes | pathlib.Path],
        *,
        draft: bool = False,
        prerelease: bool = False,
        published_at: datetime | None = None,
        digests: bool = True,
        states: Mapping[str, str] | None = None,
    ) -> int:
        """Publish a release (the repository is created on first use); returns its id. ``digests``
        False gives every asset a null ``digest``, as for uploads before June 2025."""
        with self._lock:
            self.add_repo(owner, repo)
            record = self._repo(owner, repo)
            created = self._tick()
            release = ReplayRelease(
                id=self._next_id(),
                tag=tag,
                assets=[],
                created_at=created,
                published_at=None if draft else (published_at or created),
                draft=draft,
                prerelease=prerelease,
                name=tag,
            )
            for name, content in assets.items():
                state = (states or {}).get(name, "uploaded")
                release.assets.append(self._make_asset(name, content, digest=digests, state=state))
            record.releases.append(release)
            return release.id

    def _release(self, owner: str, repo: str, tag: str) -> ReplayRelease:
        for release in self._repo(owner, repo).releases:
            if release.tag == tag:
                return release
        raise KeyError(tag)

    def replace_asset(
        self,
        owner: str,
        repo: str,
        tag: str,
        name: str,
        content: bytes | pathlib.Path,
        *,
        digest: bool = True,
    ) -> None:
        """Delete and re-upload an asset, as GitHub requires: a new id, ``updated_at`` and ``digest``."""
        with self._lock:
            release = self._release(owner, repo, tag)
            for index, asset in enumerate(release.assets):
                if asset.name == name:
                    release.assets[index] = self._make_asset(name, content, digest=digest, state="uploaded")
                    return
            raise KeyError(name)

    def set_asset_state(self, owner: str, repo: str, tag: str, name: str, state: str) -> None:
        with self._lock:
            for asset in self._release(owner, repo, tag).assets:
                if asset.name == name:
                    asset.state = state
                    asset.updated_at = self._tick()
                    return
            raise KeyError(name)

    def set_digest(self, owner: str, repo: str, tag: str, name: str, digest: str) -> None:
        """Make the listing show ``digest`` for an asset, whatever its bytes are."""
        with self._lock:
            for asset in self._release(owner, repo, tag).assets:
                if asset.name == name:
                    asset.digest_text = digest
                    asset.updated_at = self._tick()
                    return
            raise KeyError(name)

    def remove_release(self, owner: str, repo: str, tag: str) -> None:
        with self._lock:
            record = self._repo(owner, repo)
            record.releases.remove(self._release(owner, repo, tag))

    def exhaust_rate_limit(self, *, reset_in: int = 3600) -> None:
        """Use up the primary limit; it resets ``reset_in`` seconds from now."""
        with self._lock:
            self.remaining = 0
            self.reset_at = int(time.time()) + reset_in

    def restore_rate_limit(self) -> None:
        with self._lock:
            self.remaining = self.rate_limit
            self.reset_at = int(time.time()) + 3600
            self.retry_after = None

    def secondary_limit(self, retry_after: int | None) -> None:
        """Answer every API request with a secondary-limit 403 and this Retry-After (None ends it)."""
        with self._lock:
            self.retry_after = retry_after

    def recorded(
        self, *, api: bool | None = None, download: bool | None = None, cdn: bool | None = None
    ) -> list[Recorded]:
        """A snapshot of the request log, optionally only API, download or CDN requests."""
        with self._lock:
            rows = list(self.requests)
        if api is not None:
            rows = [r for r in rows if r.is_api == api]
        if download is not None:
            rows = [r for r in rows if r.is_download == download]
        if cdn is not None:
            rows = [r for r in rows if r.is_cdn == cdn]
        return rows

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- JSON as GitHub renders it ------------------------------------------------------------

    @staticmethod
    def _origin(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    def _asset_json(
        self, request: Request, repo: ReplayRepo, release: ReplayRelease, asset: ReplayAsset
    ) -> Json:
        origin = self._origin(request)
        api = f"{origin}/repos/{repo.owner}/{repo.name}"
        tag = release.tag if not release.draft else f"untagged-{release.id}"
        return {
            "url": f"{api}/releases/assets/{asset.id}",
            "id": asset.id,
            "node_id": f"RA_{asset.id}",
            "name": asset.name,
            "label": "",
            "uploader": {"login": "publisher", "id": 1, "type": "User"},
            "content_type": asset.content_type,
            "state": asset.state,
            "size": asset.size,
            "digest": asset.digest_text or (f"sha256:{asset.sha256}" if asset.with_digest else None),
            "download_count": asset.download_count,
            "created_at": _stamp(asset.created_at),
            "updated_at": _stamp(asset.updated_at),
            "browser_download_url": (
                f"{origin}/{quote(repo.owner)}/{quote(repo.name)}/releases/download/{quote(tag)}/{quote(asset.name)}"
            ),
        }

    def _release_json(self, request: Request, repo: ReplayRepo, release: ReplayRelease) -> Json:
        origin = self._origin(request)
        api = f"{origin}/repos/{repo.owner}/{repo.name}"
        html = f"{origin}/{repo.owner}/{repo.name}"
        uploads = f"{origin}/uploads/repos/{repo.owner}/{repo.name}"
        return {
            "url": f"{api}/releases/{release.id}",
            "assets_url": f"{api}/releases/{release.id}/assets",
            "upload_url": f"{uploads}/releases/{release.id}/assets{{?name,label}}",
            "html_url": f"{html}/releases/tag/{release.tag}",
            "id": release.id,
            "author": {"login": "publisher", "id": 1, "type": "User"},
            "node_id": f"RE_{release.id}",
            "tag_name": release.tag,
            "target_commitish": "main",
            "name": release.name,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "created_at": _stamp(release.created_at),
            "published_at": _stamp(release.published_at) if release.published_at else None,
            "assets": [self._asset_json(request, repo, release, a) for a in release.assets],
            "tarball_url": f"{api}/tarball/{release.tag}",
            "zipball_url": f"{api}/zipball/{release.tag}",
            "body": release.body,
        }

    # -- HTTP -------------------------------------------------------------------------------

    def _record(self, request: Request, status: int) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(request.method, request.url.path, request.url.query, headers, status))

    def _authenticated(self, request: Request) -> bool:
        return request.headers.get("authorization", "").startswith(("Bearer ", "token "))

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Used": str(self.rate_limit - self.remaining),
            "X-RateLimit-Resource": "core",
        }

    @staticmethod
    def _error(status: int, message: str, docs: str, headers: Mapping[str, str] | None = None) -> Response:
        body = {"message": message, "documentation_url": docs, "status": str(status)}
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _gate(self, request: Request) -> Response | None:
        """The checks GitHub makes before it looks at the resource: credentials, then the limits."""
        authorization = request.headers.get("authorization")
        if authorization is not None and self.token is not None and authorization != f"Bearer {self.token}":
            return self._error(401, "Bad credentials", DOCS, self._rate_headers())
        if self.fail_next:
            status = self.fail_next.pop(0)
            return self._error(status, "Server Error", DOCS)
        if self.fail_api is not None:
            return self._error(self.fail_api, "Server Error", DOCS)
        if self.retry_after is not None:
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
            headers = {"Retry-After": str(self.retry_after), **self._rate_headers()}
            return self._error(403, message, f"{DOCS}/overview/rate-limits-for-the-rest-api", headers)
        if self.remaining <= 0:
            who = "user ID 1" if self._authenticated(request) else "127.0.0.1"
            message = f"API rate limit exceeded for {who}."
            if not self._authenticated(request):
                message += (
                    " (But here's the good news: Authenticated requests get a higher rate limit. "
                    "Check out the documentation for more details.)"
                )
            docs = f"{DOCS}/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
            return self._error(self.rate_limit_status, message, docs, self._rate_headers())
        return None

    def _conditional(self, request: Request, body: Any, link: str | None = None) -> Response:
        """200 with a weak ETag, or 304 when the caller already holds it; a counted request
        unless it is a 304 to an authenticated caller."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        etag = 'W/"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
        wanted = {
            tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")
        }
        not_modified = self.etags and etag.removeprefix("W/") in wanted
        if not (not_modified and self._authenticated(request)):
            self.remaining = max(0, self.remaining - 1)
        headers = {
            **self._rate_headers(),
            "Cache-Control": "private, max-age=60, s-maxage=60",
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
        }
        if self.etags:
            headers["ETag"] = etag
        if not_modified:
            return Response(status_code=304, headers=headers)
        if link:
            headers["Link"] = link
        return Response(
            payload, status_code=200, headers=headers, media_type="application/json; charset=utf-8"
        )

    def _find_repo(self, request: Request) -> ReplayRepo | None:
        """The repository of the route, or None when it does not exist or the caller may not see it
        (a private repository without a token)."""
        params = request.path_params
        found = None
        if "repo_id" in params:
            found = next((r for r in self._repos.values() if str(r.id) == params["repo_id"]), None)
        else:
            found = self._repos.get((params["owner"].lower(), params["repo"].lower()))
        if found is not None and found.private and not self._authenticated(request):
            return None
        return found

    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        try:
            return int(request.query_params.get(name, default))
        except ValueError:
            return default

    async def list_releases(self, request: Request) -> Response:
        with self._lock:
            response = self._list_releases(request)
            self._record(request, response.status_code)
            return response

    def _list_releases(self, request: Request) -> Response:
        if (gated := self._gate(request)) is not None:
            return gated
        repo = self._find_repo(request)
        if repo is None:
            self.remaining = max(0, self.remaining - 1)
            docs = f"{DOCS}/releases/releases#list-releases"
            return self._error(404, "Not Found", docs, self._rate_headers())
        per_page = self._int_param(request, "per_page", 30)
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page = max(1, self._int_param(request, "page", 1))
        visible = [r for r in repo.releases if not r.draft or self._authenticated(request)]
        visible.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        last = max(1, -(-len(visible) // per_page))
        chunk = visible[(page - 1) * per_page : page * per_page]
        prefix = "/api/v3" if request.url.path.startswith("/api/v3/") else ""
        base = f"{self._origin(request)}{prefix}/repositories/{repo.id}/releases"

        def url(number: int) -> str:
            return f"{base}?{urlencode({'per_page': per_page, 'page': number})}"

        links = []
        if page > 1:
            links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            links.append(f'<{url(page + 1)}>; rel="next"')
            links.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{url(1)}>; rel="first"')
        body = [self._release_json(request, repo, r) for r in chunk]
        return self._conditional(request, body, ", ".join(links) or None)

    async def release_by_tag(self, request: Request) -> Response:
        with self._lock:
            response = self._release_by_tag(request)
            self._record(request, response.status_code)
            return response

    def _release_by_tag(self, request: Request) -> Response:
        if (gated := self._gate(request)) is not None:
            return gated
        repo = self._find_repo(request)
        tag = request.path_params["tag"]
        release = None
        if repo is not None:
            release = next((r for r in repo.releases if r.tag == tag and not r.draft), None)
        if repo is None or release is None:
            self.remaining = max(0, self.remaining - 1)
            docs = f"{DOCS}/releases/releases#get-a-release-by-tag-name"
            return self._error(404, "Not Found", docs, self._rate_headers())
        return self._conditional(request, self._release_json(request, repo, release))

    def _repo_json(self, request: Request, repo: ReplayRepo) -> Json:
        origin = self._origin(request)
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": f"{repo.owner}/{repo.name}",
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "owner": {"login": repo.owner, "id": 1, "type": "Organization"},
            "html_url": f"{origin}/{repo.owner}/{repo.name}",
            "description": "",
            "fork": False,
            "url": f"{origin}/repos/{repo.owner}/{repo.name}",
            "releases_url": f"{origin}/repos/{repo.owner}/{repo.name}/releases{{/id}}",
            "default_branch": "main",
            "archived": False,
            "disabled": False,
        }

    async def get_repo(self, request: Request) -> Response:
        with self._lock:
            response = self._get_repo(request)
            self._record(request, response.status_code)
            return response

    def _get_repo(self, request: Request) -> Response:
        if (gated := self._gate(request)) is not None:
            return gated
        repo = self._find_repo(request)
        if repo is None:
            self.remaining = max(0, self.remaining - 1)
            return self._error(404, "Not Found", f"{DOCS}/repos/repos#get-a-repository", self._rate_headers())
        return self._conditional(request, self._repo_json(request, repo))

    async def get_asset(self, request: Request) -> Response:
        """GET /repos/{o}/{r}/releases/assets/{id}: JSON, or the bytes (a 302 to the CDN) when the
        caller accepts application/octet-stream, the only way to a private repository's asset."""
        with self._lock:
            response = self._get_asset(request)
            self._record(request, response.status_code)
            return response

    def _get_asset(self, request: Request) -> Response:
        if (gated := self._gate(request)) is not None:
            return gated
        repo = self._find_repo(request)
        found = None
        for release in repo.releases if repo is not None else []:
            for asset in release.assets:
                if str(asset.id) == request.path_params["asset_id"]:
                    found = (release, asset)
        if repo is None or found is None:
            self.remaining = max(0, self.remaining - 1)
            docs = f"{DOCS}/releases/assets#get-a-release-asset"
            return self._error(404, "Not Found", docs, self._rate_headers())
        release, asset = found
        if "application/octet-stream" not in request.headers.get("accept", ""):
            return self._conditional(request, self._asset_json(request, repo, release, asset))
        self.remaining = max(0, self.remaining - 1)
        if self.fail_downloads is not None:
            return Response(b"Server Error", status_code=self.fail_downloads, headers=self._rate_headers())
        if asset.state != "uploaded":
            return self._error(404, "Not Found", DOCS, self._rate_headers())
        return self._to_cdn(request, repo, asset, self._rate_headers())

    def _to_cdn(
        self, request: Request, repo: ReplayRepo, asset: ReplayAsset, headers: Mapping[str, str] | None = None
    ) -> Response:
        """302 to a signed, short-lived CDN URL for the asset."""
        token = secrets.token_urlsafe(16)
        self._cdn[token] = ((repo.owner.lower(), repo.name.lower()), asset.id)
        expires = int(time.time()) + 300
        query = urlencode({"X-Amz-Expires": 300, "X-Amz-Date": expires, "X-Amz-Signature": token[::-1]})
        location = f"{self._origin(request)}/cdn/{token}?{query}"
        return RedirectResponse(location, status_code=302, headers=dict(headers or {}))

    async def download(self, request: Request) -> Response:
        """github.com's download route: 302 to a signed, short-lived CDN URL."""
        with self._lock:
            response = self._download(request)
            self._record(request, response.status_code)
            return response

    def _download(self, request: Request) -> Response:
        if self.fail_downloads is not None:
            return Response(b"Server Error", status_code=self.fail_downloads)
        params = request.path_params
        repo = self._repos.get((params["owner"].lower(), params["repo"].lower()))
        rest = params["rest"]
        tag, _, name = rest.rpartition("/")
        asset = None
        if repo is not None:
            for release in repo.releases:
                shown = release.tag if not release.draft else f"untagged-{release.id}"
                if shown == tag:
                    asset = next(
                        (a for a in release.assets if a.name == name and a.state == "uploaded"), None
                    )
        if repo is None or asset is None or repo.private:  # private: only with a browser session
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        return self._to_cdn(request, repo, asset)

    async def cdn(self, request: Request) -> Response:
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        with self._lock:
            response = self._serve_cdn(request)
            self._record(request, response.status_code)
            return response

    def _serve_cdn(self, request: Request) -> Response:
        entry = self._cdn.get(request.path_params["token"])
        asset = None
        if entry is not None:
            repo = self._repos.get(entry[0])
            for release in repo.releases if repo else []:
                asset = next((a for a in release.assets if a.id == entry[1]), asset)
        if asset is None:
            return Response(
                b"<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml"
            )
        asset.download_count += 1
        if self.cdn_size_error:
            data = b"".join(asset.chunks(0, asset.size))
            data = data[: asset.size + self.cdn_size_error] + bytes(max(0, self.cdn_size_error))
            return Response(data, status_code=200, media_type="application/octet-stream")
        start, end, status = 0, asset.size, 200
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        spec = request.headers.get("range", "")
        if spec.startswith("bytes=") and "," not in spec:
            first, _, final = spec[len("bytes=") :].partition("-")
            try:
                if first:
                    start = int(first)
                    end = min(asset.size, int(final) + 1) if final else asset.size
                else:
                    start = max(0, asset.size - int(final))
            except ValueError:
                start, end = 0, asset.size
            else:
                if start >= asset.size or start >= end:
                    headers["Content-Range"] = f"bytes */{asset.size}"
                    return Response(b"", status_code=416, headers=headers)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{asset.size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(b"", status_code=status, headers=headers)
        return StreamingResponse(_iterate(asset.chunks(start, end)), status_code=status, headers=headers)

    def app(self) -> Starlette:
        routes = []
        for prefix in ("", "/api/v3"):
            routes += [
                Route(prefix + "/repos/{owner}/{repo}/releases", self.list_releases),
                Route(prefix + "/repositories/{repo_id}/releases", self.list_releases),
                Route(prefix + "/repos/{owner}/{repo}/releases/tags/{tag:path}", self.release_by_tag),
                Route(prefix + "/repos/{owner}/{repo}/releases/assets/{asset_id}", self.get_asset),
                Route(prefix + "/repos/{owner}/{repo}", self.get_repo),
            ]
        routes += [
            Route("/cdn/{token}", self.cdn, methods=["GET", "HEAD"]),
            Route("/{owner}/{repo}/releases/download/{rest:path}", self.download, methods=["GET", "HEAD"]),
        ]
        return Starlette(routes=routes)


async def _iterate(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@contextlib.contextmanager
def serve(replay: GitHubReplay) -> Iterator[str]:
    """Run ``replay`` on 127.0.0.1 (a port the OS picks) in a background thread with its own event
    loop; yields the origin, e.g. ``http://127.0.0.1:41234`` (the API base and the download host)."""
    sock, port = loopback_socket()
    server = quiet_server(replay.app(), loop="asyncio")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as error:  # surfaced to the caller below
            failure.append(error)

    thread = threading.Thread(target=run, name=f"github-replay-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if failure or not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the GitHub replay server did not start: {failure!r}")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the GitHub replay server did not stop within 10 s")


def releases_of(replay: GitHubReplay, owner: str, repo: str) -> Sequence[ReplayRelease]:
    """The stored releases of a repository (for assertions)."""
    with replay._lock:
        return list(replay._repo(owner, repo).releases)

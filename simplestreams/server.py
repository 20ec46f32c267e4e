"""The image server's Starlette application (spec/simplestreams.md §2, §3.2, §9).

Routes, per mounted backend:

- a local directory at ``<base>`` (default ``/``): ``<base>/streams/v1/{index,images}.json`` and
  ``<base>/images/<name>/<arch>/v<version>/<file>``, answered 200 with the whole file and its exact
  Content-Length;
- GitHub: ``/<owner>/<repo>/streams/v1/{index,images}.json`` and ``/<owner>/<repo>/images/...``,
  answered 302 to the asset's stable ``browser_download_url`` from the cached catalog, or for a private
  repository (whose assets need our token, spec §5) 200 with the bytes proxied from GitHub;
- ``/health`` (204 once every mounted directory has an index; ``X-Index-State: fresh|stale``) and
  ``/metrics`` (Prometheus text format).

Every error is ``application/problem+json`` with a ``message`` (spec §9.12): 404 for unknown paths,
files and repositories, 405 for other methods, 503 with Retry-After while rate limited and nothing is
cached, 502 for an upstream failure; 500 only for our own bugs. The documents a route renders are also
put in the listener's :class:`~simplestreams.listener.FastCache`, which answers repeats without ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .listener import CLOCK, FastCache, FastDocument, accepts_gzip
from .model import Catalog, CatalogSource, CatalogState, FileRef

log = logging.getLogger("simplestreams.server")

DOCUMENTS = ("index.json", "images.json")
PROBLEM = "application/problem+json"


class RepoBackend(Protocol):
    """What the server needs of the GitHub backend."""

    def source(self, owner: str, repo: str) -> CatalogSource: ...


@dataclass
class DirectoryMount:
    base: str  # "" for "/", else "/local"
    source: CatalogSource
    label: str = "directory"


@dataclass
class ServerState:
    """Everything the routes share; built by :func:`create_app`."""

    directories: Sequence[DirectoryMount]
    github: RepoBackend | None
    fast: FastCache
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    seen: dict[str, CatalogState] = field(default_factory=dict)  # mount label -> last state served
    connection_counts: Callable[[], Mapping[str, int]] | None = None
    _documents: dict[int, tuple[Catalog, bool, dict[str, FastDocument]]] = field(default_factory=dict)

    def documents(self, label: str, state: CatalogState) -> dict[str, FastDocument]:
        """The two documents of a catalog, encoded once per catalog (and staleness)."""
        self.seen[label] = state
        key = id(state.catalog)
        cached = self._documents.get(key)
        if cached is not None and cached[0] is state.catalog and cached[1] == state.fresh:
            return cached[2]
        extra = () if state.fresh else (("x-index-state", "stale"),)
        docs = {
            "index.json": FastDocument(state.catalog.index_json, state.catalog.etag, extra_headers=extra),
            "images.json": FastDocument(state.catalog.images_json, state.catalog.etag, extra_headers=extra),
        }
        if len(self._documents) > 256:  # many GitHub repositories: forget the oldest renderings
            self._documents.pop(next(iter(self._documents)))
        self._documents[key] = (state.catalog, state.fresh, docs)
        return docs


def problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, media_type=PROBLEM, headers=headers)


def _kind(path: str) -> str:
    if path.endswith("/streams/v1/index.json"):
        return "index"
    if path.endswith("/streams/v1/images.json"):
        return "images"
    if path in ("/health", "/metrics"):
        return path[1:]
    if "/images/" in path:
        return "download"
    return "other"


class _CountRequests:
    """Counts every ASGI-path response by route kind and status (the fast path counts its own); adds Date."""

    def __init__(self, app: ASGIApp, counts: Counter[tuple[str, int]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = _kind(scope["path"])

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[(kind, int(message["status"]))] += 1
                # RFC 9110 §6.6.1: an origin server with a clock sends Date (uvicorn's own comes from
                # its Server loop, which we do not run).
                message["headers"] = [*message.get("headers", ()), (b"date", CLOCK.date_value())]
            await send(message)

        await self.app(scope, receive, counted)


def _document_response(request: Request, document: FastDocument) -> Response:
    use_gzip = document.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", ""))
    if_none_match = request.headers.get("if-none-match")
    status = 304 if if_none_match and document.matches(if_none_match) else 200
    headers = dict(document.headers(status, use_gzip))
    media_type = headers.pop("content-type", None)
    body = document.payload(use_gzip) if status == 200 else b""
    return Response(body, status_code=status, headers=headers, media_type=media_type)


async def _serve_document(
    request: Request, state: ServerState, label: str, source: CatalogSource
) -> Response:
    name = request.path_params["document"]
    if name not in DOCUMENTS:
        raise errors.NotFoundError(f"no such document: streams/v1/{name}")
    catalog_state = await source.get()
    document = state.documents(label, catalog_state)[name]
    if not request.scope.get("query_string"):
        raw = request.scope.get("raw_path") or request.url.path.encode()

        def resolve() -> FastDocument | None:
            current = source.current()
            return None if current is None else state.documents(label, current)[name]

        state.fast.put(raw.decode("latin-1"), resolve, "index" if name == "index.json" else "images")
    return _document_response(request, document)


class _ImageFile(FileResponse):
    """Image files are big: 1 MiB reads (Starlette's 64 KiB cost a thread hop each) serve ~1.4 GB/s
    here instead of ~0.45, on par with nginx's sendfile (BENCHMARKS.md, images)."""

    chunk_size = 1024 * 1024


Opener = Callable[[FileRef], contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]]
"""What a source that proxies files offers (``RepoSource.open``): the upstream bytes of a file."""


class _ProxyResponse(Response):
    """200 with exactly ``ref.size`` bytes streamed from upstream, or no complete response at all.

    A proxied file (a private GitHub asset, spec §5) is fetched while it is sent, so its length and
    sha256 are known only at the end. The index promises both, and LXD trusts Content-Length: so the
    headers go out only once upstream has answered and sent its first bytes (an error before that is an
    ordinary problem+json answer: 502, or 503 with Retry-After), and the chunk that completes the file
    is held back until upstream has ended with exactly ``ref.size`` bytes of the right sha256. Anything
    else (a short or long body, other bytes, a failure midway) ends the response without completing it:
    uvicorn closes the connection, and the client sees fewer bytes than Content-Length. A client that
    goes away stops the upstream transfer. HEAD answers the headers without asking upstream.
    """

    def __init__(self, ref: FileRef, opener: Opener, path: str) -> None:
        super().__init__(media_type="application/octet-stream", headers={"content-length": str(ref.size)})
        self.ref = ref
        self.opener = opener
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if pump.cancelled():
            log.info("%s: the client went away; upstream transfer stopped", self.path)
            return
        pump.result()  # an error before the first byte: answered by the exception handlers

    async def _pump(self, send: Send) -> None:
        ref, path = self.ref, self.path
        async with self.opener(ref) as chunks:
            iterator = aiter(chunks)
            pending = await anext(iterator, b"")
            received = len(pending)
            digest = hashlib.sha256(pending)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            try:
                while received <= ref.size:
                    chunk = await anext(iterator, None)
                    if chunk is None:
                        break
                    received += len(chunk)
                    if received > ref.size:
                        break
                    digest.update(chunk)
                    await send({"type": "http.response.body", "body": pending, "more_body": True})
                    pending = chunk
            except errors.RequestError as exc:
                log.warning("%s: proxy aborted after %d of %d bytes: %s", path, received, ref.size, exc)
                return
        if received > ref.size:
            log.warning(
                "%s: proxy aborted: upstream sent more than the %d bytes the index says", path, ref.size
            )
            return
        if received < ref.size:
            log.warning(
                "%s: proxy aborted: upstream sent %d bytes, the index says %d", path, received, ref.size
            )
            return
        if digest.hexdigest() != ref.sha256:
            log.warning("%s: proxy aborted: upstream bytes do not have the indexed sha256", path)
            return
        await send({"type": "http.response.body", "body": pending, "more_body": False})


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (or the response is complete: uvicorn says so the same way)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _serve_file(request: Request, source: CatalogSource) -> Response:
    path = "images/" + request.path_params["path"]
    catalog_state = await source.get()
    ref = catalog_state.catalog.files.get(path)
    refresh = getattr(source, "refresh_for_miss", None)
    if ref is None and refresh is not None:
        # A release newer than the cached catalog: at most one refresh (spec §4 item 9).
        await refresh()
        ref = (await source.get()).catalog.files.get(path)
    if ref is None:
        raise errors.NotFoundError(f"no such image file: {path}")
    if ref.proxy:
        opener: Opener | None = getattr(source, "open", None)
        if opener is None:
            raise TypeError(f"{type(source).__name__} lists a proxied file but cannot open it")
        return _ProxyResponse(ref, opener, request.url.path)
    if ref.url is not None:
        return RedirectResponse(ref.url, status_code=302)
    if ref.path is None:
        raise errors.NotFoundError(f"no such image file: {path}")
    try:
        stat = os.stat(ref.path)
    except OSError as exc:
        raise errors.NotFoundError(f"image file {path} is gone: {exc.strerror}") from exc
    if stat.st_size != ref.size:
        # Published bytes never change (spec §1.1): never serve a file that disagrees with the index.
        return problem(
            503, f"{path} changed on disk; the index is being rebuilt", headers={"Retry-After": "2"}
        )
    return _ImageFile(ref.path, stat_result=stat, media_type="application/octet-stream")


def _directory_routes(state: ServerState, mount: DirectoryMount) -> list[Route]:
    async def document(request: Request) -> Response:
        return await _serve_document(request, state, mount.label, mount.source)

    async def download(request: Request) -> Response:
        return await _serve_file(request, mount.source)

    return [
        Route(f"{mount.base}/streams/v1/{{document}}", document, methods=["GET"]),
        Route(f"{mount.base}/images/{{path:path}}", download, methods=["GET"]),
    ]


def _routes(state: ServerState) -> list[Route]:
    routes: list[Route] = []
    for mount in state.directories:
        routes.extend(_directory_routes(state, mount))
    if state.github is not None:
        github = state.github

        async def repo_document(request: Request) -> Response:
            owner, repo = request.path_params["owner"], request.path_params["repo"]
            return await _serve_document(request, state, f"{owner}/{repo}", github.source(owner, repo))

        async def repo_download(request: Request) -> Response:
            owner, repo = request.path_params["owner"], request.path_params["repo"]
            return await _serve_file(request, github.source(owner, repo))

        routes.append(Route("/{owner}/{repo}/streams/v1/{document}", repo_document, methods=["GET"]))
        routes.append(Route("/{owner}/{repo}/images/{path:path}", repo_download, methods=["GET"]))

    async def health(request: Request) -> Response:
        states: list[CatalogState] = []
        for mount in state.directories:
            states.append(await mount.source.get())
            state.seen[mount.label] = states[-1]
        local = {mount.label for mount in state.directories}
        states.extend(s for label, s in state.seen.items() if label not in local)  # GitHub repositories
        if not states and state.directories:
            return problem(503, "no index has been built yet")
        stale = [s.problem or "stale" for s in states if not s.fresh]
        headers = {"X-Index-State": "stale" if stale else "fresh"}
        if stale:
            headers["X-Index-Problem"] = "; ".join(stale)[:200]
        return Response(status_code=204, headers=headers)

    registry = CollectorRegistry()
    registry.register(_Collector(state))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes.append(Route("/health", health, methods=["GET"]))
    routes.append(Route("/metrics", metrics, methods=["GET"]))
    return routes


class _Collector:
    """Prometheus view of the server: requests (both paths), connections, catalogs, skipped input."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "webspaces_images_requests",
            "Requests answered, by route kind and status",
            labels=["kind", "status"],
        )
        total = Counter(self.state.counts)
        total.update(self.state.fast.served)
        for (kind, status), value in sorted(total.items()):
            requests.add_metric([kind, str(status)], value)
        yield requests
        if self.state.connection_counts is not None:
            connections = CounterMetricFamily(
                "webspaces_images_connections", "Connections accepted, by protocol", labels=["protocol"]
            )
            for protocol, value in sorted(self.state.connection_counts().items()):
                connections.add_metric([protocol], value)
            yield connections
        products = GaugeMetricFamily(
            "webspaces_images_products", "Products in the current index", labels=["source"]
        )
        fresh = GaugeMetricFamily(
            "webspaces_images_index_fresh",
            "1 when the index is current, 0 when served stale",
            labels=["source"],
        )
        skipped = GaugeMetricFamily(
            "webspaces_images_skipped",
            "Releases or architectures left out of the current index, by reason",
            labels=["source", "reason"],
        )
        for label, catalog_state in sorted(self.state.seen.items()):
            products.add_metric([label], len(catalog_state.catalog.products))
            fresh.add_metric([label], 1 if catalog_state.fresh else 0)
            for reason, value in sorted(Counter(s.reason for s in catalog_state.catalog.skipped).items()):
                skipped.add_metric([label, reason], value)
        yield products
        yield fresh
        yield skipped


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.RequestError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.RateLimitedError) else None
    return problem(exc.status, str(exc), headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no such path: {request.url.path}", 405: f"method {request.method} not allowed"}
    return problem(exc.status_code, message.get(exc.status_code, str(exc.detail)), exc.headers)


async def _bug(request: Request, exc: Exception) -> Response:
    log.exception("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error (logged)")


def create_app(
    *,
    directories: Sequence[DirectoryMount] = (),
    github: RepoBackend | None = None,
    fast: FastCache | None = None,
    connection_counts: Callable[[], Mapping[str, int]] | None = None,
) -> tuple[Starlette, ServerState]:
    """The ASGI app and its shared state (the listener needs the state's fast cache)."""
    bases = [mount.base for mount in directories]
    if len(set(bases)) != len(bases):
        raise errors.ConfigError("backends", f"two directory backends share a base path: {bases}")
    for mount in directories:
        if mount.base and (not mount.base.startswith("/") or mount.base.endswith("/")):
            raise errors.ConfigError(
                "base_path", f"base path {mount.base!r} must start with '/' and not end with one"
            )
    if github is not None and any(not mount.base for mount in directories):
        log.warning("a directory backend mounted at / beside GitHub: mount it under a prefix such as /local")
    state = ServerState(
        directories=directories,
        github=github,
        fast=fast if fast is not None else FastCache(),
        connection_counts=connection_counts,
    )
    app = Starlette(
        routes=_routes(state),
        exception_handlers={
            errors.RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _bug,
        },
    )
    app.add_middleware(_CountRequests, counts=state.counts)
    return app, state

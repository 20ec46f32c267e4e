"""``webspaces images serve``: backends, the Starlette app and the listeners on one uvloop loop.

Start-up order: state directory, TLS material, backends (each directory is indexed before the first
connection is accepted, so /health is 204 from the start), then the listeners. SIGTERM or SIGINT stops
accepting, lets requests in flight finish for up to ``drain`` seconds, closes the backends and saves
the hash caches, so a restart hashes nothing that was hashed before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn
import uvicorn.server

from program.runner import run_until_signalled

from . import tls
from .catalog import CatalogOptions
from .config import ImagesConfig, split_address
from .directory import DirectoryBackend
from .errors import SimplestreamsError
from .hashcache import HashCache
from .listener import FastCache, FastPathProtocol, Listener, bind, protocol_factory
from .server import DirectoryMount, create_app

log = logging.getLogger("simplestreams.service")


class ServiceError(SimplestreamsError):
    """The service cannot start (a port in use, an unreadable directory ...); the message says which."""


class ImageService:
    """Everything ``serve`` runs, as one object a test can start and stop in-process."""

    def __init__(self, config: ImagesConfig, *, drain: float = 5.0) -> None:
        self.config = config
        self.drain = drain
        self.listeners: list[Listener] = []
        self.fast = FastCache()
        self._tasks: list[asyncio.Task[Any]] = []
        self._directories: list[DirectoryBackend] = []
        self._caches: list[HashCache] = []
        self._github: Any = None
        self._uvicorn_state = uvicorn.server.ServerState()
        self._fast_connections: weakref.WeakSet[FastPathProtocol] = weakref.WeakSet()

    def _options(self) -> CatalogOptions:
        return CatalogOptions(
            incus_twin=self.config.incus_twin,
            extra_aliases=self.config.extra_aliases(),
            support_eol=self.config.support_eol,
            include_prereleases=self.config.prereleases,
        )

    def _state_dir(self) -> Path:
        path = Path(self.config.state_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(
                f"cannot create the state directory {path}: {exc.strerror} (see --state-dir)"
            ) from None
        return path

    def _ssl_context(self, state_dir: Path) -> ssl.SSLContext | None:
        if not self.config.tls or not self.config.listen:
            return None
        if self.config.tls_cert:
            return tls.server_context(Path(self.config.tls_cert), Path(self.config.tls_key))
        dns, ips = tls.wanted_names(self.config.tls_san, self.config.listen_hosts())
        cert, key = tls.self_signed(state_dir, dns, ips)
        return tls.server_context(cert, key)

    def connection_counts(self) -> Mapping[str, int]:
        return {
            "tls": sum(listener.tls_connections for listener in self.listeners),
            "plain": sum(listener.plain_connections for listener in self.listeners),
        }

    async def start(self) -> None:
        state_dir = self._state_dir()
        context = self._ssl_context(state_dir)
        options = self._options()
        mounts: list[DirectoryMount] = []
        for spec in self.config.directories():
            if not spec.path.is_dir():
                raise ServiceError(f"directory backend {spec.path}: not a directory")
            digest = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:16]
            cache = HashCache(state_dir / f"hashes-directory-{digest}.json")
            self._caches.append(cache)
            backend = DirectoryBackend(
                spec.path, options=options, cache=cache, scan_interval=self.config.scan_interval
            )
            await backend.refresh()
            self._directories.append(backend)
            self._tasks.append(asyncio.create_task(backend.run(), name=f"scan {spec.path}"))
            mounts.append(DirectoryMount(spec.base, backend, label=f"directory{spec.base or '/'}"))
            log.info("serving %s at %s/", spec.path, spec.base)
        if "github" in self.config.backends:
            from .github import GitHubBackend  # noqa: PLC0415 - only when configured

            cache = HashCache(state_dir / "hashes-github.json")
            self._github = GitHubBackend(
                api_base=self.config.github_api,
                token=self.config.github_token,
                ttl=self.config.ttl,
                allow=self.config.allow or None,
                options=options,
                cache=cache,
            )
            log.info(
                "serving GitHub releases at /<owner>/<repo>/ from %s (%s)",
                self.config.github_api,
                "with a token" if self.config.github_token else "unauthenticated: 60 requests/h",
            )
        app, _ = create_app(
            directories=mounts, github=self._github, fast=self.fast, connection_counts=self.connection_counts
        )
        factory = protocol_factory(app, self.fast, self._uvicorn_state, self._fast_connections.add)
        addresses = [(a, context) for a in self.config.listen] + [(a, None) for a in self.config.plain_listen]
        for address, ctx in addresses:
            host, port = split_address(address, "listen")
            try:
                sock = bind(host, port)
            except OSError as exc:
                raise ServiceError(f"cannot listen on {address}: {exc.strerror}") from None
            listener = Listener(sock, factory, ctx)
            listener.start()
            self.listeners.append(listener)
            scheme = "https (and plain http)" if ctx is not None else "http"
            log.info("listening on %s:%d, %s", *listener.address, scheme)

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.close()
        for protocol in list(self._fast_connections):
            if protocol.transport is not None:
                protocol.transport.close()
        for connection in list(self._uvicorn_state.connections):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + self.drain
        while self._uvicorn_state.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._github is not None:
            try:
                await self._github.save_cache()  # prunes only what no repository in use needs
            except OSError as exc:
                log.warning("could not save the GitHub hash cache: %s", exc)
            await self._github.aclose()
        for cache in self._caches:
            try:
                cache.save()
            except OSError as exc:
                log.warning("could not save the hash cache: %s", exc)


class _Serve:
    """``serve`` as a :class:`program.runner.Program`. Everything the service opens needs its loop
    (the backends index on it, the listeners are its servers), so ``open()`` and ``close()`` have
    nothing to do and ``run()`` starts the service, waits for the signal and stops it."""

    def __init__(self, config: ImagesConfig) -> None:
        self.config = config

    def open(self) -> None:
        pass

    async def run(self, stop: asyncio.Event) -> int:
        service = ImageService(self.config)
        try:
            await service.start()
        except SimplestreamsError as exc:  # a bad certificate, an unreadable directory, a port in use ...
            await service.stop()
            raise ServiceError(str(exc)) from None
        await stop.wait()
        log.info("stopping")
        await service.stop()
        return 0

    def close(self) -> None:
        pass


def main(config: ImagesConfig) -> int:
    import uvloop  # noqa: PLC0415

    return run_until_signalled(_Serve(config), loop_factory=uvloop.new_event_loop)

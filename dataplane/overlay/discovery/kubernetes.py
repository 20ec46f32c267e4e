"""The Kubernetes peer source: the IPv4 endpoints of one Service's EndpointSlices, listed then
watched (spec 2.2, 2.4)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from .base import DiscoveryError, Publish, _Backoff, _ipv4, _SourceBase, log

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class _ExpiredError(Exception):
    """410 Gone: the resourceVersion fell out of the API server's history; relist."""


class _ApiError(Exception):
    """The API server refused or broke the request; back off and retry."""


def slice_addresses(item: Mapping[str, Any]) -> frozenset[str]:
    """Every IPv4 address of every endpoint of one EndpointSlice, whatever its conditions.

    Not-ready, not-serving and terminating endpoints count (spec 2.2: LXD cluster formation over the
    overlay needs not-ready pods peered). IPv6 and FQDN slices give nothing: the underlay is IPv4.
    """
    if item.get("addressType") != "IPv4":
        return frozenset()
    found: set[str] = set()
    for endpoint in item.get("endpoints") or ():
        if not isinstance(endpoint, Mapping):
            continue
        for address in endpoint.get("addresses") or ():
            normal = _ipv4(address) if isinstance(address, str) else None
            if normal is not None:
                found.add(normal)
    return frozenset(found)


def _metadata(obj: Any) -> Mapping[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


class KubernetesSource(_SourceBase):
    """Peers are the IPv4 endpoints of one Service's EndpointSlices (``discovery.k8s.io/v1``).

    List (following ``metadata.continue``) then watch from the list's resourceVersion with
    bookmarks; a watch that ends is resumed from the last resourceVersion seen, and 410 Gone (as a
    status or as an ERROR event) forces a fresh list. Our own addresses are left out.
    """

    def __init__(
        self,
        namespace: str,
        service: str,
        *,
        api_url: str,
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        self_addresses: Iterable[str] = (),
        client: httpx.AsyncClient | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_pages: int = 10_000,
    ) -> None:
        if not namespace or not service:
            raise DiscoveryError("Kubernetes peer source needs a namespace and a service")
        super().__init__(f"k8s:{namespace}/{service}", self_addresses)
        self.namespace = namespace
        self.service = service
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.token_file = token_file
        self.ca_file = ca_file
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.max_pages = max_pages
        self._client = client
        self._backoff = _Backoff(min_backoff, max_backoff)
        self._slices: dict[str, frozenset[str]] = {}
        self.resource_version: str | None = None
        # Counters for health pages and tests: how often the source listed and watched.
        self.lists = 0
        self.watches = 0

    @classmethod
    def from_environment(
        cls,
        namespace: str | None,
        service: str,
        *,
        self_addresses: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        secrets_dir: str = SERVICE_ACCOUNT_DIR,
        api_url: str | None = None,
        **options: Any,
    ) -> KubernetesSource:
        """In-cluster configuration: the API server from ``KUBERNETES_SERVICE_HOST``/``_PORT``, the
        service account token (re-read on every request: kubelet rotates it), its CA and, when
        ``namespace`` is None, the pod's own namespace.

        An explicit ``api_url`` (``--kubernetes-api``: outside a pod, ``kubectl proxy``, a test
        server) replaces the environment's API server, and the token becomes optional: sent when
        mounted, else the requests go without ``Authorization``."""
        env = os.environ if environ is None else environ
        directory = Path(secrets_dir)
        token_file = directory / "token"
        if api_url is None:
            host = env.get("KUBERNETES_SERVICE_HOST", "")
            port = env.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise DiscoveryError(
                    f"k8s:{namespace or '?'}/{service}: KUBERNETES_SERVICE_HOST is not set (not in a pod?)"
                )
            if ":" in host:
                host = f"[{host}]"
            api_url = f"https://{host}:{port}"
            if not token_file.is_file():
                raise DiscoveryError(
                    f"k8s:{namespace or '?'}/{service}: no service account token at {token_file}"
                )
        if namespace is None:
            try:
                namespace = (directory / "namespace").read_text().strip()
            except OSError as exc:
                raise DiscoveryError(f"k8s:?/{service}: cannot read the pod's namespace: {exc}") from None
        ca_file = directory / "ca.crt"
        return cls(
            namespace,
            service,
            api_url=api_url,
            token_file=str(token_file) if token_file.is_file() else None,
            ca_file=str(ca_file) if ca_file.is_file() else None,
            self_addresses=self_addresses,
            **options,
        )

    # -- HTTP -------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.token
        if self.token_file:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise _ApiError(f"cannot read the token {self.token_file}: {exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _make_client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.ca_file:
            verify = ssl.create_default_context(cafile=self.ca_file)
        timeout = httpx.Timeout(10.0, read=self.watch_timeout + 30.0)
        return httpx.AsyncClient(base_url=self.api_url, verify=verify, timeout=timeout)

    @staticmethod
    def _status_error(status: int, body: bytes) -> str:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        return f"HTTP {status}: {message}".rstrip(": ")

    async def _list(self, client: httpx.AsyncClient) -> None:
        """A complete list (every page); replaces the slices and returns nothing but state."""
        params: dict[str, str | int] = {"labelSelector": f"{SERVICE_NAME_LABEL}={self.service}"}
        if self.page_size:
            params["limit"] = self.page_size
        slices: dict[str, frozenset[str]] = {}
        version: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(self.max_pages):
            response = await client.get(self.path, params=params, headers=self._headers())
            if response.status_code != 200:
                # 410 here is an expired continue token: the next attempt lists from the start.
                raise _ApiError(f"list: {self._status_error(response.status_code, response.content)}")
            try:
                body = response.json()
                items = body.get("items") or []
                meta = _metadata(body)
            except (ValueError, AttributeError) as exc:
                raise _ApiError(f"list: not an EndpointSliceList: {exc}") from None
            for item in items:
                name = _metadata(item).get("name")
                if isinstance(name, str):
                    slices[name] = slice_addresses(item)
            version = meta.get("resourceVersion") or version
            token = meta.get("continue")
            if not token:
                break
            if token in seen_tokens:
                raise _ApiError("list: the server repeated a continue token")
            seen_tokens.add(token)
            params["continue"] = token
        else:
            raise _ApiError(f"list: more than {self.max_pages} pages")
        if not isinstance(version, str):
            raise _ApiError("list: no metadata.resourceVersion to watch from")
        self._slices = slices
        self.resource_version = version
        self.lists += 1

    async def _watch(self, client: httpx.AsyncClient, publish: Publish) -> None:
        """Follow the watch stream until the server ends it; raises _ExpiredError or _ApiError."""
        assert self.resource_version is not None
        params: dict[str, str | int] = {
            "labelSelector": f"{SERVICE_NAME_LABEL}={self.service}",
            "watch": 1,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self.watch_timeout,
        }
        async with client.stream("GET", self.path, params=params, headers=self._headers()) as response:
            if response.status_code == 410:
                raise _ExpiredError("watch: HTTP 410 Gone")
            if response.status_code != 200:
                body = await response.aread()
                raise _ApiError(f"watch: {self._status_error(response.status_code, body)}")
            self.watches += 1
            self._backoff.reset()
            self._recovered()
            async for line in response.aiter_lines():
                if line.strip():
                    self._event(line, publish)

    def _event(self, line: str, publish: Publish) -> None:
        try:
            event = json.loads(line)
            kind = event["type"]
            obj = event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _ApiError(f"watch: not a watch event: {exc}") from None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, Mapping) else None
            message = obj.get("message", "") if isinstance(obj, Mapping) else ""
            if code == 410:
                raise _ExpiredError(f"watch: {message or '410 Gone'}")
            raise _ApiError(f"watch: error event {code}: {message}")
        meta = _metadata(obj)
        name = meta.get("name")
        if kind in ("ADDED", "MODIFIED") and isinstance(name, str):
            self._slices[name] = slice_addresses(obj)
        elif kind == "DELETED" and isinstance(name, str):
            self._slices.pop(name, None)
        elif kind != "BOOKMARK":
            log.debug("%s: ignoring watch event %s", self.name, kind)
        version = meta.get("resourceVersion")
        if isinstance(version, str) and version:
            self.resource_version = version
        self._publish(publish, self.peers())

    def peers(self) -> frozenset[str]:
        return frozenset().union(*self._slices.values()) - self.self_addresses

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, publish: Publish) -> None:
        client = self._client if self._client is not None else self._make_client()
        try:
            while True:
                try:
                    if self.resource_version is None:
                        await self._list(client)
                        self._recovered()
                        self._publish(publish, self.peers())
                    started = time.monotonic()
                    await self._watch(client, publish)
                    # The server ended the watch (timeoutSeconds): resume at once, unless it keeps
                    # ending them straight away.
                    if time.monotonic() - started < 1.0:
                        await asyncio.sleep(self._backoff.next())
                except _ExpiredError as exc:
                    log.info("%s: %s; listing again", self.name, exc)
                    self.resource_version = None
                except (_ApiError, httpx.HTTPError, OSError) as exc:
                    self._failed(str(exc) or type(exc).__name__)
                    await asyncio.sleep(self._backoff.next())
        finally:
            if self._client is None:
                await client.aclose()

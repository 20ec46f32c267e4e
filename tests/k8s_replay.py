"""A stand-in Kubernetes API server for EndpointSlice discovery tests, on 127.0.0.1.

It serves ``/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`` the way kube-apiserver does
(Kubernetes API concepts, "Efficient detection of changes" and "Retrieving large results sets in
chunks"; EndpointSlice v1 reference):

* list: ``{"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1", "metadata":
  {"resourceVersion": ..., "continue": ...}, "items": [...]}``, filtered by ``labelSelector``
  (equality only), paginated by ``limit``/``continue`` over one snapshot; items carry no
  kind/apiVersion, as in a real list;
* watch (``?watch=1&resourceVersion=RV``): HTTP 200 and one JSON event per line,
  ``{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": ...}``, replaying every
  change after RV, then following new ones; BOOKMARK objects carry only the kind, apiVersion and
  ``metadata.resourceVersion``; a resourceVersion older than the kept history gets an ERROR event
  whose object is a ``Status`` with code 410 (reason ``Expired``), or, with ``gone_as_status``, an
  HTTP 410 response carrying that Status; ``timeoutSeconds`` ends the stream;
* ``Authorization: Bearer <token>`` is checked when a token is set (401 Status otherwise).

Tests drive it with :meth:`Replay.apply`, :meth:`Replay.delete`, :meth:`Replay.bookmark`,
:meth:`Replay.compact` (forget history: open watches get the 410 ERROR event) and
:meth:`Replay.drop_watches` (connections cut), and read :attr:`Replay.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.replay_server import loopback_socket, quiet_server

API_VERSION = "discovery.k8s.io/v1"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Json = dict[str, Any]


def endpoint(
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
    pod: str = "",
    node: str = "node-a",
) -> Json:
    """One entry of ``endpoints``: addresses, conditions (a None condition is left out, as the API
    does for unset pointers), nodeName and targetRef."""
    conditions: Json = {}
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            conditions[key] = value
    return {
        "addresses": [address],
        "conditions": conditions,
        "nodeName": node,
        "targetRef": {
            "kind": "Pod",
            "namespace": "default",
            "name": pod or f"ws-{address.rsplit('.', 1)[-1]}",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, address)),
        },
    }


def endpoint_slice(
    name: str,
    service: str,
    endpoints: Sequence[Json],
    *,
    namespace: str = "default",
    address_type: str = "IPv4",
    ports: Sequence[Json] = ({"name": "vxlan", "protocol": "UDP", "port": 4789},),
) -> Json:
    """An EndpointSlice as the endpointslice controller writes it (resourceVersion set on apply)."""
    service_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{service}"))
    return {
        "kind": "EndpointSlice",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "generateName": f"{service}-",
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
            "generation": 1,
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                SERVICE_NAME_LABEL: service,
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service,
                    "uid": service_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": list(ports),
    }


def status(code: int, reason: str, message: str) -> Json:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _Watch:
    namespace: str
    selector: dict[str, str]
    queue: asyncio.Queue[Json | None] = field(default_factory=asyncio.Queue)


@dataclass
class Replay:
    """Objects, history and open watches of one fake API server."""

    token: str | None = None
    gone_as_status: bool = False  # answer an expired watch with HTTP 410 instead of an ERROR event
    resource_version: int = 1000
    objects: dict[tuple[str, str], Json] = field(default_factory=dict)
    history: list[tuple[int, str, Json]] = field(default_factory=list)
    oldest: int = 0  # watches from before this resourceVersion are expired
    requests: list[dict[str, str]] = field(default_factory=list)
    snapshots: dict[str, tuple[int, list[Json]]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)  # status codes for the next requests
    _watches: list[_Watch] = field(default_factory=list)

    # -- driving ----------------------------------------------------------------------------

    def apply(self, obj: Json) -> int:
        """Create or update ``obj``; returns its new resourceVersion."""
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        kind = "MODIFIED" if key in self.objects else "ADDED"
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        self.objects[key] = obj
        self._record(kind, obj)
        return self.resource_version

    def delete(self, name: str, namespace: str = "default") -> None:
        obj = self.objects.pop((namespace, name))
        self.resource_version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._record("DELETED", obj)

    def bookmark(self) -> int:
        """Send a BOOKMARK at a newer resourceVersion to every open watch (no object changed)."""
        self.resource_version += 1
        for watch in self._watches:
            watch.queue.put_nowait(self._bookmark_event(self.resource_version))
        return self.resource_version

    def compact(self) -> None:
        """Forget all history: every resourceVersion seen so far is now too old to watch from.
        Open watches get the 410 ERROR event, as kube-apiserver's watch cache sends them."""
        self.resource_version += 1  # the cluster moved on: a fresh list can watch from here
        self.oldest = self.resource_version
        self.history.clear()
        for watch in self._watches:
            watch.queue.put_nowait(self._expired_event(self.resource_version))
            watch.queue.put_nowait(None)

    def drop_watches(self) -> None:
        """End every open watch stream, as a restarted API server or a broken connection would."""
        for watch in self._watches:
            watch.queue.put_nowait(None)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def _record(self, kind: str, obj: Json) -> None:
        self.history.append((self.resource_version, kind, obj))
        event = {"type": kind, "object": obj}
        for watch in self._watches:
            if self._matches(obj, watch.namespace, watch.selector):
                watch.queue.put_nowait(event)

    # -- wire format ------------------------------------------------------------------------

    @staticmethod
    def _bookmark_event(version: int) -> Json:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": "EndpointSlice",
                "apiVersion": API_VERSION,
                "metadata": {"resourceVersion": str(version), "creationTimestamp": None},
                "addressType": "",
                "endpoints": None,
            },
        }

    @staticmethod
    def _expired_event(version: int) -> Json:
        return {"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {version}")}

    @staticmethod
    def _selector(text: str) -> dict[str, str]:
        selector = {}
        for term in filter(None, text.split(",")):
            key, _, value = term.partition("=")
            selector[key.strip()] = value.strip().lstrip("=")
        return selector

    @staticmethod
    def _matches(obj: Mapping[str, Any], namespace: str, selector: Mapping[str, str]) -> bool:
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        return meta["namespace"] == namespace and all(labels.get(k) == v for k, v in selector.items())

    # -- HTTP -------------------------------------------------------------------------------

    async def endpointslices(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append(params)
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(status(401, "Unauthorized", "Unauthorized"), status_code=401)
        if self.fail_next:
            code = self.fail_next.pop(0)
            return JSONResponse(status(code, "Forbidden", "scripted failure"), status_code=code)
        namespace = request.path_params["namespace"]
        selector = self._selector(params.get("labelSelector", ""))
        if params.get("watch") in ("1", "true"):
            return self._watch(namespace, selector, params)
        return self._list(namespace, selector, params)

    def _list(self, namespace: str, selector: dict[str, str], params: Mapping[str, str]) -> Response:
        token = params.get("continue")
        if token:
            if token not in self.snapshots:
                message = "The provided continue parameter is too old to display a consistent list result."
                return JSONResponse(status(410, "Expired", message), status_code=410)
            version, remaining = self.snapshots.pop(token)
        else:
            version = self.resource_version
            remaining = [
                copy.deepcopy(obj)
                for _, obj in sorted(self.objects.items())
                if self._matches(obj, namespace, selector)
            ]
            for obj in remaining:  # list items carry no kind/apiVersion
                obj.pop("kind", None)
                obj.pop("apiVersion", None)
        limit = int(params.get("limit") or 0)
        page, rest = (remaining[:limit], remaining[limit:]) if limit else (remaining, [])
        metadata: Json = {"resourceVersion": str(version)}
        if rest:
            token = uuid.uuid4().hex
            self.snapshots[token] = (version, rest)
            metadata["continue"] = token
            metadata["remainingItemCount"] = len(rest)
        body = {"kind": "EndpointSliceList", "apiVersion": API_VERSION, "metadata": metadata, "items": page}
        return JSONResponse(body)

    def _watch(self, namespace: str, selector: dict[str, str], params: Mapping[str, str]) -> Response:
        since = int(params.get("resourceVersion") or 0)
        timeout = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        if since and since < self.oldest and self.gone_as_status:
            message = f"too old resource version: {since} ({self.resource_version})"
            return JSONResponse(status(410, "Expired", message), status_code=410)
        watch = _Watch(namespace, selector)
        if since and since < self.oldest:
            watch.queue.put_nowait(self._expired_event(since))
            watch.queue.put_nowait(None)
        else:
            for version, kind, obj in self.history:
                if version > since and self._matches(obj, namespace, selector):
                    watch.queue.put_nowait({"type": kind, "object": obj})
        self._watches.append(watch)
        return StreamingResponse(self._stream(watch, timeout, bookmarks), media_type="application/json")

    async def _stream(self, watch: _Watch, timeout: float, bookmarks: bool) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watch.queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:
                    break
                if event["type"] == "BOOKMARK" and not bookmarks:
                    continue
                yield json.dumps(event).encode() + b"\n"
        finally:
            with contextlib.suppress(ValueError):
                self._watches.remove(watch)

    def app(self) -> Starlette:
        path = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        return Starlette(routes=[Route(path, self.endpointslices)])


@contextlib.asynccontextmanager
async def serve(replay: Replay) -> AsyncIterator[str]:
    """Serve ``replay`` on 127.0.0.1 (a free port) inside the running event loop; yields the URL."""
    sock, port = loopback_socket()
    server = quiet_server(replay.app())
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the replay server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        replay.drop_watches()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        sock.close()


def addresses_of(items: Iterable[Json]) -> set[str]:
    return {a for item in items for e in item["endpoints"] for a in e["addresses"]}

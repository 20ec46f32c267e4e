"""Peer discovery for the overlay agent: where the list of peer VTEPs comes from (spec 2.2, 2.6).

Theory of operation. A *source* knows one list of peers and publishes it, always whole, whenever it
changes: a static list once; the A records of a DNS name, re-resolved at their TTL; or the IPv4
endpoints of a Kubernetes Service's EndpointSlices, listed then watched. A source never publishes a
partial list, so the consumer can diff: :class:`PeerSet` applies each source's list to the VTEP by
difference (``set_peers(source, addresses)``, which reference-counts addresses across sources),
reports per-source changes (``on_change`` and the kubelan change hook) and says whether every source
has delivered and applied a complete list (spec 2.6.3: the agent is healthy only then).

A failing source (DNS timeout, API server unreachable) keeps its last good list applied and retries
with exponential backoff, logging once per failure streak rather than per attempt; an empty answer
(NXDOMAIN, no endpoints) is a complete, empty list and is applied as such.

Differences from kubelan (spec 2.2, 2.4): EndpointSlices ``discovery.k8s.io/v1`` watched per namespace
with the ``kubernetes.io/service-name`` label selector instead of every slice of the cluster; a slice
update is applied as its difference, not as remove-all-then-add-all; an address listed by two sources
stays a peer until both drop it; endpoints count whatever their ready/serving/terminating conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import json
import logging
import os
import random
import secrets
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from dataplane import wire

if TYPE_CHECKING:
    from .config import OverlayConfig

__all__ = [
    "DiscoveryError",
    "DnsSource",
    "KubernetesSource",
    "PeerHealth",
    "PeerSet",
    "PeerSource",
    "Publish",
    "SourceHealth",
    "StaticSource",
    "read_resolv_conf",
    "sources_from_config",
]

log = logging.getLogger(__name__)

Publish = Callable[[str, frozenset[str]], None]
"""``publish(source_name, complete_peer_list)``, called by a source each time its list changes."""

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HOOK_TIMEOUT = 60.0


class DiscoveryError(Exception):
    """A peer source cannot be set up (bad argument, not in a cluster); the message says why."""


class PeerSource(Protocol):
    """One origin of peers. ``run`` publishes the complete list each time it changes and sets
    ``synced`` after the first; ``error`` describes the current failure streak, None when healthy."""

    @property
    def name(self) -> str: ...

    @property
    def synced(self) -> asyncio.Event: ...

    @property
    def error(self) -> str | None: ...

    async def run(self, publish: Publish) -> None: ...


def _ipv4(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


class _Backoff:
    """Exponential backoff with jitter: ``initial`` doubling up to ``maximum``, each delay drawn
    from its upper half so that many agents restarted together do not retry in step."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return random.uniform(delay / 2, delay)


class _SourceBase:
    """What every source shares: its name, the synced event, the current-list bookkeeping and
    logging once per failure streak."""

    def __init__(self, name: str, self_addresses: Iterable[str] = ()) -> None:
        self.name = name
        self.synced = asyncio.Event()
        self.error: str | None = None
        self.self_addresses = frozenset(self_addresses)
        self._published: frozenset[str] | None = None

    def _publish(self, publish: Publish, peers: Iterable[str]) -> None:
        current = frozenset(peers) - self.self_addresses
        if current != self._published:
            self._published = current
            publish(self.name, current)
        self.synced.set()

    def _failed(self, message: str) -> None:
        if self.error is None:
            log.warning("%s: %s (keeping the last list, retrying)", self.name, message)
        else:
            log.debug("%s: still failing: %s", self.name, message)
        self.error = message

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("%s: recovered", self.name)
            self.error = None


# -- static ---------------------------------------------------------------------------------


class StaticSource(_SourceBase):
    """A fixed list of IPv4 addresses (``--peer``), published once."""

    def __init__(self, addresses: Iterable[str], *, name: str = "static") -> None:
        super().__init__(name)
        peers = []
        for address in addresses:
            normal = _ipv4(str(address).strip())
            if normal is None:
                raise DiscoveryError(f"static peer {address!r} is not an IPv4 address")
            peers.append(normal)
        self.addresses = frozenset(peers)

    async def run(self, publish: Publish) -> None:
        self._publish(publish, self.addresses)


# -- DNS ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1


def read_resolv_conf(path: str = "/etc/resolv.conf") -> ResolvConf:
    """The parts of resolv.conf(5) a stub resolver needs; a missing file means the defaults."""
    try:
        text = Path(path).read_text()
    except OSError:
        return ResolvConf()
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    ndots = 1
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver":
            nameservers.append(values[0])
        elif key in ("search", "domain"):  # the last of the two wins, as in glibc
            search = tuple(v.rstrip(".") for v in values)
        elif key == "options":
            for option in values:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = min(int(option[6:]), 15)
    return ResolvConf(tuple(nameservers), search, ndots)


class _DnsError(Exception):
    """A resolution failed (timeout, SERVFAIL, refused): keep the last list and retry."""


class _DnsReceiver(asyncio.DatagramProtocol):
    """Collects answers for one query socket; bounded, so a flood cannot grow it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on the connected socket: fail this attempt now, not at timeout.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(exc)


# RFC 8020-style negative answers have no records to take a TTL from; RFC 2308 §5 takes the
# negative TTL from the SOA in the authority section when the server sends one.
def _negative_ttl(msg: wire.DnsMessage) -> int | None:
    for record in msg.authorities:
        if record.type == 6 and len(record.data) >= 20:
            minimum = int.from_bytes(record.data[-4:], "big")
            return min(record.ttl, minimum)
    return None


def _ttl(value: int) -> int:
    return value if value < 0x80000000 else 0  # RFC 2181 §8


class DnsSource(_SourceBase):
    """Peers are the A records of ``name`` (a headless Service), re-resolved at the smallest record
    TTL clamped to [``min_interval``, ``max_interval``] (spec 2.6.4: at least every 30 s).

    Queries go over UDP from a fresh socket (random port) with a random id, and an answer counts
    only if it comes from the server, matches the id and repeats the question; ``attempts`` tries of
    ``timeout`` seconds each, then TCP when the answer was truncated. NXDOMAIN or no A records is an
    empty list. ``name`` is tried with the resolv.conf search list as glibc does (``ndots``), so a
    Kubernetes short name such as ``ws.default.svc`` works; a trailing dot makes it absolute.
    """

    def __init__(
        self,
        name: str,
        *,
        server: tuple[str, int] | None = None,
        min_interval: float = 1.0,
        max_interval: float = 30.0,
        timeout: float = 2.0,
        attempts: int = 2,
        search: Sequence[str] | None = None,
        ndots: int | None = None,
        self_addresses: Iterable[str] = (),
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        if not name or not name.strip("."):
            raise DiscoveryError("DNS peer source needs a name")
        if not 0 < min_interval <= max_interval:
            raise DiscoveryError(f"need 0 < min_interval <= max_interval, got {min_interval}, {max_interval}")
        if timeout <= 0 or attempts < 1:
            raise DiscoveryError(f"need timeout > 0 and attempts >= 1, got {timeout}, {attempts}")
        try:
            wire.build_query(0, name)
        except ValueError as exc:
            raise DiscoveryError(f"not a DNS name: {name!r} ({exc})") from None
        super().__init__(f"dns:{name}", self_addresses)
        self.query_name = name
        self.server = server
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.timeout = timeout
        self.attempts = attempts
        self._search = None if search is None else tuple(search)
        self._ndots = ndots
        self._resolv_conf = resolv_conf

    # -- one resolution ---------------------------------------------------------------------

    def _candidates(self, conf: ResolvConf) -> list[str]:
        name = self.query_name
        if name.endswith("."):
            return [name.rstrip(".")]
        search = conf.search if self._search is None else self._search
        ndots = conf.ndots if self._ndots is None else self._ndots
        searched = [f"{name}.{domain}" for domain in search if domain]
        return [name, *searched] if name.count(".") >= ndots else [*searched, name]

    def _query(self, name: str) -> tuple[int, bytes]:
        ident = secrets.randbelow(0x10000)
        # EDNS0 (RFC 6891) with the 1232-byte payload of DNS flag day 2020, so a large headless
        # Service fits in one UDP answer; TCP remains the fallback.
        msg = wire.DnsMessage(
            id=ident,
            flags=wire.FLAG_RD,
            questions=[wire.DnsQuestion(name, wire.TYPE_A, wire.CLASS_IN)],
            additionals=[wire.DnsRecord("", wire.TYPE_OPT, 1232, 0, b"")],
        )
        buf = wire.Buffer()
        wire.push_dns(buf, msg)
        return ident, buf.data

    @staticmethod
    def _answers(data: bytes, ident: int, name: str) -> wire.DnsMessage | None:
        try:
            msg = wire.pull_dns(wire.Buffer(data))
        except wire.MalformedPacket:
            return None
        if not msg.is_response or msg.id != ident or len(msg.questions) != 1:
            return None
        question = msg.questions[0]
        if (question.name.lower(), question.qtype, question.qclass) != (name.lower(), wire.TYPE_A, 1):
            return None
        return msg

    async def _exchange_udp(self, server: tuple[str, int], name: str) -> wire.DnsMessage:
        loop = asyncio.get_running_loop()
        problem = ""
        for _ in range(self.attempts):
            ident, query = self._query(name)
            transport, receiver = await loop.create_datagram_endpoint(_DnsReceiver, remote_addr=server)
            try:
                transport.sendto(query)
                msg, problem = await self._await_answer(receiver, ident, name, loop.time() + self.timeout)
            finally:
                transport.close()
            if msg is not None:
                return msg
        raise _DnsError(f"{name}: {problem} from {server[0]}:{server[1]} ({self.attempts} attempts)")

    async def _await_answer(
        self, receiver: _DnsReceiver, ident: int, name: str, deadline: float
    ) -> tuple[wire.DnsMessage | None, str]:
        """The first datagram that answers this query; spoofed or stale ones are skipped."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(receiver.queue.get(), remaining)
            except TimeoutError:
                break
            if isinstance(item, Exception):
                return None, str(item) or type(item).__name__
            msg = self._answers(item, ident, name)
            if msg is not None:
                return msg, ""
        return None, f"no answer within {self.timeout:g} s"

    async def _exchange_tcp(self, server: tuple[str, int], name: str) -> wire.DnsMessage:
        ident, query = self._query(name)

        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(server[0], server[1])
            try:
                writer.write(len(query).to_bytes(2, "big") + query)  # RFC 1035 §4.2.2 framing
                await writer.drain()
                length = int.from_bytes(await reader.readexactly(2), "big")
                return await reader.readexactly(length)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        try:
            data = await asyncio.wait_for(exchange(), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise _DnsError(f"{name}: TCP to {server[0]}:{server[1]} failed: {exc or 'timeout'}") from None
        msg = self._answers(data, ident, name)
        if msg is None:
            raise _DnsError(f"{name}: unusable TCP answer from {server[0]}:{server[1]}")
        return msg

    def _server(self, conf: ResolvConf) -> tuple[str, int]:
        if self.server is not None:
            return self.server
        for address in conf.nameservers:
            with contextlib.suppress(ValueError):
                return (str(ipaddress.ip_address(address)), wire.DNS_PORT)
        return ("127.0.0.1", wire.DNS_PORT)  # resolv.conf(5): no nameserver line means the local host

    async def resolve(self) -> tuple[frozenset[str], float]:
        """One resolution: the addresses and the seconds until the next one. Raises _DnsError."""
        conf = read_resolv_conf(self._resolv_conf)
        server = self._server(conf)
        for name in self._candidates(conf):
            msg = await self._exchange_udp(server, name)
            if msg.truncated:
                msg = await self._exchange_tcp(server, name)
            if msg.rcode == wire.RCODE_NXDOMAIN:
                continue  # glibc goes on down the search list; the last NXDOMAIN means "no peers"
            if msg.rcode != wire.RCODE_NOERROR:
                raise _DnsError(f"{name}: server {server[0]}:{server[1]} answered rcode {msg.rcode}")
            records = [r for r in msg.answers if r.type != wire.TYPE_OPT]
            addresses = frozenset(".".join(map(str, address)) for address, _ in wire.a_records(msg))
            if records:
                ttl: int | None = min(_ttl(r.ttl) for r in records)
            else:
                ttl = _negative_ttl(msg)
            return addresses, self._interval(ttl)
        return frozenset(), self._interval(None)

    def _interval(self, ttl: int | None) -> float:
        if ttl is None:  # nothing to go by (no records, no SOA): look again soon
            return self.min_interval
        return min(max(float(ttl), self.min_interval), self.max_interval)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, publish: Publish) -> None:
        backoff = _Backoff(self.min_interval, self.max_interval)
        while True:
            try:
                peers, delay = await self.resolve()
            except (_DnsError, OSError) as exc:
                self._failed(str(exc))
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._recovered()
            self._publish(publish, peers)
            await asyncio.sleep(delay)


# -- Kubernetes -----------------------------------------------------------------------------


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


# -- the aggregator -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    synced: bool  # a complete list was delivered and applied
    peers: int  # addresses in the list applied last
    last_sync: float | None  # Unix time that list was applied
    error: str | None = None  # the current failure streak, or the last apply failure


@dataclass(frozen=True, slots=True)
class PeerHealth:
    synced: bool  # every configured source is synced (spec 2.6.3)
    peers: int  # distinct addresses over all sources
    sources: tuple[SourceHealth, ...]


@dataclass(slots=True)
class _State:
    source: PeerSource
    applied: frozenset[str] = frozenset()
    synced: bool = False
    last_sync: float | None = None
    apply_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Change:
    source: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


ApplyResult = Any
Apply = Callable[[str, frozenset[str]], ApplyResult | Awaitable[ApplyResult]]
OnChange = Callable[[str, tuple[str, ...], tuple[str, ...]], Awaitable[None] | None]


def _address_key(address: str) -> tuple[int, int, str]:
    try:
        return (0, int(ipaddress.IPv4Address(address)), "")
    except ValueError:
        return (1, 0, address)


def _address_order(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(addresses, key=_address_key))


def hook_service(source: str) -> str:
    """kubelan's ``SERVICE`` for a source: ``ns/name`` for Kubernetes, else the source name."""
    return source[4:] if source.startswith("k8s:") else source


class PeerSet:
    """Runs the sources, applies each complete list by difference and says when all are synced.

    ``apply(source, peers)`` is the VTEP's ``set_peers`` (or a coroutine function that calls it on
    the data-path thread); lists are applied one at a time in publication order, and a source that
    publishes again before its previous list was applied has only its newest list applied. After an
    applied change, ``on_change(source, added, removed)`` runs, then the kubelan change ``hook``
    (argv; environment ``IFACE``, ``SERVICE``, ``IPS`` space-separated, ``DELETED``), once for the
    added and once for the removed addresses, in the background and in order; hook failures are
    only logged.
    """

    def __init__(
        self,
        sources: Sequence[PeerSource],
        apply: Apply,
        *,
        on_change: OnChange | None = None,
        hook: Sequence[str] = (),
        interface: str = "",
        clock: Callable[[], float] = time.time,
        restart_delay: float = 1.0,
    ) -> None:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DiscoveryError(f"peer sources configured twice: {', '.join(duplicates)}")
        self._states = {s.name: _State(s) for s in sources}
        self._apply = apply
        self._on_change = on_change
        self._hook = tuple(hook)
        self._interface = interface
        self._clock = clock
        self._restart_delay = restart_delay
        self._refs: dict[str, int] = {}
        self._pending: dict[str, frozenset[str]] = {}
        self._wake = asyncio.Event()
        self._changes: asyncio.Queue[_Change] = asyncio.Queue()
        self._all_synced = asyncio.Event()
        if not sources:
            self._all_synced.set()

    # -- views ------------------------------------------------------------------------------

    @property
    def peers(self) -> frozenset[str]:
        """Every address some source lists (what the VTEP floods to)."""
        return frozenset(self._refs)

    @property
    def synced(self) -> bool:
        return self._all_synced.is_set()

    async def wait_synced(self) -> None:
        await self._all_synced.wait()

    def health(self) -> PeerHealth:
        sources = tuple(
            SourceHealth(
                name,
                state.synced,
                len(state.applied),
                state.last_sync,
                state.source.error or state.apply_error,
            )
            for name, state in self._states.items()
        )
        return PeerHealth(all(s.synced for s in sources), len(self._refs), sources)

    # -- running ----------------------------------------------------------------------------

    def publish(self, source: str, peers: frozenset[str]) -> None:
        """What sources call: queue ``source``'s complete list for the applier."""
        if source not in self._states:
            raise DiscoveryError(f"unknown peer source {source!r}")
        self._pending.pop(source, None)  # re-queue at the end: lists apply in publication order
        self._pending[source] = frozenset(peers)
        self._wake.set()

    async def run(self) -> None:
        """Run every source, the applier and the notifier until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._applier(), name="peers-apply")
            group.create_task(self._notifier(), name="peers-notify")
            for name, state in self._states.items():
                group.create_task(self._run_source(state.source), name=f"peers-{name}")

    async def _run_source(self, source: PeerSource) -> None:
        delay = self._restart_delay
        while True:
            try:
                await source.run(self.publish)
                return  # finished (a static list): its list stays applied
            except Exception:
                log.exception("%s: peer source failed; restarting in %.1f s", source.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _applier(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                name = next(iter(self._pending))
                await self._apply_one(name, self._pending.pop(name))

    async def _apply_one(self, name: str, peers: frozenset[str]) -> None:
        state = self._states[name]
        old = state.applied
        if state.synced and peers == old:
            return
        try:
            result = self._apply(name, peers)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # the VTEP refused the list, or the data path is gone
            log.warning("%s: could not apply %d peers: %s", name, len(peers), exc)
            state.apply_error = f"apply: {exc}"
            return
        state.apply_error = None
        state.applied = peers
        state.last_sync = self._clock()
        if not state.synced:
            state.synced = True
            log.info("%s: synced, %d peers", name, len(peers))
            if all(s.synced for s in self._states.values()):
                self._all_synced.set()
        added = _address_order(peers - old)
        removed = _address_order(old - peers)
        for address in added:
            self._refs[address] = self._refs.get(address, 0) + 1
        for address in removed:
            count = self._refs[address] - 1
            if count:
                self._refs[address] = count
            else:
                del self._refs[address]
        if added or removed:
            self._changes.put_nowait(_Change(name, added, removed))

    async def _notifier(self) -> None:
        while True:
            change = await self._changes.get()
            if self._on_change is not None:
                try:
                    result = self._on_change(change.source, change.added, change.removed)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("%s: change handler failed", change.source)
            if self._hook:
                for addresses, deleted in ((change.added, "false"), (change.removed, "true")):
                    if addresses:
                        await self._run_hook(change.source, addresses, deleted)

    async def _run_hook(self, source: str, addresses: tuple[str, ...], deleted: str) -> None:
        env = {
            **os.environ,
            "IFACE": self._interface,
            "SERVICE": hook_service(source),
            "IPS": " ".join(addresses),
            "DELETED": deleted,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *self._hook, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            log.warning("change hook %s could not start: %s", self._hook[0], exc)
            return
        try:
            _, err = await asyncio.wait_for(process.communicate(), HOOK_TIMEOUT)
        except TimeoutError:
            log.warning("change hook %s ran over %.0f s; killed", self._hook[0], HOOK_TIMEOUT)
            process.kill()
            await process.wait()
            return
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode:
            text = err.decode(errors="replace").strip()
            log.warning("change hook %s exited %s: %s", self._hook[0], process.returncode, text)


# -- configuration --------------------------------------------------------------------------


def _server(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        return (text, wire.DNS_PORT)
    return (host.strip("[]"), int(port))


def sources_from_config(config: OverlayConfig) -> list[PeerSource]:
    """The sources an :class:`OverlayConfig` names: static peers, DNS, Kubernetes Services."""
    own = frozenset(a for a in (config.local,) if a)
    sources: list[PeerSource] = []
    if config.peers:
        sources.append(StaticSource(config.peers))
    if config.peers_dns:
        sources.append(
            DnsSource(config.peers_dns, server=_server(config.peers_dns_server), self_addresses=own)
        )
    for spec in config.peers_kubernetes:
        namespace, _, service = spec.rpartition("/")
        sources.append(
            KubernetesSource.from_environment(
                namespace or None, service, self_addresses=own, api_url=config.kubernetes_api
            )
        )
    return sources

"""Peer discovery: the static source, the aggregator (diff, reference counts, health, hook) with fake
sources, and the Kubernetes source against a replay of the EndpointSlice list-and-watch API.

No pytest-asyncio: each test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dataplane import wire
from dataplane.overlay import discovery
from dataplane.overlay.discovery import (
    DiscoveryError,
    DnsSource,
    KubernetesSource,
    PeerSet,
    Publish,
    StaticSource,
)
from tests.k8s_replay import Replay, endpoint, endpoint_slice, serve

T = TypeVar("T")
SELF = "192.0.2.1"
SERVICE = "ws"


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Recorder:
    """A ``publish`` callback keeping every list it was given."""

    def __init__(self) -> None:
        self.lists: list[tuple[str, frozenset[str]]] = []

    def __call__(self, source: str, peers: frozenset[str]) -> None:
        self.lists.append((source, peers))

    @property
    def last(self) -> frozenset[str]:
        return self.lists[-1][1]


# -- static ---------------------------------------------------------------------------------


def test_static_source_publishes_its_list_once_and_is_synced() -> None:
    source = StaticSource(["192.0.2.3", " 192.0.2.2", "192.0.2.3"])
    seen = Recorder()
    assert source.name == "static" and not source.synced.is_set()
    run(source.run(seen))
    assert seen.lists == [("static", frozenset({"192.0.2.2", "192.0.2.3"}))]
    assert source.synced.is_set() and source.error is None


@pytest.mark.parametrize("bad", ["192.0.2", "2001:db8::1", "ws.example", ""])
def test_static_source_refuses_what_is_not_ipv4(bad: str) -> None:
    with pytest.raises(DiscoveryError, match="IPv4"):
        StaticSource(["192.0.2.2", bad])


# -- aggregator -----------------------------------------------------------------------------


class FakeSource:
    """Publishes whatever the test puts in its queue; an exception put there is raised."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.synced = asyncio.Event()
        self.error: str | None = None
        self.queue: asyncio.Queue[frozenset[str] | Exception] = asyncio.Queue()
        self.starts = 0

    def send(self, *peers: str) -> None:
        self.queue.put_nowait(frozenset(peers))

    async def run(self, publish: Publish) -> None:
        self.starts += 1
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            publish(self.name, item)
            self.synced.set()


class Vtep:
    """Stands in for the VTEP: set_peers per source, reference-counted, failing when told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[str]]] = []
        self.fail: Exception | None = None

    def set_peers(self, source: str, peers: frozenset[str]) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((source, peers))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_peer_set_applies_by_difference_with_reference_counts() -> None:
    async def scenario() -> None:
        a, b = FakeSource("static"), FakeSource("dns:ws.example")
        vtep = Vtep()
        changes: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []

        async def on_change(source: str, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
            changes.append((source, added, removed))

        peers = PeerSet([a, b], vtep.set_peers, on_change=on_change)
        async with running(peers.run()):
            a.send("192.0.2.10", "192.0.2.2")
            b.send("192.0.2.2", "192.0.2.3")
            await until(lambda: len(changes) == 2, what="two changes")
            assert peers.peers == {"192.0.2.2", "192.0.2.3", "192.0.2.10"}
            # Added in address order, not string order.
            assert changes[0] == ("static", ("192.0.2.2", "192.0.2.10"), ())
            assert changes[1] == ("dns:ws.example", ("192.0.2.2", "192.0.2.3"), ())

            b.send("192.0.2.3")  # 192.0.2.2 is still listed by the static source
            await until(lambda: len(changes) == 3)
            assert changes[2] == ("dns:ws.example", (), ("192.0.2.2",))
            assert "192.0.2.2" in peers.peers

            a.send("192.0.2.10")  # the last source listing 192.0.2.2 drops it
            await until(lambda: len(changes) == 4)
            assert peers.peers == {"192.0.2.3", "192.0.2.10"}

            # The same complete list again: nothing applied, nothing reported.
            calls = len(vtep.calls)
            a.send("192.0.2.10")
            b.send()
            await until(lambda: len(changes) == 5)
            assert changes[4] == ("dns:ws.example", (), ("192.0.2.3",))
            assert len(vtep.calls) == calls + 1
            assert peers.peers == {"192.0.2.10"}
        # Every list went to the VTEP whole, under its own source name.
        assert vtep.calls[:2] == [
            ("static", frozenset({"192.0.2.10", "192.0.2.2"})),
            ("dns:ws.example", frozenset({"192.0.2.2", "192.0.2.3"})),
        ]

    run(scenario())


def test_peer_set_health_waits_for_every_source() -> None:
    async def scenario() -> None:
        a, b = FakeSource("static"), FakeSource("k8s:default/ws")
        clock = Clock()
        peers = PeerSet([a, b], Vtep().set_peers, clock=clock)
        assert not peers.health().synced
        async with running(peers.run()):
            a.send("192.0.2.2", "192.0.2.3")
            await until(lambda: peers.health().sources[0].synced)
            health = peers.health()
            assert not health.synced and not peers.synced
            assert [(s.name, s.synced, s.peers, s.last_sync) for s in health.sources] == [
                ("static", True, 2, clock.now),
                ("k8s:default/ws", False, 0, None),
            ]
            clock.now += 5
            b.send()  # an empty list is complete too: the Service has no endpoints yet
            await asyncio.wait_for(peers.wait_synced(), 5)
            health = peers.health()
            assert health.synced and health.peers == 2
            assert health.sources[1].last_sync == clock.now and health.sources[1].peers == 0

    run(scenario())


def test_peer_set_with_no_sources_is_synced() -> None:
    assert PeerSet([], Vtep().set_peers).health().synced


def test_peer_set_reports_apply_failures_and_applies_the_next_list() -> None:
    async def scenario() -> None:
        a = FakeSource("static")
        vtep = Vtep()
        vtep.fail = ValueError("addresses: '192.0.2.300' is not an IPv4 address")
        peers = PeerSet([a], vtep.set_peers)
        async with running(peers.run()):
            a.send("192.0.2.2")
            await until(lambda: peers.health().sources[0].error is not None)
            assert not peers.health().synced
            assert "not an IPv4 address" in str(peers.health().sources[0].error)
            vtep.fail = None
            a.send("192.0.2.2", "192.0.2.3")
            await asyncio.wait_for(peers.wait_synced(), 5)
            assert peers.health().sources[0].error is None
            assert vtep.calls == [("static", frozenset({"192.0.2.2", "192.0.2.3"}))]

    run(scenario())


def test_peer_set_accepts_a_coroutine_apply() -> None:
    async def scenario() -> None:
        a = FakeSource("static")
        applied: list[frozenset[str]] = []

        async def apply(source: str, peers: frozenset[str]) -> None:
            await asyncio.sleep(0)
            applied.append(peers)

        peers = PeerSet([a], apply)
        async with running(peers.run()):
            a.send("192.0.2.2")
            await asyncio.wait_for(peers.wait_synced(), 5)
        assert applied == [frozenset({"192.0.2.2"})]

    run(scenario())


def test_peer_set_restarts_a_failed_source() -> None:
    async def scenario() -> None:
        a = FakeSource("static")
        peers = PeerSet([a], Vtep().set_peers, restart_delay=0.01)
        async with running(peers.run()):
            a.queue.put_nowait(RuntimeError("boom"))
            await until(lambda: a.starts == 2, what="a restart")
            a.send("192.0.2.2")
            await asyncio.wait_for(peers.wait_synced(), 5)

    run(scenario())


def test_peer_set_refuses_duplicate_and_unknown_sources() -> None:
    async def scenario() -> None:
        with pytest.raises(DiscoveryError, match="twice"):
            PeerSet([FakeSource("static"), FakeSource("static")], Vtep().set_peers)
        peers = PeerSet([FakeSource("static")], Vtep().set_peers)
        with pytest.raises(DiscoveryError, match="unknown"):
            peers.publish("dns:other", frozenset())

    run(scenario())


def test_change_hook_gets_the_kubelan_environment(tmp_path: Path) -> None:
    out = tmp_path / "hook.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$IFACE|$SERVICE|$IPS|$DELETED" >> {out}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)

    async def scenario() -> None:
        a = FakeSource("k8s:default/ws")
        peers = PeerSet([a], Vtep().set_peers, hook=[str(script)], interface="overlay0")
        async with running(peers.run()):
            a.send("192.0.2.2", "192.0.2.3")
            await until(lambda: out.exists() and len(out.read_text().splitlines()) == 1)
            a.send("192.0.2.3", "192.0.2.4")
            await until(lambda: len(out.read_text().splitlines()) == 3)
        # A failing hook is logged, nothing more.
        b = FakeSource("static")
        quiet = PeerSet([b], Vtep().set_peers, hook=[str(failing)], interface="overlay0")
        async with running(quiet.run()):
            b.send("192.0.2.9")
            await asyncio.wait_for(quiet.wait_synced(), 5)
            await asyncio.sleep(0.2)
            assert quiet.health().synced

    run(scenario())
    assert out.read_text().splitlines() == [
        "overlay0|default/ws|192.0.2.2 192.0.2.3|false",
        "overlay0|default/ws|192.0.2.4|false",
        "overlay0|default/ws|192.0.2.2|true",
    ]


# -- DNS (unit: argument checks and resolv.conf; the real exchange is in tests/net) -----------


def test_dns_source_arguments(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError):
        DnsSource("")
    with pytest.raises(DiscoveryError):
        DnsSource("ws.example", min_interval=5, max_interval=1)
    with pytest.raises(DiscoveryError):
        DnsSource("a" * 64 + ".example")
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# test\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 192.0.2.53\n"
        "nameserver 192.0.2.54\noptions ndots:5 timeout:1\n"
    )
    parsed = discovery.read_resolv_conf(str(conf))
    assert parsed.nameservers == ("192.0.2.53", "192.0.2.54")
    assert parsed.search == ("default.svc.cluster.local", "svc.cluster.local")
    assert parsed.ndots == 5
    assert discovery.read_resolv_conf(str(tmp_path / "missing")) == discovery.ResolvConf()
    source = DnsSource("ws.default.svc", resolv_conf=str(conf))
    assert source.name == "dns:ws.default.svc"
    assert source._server(parsed) == ("192.0.2.53", 53)
    # ndots 5: a short name goes down the search list first, as glibc does.
    assert source._candidates(parsed) == [
        "ws.default.svc.default.svc.cluster.local",
        "ws.default.svc.svc.cluster.local",
        "ws.default.svc",
    ]
    assert DnsSource("ws.example.")._candidates(parsed) == ["ws.example"]
    assert DnsSource("ws.a.b.c.d.e", search=())._candidates(parsed) == ["ws.a.b.c.d.e"]
    assert source._interval(None) == 1.0 and source._interval(0) == 1.0
    assert source._interval(7) == 7.0 and source._interval(3600) == 30.0


def test_dns_source_is_not_synced_while_the_server_is_silent() -> None:
    async def scenario() -> None:
        # A UDP socket on 127.0.0.1 that never answers: every attempt times out.
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        source = DnsSource(
            "ws.example.",
            server=("127.0.0.1", port),
            timeout=0.05,
            min_interval=0.05,
            max_interval=0.1,
            attempts=1,
        )
        seen = Recorder()
        try:
            async with running(source.run(seen)):
                await until(lambda: source.error is not None, what="a failure")
                assert "no answer" in str(source.error)
                await asyncio.sleep(0.3)
                assert seen.lists == [] and not source.synced.is_set()
        finally:
            transport.close()

    run(scenario())


class FakeDns(asyncio.DatagramProtocol):
    """A scripted DNS server on 127.0.0.1 built on our codec: A records per name, or an rcode, or
    silence; optionally a stale answer (wrong id) first, or truncation with the answer over TCP."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, int]]] = {}
        self.rcode = wire.RCODE_NOERROR
        self.silent = False
        self.stale_first = False
        self.truncate = False
        self.queries: list[str] = []
        self.transport: Any = None  # the selector loop's datagram transport is no DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def answer(self, query: bytes, *, truncated: bool = False) -> bytes:
        msg = wire.pull_dns(wire.Buffer(query))
        name = msg.questions[0].name
        self.queries.append(name)
        reply = wire.DnsMessage(
            id=msg.id, flags=wire.FLAG_QR | wire.FLAG_AA | self.rcode, questions=msg.questions
        )
        if truncated:
            reply.flags |= wire.FLAG_TC
        elif self.rcode == wire.RCODE_NOERROR:
            reply.answers = [
                wire.DnsRecord(name, wire.TYPE_A, wire.CLASS_IN, ttl, bytes(map(int, a.split("."))))
                for a, ttl in self.records.get(name, [])
            ]
        buf = wire.Buffer()
        wire.push_dns(buf, reply)
        return buf.data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if self.silent:
            return
        if self.stale_first:
            stale = bytearray(self.answer(data))
            stale[0] ^= 0xFF  # another query's id
            self.transport.sendto(bytes(stale), addr)
        self.transport.sendto(self.answer(data, truncated=self.truncate), addr)

    async def tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = int.from_bytes(await reader.readexactly(2), "big")
        reply = self.answer(await reader.readexactly(length))
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await writer.drain()
        writer.close()


def test_dns_source_follows_the_records() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = FakeDns()
        tcp = await asyncio.start_server(server.tcp, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        udp, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", port))
        name = "ws.lab.example"
        server.records[name] = [("192.0.2.10", 0), ("192.0.2.11", 0), (SELF, 0)]
        source = DnsSource(
            name,
            server=("127.0.0.1", port),
            timeout=0.2,
            min_interval=0.05,
            max_interval=0.1,
            search=(),
            self_addresses={SELF},
        )
        seen = Recorder()
        try:
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                assert seen.lists == [("dns:ws.lab.example", frozenset({"192.0.2.10", "192.0.2.11"}))]
                # The same answer again publishes nothing.
                asked = len(server.queries)
                await until(lambda: len(server.queries) >= asked + 2, what="re-resolution")
                assert len(seen.lists) == 1
                # Silence: the last list stays, the failure is reported once.
                server.silent = True
                await until(lambda: source.error is not None, what="a failure")
                assert len(seen.lists) == 1
                server.silent = False
                server.stale_first = True  # an answer with another id is not ours
                server.records[name] = [("192.0.2.11", 0), ("192.0.2.12", 0)]
                await until(lambda: seen.last == {"192.0.2.11", "192.0.2.12"})
                assert source.error is None
                # Truncated over UDP: asked again over TCP.
                server.stale_first = False
                server.truncate = True
                server.records[name] = [("192.0.2.13", 0)]
                await until(lambda: seen.last == {"192.0.2.13"})
                server.truncate = False
                # NXDOMAIN: a complete, empty list.
                server.rcode = wire.RCODE_NXDOMAIN
                await until(lambda: seen.last == frozenset())
                # SERVFAIL is a failure, not an empty list.
                server.rcode = wire.RCODE_SERVFAIL
                await until(lambda: source.error is not None and "rcode 2" in source.error)
                assert seen.last == frozenset()
        finally:
            udp.close()
            tcp.close()
            await tcp.wait_closed()

    run(scenario())


def test_dns_source_resolves_at_the_record_ttl() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = FakeDns()
        udp, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
        server.records["ws.lab.example"] = [("192.0.2.10", 3600), ("192.0.2.11", 1)]
        source = DnsSource("ws.lab.example.", server=("127.0.0.1", port), min_interval=0.5, max_interval=30)
        try:
            peers, delay = await source.resolve()
            assert peers == {"192.0.2.10", "192.0.2.11"} and delay == 1.0  # the smallest TTL
            server.records["ws.lab.example"] = [("192.0.2.10", 0x80000005)]  # top bit: 0 (RFC 2181)
            assert (await source.resolve())[1] == 0.5
            server.records["ws.lab.example"] = [("192.0.2.10", 86400)]
            assert (await source.resolve())[1] == 30.0
        finally:
            udp.close()

    run(scenario())


# -- Kubernetes -----------------------------------------------------------------------------


def service_slices() -> list[dict[str, Any]]:
    """The Service's slices and a distractor: IPv4 with ready, not-ready and terminating endpoints
    (and our own address), an IPv6 slice, another Service's slice."""
    return [
        endpoint_slice("ws-abc12", SERVICE, [endpoint("192.0.2.10"), endpoint(SELF)]),
        endpoint_slice("ws-def34", SERVICE, [endpoint("192.0.2.11", ready=False, serving=False)]),
        endpoint_slice(
            "ws-ghi56", SERVICE, [endpoint("192.0.2.12", ready=False, serving=True, terminating=True)]
        ),
        endpoint_slice("ws-v6xyz", SERVICE, [endpoint("2001:db8::10")], address_type="IPv6"),
        endpoint_slice("db-zzz99", "db", [endpoint("192.0.2.99")]),
    ]


FIRST_PEERS = frozenset({"192.0.2.10", "192.0.2.11", "192.0.2.12"})


def k8s_source(url: str, **options: Any) -> KubernetesSource:
    options.setdefault("page_size", 2)
    options.setdefault("min_backoff", 0.01)
    options.setdefault("max_backoff", 0.05)
    return KubernetesSource("default", SERVICE, api_url=url, self_addresses={SELF}, **options)


def test_kubernetes_list_then_watch() -> None:
    async def scenario() -> None:
        replay = Replay(token="s3cret")
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            source = k8s_source(url, token="s3cret")
            seen = Recorder()
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                assert seen.lists == [("k8s:default/ws", FIRST_PEERS)]
                # Paginated: 4 slices of the Service, 2 per page, the second page by continue token.
                lists = [r for r in replay.requests if "watch" not in r]
                assert [r.get("limit") for r in lists] == ["2", "2"]
                assert "continue" not in lists[0] and lists[1]["continue"]
                assert all(r["labelSelector"] == "kubernetes.io/service-name=ws" for r in replay.requests)
                await until(lambda: replay.open_watches == 1, what="the watch")
                watch = replay.requests[-1]
                assert watch["watch"] == "1" and watch["allowWatchBookmarks"] == "true"
                assert watch["resourceVersion"] == str(replay.resource_version)

                # ADDED
                replay.apply(endpoint_slice("ws-new01", SERVICE, [endpoint("192.0.2.13")]))
                await until(lambda: "192.0.2.13" in seen.last)
                # MODIFIED: an endpoint leaves a slice, another turns terminating (still a peer)
                replay.apply(
                    endpoint_slice(
                        "ws-abc12", SERVICE, [endpoint(SELF), endpoint("192.0.2.14", terminating=True)]
                    )
                )
                await until(lambda: "192.0.2.10" not in seen.last)
                assert seen.last == {"192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"}
                # DELETED
                replay.delete("ws-def34")
                await until(lambda: "192.0.2.11" not in seen.last)
                # Other Services' and IPv6 changes publish nothing.
                count = len(seen.lists)
                replay.apply(endpoint_slice("db-zzz99", "db", [endpoint("192.0.2.98")]))
                replay.apply(
                    endpoint_slice("ws-v6xyz", SERVICE, [endpoint("2001:db8::11")], address_type="IPv6")
                )
                # BOOKMARK: the resourceVersion moves on, the list does not change.
                version = replay.bookmark()
                await until(lambda: source.resource_version == str(version), what="the bookmark")
                assert len(seen.lists) == count
                assert source.lists == 1 and source.error is None

    run(scenario())


def test_kubernetes_watch_expiry_forces_a_relist() -> None:
    async def scenario() -> None:
        replay = Replay()
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            source = k8s_source(url)
            seen = Recorder()
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                await until(lambda: replay.open_watches == 1)
                # History is compacted while changes happen: the watch ends with ERROR 410, and
                # the changes reach us only through the new list.
                replay.compact()
                replay.delete("ws-def34")
                replay.apply(endpoint_slice("ws-new01", SERVICE, [endpoint("192.0.2.20")]))
                await until(lambda: source.lists == 2, what="a relist")
                await until(lambda: "192.0.2.20" in seen.last)
                assert seen.last == {"192.0.2.10", "192.0.2.12", "192.0.2.20"}
                assert source.error is None

    run(scenario())


def test_kubernetes_watch_gone_as_http_410_relists() -> None:
    async def scenario() -> None:
        replay = Replay(gone_as_status=True)
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            source = k8s_source(url)
            seen = Recorder()
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                await until(lambda: replay.open_watches == 1)
                replay.compact()  # the open watch gets its ERROR event; the re-watch gets HTTP 410
                await until(lambda: source.lists >= 2, what="a relist")
                await until(lambda: replay.open_watches == 1)
                replay.apply(endpoint_slice("ws-new01", SERVICE, [endpoint("192.0.2.21")]))
                await until(lambda: "192.0.2.21" in seen.last)

    run(scenario())


def test_kubernetes_disconnect_rewatches_from_the_last_version() -> None:
    async def scenario() -> None:
        replay = Replay()
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            source = k8s_source(url)
            seen = Recorder()
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                await until(lambda: replay.open_watches == 1)
                replay.apply(endpoint_slice("ws-new01", SERVICE, [endpoint("192.0.2.22")]))
                await until(lambda: "192.0.2.22" in seen.last)
                seen_version = source.resource_version
                replay.drop_watches()
                replay.delete("ws-new01")  # after the cut: reaches us only through the re-watch
                await until(lambda: "192.0.2.22" not in seen.last, what="the missed delete")
                rewatch = [r for r in replay.requests if r.get("watch")][1]
                assert rewatch["resourceVersion"] == seen_version
                assert source.lists == 1  # no relist: the history still covered us

    run(scenario())


def test_kubernetes_errors_keep_the_source_unsynced_then_recover() -> None:
    async def scenario() -> None:
        replay = Replay(token="good")
        replay.fail_next = [403, 500]
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            source = k8s_source(url, token="good")
            seen = Recorder()
            async with running(source.run(seen)):
                await asyncio.wait_for(source.synced.wait(), 5)
                assert seen.lists == [("k8s:default/ws", FIRST_PEERS)]
                assert source.error is None
            # A wrong token: 401 forever, never synced, error set.
            bad = k8s_source(url, token="wrong")
            async with running(bad.run(Recorder())):
                await until(lambda: bad.error is not None)
                assert "401" in str(bad.error)
                assert not bad.synced.is_set()
        # Nothing listening at all: a connection error, retried.
        gone = k8s_source(url)
        async with running(gone.run(Recorder())):
            await until(lambda: gone.error is not None)

    run(scenario())


def test_kubernetes_from_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text("tok-1\n")
    (secrets / "namespace").write_text("webspaces\n")
    env = {"KUBERNETES_SERVICE_HOST": "192.0.2.100", "KUBERNETES_SERVICE_PORT": "6443"}
    source = KubernetesSource.from_environment(None, SERVICE, environ=env, secrets_dir=str(secrets))
    assert source.name == "k8s:webspaces/ws"
    assert source.api_url == "https://192.0.2.100:6443"
    assert source.path == "/apis/discovery.k8s.io/v1/namespaces/webspaces/endpointslices"
    assert source.ca_file is None
    assert source._headers()["Authorization"] == "Bearer tok-1"
    (secrets / "token").write_text("tok-2\n")  # kubelet rotated it
    assert source._headers()["Authorization"] == "Bearer tok-2"
    other = KubernetesSource.from_environment("lxd", SERVICE, environ=env, secrets_dir=str(secrets))
    assert other.name == "k8s:lxd/ws"
    with pytest.raises(DiscoveryError, match="KUBERNETES_SERVICE_HOST"):
        KubernetesSource.from_environment(None, SERVICE, environ={}, secrets_dir=str(secrets))
    with pytest.raises(DiscoveryError, match="token"):
        KubernetesSource.from_environment(None, SERVICE, environ=env, secrets_dir=str(tmp_path))


def test_kubernetes_explicit_api_url(tmp_path: Path) -> None:
    # --kubernetes-api: no KUBERNETES_SERVICE_HOST needed, and the token is optional.
    source = KubernetesSource.from_environment(
        "lxd", SERVICE, environ={}, secrets_dir=str(tmp_path), api_url="http://127.0.0.1:8001"
    )
    assert source.api_url == "http://127.0.0.1:8001"
    assert source.token_file is None and "Authorization" not in source._headers()
    (tmp_path / "token").write_text("tok-1\n")
    env = {"KUBERNETES_SERVICE_HOST": "192.0.2.100"}
    mounted = KubernetesSource.from_environment(
        "lxd", SERVICE, environ=env, secrets_dir=str(tmp_path), api_url="https://192.0.2.1:6443"
    )
    assert mounted.api_url == "https://192.0.2.1:6443"
    assert mounted._headers()["Authorization"] == "Bearer tok-1"
    with pytest.raises(DiscoveryError, match="namespace"):
        KubernetesSource.from_environment(
            None, SERVICE, environ={}, secrets_dir=str(tmp_path / "none"), api_url="http://127.0.0.1:1"
        )


def test_kubernetes_source_feeds_a_peer_set() -> None:
    async def scenario() -> None:
        replay = Replay()
        for item in service_slices():
            replay.apply(item)
        async with serve(replay) as url:
            vtep = Vtep()
            source = k8s_source(url)
            static = StaticSource(["192.0.2.10", "192.0.2.200"])
            peers = PeerSet([static, source], vtep.set_peers)
            async with running(peers.run()):
                await asyncio.wait_for(peers.wait_synced(), 5)
                assert peers.peers == FIRST_PEERS | {"192.0.2.200"}
                replay.delete("ws-abc12")  # 192.0.2.10 stays: the static list still has it
                await until(lambda: vtep.calls[-1][1] == FIRST_PEERS - {"192.0.2.10"})
                assert "192.0.2.10" in peers.peers
                health = peers.health()
                assert health.synced and [s.peers for s in health.sources] == [2, 2]

    run(scenario())


def test_sources_from_config() -> None:
    from dataplane.overlay.config import OverlayConfig  # noqa: PLC0415

    config = OverlayConfig(
        local=SELF, peers=("192.0.2.2",), peers_dns="ws.example", peers_dns_server="192.0.2.53:5353"
    )
    sources = discovery.sources_from_config(config)
    assert [s.name for s in sources] == ["static", "dns:ws.example"]
    dns_source = sources[1]
    assert isinstance(dns_source, DnsSource)
    assert dns_source.server == ("192.0.2.53", 5353) and dns_source.self_addresses == {SELF}
    if "KUBERNETES_SERVICE_HOST" not in os.environ:
        with pytest.raises(DiscoveryError):
            discovery.sources_from_config(OverlayConfig(local=SELF, peers_kubernetes=("default/ws",)))
    explicit = OverlayConfig(
        local=SELF, peers_kubernetes=("default/ws",), kubernetes_api="http://127.0.0.1:8001"
    )
    (k8s,) = discovery.sources_from_config(explicit)
    assert isinstance(k8s, KubernetesSource)
    assert k8s.api_url == "http://127.0.0.1:8001" and k8s.self_addresses == {SELF}

"""The image server's front: TLS and plain HTTP on one port, the fast path, the Starlette routes.

Everything runs over real loopback sockets with a real TLS handshake, on both uvloop (what the
service runs) and asyncio's own loop, against a catalog source that hands out a fixed catalog.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn.server
import uvloop

from simplestreams import errors, tls
from simplestreams.listener import FastCache, Listener, bind, protocol_factory
from simplestreams.model import Catalog, CatalogState, FileRef
from simplestreams.server import DirectoryMount, create_app

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


@dataclass
class FixedSource:
    """A CatalogSource with one catalog; ``fail`` makes get() raise instead."""

    catalog: Catalog
    fresh: bool = True
    fail: errors.RequestError | None = None
    calls: int = 0

    async def get(self) -> CatalogState:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return CatalogState(self.catalog, self.fresh, None if self.fresh else "upstream down")

    def current(self) -> CatalogState | None:
        if self.fail is not None:
            return None
        return CatalogState(self.catalog, self.fresh, None if self.fresh else "upstream down")


def make_catalog(tmp: Path, images_size: int = 5000) -> tuple[Catalog, bytes]:
    payload = b"rootfs-bytes " * 1000
    (tmp / "rootfs.squashfs").write_bytes(payload)
    images = json.dumps({"products": {"x": "y" * images_size}}).encode()
    index = b'{"format":"index:1.0"}'
    ref = FileRef(
        "squashfs", len(payload), hashlib.sha256(payload).hexdigest(), path=str(tmp / "rootfs.squashfs")
    )
    catalog = Catalog(
        index_json=index,
        images_json=images,
        etag='"abc123"',
        files={"images/busybox/amd64/v1.0.0/rootfs.squashfs": ref},
        products=("busybox:amd64",),
    )
    return catalog, payload


@dataclass
class Running:
    port: int
    fast: FastCache
    source: FixedSource
    listener: Listener
    cafile: Path
    payload: bytes
    state: uvicorn.server.ServerState = field(default_factory=uvicorn.server.ServerState)


@asynccontextmanager
async def running(tmp: Path, *, first_byte_timeout: float = 10.0) -> AsyncIterator[Running]:
    catalog, payload = make_catalog(tmp)
    source = FixedSource(catalog)
    fast = FastCache()
    app, _ = create_app(directories=[DirectoryMount("", source)], fast=fast)
    dns, ips = tls.wanted_names()
    cert, key = tls.self_signed(tmp / "state", dns, ips)
    state = uvicorn.server.ServerState()
    listener = Listener(
        bind("127.0.0.1", 0),
        protocol_factory(app, fast, state),
        tls.server_context(cert, key),
        first_byte_timeout=first_byte_timeout,
    )
    listener.start()
    try:
        yield Running(listener.address[1], fast, source, listener, cert, payload, state)
    finally:
        listener.close()
        for connection in list(state.connections):
            connection.shutdown()
        await asyncio.sleep(0.05)


def run(loop_name: str, coro: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(coro())  # type: ignore[arg-type]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_reply(reader: asyncio.StreamReader, head_request: bool = False) -> Reply:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_request or status == 304 else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return Reply(status, headers, body)


async def connect(r: Running, use_tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = None
    if use_tls:
        context = ssl.create_default_context(cafile=str(r.cafile))
    return await asyncio.open_connection(
        "127.0.0.1", r.port, ssl=context, server_hostname="127.0.0.1" if use_tls else None
    )


def request(path: str, *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)


@pytest.mark.parametrize("use_tls", [True, False], ids=["tls", "plain"])
def test_documents_over_tls_and_plain_on_one_port(tmp_path: Path, loop_name: str, use_tls: bool) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            reader, writer = await connect(r, use_tls)
            writer.write(request("/streams/v1/images.json"))  # through Starlette (and h11 from now on)
            assert (await read_reply(reader)).body == r.source.catalog.images_json
            writer.close()
            reader, writer = await connect(r, use_tls)
            for _ in range(3):  # a new connection: straight from the fast cache
                writer.write(request("/streams/v1/images.json"))
                reply = await read_reply(reader)
                assert reply.status == 200
                assert reply.body == r.source.catalog.images_json
                assert reply.headers["content-type"] == "application/json"
                assert reply.headers["etag"] == '"abc123"'
                assert "date" in reply.headers
            writer.close()
            await writer.wait_closed()
            assert r.source.calls == 1
            assert r.fast.served[("images", 200)] == 3
            assert (r.listener.tls_connections, r.listener.plain_connections) == (
                2 * int(use_tls),
                2 * int(not use_tls),
            )

    run(loop_name, scenario)


def test_conditional_gzip_and_head_on_both_paths(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            images = r.source.catalog.images_json
            for _ in range(2):  # slow path, then (a new connection) the fast path: the same answers
                reader, writer = await connect(r, True)
                writer.write(request("/streams/v1/images.json", "Accept-Encoding: gzip, deflate"))
                reply = await read_reply(reader)
                assert reply.headers["content-encoding"] == "gzip"
                assert gzip.decompress(reply.body) == images
                assert int(reply.headers["content-length"]) == len(reply.body) < len(images)
                gz_tag = reply.headers["etag"]
                assert gz_tag != '"abc123"'
                writer.write(request("/streams/v1/images.json", 'If-None-Match: W/"abc123"'))
                assert (await read_reply(reader)).status == 304
                writer.write(request("/streams/v1/images.json", f'If-None-Match: {gz_tag}, "other"'))
                assert (await read_reply(reader)).status == 304
                writer.write(request("/streams/v1/images.json", 'If-None-Match: "other"'))
                assert (await read_reply(reader)).status == 200
                writer.write(request("/streams/v1/index.json", method="HEAD"))
                reply = await read_reply(reader, head_request=True)
                assert reply.status == 200
                assert int(reply.headers["content-length"]) == len(r.source.catalog.index_json)
                writer.write(request("/streams/v1/images.json", "Accept-Encoding: gzip;q=0"))
                assert "content-encoding" not in (await read_reply(reader)).headers
                writer.close()
                await writer.wait_closed()
            assert r.fast.served[("images", 304)] >= 2

    run(loop_name, scenario)


def test_pipelined_requests_keep_their_order_across_the_hand_over(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            reader, writer = await connect(r, False)
            writer.write(request("/streams/v1/index.json"))  # warm the fast cache
            await read_reply(reader)
            writer.write(
                request("/streams/v1/index.json")
                + request("/images/busybox/amd64/v1.0.0/rootfs.squashfs")
                + request("/streams/v1/index.json")
                + request("/nope")
            )
            first, second, third, fourth = [await read_reply(reader) for _ in range(4)]
            assert first.body == third.body == r.source.catalog.index_json
            assert second.body == r.payload
            assert int(second.headers["content-length"]) == len(r.payload)
            assert fourth.status == 404
            assert fourth.headers["content-type"] == "application/problem+json"
            assert "message" in json.loads(fourth.body)
            writer.close()
            await writer.wait_closed()

    run(loop_name, scenario)


def test_errors_are_problem_json(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            reader, writer = await connect(r, True)
            cases = [
                (request("/streams/v1/images.json", "Content-Length: 0", method="POST"), 405),
                (request("/streams/v1/other.json"), 404),
                (request("/images/busybox/amd64/v9.9.9/rootfs.squashfs"), 404),
            ]
            for raw, status in cases:
                writer.write(raw)
                reply = await read_reply(reader)
                assert reply.status == status, reply
                assert reply.headers["content-type"] == "application/problem+json"
                assert json.loads(reply.body)["message"]
            writer.close()
            await writer.wait_closed()
            r.fast.clear()
            r.source.fail = errors.RateLimitedError("GitHub rate limit", retry_after=42)
            reader, writer = await connect(r, True)
            writer.write(request("/streams/v1/images.json"))
            reply = await read_reply(reader)
            assert (reply.status, reply.headers["retry-after"]) == (503, "42")
            writer.write(b"GARBAGE\r\n\r\n")
            assert (await read_reply(reader)).status == 400
            writer.close()
            await writer.wait_closed()

    run(loop_name, scenario)


def test_a_file_that_changed_on_disk_is_not_served(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            (tmp_path / "rootfs.squashfs").write_bytes(r.payload[:-1])
            reader, writer = await connect(r, False)
            writer.write(request("/images/busybox/amd64/v1.0.0/rootfs.squashfs"))
            reply = await read_reply(reader)
            assert reply.status == 503
            assert reply.headers["retry-after"] == "2"
            writer.close()
            await writer.wait_closed()

    run(loop_name, scenario)


def test_silent_and_plaintext_peers_never_stall_others(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path, first_byte_timeout=2.0) as r:
            silent = socket.create_connection(("127.0.0.1", r.port))
            silent.setblocking(False)
            opened = time.monotonic()
            try:
                # While the silent peer holds a connection, TLS and plain clients are served at once.
                for use_tls in (True, False, True):
                    reader, writer = await connect(r, use_tls)
                    writer.write(request("/streams/v1/index.json", "Connection: close"))
                    reply = await read_reply(reader)
                    assert reply.status == 200
                    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed as asked
                    writer.close()
                assert time.monotonic() - opened < 1.5
                loop = asyncio.get_running_loop()
                assert await asyncio.wait_for(loop.sock_recv(silent, 1), 10) == b""
                assert time.monotonic() - opened >= 1.9  # given up on after first_byte_timeout
            finally:
                silent.close()

    run(loop_name, scenario)


def test_oversized_head_and_old_tls_are_refused(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            reader, writer = await connect(r, False)
            writer.write(b"GET /streams/v1/index.json HTTP/1.1\r\nX-Pad: " + b"a" * 20000)
            reply = await read_reply(reader)
            assert reply.status == 431
            writer.close()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cafile=str(r.cafile))
            with warnings.catch_warnings():  # setting TLS 1.1 is deprecated: that is the point here
                warnings.simplefilter("ignore", DeprecationWarning)
                context.maximum_version = ssl.TLSVersion.TLSv1_1
                context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", r.port, ssl=context, server_hostname="127.0.0.1"), 5
                )

    run(loop_name, scenario)


def test_health_and_metrics(tmp_path: Path, loop_name: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as r:
            reader, writer = await connect(r, True)
            writer.write(request("/streams/v1/index.json") + request("/streams/v1/index.json"))
            await read_reply(reader)
            await read_reply(reader)
            writer.write(request("/health"))
            reply = await read_reply(reader)
            assert (reply.status, reply.headers["x-index-state"]) == (204, "fresh")
            r.source.fresh = False
            writer.write(request("/health"))
            reply = await read_reply(reader)
            assert (reply.status, reply.headers["x-index-state"]) == (204, "stale")
            writer.write(request("/metrics"))
            text = (await read_reply(reader)).body.decode()
            assert 'webspaces_images_requests_total{kind="index",status="200"} 2.0' in text
            assert 'webspaces_images_products{source="directory"} 1.0' in text
            assert 'webspaces_images_index_fresh{source="directory"} 0.0' in text
            writer.close()
            await writer.wait_closed()

    run(loop_name, scenario)


def test_self_signed_certificate_is_kept_and_names_the_lab_addresses(tmp_path: Path) -> None:
    dns, ips = tls.wanted_names(["images.example.test"], ["192.0.2.10", "0.0.0.0"])
    cert, key = tls.self_signed(tmp_path, dns, ips)
    first = cert.read_bytes()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert tls.self_signed(tmp_path, dns, ips)[0].read_bytes() == first  # reused: clients pin it
    from cryptography import x509  # noqa: PLC0415

    san = (
        x509.load_pem_x509_certificate(first)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert san.get_values_for_type(x509.DNSName)[0] == "localhost"  # LXD's TLS server name
    assert {"images.example.test", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "192.0.2.10"} <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    wider_dns, wider_ips = tls.wanted_names(["other.example.test"])
    assert tls.self_signed(tmp_path, wider_dns, wider_ips)[0].read_bytes() != first  # a new name: new cert


def test_a_request_with_a_body_is_never_parsed_by_the_fast_path(tmp_path: Path, loop_name: str) -> None:
    """A body (Content-Length or chunked) sends the request to h11, so bytes of a body can never be
    read as a request of their own (request smuggling); Content-Length: 0 stays on the fast path."""

    async def scenario() -> None:
        async with running(tmp_path) as r:
            warm_reader, warm_writer = await connect(r, False)
            warm_writer.write(request("/streams/v1/index.json"))
            await read_reply(warm_reader)
            warm_writer.close()
            reader, writer = await connect(r, False)
            writer.write(request("/streams/v1/index.json", "Content-Length: 0"))
            assert (await read_reply(reader)).status == 200
            assert r.fast.served[("index", 200)] == 1
            hidden = request("/streams/v1/index.json")
            writer.write(request("/streams/v1/index.json", f"Content-Length: {len(hidden)}") + hidden)
            first = await read_reply(reader)
            assert first.status == 200
            writer.write(request("/nope"))
            assert (await read_reply(reader)).status == 404  # the body was not answered as a request
            assert r.fast.served[("index", 200)] == 1
            writer.close()
            reader, writer = await connect(r, False)
            writer.write(request("/streams/v1/index.json", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
            assert (await read_reply(reader)).status == 200
            writer.close()
            reader, writer = await connect(r, False)
            writer.write(request("/streams/v1/index.json", "X-A: 1", " folded"))
            assert (await read_reply(reader)).status == 200  # obs-fold: h11 unfolds it (RFC 9112 §5.2)
            assert r.fast.served[("index", 200)] == 1
            writer.close()

    run(loop_name, scenario)

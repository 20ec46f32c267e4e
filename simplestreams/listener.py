"""Accepting connections: TLS or plain HTTP on one port, and a fast path for the index documents.

Theory of operation. LXD's daemon fetches every image file first over plain HTTP from the port of an
https base URL and only then over HTTPS (spec §2.2), so a TLS port must answer a plaintext request at
once and never let it stall other connections. We therefore accept sockets ourselves and peek at the
first byte without consuming it: 0x16 (a TLS handshake record, RFC 8446 §5.1) hands the socket to the
event loop with our TLS context, anything else gets plain HTTP. The handshake runs per connection in
the loop, never on the accept path, and a peer that sends nothing is closed after ``first_byte_timeout``.

Every connection starts on :class:`FastPathProtocol`. It answers GET and HEAD of the pre-encoded JSON
documents (index.json and images.json, with ETag/304 and a gzip variant) straight from
:class:`FastCache`; the first request it does not recognise hands the connection, with the unread
bytes, to a uvicorn protocol running the Starlette app, which serves it to the end. Parsing and
writing a cached document costs a few microseconds where the ASGI stack costs ~100 (BENCHMARKS.md,
images), and it is what a simplestreams server mostly does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, cast

import uvicorn
import uvicorn.server

log = logging.getLogger("simplestreams.listener")

TLS_HANDSHAKE = 0x16
MAX_HEAD = 16 * 1024
GZIP_MIN = 1024

_REASONS = {200: b"OK", 304: b"Not Modified", 431: b"Request Header Fields Too Large"}


def http_date(now: float | None = None) -> str:
    return formatdate(now if now is not None else time.time(), usegmt=True)


class _Clock:
    """The Date header (RFC 9110 §6.6.1), re-rendered at most once a second."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def date_line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = b"date: " + http_date(now).encode() + b"\r\n"
        return self.line

    def date_value(self) -> bytes:
        return self.date_line()[6:-2]


CLOCK = _Clock()


@dataclass(slots=True)
class FastDocument:
    """One JSON document with every response variant pre-encoded except the Date line."""

    body: bytes
    etag: str
    content_type: str = "application/json"
    extra_headers: tuple[tuple[str, str], ...] = ()
    gzipped: bytes | None = None
    gzip_etag: str = field(init=False)
    _opaque: tuple[str, str] = field(init=False)  # both tags without a W/ prefix, for comparison
    _variants: dict[tuple[int, bool, bool, bool], tuple[bytes, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gzipped is None and len(self.body) >= GZIP_MIN:
            # mtime=0: the same body always gives the same bytes (and so a stable ETag per variant).
            self.gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        # A different representation needs a different entity tag (RFC 9110 §8.8.3).
        etag = self.etag
        self.gzip_etag = etag[:-1] + '-gz"' if etag.endswith('"') else etag + "-gz"
        self._opaque = (etag.removeprefix("W/"), self.gzip_etag.removeprefix("W/"))

    def matches(self, if_none_match: str) -> bool:
        """RFC 9110 §13.1.2: weak comparison, a list of tags or ``*``."""
        if if_none_match.strip() == "*":
            return True
        return any(tag.strip().removeprefix("W/") in self._opaque for tag in if_none_match.split(","))

    def headers(self, status: int, use_gzip: bool) -> list[tuple[str, str]]:
        """The header fields (without Date and Connection) for the Starlette path."""
        headers = [("etag", self.gzip_etag if use_gzip else self.etag), ("vary", "accept-encoding")]
        headers.extend(self.extra_headers)
        if status == 200:
            headers.append(("content-type", self.content_type))
            if use_gzip:
                headers.append(("content-encoding", "gzip"))
        return headers

    def payload(self, use_gzip: bool) -> bytes:
        return self.gzipped if use_gzip and self.gzipped is not None else self.body

    def encoded(self, status: int, use_gzip: bool, head: bool, close: bool) -> tuple[bytes, bytes]:
        """(status line, rest of the head + body); the caller puts the Date line between them."""
        key = (status, use_gzip, head, close)
        cached = self._variants.get(key)
        if cached is not None:
            return cached
        body = self.payload(use_gzip) if status == 200 else b""
        lines = [f"{name}: {value}" for name, value in self.headers(status, use_gzip)]
        if status == 200:
            lines.append(f"content-length: {len(body)}")
        if close:
            lines.append("connection: close")
        rest = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        first = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        cached = (first, rest + (b"" if head else body))
        self._variants[key] = cached
        return cached


def accepts_gzip(value: str) -> bool:
    for part in value.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            params = params.replace(" ", "").lower()
            return not (params.startswith("q=0") and params.strip("q=0.") == "")
    return False


class FastCache:
    """Request target -> a resolver of the document to answer it with.

    The Starlette route registers a target after serving it once; the resolver asks the backend
    synchronously for its current catalog (``CatalogSource.current``) and returns None when a refresh
    is due, so the fast path never serves a document its backend would not.
    """

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[Callable[[], FastDocument | None], str]] = {}
        self.served: Counter[tuple[str, int]] = Counter()  # (kind, status) -> requests, for /metrics

    def put(self, target: str, resolve: Callable[[], FastDocument | None], kind: str) -> None:
        key = target.encode("latin-1")
        if key not in self._entries and len(self._entries) >= 4096:
            self._entries.pop(next(iter(self._entries)))  # many GitHub repositories: bounded
        self._entries[key] = (resolve, kind)

    def get(self, target: bytes) -> tuple[FastDocument, str] | None:
        entry = self._entries.get(target)
        if entry is None:
            return None
        document = entry[0]()
        return None if document is None else (document, entry[1])

    def clear(self) -> None:
        self._entries.clear()


InnerFactory = Callable[[], asyncio.Protocol]


def _field(fields: bytes, name: bytes, lowered: bytes | None = None) -> bytes:
    """The value of the first header field ``name`` (lower case) in ``fields`` ("\r\n"-led lines);
    ``lowered`` is ``fields.lower()`` when ``fields`` keeps its case (entity tags are case-sensitive)."""
    key = b"\r\n" + name + b":"
    start = (lowered if lowered is not None else fields).find(key) + len(key)
    end = fields.find(b"\r\n", start)
    return fields[start : end if end >= 0 else len(fields)].strip()


class FastPathProtocol(asyncio.Protocol):
    """Serves cached documents; hands the connection to ``make_inner()`` at the first other request."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_cache",
        "_idle_since",
        "_keep_alive",
        "_make_inner",
        "_timer",
        "transport",
    )

    def __init__(self, cache: FastCache, make_inner: InnerFactory, keep_alive: float = 5.0) -> None:
        self._cache = cache
        self._make_inner = make_inner
        self._keep_alive = keep_alive
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = time.monotonic()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self._arm()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._keep_alive, self._check_idle)

    def _check_idle(self) -> None:
        # One timer per connection, re-armed for the remainder instead of per request.
        if self.transport is None:
            return
        idle = time.monotonic() - self._idle_since
        if idle >= self._keep_alive:
            self.transport.close()
        else:
            self._timer = asyncio.get_running_loop().call_later(self._keep_alive - idle, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self._idle_since = time.monotonic()
        buffer = self._buffer + data if self._buffer else data
        while buffer:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._refuse(431)
                    return
                break
            outcome = self._serve(buffer[:end])
            if outcome is None:
                self._hand_over(buffer)
                return
            buffer = buffer[end + 4 :]
            if outcome:  # connection: close
                transport.close()
                return
        self._buffer = buffer

    def _serve(self, head: bytes) -> bool | None:
        """Answer one request from the cache; None when it is not ours; else whether to close."""
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3:
            return None
        method, target, version = parts
        if method not in (b"GET", b"HEAD") or version not in (b"HTTP/1.1", b"HTTP/1.0"):
            return None
        cached = self._cache.get(target)
        if cached is None:
            return None
        document, kind = cached
        close = version == b"HTTP/1.0"
        if_none_match = ""
        use_gzip = False
        if line_end >= 0:
            # Look for the few fields that matter instead of splitting every line: a GET of a
            # document has no body, so anything that announces one (or a protocol switch, or an
            # obsolete line folding) goes to uvicorn's full parser instead.
            fields = head[line_end:].lower()
            if (
                b"\r\ntransfer-encoding:" in fields
                or b"\r\nupgrade:" in fields
                or b"\r\nexpect:" in fields
                or b"\r\n " in fields
                or b"\r\n\t" in fields
                or (b"\r\ncontent-length:" in fields and _field(fields, b"content-length").strip() != b"0")
            ):
                return None
            if b"\r\nif-none-match:" in fields:
                if_none_match = _field(head[line_end:], b"if-none-match", fields).decode("latin-1")
            if b"\r\naccept-encoding:" in fields:
                use_gzip = accepts_gzip(_field(fields, b"accept-encoding").decode("latin-1"))
            if b"\r\nconnection:" in fields:
                tokens = _field(fields, b"connection")
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens:
                    close = False
        use_gzip = use_gzip and document.gzipped is not None
        status = 304 if if_none_match and document.matches(if_none_match) else 200
        first, rest = document.encoded(status, use_gzip, method == b"HEAD", close)
        assert self.transport is not None
        # writelines: the body goes out without being copied into one joined buffer first.
        self.transport.writelines((first, CLOCK.date_line(), rest))
        self._cache.served[(kind, status)] += 1
        return close

    def _refuse(self, status: int) -> None:
        assert self.transport is not None
        body = b'{"message":"request head too large"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()

    def _hand_over(self, unread: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        inner = self._make_inner()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        inner.data_received(unread)


def protocol_factory(
    app: Any,
    fast: FastCache,
    state: uvicorn.server.ServerState,
    on_connection: Callable[[FastPathProtocol], None] | None = None,
) -> Callable[[], asyncio.Protocol]:
    """Connections start on the fast path and move to uvicorn's h11 protocol running ``app``.

    uvicorn constructs its protocols with (config, server_state, app_state, _loop), as its own
    ``Server.startup`` does; we call it the same way for connections we accepted ourselves.
    """
    uv_config = uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
    )
    uv_config.load()

    def inner() -> asyncio.Protocol:
        protocol: asyncio.Protocol = uv_config.http_protocol_class(  # type: ignore[call-arg]
            config=uv_config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
        )
        return protocol

    def factory() -> asyncio.Protocol:
        protocol = FastPathProtocol(fast, inner)
        if on_connection is not None:
            on_connection(protocol)
        return protocol

    return factory


class Listener:
    """One listening socket whose connections are TLS (first byte 0x16, when a context is set) or plain."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        *,
        first_byte_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.sock = sock
        self._factory = protocol_factory
        self._ssl = ssl_context
        self._first_byte_timeout = first_byte_timeout
        self._handshake_timeout = handshake_timeout
        self._waiting: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tls_connections = 0
        self.plain_connections = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._loop is not None
        for _ in range(64):  # bounded per wake-up so one busy port cannot starve the loop
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep listening
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = conn.fileno()
            timer = self._loop.call_later(self._first_byte_timeout, self._give_up, fd)
            self._waiting[fd] = (conn, timer)
            self._loop.add_reader(fd, self._first_byte, fd)

    def _give_up(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        if entry is not None:
            assert self._loop is not None
            self._loop.remove_reader(fd)
            entry[0].close()

    def _first_byte(self, fd: int) -> None:
        assert self._loop is not None
        conn, timer = self._waiting.pop(fd)
        self._loop.remove_reader(fd)
        timer.cancel()
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            conn.close()
            return
        if not first:
            conn.close()
            return
        tls = self._ssl is not None and first[0] == TLS_HANDSHAKE
        if tls:
            self.tls_connections += 1
        else:
            self.plain_connections += 1
        task = self._loop.create_task(self._adopt(conn, tls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt(self, conn: socket.socket, tls: bool) -> None:
        assert self._loop is not None
        try:
            if tls:
                await self._loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._handshake_timeout
                )
            else:
                await self._loop.connect_accepted_socket(self._factory, conn)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.debug("connection dropped during set-up: %s", exc)
            conn.close()

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self.sock.fileno())
            for fd in list(self._waiting):
                self._give_up(fd)
        for task in list(self._tasks):
            task.cancel()
        self.sock.close()


def bind(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket (IPv6 literal hosts in brackets or bare)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock

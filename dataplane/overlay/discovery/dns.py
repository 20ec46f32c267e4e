"""The DNS peer source: the A records of a name (a headless Service), re-resolved at their TTL
(spec 2.6.4), with a stub resolver of its own (resolv.conf search list, UDP then TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane import wire

from .base import DiscoveryError, Publish, _Backoff, _SourceBase


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

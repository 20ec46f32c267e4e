"""Shared set-up of the DHCP core tests: both twins, a fake clock, and a scripted client.

The helpers are imported as ``tests.unit.dhcp.conftest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import pytest

from dataplane.dhcp import pool as pure_pool
from dataplane.dhcp import server as pure_server
from dataplane.dhcp.events import Reply
from dataplane.dhcp.server import DhcpServer, Reservation, ServerConfig
from dataplane.dhcp.store import MemoryStore
from dataplane.wire import _select
from dataplane.wire.buffer import Buffer
from dataplane.wire.dhcp import DhcpMessage, pull_dhcp, push_dhcp
from tests.conftest import require

PACKAGE = "dataplane.dhcp"
SERVER = "172.24.254.1"
SERVER_B = bytes((172, 24, 254, 1))
T0 = 1_700_000_000.0  # the fake clock starts here (wall-clock seconds)
PRL = bytes((1, 3, 6, 15, 26, 28, 51, 58, 59))


def compiled_twin(name: str) -> ModuleType:
    module = _select.compiled(name, PACKAGE)
    require(module is not None, f"the compiled twin dataplane.dhcp._{name} is not built")
    assert module is not None
    return module


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each server test runs against the pure-Python twin and the compiled one."""
    return pure_server if request.param == "python" else compiled_twin("server")


@pytest.fixture(params=["python", "cython"])
def pool_impl(request: pytest.FixtureRequest) -> ModuleType:
    return pure_pool if request.param == "python" else compiled_twin("pool")


def config(**changes: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "server_address": SERVER,
        "pools": [("172.24.1.1", "172.24.1.20")],
        "router": SERVER,
        "dns_servers": [SERVER],
        "domain": "webspace",
    }
    values.update(changes)
    return ServerConfig(**values)


def make(impl: ModuleType, store: MemoryStore | None = None, now: float = T0, **changes: Any) -> DhcpServer:
    return cast(DhcpServer, impl.DhcpServer(config(**changes), store or MemoryStore(), now))


def ip(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def mac_of(n: int) -> bytes:
    return bytes((2, 0, 0, 0, n >> 8 & 255, n & 255))


def parse(reply: Reply) -> DhcpMessage:
    return pull_dhcp(Buffer(reply.payload))


def encode(msg: DhcpMessage) -> bytes:
    buf = Buffer()
    push_dhcp(buf, msg)
    return buf.data


@dataclass
class Client:
    """A scripted DHCP client: builds requests, hands them to the server, parses the replies."""

    server: DhcpServer
    mac: bytes
    client_id: bytes | None = None
    xid: int = 0x1234
    address: bytes = bytes(4)
    prl: bytes | None = PRL
    extra: dict[int, bytes] = field(default_factory=dict)

    def message(self, mtype: int, **fields: Any) -> DhcpMessage:
        options: dict[int, bytes] = {53: bytes((mtype,))}
        if self.client_id is not None:
            options[61] = self.client_id
        if self.prl is not None and mtype in (1, 3, 8):
            options[55] = self.prl
        options.update(self.extra)
        options.update(fields.pop("options", {}))
        return DhcpMessage(xid=self.xid, chaddr=self.mac, options=options, **fields)

    def send(self, msg: DhcpMessage, now: float) -> list[Reply]:
        return self.server.receive(encode(msg), now)

    def one(self, msg: DhcpMessage, now: float) -> tuple[Reply, DhcpMessage]:
        replies = self.send(msg, now)
        assert len(replies) == 1, replies
        return replies[0], parse(replies[0])

    def discover(self, now: float, **options: bytes) -> DhcpMessage | None:
        opts = {int(k[1:]): v for k, v in options.items()}
        replies = self.send(self.message(1, options=opts), now)
        return parse(replies[0]) if replies else None

    def select(self, offer: DhcpMessage, now: float, server: bytes = SERVER_B) -> DhcpMessage | None:
        msg = self.message(3, options={50: offer.yiaddr, 54: server})
        replies = self.send(msg, now)
        return parse(replies[0]) if replies else None

    def dora(self, now: float) -> DhcpMessage:
        offer = self.discover(now)
        assert offer is not None and offer.options[53] == b"\x02"
        ack = self.select(offer, now)
        assert ack is not None and ack.options[53] == b"\x05", ack
        self.address = ack.yiaddr
        return ack

    def renew(self, now: float, broadcast: bool = False) -> DhcpMessage | None:
        msg = self.message(3, ciaddr=self.address, flags=0x8000 if broadcast else 0)
        replies = self.send(msg, now)
        return parse(replies[0]) if replies else None

    def init_reboot(self, address: bytes, now: float) -> DhcpMessage | None:
        replies = self.send(self.message(3, options={50: address}), now)
        return parse(replies[0]) if replies else None

    def release(self, now: float) -> list[Reply]:
        return self.send(self.message(7, ciaddr=self.address, options={54: SERVER_B}), now)

    def decline(self, address: bytes, now: float) -> list[Reply]:
        return self.send(self.message(4, options={50: address, 54: SERVER_B}), now)


def reservation(mac: bytes, address: str, hostname: str | None = None) -> Reservation:
    return Reservation(mac, address, hostname)


def no_internal_errors(server: DhcpServer) -> None:
    assert server.counters()["drop_internal_error"] == 0, getattr(server, "last_error", None)

"""No address is ever bound to two clients: random clients, messages, clock and restarts."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dataplane.dhcp import server as pure_server
from dataplane.dhcp.events import LeaseState
from dataplane.dhcp.pool import ip_to_int
from dataplane.dhcp.server import DhcpServer
from dataplane.dhcp.store import MemoryStore
from dataplane.wire import _select
from tests.unit.dhcp.conftest import SERVER_B, T0, Client, config, ip, mac_of, no_internal_errors

CLIENTS = 10
POOL = [("172.24.1.1", "172.24.1.6")]
ADDRESSES = [ip(f"172.24.1.{n}") for n in range(1, 8)]


def machine_for(module: ModuleType) -> type[RuleBasedStateMachine]:
    class Dhcp(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.now = T0
            self.store = MemoryStore()
            self.server = self.start()
            self.clients = [
                Client(self.server, mac_of(n), client_id=(b"\x01" + mac_of(n)) if n % 3 == 0 else None, xid=n)
                for n in range(CLIENTS)
            ]
            # What each client was told: address -> lease end, from ACKs it received.
            self.bound: dict[int, tuple[bytes, float]] = {}
            self.offers: dict[int, bytes] = {}

        def start(self) -> DhcpServer:
            cfg = config(pools=POOL, lease_time=300, offer_hold=30, decline_hold=120)
            return module.DhcpServer(cfg, self.store, self.now)  # type: ignore[no-any-return]

        def deliver(self, n: int, reply_msgs: list[object]) -> None:
            del n, reply_msgs

        def ack(self, n: int, msg: object) -> None:
            from dataplane.wire.dhcp import DhcpMessage  # noqa: PLC0415

            assert isinstance(msg, DhcpMessage)
            kind = msg.options[53]
            if kind == b"\x05" and msg.yiaddr != bytes(4):
                self.bound[n] = (msg.yiaddr, self.now + int.from_bytes(msg.options[51], "big"))
                self.clients[n].address = msg.yiaddr
            elif kind == b"\x06":
                self.bound.pop(n, None)

        def commit(self) -> None:
            self.store.commit()  # the I/O loop commits each batch before sending its replies

        @rule(n=st.integers(0, CLIENTS - 1), want=st.sampled_from([None, *ADDRESSES]))
        def discover(self, n: int, want: bytes | None) -> None:
            extra = {} if want is None else {"o50": want}
            offer = self.clients[n].discover(self.now, **extra)
            if offer is not None:
                self.offers[n] = offer.yiaddr

        @rule(n=st.integers(0, CLIENTS - 1))
        def dora(self, n: int) -> None:
            self.discover(n, None)
            self.select(n, False)

        @rule(n=st.integers(0, CLIENTS - 1), other_server=st.booleans())
        def select(self, n: int, other_server: bool) -> None:
            address = self.offers.pop(n, None)
            if address is None:
                return
            client = self.clients[n]
            server = ip("172.24.254.77") if other_server else SERVER_B
            replies = client.send(client.message(3, options={50: address, 54: server}), self.now)
            self.commit()
            for reply in replies:
                from tests.unit.dhcp.conftest import parse  # noqa: PLC0415

                self.ack(n, parse(reply))

        @rule(n=st.integers(0, CLIENTS - 1), address=st.sampled_from(ADDRESSES))
        def init_reboot(self, n: int, address: bytes) -> None:
            from tests.unit.dhcp.conftest import parse  # noqa: PLC0415

            client = self.clients[n]
            replies = client.send(client.message(3, options={50: address}), self.now)
            self.commit()
            for reply in replies:
                self.ack(n, parse(reply))

        @rule(n=st.integers(0, CLIENTS - 1))
        def renew(self, n: int) -> None:
            from tests.unit.dhcp.conftest import parse  # noqa: PLC0415

            if n not in self.bound:
                return
            client = self.clients[n]
            replies = client.send(client.message(3, ciaddr=self.bound[n][0]), self.now)
            self.commit()
            for reply in replies:
                self.ack(n, parse(reply))

        @rule(n=st.integers(0, CLIENTS - 1))
        def release(self, n: int) -> None:
            if n in self.bound:
                client = self.clients[n]
                client.address = self.bound.pop(n)[0]
                client.release(self.now)
                self.commit()

        @rule(n=st.integers(0, CLIENTS - 1))
        def decline(self, n: int) -> None:
            if n in self.bound:
                self.clients[n].decline(self.bound.pop(n)[0], self.now)
                self.commit()

        @rule(seconds=st.sampled_from([1, 10, 29, 31, 150, 299, 301, 1000]))
        def wait(self, seconds: int) -> None:
            self.now += seconds
            for n, (_, end) in list(self.bound.items()):
                if end <= self.now:
                    del self.bound[n]  # the client gave its address up (RFC 2131 §4.4.5)

        @rule()
        def tick(self) -> None:
            self.server.tick(self.now)

        @rule()
        def crash_and_restart(self) -> None:
            self.store.pending.clear()  # uncommitted records die with the process
            self.server = self.start()
            for client in self.clients:
                client.server = self.server
            self.offers.clear()

        @invariant()
        def no_address_bound_to_two_clients(self) -> None:
            live = {n: a for n, (a, end) in self.bound.items() if end > self.now}
            assert len(set(live.values())) == len(live), live
            for n, address in live.items():
                lease = self.server.lease_for(".".join(str(b) for b in address))
                assert lease is not None and lease.state == LeaseState.BOUND, (n, lease)
                assert lease.mac == mac_of(n)

        @invariant()
        def records_and_pool_agree(self) -> None:
            leases = self.server.leases()
            holding = [
                x for x in leases if x.state in (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED)
            ]
            clients = [x.client for x in leases if x.state != LeaseState.DECLINED]
            assert len(clients) == len(set(clients))  # one record per client
            pool = self.server.pool
            in_pool = [x for x in holding if pool.contains(ip_to_int(x.address))]
            assert pool.free_count == pool.size - len(in_pool)
            for x in holding:
                assert not pool.is_free(ip_to_int(x.address))
            no_internal_errors(self.server)

    return Dhcp


SETTINGS = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_python_twin() -> None:
    SETTINGS(machine_for(pure_server)).TestCase().runTest()


def test_compiled_twin() -> None:
    from tests.conftest import require  # noqa: PLC0415

    module = _select.compiled("server", "dataplane.dhcp")
    require(module is not None, "the compiled twin dataplane.dhcp._server is not built")
    assert module is not None
    SETTINGS(machine_for(module)).TestCase().runTest()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])

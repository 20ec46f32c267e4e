"""Malformed and hostile input is dropped and counted, never raised (spec 4.1, issue 4)."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.dhcp import server as pure_server
from dataplane.dhcp.server import DhcpServer
from dataplane.wire.dhcp import DhcpMessage
from tests.unit.dhcp.conftest import T0, Client, encode, mac_of, make, no_internal_errors
from tests.vectors import load_pcap


def capture_payloads() -> list[bytes]:
    """The DHCP messages (UDP payloads) of the real capture."""
    payloads = []
    for frame in load_pcap("wire/test_dhcp_capture.pcap"):
        if frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 15) * 4
        payloads.append(frame[14 + ihl + 8 :])
    assert payloads
    return payloads


CAPTURE = capture_payloads()


def servers() -> list[DhcpServer]:
    from dataplane.dhcp.server import DhcpServer as Pure  # noqa: PLC0415
    from dataplane.wire import _select  # noqa: PLC0415

    built = [make(pure_server)]
    compiled = _select.compiled("server", "dataplane.dhcp")
    if compiled is not None:
        built.append(make(compiled))
    assert isinstance(built[0], Pure)
    return built


def test_capture_is_served_without_errors(impl: ModuleType) -> None:
    server = make(impl)
    for payload in CAPTURE:
        server.receive(payload, T0)
    no_internal_errors(server)
    assert server.counters()["received"] == len(CAPTURE)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "drop_malformed"),
        (b"\x01" * 10, "drop_malformed"),
        (encode(DhcpMessage(op=2, options={53: b"\x01"})), "drop_bootreply"),
        (encode(DhcpMessage(options={})), "drop_bootp"),
        (encode(DhcpMessage(options={53: b"\x01\x01"})), "drop_malformed"),
        (encode(DhcpMessage(options={53: b"\x09"})), "drop_malformed"),
        (encode(DhcpMessage(hlen=0, options={53: b"\x01"})), "drop_no_identity"),
        (encode(DhcpMessage(chaddr=mac_of(1), options={53: b"\x01", 61: b"\x01"})), "drop_malformed"),
        (encode(DhcpMessage(chaddr=mac_of(1), options={53: b"\x01", 50: b"\x01\x02"})), "drop_malformed"),
        (encode(DhcpMessage(chaddr=mac_of(1), options={53: b"\x03"})), "drop_bad_request"),
        (encode(DhcpMessage(chaddr=mac_of(1), options={53: b"\x03", 54: b"\xac"})), "drop_malformed"),
    ],
)
def test_hostile_messages_are_counted(impl: ModuleType, payload: bytes, reason: str) -> None:
    server = make(impl)
    assert server.receive(payload, T0) == []
    assert server.counters()[reason] == 1
    no_internal_errors(server)


def test_option_loop_and_bad_lengths_are_malformed(impl: ModuleType) -> None:
    server = make(impl)
    good = encode(DhcpMessage(chaddr=mac_of(1), options={53: b"\x01"}))
    # Option 52 in the options field, and 52 again inside the overloaded file field: a loop.
    looped = bytearray(good[:240]) + bytes((52, 1, 1, 53, 1, 1, 255))
    looped[108:111] = bytes((52, 1, 2))
    bad_length = good[:240] + bytes((53, 200, 1))
    for payload in (bytes(looped), bad_length):
        assert server.receive(payload, T0) == []
    assert server.counters()["drop_malformed"] == 2


def test_own_packets_looped_back_are_dropped(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    assert server.receive(encode(client.message(1)), T0, interface_mac=mac_of(1)) == []
    assert server.counters()["drop_looped"] == 1


def test_flood_of_random_macs_exhausts_cleanly(impl: ModuleType) -> None:
    server = make(impl)  # a 20-address pool
    answered = 0
    for n in range(2000):
        answered += len(Client(server, mac_of(n)).send(Client(server, mac_of(n)).message(1), T0 + n / 1000))
    assert answered == 20
    counters = server.counters()
    assert counters["pool_exhausted"] == 1 and counters["no_address"] == 1980
    # Offers time out and the pool serves again.
    server.tick(T0 + 100)
    assert server.pool.free_count == 20
    no_internal_errors(server)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=700))
def test_random_bytes_never_raise(data: bytes) -> None:
    for server in servers():
        server.receive(data, T0)
        no_internal_errors(server)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CAPTURE)))
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data) - 1))
        data[where] = draw(st.integers(0, 255))
    action = draw(st.sampled_from(("keep", "truncate", "extend")))
    if action == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif action == "extend":
        data += draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=5))
def test_mutated_capture_messages_never_raise(payloads: list[bytes]) -> None:
    for server in servers():
        for payload in payloads:
            for reply in server.receive(payload, T0):
                assert len(reply.payload) >= 300
        no_internal_errors(server)

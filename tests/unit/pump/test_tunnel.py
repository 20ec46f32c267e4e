"""The pump without privileges: decap headers, malformed input counted and dropped, never raised.

The TAP is stood in for by a datagram socketpair (one frame per read, as a TAP gives); the underlay
socket is real UDP on loopback. The VTEP has no peers, so nothing leaves the host. The full path
(TAP, veth, two pumps, TCP) is in ``tests/net/test_io_tap.py``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.pump import tunnel as pure_pump
from dataplane.wire import _select
from tests.conftest import require
from tests.unit.pump.conftest import pump_modules, tcp4, vnet

NEEDS_CSUM, DATA_VALID = 1, 2


def make_vtep(module: ModuleType) -> Any:
    if module is pure_pump:
        return _select.pure("vtep", "dataplane.overlay").Vtep(4242, "192.0.2.1")
    compiled = _select.compiled("vtep", "dataplane.overlay")
    require(compiled is not None, "dataplane.overlay._vtep is not built")
    assert compiled is not None
    return compiled.Vtep(4242, "192.0.2.1")


@pytest.fixture
def rig(impl: ModuleType) -> Iterator[tuple[Any, socket.socket, socket.socket]]:
    tap_side, pump_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pump_side.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    pump = impl.Pump(pump_side.fileno(), udp, make_vtep(impl), batch=8)
    try:
        yield pump, tap_side, udp
    finally:
        pump.close()
        for sock in (tap_side, pump_side, udp):
            sock.close()


def drain(pump: Any, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not pump.run_once(0.01) and not pump.run_once(0.0):
            break


def test_malformed_tap_frames_are_counted_not_raised(rig: tuple[Any, socket.socket, socket.socket]) -> None:
    pump, tap, _ = rig
    bad = [
        b"\x00\x01",
        vnet(flags=0x40) + bytes(tcp4(b"x")),
        vnet(NEEDS_CSUM, 9, 0, 100, 34, 16) + bytes(tcp4(b"x")),
    ]
    for frame in bad:
        tap.send(frame)
    tap.send(vnet() + bytes(tcp4(b"fine but no peers")))
    drain(pump)
    stats = pump.stats()
    assert stats["tap_rx_frames"] == 4
    assert stats["drops"] == {"vnet.header": 1, "vnet.flags": 1, "vnet.gso_type": 1, "vtep_tx": 1}
    assert stats["udp_tx_datagrams"] == 0


def test_underlay_garbage_is_dropped_by_the_vtep(rig: tuple[Any, socket.socket, socket.socket]) -> None:
    pump, tap, udp = rig
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for payload in (
            b"",
            b"\x08",
            os.urandom(100),
            b"\x08\x00\x00\x00\x00\x10\x92\x00" + bytes(tcp4(b"x")),
        ):
            sender.sendto(payload, udp.getsockname())
    drain(pump)
    stats = pump.stats()
    assert stats["udp_rx_datagrams"] >= 3
    assert stats["drops"]["vtep_rx"] == stats["udp_rx_datagrams"]
    assert stats["tap_tx_frames"] == 0
    tap.setblocking(False)
    with pytest.raises(BlockingIOError):
        tap.recv(100)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6))
def test_random_tap_input_never_raises(frames: list[bytes]) -> None:
    for module in pump_modules():
        tap_side, pump_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        pump_side.setblocking(False)
        udp.setblocking(False)
        pump = module.Pump(pump_side.fileno(), udp, make_vtep(module))
        try:
            for frame in frames:
                tap_side.send(frame)
            drain(pump)
            stats = pump.stats()
            assert stats["tap_rx_frames"] == len(frames)
            assert sum(stats["drops"].values()) >= len(frames) - stats["tso_segments"]
        finally:
            pump.close()
            for sock in (tap_side, pump_side, udp):
                sock.close()


def test_run_stops_on_event(rig: tuple[Any, socket.socket, socket.socket]) -> None:
    pump, _, _ = rig
    stop = threading.Event()
    thread = threading.Thread(target=pump.run, args=(stop,))
    thread.start()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert pump.stats()["epoll_waits"] >= 0


def test_arguments_are_checked(impl: ModuleType) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="batch"):
            impl.Pump(0, udp, make_vtep(impl), batch=0)
        with pytest.raises(ValueError, match="10 or 12"):
            impl.Pump(0, udp, make_vtep(impl), vnet_hdr_size=8)


def _poke(udp: socket.socket) -> None:
    """One datagram the VTEP drops: traffic for the pump without a peer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(os.urandom(64), udp.getsockname())


def test_busy_poll_is_off_by_default_and_never_spins(rig: tuple[Any, socket.socket, socket.socket]) -> None:
    pump, _, udp = rig
    assert pump.busy_poll == 0
    _poke(udp)
    drain(pump)
    assert pump.stats()["udp_rx_datagrams"] == 1
    assert pump.stats()["busy_poll"] == {"window_us": 0, "polls": 0, "hits": 0, "seconds": 0.0}


def test_busy_poll_window_spins_after_traffic_then_blocks(
    rig: tuple[Any, socket.socket, socket.socket],
) -> None:
    pump, _, udp = rig
    pump.busy_poll = 20_000  # 20 ms: wide enough to see on a loaded machine
    assert pump.run_once(0.0) == 0  # idle: no window open, nothing polled
    assert pump.stats()["busy_poll"]["polls"] == 0
    _poke(udp)
    pump.run_once(1.0)  # the datagram: opens the window
    assert pump.stats()["udp_rx_datagrams"] == 1
    started = time.monotonic()
    pump.run_once(0.2)  # nothing comes: spins out the window, then blocks for the rest
    elapsed = time.monotonic() - started
    spun = pump.stats()["busy_poll"]
    assert spun["window_us"] == 20_000
    assert spun["polls"] >= 1 and spun["hits"] == 0
    assert 0.015 <= spun["seconds"] <= elapsed + 0.001
    assert 0.15 <= elapsed < 2.0
    # The window is closed now: the next wait blocks at once, and polls no more.
    pump.run_once(0.01)
    assert pump.stats()["busy_poll"]["polls"] == spun["polls"]


def test_busy_poll_picks_up_traffic_and_honours_the_timeout(
    rig: tuple[Any, socket.socket, socket.socket],
) -> None:
    pump, _, udp = rig
    pump.busy_poll = 500_000
    _poke(udp)
    pump.run_once(1.0)
    _poke(udp)
    started = time.monotonic()
    pump.run_once(1.0)  # found while polling: returns at once, window re-opened
    assert time.monotonic() - started < 0.25
    spun = pump.stats()["busy_poll"]
    assert spun["hits"] == 1 and pump.stats()["udp_rx_datagrams"] == 2
    started = time.monotonic()
    assert pump.run_once(0.0) == 0  # a zero timeout never waits, window or not
    assert pump.run_once(0.02) == 0  # nor polls longer than the timeout
    assert time.monotonic() - started < 0.25
    pump.busy_poll = 0  # 0 turns it off and closes the window
    polls = pump.stats()["busy_poll"]["polls"]
    _poke(udp)
    drain(pump)
    assert pump.stats()["busy_poll"]["polls"] == polls


def test_busy_poll_is_checked(impl: ModuleType) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="busy_poll"):
            impl.Pump(0, udp, make_vtep(impl), busy_poll=-1)
        with pytest.raises(ValueError, match="busy_poll"):
            impl.Pump(0, udp, make_vtep(impl), busy_poll=2_000_000)
        udp.bind(("127.0.0.1", 0))
        tap_side, pump_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with tap_side, pump_side:
            pump = impl.Pump(pump_side.fileno(), udp, make_vtep(impl), busy_poll=30)
            try:
                assert pump.busy_poll == 30 and pump.stats()["busy_poll"]["window_us"] == 30
                with pytest.raises(ValueError, match="busy_poll"):
                    pump.busy_poll = -5
                assert pump.busy_poll == 30
            finally:
                pump.close()


def test_load_pump_honours_the_environment() -> None:
    module = _select.load("tunnel", "dataplane.pump")
    if os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1":
        assert module.IMPLEMENTATION == "python"
    elif _select.compiled("tunnel", "dataplane.pump") is not None:
        assert module.IMPLEMENTATION == "cython", "dataplane.pump._tunnel was built but not loaded"
    for m in pump_modules():
        assert sorted(m.__all__) == sorted(pure_pump.__all__)

"""The UDP port and the TAP helpers that need no privileges (the TAP itself: tests/net)."""

from __future__ import annotations

import socket

import pytest

from dataplane.io import errors
from dataplane.io.tap import ALL_OFFLOADS, TUN_F_CSUM, TUN_F_TSO4, Tap, offload_names
from dataplane.io.udp import open_udp


def test_udp_binds_nonblocking_with_offloads_probed() -> None:
    with open_udp("127.0.0.1", 0, buffer=1 << 20) as port:
        assert port.port > 0
        assert port.sock.getblocking() is False
        assert port.rcvbuf >= 1 << 20 or port.rcvbuf > 0
        assert isinstance(port.gso, bool) and isinstance(port.gro, bool)


def test_udp_port_in_use_is_a_typed_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(errors.PortInUse) as caught:
            open_udp("127.0.0.1", taken.getsockname()[1])
    assert "already in use" in caught.value.message
    assert isinstance(caught.value, errors.IoError)


def test_udp_foreign_address_is_a_typed_error() -> None:
    with pytest.raises(errors.AddressNotAvailable, match="not an address of this host"):
        open_udp("192.0.2.77", 0)


def test_udp_reuseport_allows_one_socket_per_worker() -> None:
    with open_udp("127.0.0.1", 0, reuseport=True) as first, open_udp("127.0.0.1", first.port, reuseport=True):
        pass


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", " eth"])
def test_tap_name_is_checked(name: str) -> None:
    with pytest.raises(ValueError, match="interface name"):
        Tap.open(name)


def test_offload_names() -> None:
    assert offload_names(TUN_F_CSUM | TUN_F_TSO4) == ["csum", "tso4"]
    assert len(offload_names(ALL_OFFLOADS)) == 6

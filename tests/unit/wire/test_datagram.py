"""One-call UDP framing (dataplane.wire.datagram): scapy as the oracle, both twins alike, typed refusals."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dataplane.wire import _select
from dataplane.wire import datagram as pure_datagram
from tests.conftest import require, twins

SERVER_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000002")
SERVER_IP = bytes([172, 24, 254, 1])
CLIENT_IP = bytes([172, 24, 1, 1])


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return pure_datagram
    compiled = _select.compiled("datagram")
    require(compiled is not None, "dataplane.wire._datagram is not built")
    assert compiled is not None
    return compiled


def test_built_frame_is_what_scapy_builds(impl: ModuleType) -> None:
    payload = b"\x02\x01\x06\x00" + bytes(236)
    frame = impl.build_udp_frame(CLIENT_MAC, SERVER_MAC, SERVER_IP, CLIENT_IP, 67, 68, payload, 7, 0x10)
    oracle = (
        Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
        / IP(src="172.24.254.1", dst="172.24.1.1", tos=0x10, id=7, ttl=64, flags=0)
        / UDP(sport=67, dport=68)
        / payload
    )
    assert frame == bytes(oracle)


def test_parse_reads_back_what_build_wrote(impl: ModuleType) -> None:
    frame = impl.build_udp_frame(CLIENT_MAC, SERVER_MAC, CLIENT_IP, SERVER_IP, 68, 67, b"hello")
    parsed = impl.parse_udp_frame(frame + b"\x00" * 8)  # Ethernet padding is not payload
    assert parsed == (b"hello", SERVER_MAC, CLIENT_MAC, CLIENT_IP, SERVER_IP, 68, 67)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f[:41], "short_frame"),
        (lambda f: f[:12] + b"\x86\xdd" + f[14:], "not_ipv4"),
        (lambda f: f[:14] + b"\x65" + f[15:], "bad_ipv4"),  # version 6
        (lambda f: f[:20] + b"\x20\x00" + f[22:], "bad_ipv4"),  # more fragments
        (lambda f: f[:24] + bytes([f[24] ^ 1]) + f[25:], "bad_checksum"),
        (lambda f: f[:38] + b"\xff\xff" + f[40:], "bad_udp"),  # UDP length past the datagram
    ],
)
def test_bad_frames_are_refused_with_their_reason(impl: ModuleType, mutate: object, reason: str) -> None:
    frame = impl.build_udp_frame(CLIENT_MAC, SERVER_MAC, CLIENT_IP, SERVER_IP, 68, 67, b"x" * 20)
    assert callable(mutate)
    assert impl.parse_udp_frame(mutate(frame)) == reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_twins_agree(payload: bytes, src_port: int, dst_port: int, ident: int) -> None:
    pure, compiled = twins("datagram")
    frame = pure.build_udp_frame(
        SERVER_MAC, CLIENT_MAC, SERVER_IP, CLIENT_IP, src_port, dst_port, payload, ident
    )
    assert (
        compiled.build_udp_frame(
            SERVER_MAC, CLIENT_MAC, SERVER_IP, CLIENT_IP, src_port, dst_port, payload, ident
        )
        == frame
    )
    assert pure.parse_udp_frame(frame) == compiled.parse_udp_frame(frame)
    garbled = frame[: len(frame) // 2]
    assert pure.parse_udp_frame(garbled) == compiled.parse_udp_frame(garbled)

from __future__ import annotations

from dataclasses import astuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import Ether

from dataplane import wire
from dataplane.wire import Buffer, MalformedPacket
from dataplane.wire.buffer import Buffer as PureBuffer
from tests.conftest import twins
from tests.vectors import load_hex

macs = st.binary(min_size=6, max_size=6)


def test_ethernet_vectors_round_trip() -> None:
    for raw in load_hex("wire/test_ethernet_vectors.hex"):
        header = wire.pull_ethernet(Buffer(raw))
        out = Buffer()
        wire.push_ethernet(out, header)
        assert out.data == raw


@given(dst=macs, src=macs, ethertype=st.integers(0x0600, 0xFFFF))
def test_scapy_agrees(dst: bytes, src: bytes, ethertype: int) -> None:
    raw = bytes(Ether(dst=wire.format_mac(dst), src=wire.format_mac(src), type=ethertype))
    header = wire.pull_ethernet(Buffer(raw))
    assert (header.dst, header.src, header.ethertype) == (dst, src, ethertype)
    out = Buffer()
    wire.push_ethernet(out, header)
    parsed = Ether(out.data)
    assert (parsed.dst, parsed.src, parsed.type) == (
        wire.format_mac(dst),
        wire.format_mac(src),
        ethertype,
    )


def test_802_3_length_is_refused() -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.pull_ethernet(Buffer(b"\x01" * 12 + b"\x00\x40"))
    assert info.value.field == "ethernet.ethertype"


@given(st.binary(max_size=40))
def test_twins_agree_on_any_bytes(data: bytes) -> None:
    pure, compiled = twins("ethernet")
    _, cbuffer = twins("buffer")
    outcomes: list[tuple[str, object]] = []
    for module, buffer_type in ((pure, PureBuffer), (compiled, cbuffer.Buffer)):
        try:
            outcomes.append(("ok", astuple(module.pull_ethernet(buffer_type(data)))))
        except MalformedPacket as exc:
            outcomes.append(("error", exc.field))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("text", ["", "00:11:22:33:44", "00:11:22:33:44:zz", "001122334455"])
def test_parse_mac_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        wire.parse_mac(text)

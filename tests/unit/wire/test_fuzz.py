"""Bad bytes raise only MalformedPacket, never hang, and both twins read them alike.

Inputs are random bytes and mutations (bit flips, truncation, extension) of every frame captured
under ``tests/data/wire/*.pcap``, whichever tests put them there, fed to :func:`decode_frame` and to
every ``pull_*`` in the :mod:`dataplane.wire` namespace (at the offsets where the layers of a
captured frame start, so that each codec sees a plausible header rather than an Ethernet one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane import wire
from dataplane.wire import MalformedPacket, _select
from tests.conftest import twins
from tests.vectors import DATA, load_pcap

# Where headers begin in the captures: Ethernet, IPv4, UDP/TCP/ICMP, DHCP or VXLAN, inner Ethernet,
# inner IPv4, inner L4 (options shift these; the random offsets cover the rest).
OFFSETS = (0, 14, 34, 42, 50, 64, 84)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def captured_frames() -> tuple[bytes, ...]:
    frames: list[bytes] = []
    for path in sorted((DATA / "wire").glob("*.pcap")):
        frames += load_pcap(f"wire/{path.name}")
    return tuple(frames)


def pull_names() -> list[str]:
    names = sorted(name for name in dir(wire) if name.startswith("pull_"))
    assert {"pull_arp", "pull_ethernet", "pull_ipv4", "pull_udp", "pull_vnet", "pull_vxlan"} <= set(names)
    return names


def module_of(name: str) -> str:
    for module in wire.implementation_report():
        if name in _select.pure(module).__all__:
            return module
    raise AssertionError(f"no wire module exports {name}")


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(captured_frames())))
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(0, len(data) - 1))
        flip_one_bit = draw(st.booleans())
        data[where] ^= 1 << draw(st.integers(0, 7)) if flip_one_bit else draw(st.integers(1, 255))
    action = draw(st.sampled_from(("keep", "truncate", "extend")))
    if action == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif action == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


inputs = st.one_of(st.binary(max_size=200), mutated_frames())


def normalized(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        result = call()
    except MalformedPacket as exc:
        return ("error", exc.field)
    return ("ok", astuple(result))


def test_captures_exist() -> None:
    frames = captured_frames()
    assert len(frames) >= 20
    assert any(frame[12:14] == b"\x08\x06" for frame in frames)


@FUZZ
@given(inputs)
def test_decode_frame_raises_only_malformed_packet(data: bytes) -> None:
    try:
        frame = wire.decode_frame(data)
    except MalformedPacket:
        return
    # Whatever decodes re-encodes, and the result decodes again to the same layers.
    again = wire.decode_frame(wire.encode_frame(frame))
    assert (again.arp is None, again.ipv4 is None, again.udp is None, again.tcp is None) == (
        frame.arp is None,
        frame.ipv4 is None,
        frame.udp is None,
        frame.tcp is None,
    )
    assert again.payload == frame.payload


@FUZZ
@given(
    data=inputs,
    start=st.one_of(st.sampled_from(OFFSETS), st.integers(0, 120)),
    name=st.sampled_from(pull_names()),
)
def test_every_pull_raises_only_malformed_packet(data: bytes, start: int, name: str) -> None:
    pull = getattr(wire, name)
    buf = wire.Buffer(data[start:])
    try:
        pull(buf)
    except MalformedPacket as exc:
        assert buf.tell() == 0, f"{name} moved the buffer before failing on {exc.field}"


def test_pull_ethernet_keeps_position_on_802_3_length() -> None:
    buf = wire.Buffer(bytes(12) + b"\x00\x40")
    with pytest.raises(MalformedPacket):
        wire.pull_ethernet(buf)
    assert buf.tell() == 0


@FUZZ
@given(inputs)
def test_decode_frame_twins_agree(data: bytes) -> None:
    pure, compiled = twins("frame")
    assert normalized(lambda: pure.decode_frame(data)) == normalized(lambda: compiled.decode_frame(data))


@FUZZ
@given(
    data=inputs,
    start=st.one_of(st.sampled_from(OFFSETS), st.integers(0, 120)),
    name=st.sampled_from(pull_names()),
)
def test_every_pull_twins_agree(data: bytes, start: int, name: str) -> None:
    pure, compiled = twins(module_of(name))
    pure_buffer, compiled_buffer = twins("buffer")
    chunk = data[start:]
    assert normalized(lambda: getattr(pure, name)(pure_buffer.Buffer(chunk))) == normalized(
        lambda: getattr(compiled, name)(compiled_buffer.Buffer(chunk))
    )


@pytest.mark.parametrize("name", pull_names())
def test_every_pull_reads_captured_frames_at_some_offset(name: str) -> None:
    """Guard against a fuzz target that rejects everything: each pull accepts some captured bytes."""
    pull = getattr(wire, name)
    for frame in captured_frames():
        for start in OFFSETS:
            try:
                pull(wire.Buffer(frame[start:]))
            except MalformedPacket:
                continue
            return
    pytest.fail(f"{name} accepted no captured bytes at any of {OFFSETS}")

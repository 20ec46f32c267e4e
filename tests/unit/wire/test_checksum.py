from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dataplane import wire
from dataplane.wire import MalformedPacket
from tests.conftest import twins

words = st.integers(0, 0xFFFF)
addresses = st.binary(min_size=4, max_size=4)
even_data = st.binary(min_size=2, max_size=64).map(lambda b: b[: len(b) & ~1])


def test_rfc1071_section3_example() -> None:
    # RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (one's complement, folded).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert wire.ones_sum(data) == 0xDDF2
    assert wire.internet_checksum(data) == 0x220D


def test_rfc1624_example() -> None:
    # RFC 1624 §4 (Examples): HC = 0xDD2F, a field m = 0x5555 becomes m' = 0x3285. RFC 1141's
    # eqn. 2 gives 0xFFFF (-0); eqn. 3 gives 0x0000, which is what a full recompute yields.
    assert wire.update16(0xDD2F, 0x5555, 0x3285) == 0x0000
    # A header with those numbers: 0x5555 plus a word making the sum ~0xDD2F = 0x22D0.
    before = bytes.fromhex("5555cd7a")
    assert wire.internet_checksum(before) == 0xDD2F
    assert wire.internet_checksum(bytes.fromhex("3285cd7a")) == 0x0000


def test_odd_length_is_zero_padded() -> None:
    # RFC 1071 §4.1: a trailing odd byte counts as the high byte of a word.
    assert wire.ones_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


@settings(max_examples=200)
@given(data=even_data, index=st.integers(0, 31), new=words)
def test_update16_equals_full_recompute(data: bytes, index: int, new: int) -> None:
    where = 2 * (index % (len(data) // 2))
    old = int.from_bytes(data[where : where + 2], "big")
    changed = data[:where] + new.to_bytes(2, "big") + data[where + 2 :]
    # An all-zero buffer is the one case where a full recompute gives 0xFFFF (-0): no header is.
    assume(any(data) and any(changed))
    assert wire.update16(wire.internet_checksum(data), old, new) == wire.internet_checksum(changed)


@settings(max_examples=200)
@given(prefix=st.integers(0, 8), data=st.binary(min_size=4, max_size=48), new=st.integers(0, 0xFFFFFFFF))
def test_update32_equals_full_recompute(prefix: int, data: bytes, new: int) -> None:
    data = bytes(2 * prefix) + data
    data = data[: len(data) & ~1]
    where = 2 * prefix
    assume(where + 4 <= len(data))
    old = int.from_bytes(data[where : where + 4], "big")
    changed = data[:where] + new.to_bytes(4, "big") + data[where + 4 :]
    assume(any(data) and any(changed))
    assert wire.update32(wire.internet_checksum(data), old, new) == wire.internet_checksum(changed)


@settings(max_examples=200)
@given(
    src=addresses, dst=addresses, new_src=addresses, port=words, new_port=words, length=st.integers(8, 1500)
)
def test_partial_seed_update_equals_new_seed(
    *, src: bytes, dst: bytes, new_src: bytes, port: int, new_port: int, length: int
) -> None:
    # A partial checksum holds the folded, uncomplemented pseudo-header sum (dataplane spec 5.3);
    # SNAT of such a packet updates it as a plain sum.
    seed = wire.pseudo_header_sum(src, dst, 6, length)
    updated = wire.update_partial32(seed, int.from_bytes(src, "big"), int.from_bytes(new_src, "big"))
    assert updated == wire.pseudo_header_sum(new_src, dst, 6, length)
    again = wire.update_partial16(seed, port, new_port)
    assert again % 0xFFFF == (seed - port + new_port) % 0xFFFF


@settings(max_examples=200)
@given(src=addresses, dst=addresses, segment=st.binary(min_size=20, max_size=80), lead=st.binary(max_size=34))
def test_complete_partial_finishes_the_checksum(src: bytes, dst: bytes, segment: bytes, lead: bytes) -> None:
    zeroed = segment[:16] + b"\x00\x00" + segment[18:]  # the TCP checksum field, at offset 16
    seed = wire.pseudo_header_sum(src, dst, 6, len(zeroed))
    frame = bytearray(lead + zeroed)
    frame[len(lead) + 16 : len(lead) + 18] = seed.to_bytes(2, "big")
    wire.complete_partial(frame, len(lead), 16)
    assert int.from_bytes(frame[len(lead) + 16 : len(lead) + 18], "big") == wire.transport_checksum(
        src, dst, 6, zeroed
    )
    # Receiver's view (RFC 1071 §1): pseudo-header plus finished segment sums to all ones.
    assert wire.ones_sum(bytes(frame[len(lead) :]), 0, -1, seed) == 0xFFFF


def test_complete_partial_refuses_offsets_outside_the_frame() -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.complete_partial(bytearray(20), 10, 10)
    assert info.value.field == "vnet.csum_offset"


def test_udp_zero_is_sent_as_all_ones() -> None:
    assert wire.udp_wire_checksum(0) == 0xFFFF
    assert wire.udp_wire_checksum(0x1234) == 0x1234


def _result(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except MalformedPacket as exc:
        return ("error", exc.field)


@settings(max_examples=200)
@given(
    data=st.binary(max_size=70),
    start=st.integers(-2, 72),
    end=st.integers(-1, 72),
    initial=st.integers(0, 0xFFFFFFFF),
    src=addresses,
    dst=addresses,
    protocol=st.integers(0, 255),
    length=st.integers(0, 0xFFFF),
    checksum=words,
    old=st.integers(0, 0xFFFFFFFF),
    new=st.integers(0, 0xFFFFFFFF),
)
def test_twins_agree(
    *,
    data: bytes,
    start: int,
    end: int,
    initial: int,
    src: bytes,
    dst: bytes,
    protocol: int,
    length: int,
    checksum: int,
    old: int,
    new: int,
) -> None:
    pure, compiled = twins("checksum")
    old16, new16 = old & 0xFFFF, new & 0xFFFF

    def run(module: Any) -> list[tuple[str, Any]]:
        frame = bytearray(data)
        results = [
            _result(lambda: module.ones_sum(data, start, end, initial)),
            _result(lambda: module.internet_checksum(data, start, end, initial)),
            _result(lambda: module.pseudo_header_sum(src, dst, protocol, length)),
            _result(lambda: module.transport_checksum(src, dst, protocol, data)),
            _result(lambda: module.update16(checksum, old16, new16)),
            _result(lambda: module.update32(checksum, old, new)),
            _result(lambda: module.update_partial16(checksum, old16, new16)),
            _result(lambda: module.update_partial32(checksum, old, new)),
            _result(lambda: module.udp_wire_checksum(checksum)),
            _result(lambda: module.complete_partial(frame, max(start, 0), max(end, 0) % 8)),
        ]
        results.append(("frame", bytes(frame)))
        return results

    assert run(pure) == run(compiled)

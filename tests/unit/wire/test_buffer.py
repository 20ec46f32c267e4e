from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.wire import Buffer, BufferWriteError, MalformedPacket
from tests.conftest import twins

PAIR = struct.Struct("!HB")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("pull_uint16", ()),
        ("pull_uint32", ()),
        ("pull_uint64", ()),
        ("pull_bytes", (2,)),
        ("pull_struct", (PAIR,)),
        ("require", (2,)),
        ("pull_bytes", (-1,)),
    ],
)
def test_pull_past_the_end_names_the_field_and_stays_put(method: str, args: tuple[Any, ...]) -> None:
    buf = Buffer(b"\x01\x02\x03")
    buf.pull_uint16("first")
    with pytest.raises(MalformedPacket) as info:
        getattr(buf, method)(*args, "test.field")
    assert info.value.field == "test.field"
    assert buf.tell() == 2
    assert buf.pull_uint8() == 3


def test_pulls_read_network_order() -> None:
    buf = Buffer(bytes(range(1, 16)))
    assert buf.pull_uint8() == 1
    assert buf.pull_uint16() == 0x0203
    assert buf.pull_uint32() == 0x04050607
    assert buf.pull_uint64() == 0x08090A0B0C0D0E0F
    assert buf.eof()


def test_fixed_capacity_push_raises_buffer_write_error() -> None:
    buf = Buffer(capacity=3)
    buf.push_uint16(0xABCD)
    with pytest.raises(BufferWriteError):
        buf.push_uint16(1)
    assert buf.data == b"\xab\xcd"


def test_seek_back_overwrites_in_place() -> None:
    buf = Buffer()
    buf.push_uint32(0)
    buf.push_bytes(b"tail")
    buf.seek(2)
    buf.push_uint16(0xBEEF)
    assert buf.data == b"\x00\x00\xbe\xeftail"


def test_push_out_of_range_raises_buffer_write_error() -> None:
    buf = Buffer()
    for method, value in (("push_uint8", 256), ("push_uint16", -1), ("push_uint32", 1 << 32)):
        with pytest.raises(BufferWriteError):
            getattr(buf, method)(value)
    with pytest.raises(BufferWriteError):
        buf.push_struct(PAIR, 1, 300)
    assert buf.data == b""


ops = st.one_of(
    st.tuples(st.sampled_from(["pull_uint8", "pull_uint16", "pull_uint32", "pull_uint64"])),
    st.tuples(st.just("pull_bytes"), st.integers(-1, 12)),
    st.tuples(st.just("require"), st.integers(-1, 12)),
    st.tuples(st.just("pull_struct")),
    st.tuples(st.just("push_uint8"), st.integers(-1, 0x100)),
    st.tuples(st.just("push_uint16"), st.integers(-1, 0x10000)),
    st.tuples(st.just("push_uint32"), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("push_uint64"), st.integers(0, 0xFFFFFFFFFFFFFFFF)),
    st.tuples(st.just("push_bytes"), st.binary(max_size=6)),
    st.tuples(st.just("push_struct"), st.integers(0, 0x1FFFF), st.integers(0, 0x1FF)),
    st.tuples(st.just("seek"), st.integers(-1, 24)),
    st.tuples(st.just("data_slice"), st.integers(-1, 24), st.integers(-1, 24)),
    st.tuples(st.sampled_from(["tell", "remaining", "eof", "data", "len"])),
)


def _apply(buf: Any, op: tuple[Any, ...]) -> tuple[Any, ...]:
    name, *args = op
    try:
        if name == "data":
            return ("ok", buf.data)
        if name == "len":
            return ("ok", len(buf))
        if name in ("pull_uint8", "pull_uint16", "pull_uint32", "pull_uint64"):
            return ("ok", getattr(buf, name)("f"))
        if name == "pull_struct":
            return ("ok", buf.pull_struct(PAIR, "f"))
        if name == "push_struct":
            return ("ok", buf.push_struct(PAIR, *args))
        if name in ("pull_bytes", "require"):
            return ("ok", getattr(buf, name)(args[0], "f"))
        return ("ok", getattr(buf, name)(*args))
    except MalformedPacket as exc:
        return ("malformed", exc.field, buf.tell())
    except BufferWriteError:
        return ("write-error", buf.tell())


@settings(max_examples=200)
@given(
    initial=st.one_of(st.none(), st.binary(max_size=16)), capacity=st.integers(0, 16), program=st.lists(ops)
)
def test_twins_agree_on_any_sequence_of_operations(
    initial: bytes | None, capacity: int, program: list[tuple[Any, ...]]
) -> None:
    pure, compiled = twins("buffer")
    buffers = [module.Buffer(initial, capacity) for module in (pure, compiled)]
    for op in program:
        results = [_apply(buf, op) for buf in buffers]
        assert results[0] == results[1], op
    assert buffers[0].data == buffers[1].data
    assert buffers[0].tell() == buffers[1].tell()

"""Typed DHCP options: RFC 3442 and RFC 3397 examples, wrong lengths, name compression safety."""

from __future__ import annotations

import ipaddress
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import wire
from dataplane.wire import ClasslessRoute, ClientFqdn, DhcpMessageType, MalformedPacket
from tests.conftest import twins
from tests.vectors import load_hex

ROUTER = bytes((10, 0, 0, 1))
RFC3442_NETWORKS = [
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/24",
    "10.17.0.0/16",
    "10.27.129.0/24",
    "10.229.0.128/25",
    "10.198.122.47/32",
]


def route(network: str, router: bytes = ROUTER) -> ClasslessRoute:
    net = ipaddress.IPv4Network(network)
    return ClasslessRoute(net.network_address.packed, net.prefixlen, router)


def test_rfc3442_examples_round_trip() -> None:
    vectors = load_hex("wire/test_dhcp_rfc3442.hex")
    expected = [[route(n)] for n in RFC3442_NETWORKS] + [[route(n) for n in RFC3442_NETWORKS]]
    assert len(vectors) == len(expected)
    for raw, routes in zip(vectors, expected, strict=True):
        options = wire.parse_options(raw)
        assert list(options) == [121]
        assert wire.decode_classless_routes(options[121]) == routes
        assert wire.encode_options({121: wire.encode_classless_routes(routes)}) == raw


def test_rfc3397_example_round_trip() -> None:
    (raw,) = load_hex("wire/test_dhcp_rfc3397.hex")
    options = wire.parse_options(raw)
    assert len(options[119]) == 27  # three 9-byte instances, concatenated (RFC 3396)
    names = wire.decode_domain_search(options[119])
    assert names == ["eng.apple.com", "marketing.apple.com"]
    value = wire.encode_domain_search(names)
    assert value == options[119]  # suffix compression gives the RFC's C0 04 pointer
    assert wire.encode_options({119: value}, max_chunk=9) == raw


def test_domain_search_uncompressed() -> None:
    value = wire.encode_domain_search(["eng.apple.com", "marketing.apple.com"], compress=False)
    assert b"\xc0" not in value
    assert wire.decode_domain_search(value) == ["eng.apple.com", "marketing.apple.com"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc0\x00", "backwards"),  # points at itself
        (b"\x01a\xc0\x00", "backwards"),  # a -> itself via label: a loop
        (b"\x01a\x00\x01b\xc0\x03", "backwards"),  # points at itself after a good name
        (b"\xc0\x05\x00", "backwards"),  # points forwards
        (b"\x03abc", "past the end"),  # no terminating label
        (b"\x05ab", "overruns"),
        (b"\xc0", "cut short"),
        (b"\x40", "not defined"),  # extended label type
        (b"", "at least 1"),
    ],
)
def test_domain_search_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason) as info:
        wire.decode_domain_search(raw)
    assert info.value.field == "dhcp.option.119"


def test_domain_search_rejects_long_names() -> None:
    label = b"\x3f" + b"a" * 63
    with pytest.raises(MalformedPacket, match="255"):
        wire.decode_domain_search(label * 5 + b"\x00")


@pytest.mark.parametrize(
    ("code", "raw"),
    [
        (1, b"\xff\xff\xff"),
        (3, b""),
        (3, b"\x01\x02\x03\x04\x05"),
        (6, b"\x01\x02"),
        (12, b""),
        (15, b""),
        (26, b"\x05"),
        (26, b"\x00\x43"),  # 67 is below the MTU minimum of 68
        (28, b"\x01\x02\x03\x04\x05"),
        (50, b""),
        (51, b"\x00\x00\x00"),
        (52, b"\x04"),
        (52, b"\x01\x01"),
        (53, b"\x09"),
        (53, b""),
        (54, b"\x01\x02"),
        (55, b""),
        (57, b"\x02\x3f"),  # 575 is below the legal minimum of 576
        (58, b"\x01"),
        (59, b"\x01\x02\x03\x04\x05"),
        (61, b"\x01"),
        (81, b"\x04\x00"),
        (81, b"\x04\x00\x00\x05ab"),
        (81, b"\x04\x00\x00\x00\x01a"),  # data after the root label
        (81, b"\x04\x00\x00\xc0\x00"),  # no compression in option 81
        (81, b"\x00\x00\x00\xff"),  # ASCII form that is not ASCII
        (82, b"\x01"),
        (82, b"\x01\x05abc"),
        (119, b"\x03ab"),
        (121, b"\x00\x01\x02\x03"),
        (121, b"\x21\x0a\x00\x00\x00\x00\x0a\x00\x00\x01"),  # /33
        (121, b"\x18\x0a\x00\x00\x0a\x00\x00"),
    ],
)
def test_wrong_lengths_and_values_raise_malformed(code: int, raw: bytes) -> None:
    with pytest.raises(MalformedPacket) as info:
        wire.decode_option(code, raw)
    assert info.value.field == f"dhcp.option.{code}"


WELL_FORMED = [
    (1, b"\xff\xff\xff\x00", b"\xff\xff\xff\x00"),
    (3, b"\xc0\x00\x02\x01\xc0\x00\x02\x02", [b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x02"]),
    (6, b"\xc0\x00\x02\x35", [b"\xc0\x00\x02\x35"]),
    (12, b"webspace-1", "webspace-1"),
    (15, b"example.com", "example.com"),
    (26, b"\x05\xaa", 1450),
    (28, b"\xc0\x00\x02\xff", b"\xc0\x00\x02\xff"),
    (50, b"\xc0\x00\x02\x64", b"\xc0\x00\x02\x64"),
    (51, b"\xff\xff\xff\xff", 0xFFFFFFFF),
    (52, b"\x03", 3),
    (53, b"\x08", DhcpMessageType.INFORM),
    (54, b"\xc0\x00\x02\x01", b"\xc0\x00\x02\x01"),
    (55, b"\x01\x03\x06\x0f\x1a\x79", [1, 3, 6, 15, 26, 121]),
    (57, b"\x05\xdc", 1500),
    (58, b"\x00\x00\x00\x3c", 60),
    (59, b"\x00\x00\x00\x69", 105),
    (61, b"\x01\x02\x00\x00\x00\x02\x02", (1, b"\x02\x00\x00\x00\x02\x02")),
    (81, b"\x05\x00\x00\x04host\x07example\x00", ClientFqdn(5, 0, 0, "host.example.")),
    (81, b"\x05\x00\x00\x04host", ClientFqdn(5, 0, 0, "host")),
    (81, b"\x01\xff\xffhost", ClientFqdn(1, 255, 255, "host")),
    (81, b"\x04\x00\x00", ClientFqdn(4, 0, 0, "")),
    (82, b"\x01\x03eth\x02\x04\x00\x01\x02\x03", [(1, b"eth"), (2, b"\x00\x01\x02\x03")]),
    (119, b"\x07example\x03com\x00", ["example.com"]),
    (121, b"\x00\xc0\x00\x02\x01\x19\xc0\x00\x02\x80\xc0\x00\x02\x02", None),
    (200, b"opaque", b"opaque"),
]


@pytest.mark.parametrize(("code", "raw", "value"), WELL_FORMED)
def test_typed_options_round_trip(code: int, raw: bytes, value: object) -> None:
    decoded = wire.decode_option(code, raw)
    if value is not None:
        assert decoded == value
    assert wire.encode_option(code, decoded) == raw


def test_classless_routes_of_the_capture() -> None:
    raw = b"\x00\xc0\x00\x02\x01\x19\xc0\x00\x02\x80\xc0\x00\x02\x02"
    assert wire.decode_classless_routes(raw) == [
        route("0.0.0.0/0", bytes((192, 0, 2, 1))),
        route("192.0.2.128/25", bytes((192, 0, 2, 2))),
    ]


def test_host_name_trailing_nuls_dropped() -> None:
    # RFC 2132 §2: receivers must be prepared to delete trailing NULs.
    assert wire.decode_text(12, b"host\x00\x00") == "host"


@pytest.mark.parametrize(
    ("code", "value"),
    [(26, 67), (57, 575), (52, 0), (51, -1), (51, 1 << 32)],
)
def test_encode_uint_rejects_out_of_range(code: int, value: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        wire.encode_uint(code, value)


def test_encode_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        wire.encode_ip(54, b"\x01\x02\x03")
    with pytest.raises(ValueError):
        wire.encode_ip_list(3, [])
    with pytest.raises(ValueError):
        wire.encode_classless_routes([ClasslessRoute(bytes(4), 33, ROUTER)])
    with pytest.raises(ValueError):
        wire.encode_domain_search(["a" * 64 + ".com"])
    with pytest.raises(ValueError):
        wire.encode_option(53, "ack")
    with pytest.raises(ValueError):
        wire.encode_options({0: b""})


def test_relay_agent_info_is_byte_exact() -> None:
    # RFC 3046 §2.2: the server echoes option 82 unchanged, so the raw value is what gets copied.
    raw = b"\x01\x06\x00\x04\x00\x01\x00\x02\x02\x06\x02\x00\x00\x00\x02\x02"
    subs = wire.decode_relay_agent_info(raw)
    assert subs == [(1, b"\x00\x04\x00\x01\x00\x02"), (2, b"\x02\x00\x00\x00\x02\x02")]
    assert wire.encode_relay_agent_info(subs) == raw


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)


@settings(max_examples=200)
@given(st.lists(names, min_size=1, max_size=6), st.booleans())
def test_domain_search_encode_decode(search: list[str], compress: bool) -> None:
    value = wire.encode_domain_search(search, compress=compress)
    assert wire.decode_domain_search(value) == search


prefixes = st.integers(0, 32).flatmap(
    lambda width: st.tuples(st.just(width), st.binary(min_size=(width + 7) // 8, max_size=(width + 7) // 8))
)


@settings(max_examples=200)
@given(st.lists(st.tuples(prefixes, st.binary(min_size=4, max_size=4)), min_size=1, max_size=8))
def test_classless_routes_encode_decode(items: list[tuple[tuple[int, bytes], bytes]]) -> None:
    routes = [ClasslessRoute(dest + bytes(4 - len(dest)), width, router) for (width, dest), router in items]
    value = wire.encode_classless_routes(routes)
    assert wire.decode_classless_routes(value) == routes


CODES = [1, 3, 6, 12, 15, 26, 28, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 81, 82, 119, 121]


def _outcome(module: ModuleType, code: int, raw: bytes) -> tuple[str, str]:
    # repr, because the twins' dataclasses and enums are distinct classes with the same repr.
    try:
        return ("ok", repr(module.decode_option(code, raw)))
    except MalformedPacket as exc:
        return ("error", exc.field)


@settings(max_examples=200)
@given(st.sampled_from(CODES), st.binary(max_size=40))
def test_any_bytes_decode_or_raise_malformed_and_twins_agree(code: int, raw: bytes) -> None:
    pure, compiled = twins("dhcp")
    outcomes = [_outcome(module, code, raw) for module in (pure, compiled)]
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        value = wire.decode_option(code, raw)
        again = wire.decode_option(code, wire.encode_option(code, value))
        assert repr(again) == repr(value)

"""DHCP messages: real captures (dnsmasq, udhcpc, dhclient), scapy as oracle, malformed input.

The capture is made by ``tests/data/wire/capture_dhcp.sh``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import astuple
from types import ModuleType
from typing import Any

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane import wire
from dataplane.wire import Buffer, DhcpMessage, DhcpMessageType, MalformedPacket, pull_dhcp, push_dhcp
from tests.conftest import twins
from tests.vectors import load_pcap

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402

MAC = bytes.fromhex("020000000202")
SERVER = bytes((192, 0, 2, 1))
T = DhcpMessageType


def udp_payloads() -> list[bytes]:
    payloads = []
    for frame in load_pcap("wire/test_dhcp_capture.pcap"):
        udp = dpkt.ethernet.Ethernet(frame).data.data
        assert {udp.sport, udp.dport} <= {wire.SERVER_PORT, wire.CLIENT_PORT}
        payloads.append(bytes(udp.data))
    return payloads


CAPTURED = udp_payloads()


def parse(raw: bytes) -> DhcpMessage:
    return pull_dhcp(Buffer(raw))


def build(msg: DhcpMessage, **kwargs: int) -> bytes:
    buf = Buffer()
    push_dhcp(buf, msg, **kwargs)
    return buf.data


# -- real captures ------------------------------------------------------------------------


def test_capture_round_trips_byte_for_byte() -> None:
    assert len(CAPTURED) == 11
    for raw in CAPTURED:
        assert build(parse(raw)) == raw


def test_capture_message_sequence() -> None:
    messages = [parse(raw) for raw in CAPTURED]
    # udhcpc DORA; dhclient INIT-REBOOT for a stale lease -> NAK (authoritative), DORA, RELEASE
    assert [m.message_type for m in messages] == [
        T.DISCOVER, T.OFFER, T.REQUEST, T.ACK,
        T.REQUEST, T.NAK,
        T.DISCOVER, T.OFFER, T.REQUEST, T.ACK,
        T.RELEASE,
    ]  # fmt: skip
    for m in messages:
        assert m.op == (wire.BOOTREQUEST if m.message_type in (T.DISCOVER, T.REQUEST, T.RELEASE) else 2)
        assert (m.htype, m.hlen, m.hardware_address) == (1, 6, MAC)
        assert m.end
    # Replies copy the transaction id of the request they answer.
    for request, reply in ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)):
        assert messages[request].xid == messages[reply].xid


def test_dnsmasq_ack_options() -> None:
    messages = [parse(raw) for raw in CAPTURED]
    for ack in (messages[3], messages[9]):
        opts = ack.options
        assert wire.decode_ip(54, opts[54]) == SERVER
        assert wire.decode_uint(51, opts[51]) == 120
        assert wire.decode_uint(58, opts[58]) == 60
        assert wire.decode_ip(1, opts[1]) == bytes((255, 255, 255, 0))
        assert wire.decode_ip_list(3, opts[3]) == [SERVER]
        assert wire.decode_ip_list(6, opts[6]) == [bytes((192, 0, 2, 53))]
        assert ack.yiaddr[:3] == bytes((192, 0, 2)) and 100 <= ack.yiaddr[3] <= 150  # --dhcp-range
    dhclient_ack = messages[9].options
    # dhclient asked for 26, 119 and 121; udhcpc did not ask for 26.
    assert wire.decode_uint(26, dhclient_ack[26]) == 1450
    assert 26 not in messages[3].options
    assert wire.decode_domain_search(dhclient_ack[119]) == ["lab.example.com", "example.com"]
    assert b"\xc0" in dhclient_ack[119]  # dnsmasq compresses the second name
    routes = wire.decode_classless_routes(dhclient_ack[121])
    assert [(r.destination, r.prefix_len, r.router) for r in routes] == [
        (bytes(4), 0, SERVER),
        (bytes((192, 0, 2, 128)), 25, bytes((192, 0, 2, 2))),
    ]
    assert wire.decode_text(12, dhclient_ack[12]) == "wsdhclient"


def test_client_options_in_capture() -> None:
    messages = [parse(raw) for raw in CAPTURED]
    discover = messages[0]
    assert wire.decode_text(12, discover.options[12]) == "wsudhcpc"
    assert wire.decode_uint(57, discover.options[57]) == 576
    fqdn = wire.decode_client_fqdn(discover.options[81])
    assert fqdn.name.rstrip(".") == "wsudhcpc.example.com"
    assert wire.client_id_key(discover) == ("client-id", b"\x01" + MAC)
    # dhclient sends an RFC 4361-style DUID client-id, not the MAC.
    dhclient = messages[6]
    kind, duid = wire.decode_client_id(dhclient.options[61])
    assert kind == 0 and duid.endswith(MAC)
    assert wire.client_id_key(dhclient) == ("client-id", dhclient.options[61])
    assert wire.decode_parameter_list(dhclient.options[55]) == [1, 28, 3, 15, 6, 119, 12, 26, 121]
    # INIT-REBOOT: option 50 without 54, ciaddr 0.
    reboot = messages[4]
    assert 54 not in reboot.options and reboot.ciaddr == bytes(4)
    assert reboot.options[50] == bytes((192, 0, 2, 200))
    nak = messages[5]
    assert nak.broadcast and nak.yiaddr == bytes(4)
    assert wire.decode_text(56, nak.options[56]) == "address not available"
    release = messages[10]
    assert release.ciaddr == messages[9].yiaddr
    assert release.options[54] == SERVER


def test_capture_padding_is_kept() -> None:
    # dhclient pads its 300-byte requests after END; dnsmasq's NAK too.
    nak = parse(CAPTURED[5])
    assert nak.padding and not any(nak.padding)
    assert len(build(nak, min_size=0)) == 300


# -- building ----------------------------------------------------------------------------


def test_minimal_message_is_padded_to_300_bytes() -> None:
    msg = DhcpMessage(xid=1, chaddr=MAC, options={53: wire.encode_message_type(T.DISCOVER)})
    raw = build(msg)
    assert len(raw) == wire.MIN_BOOTP_SIZE
    assert raw[236:240] == wire.MAGIC_COOKIE
    assert raw[240:244] == b"\x35\x01\x01\xff"
    back = parse(raw)
    assert back.chaddr == MAC + bytes(10)
    assert back.options == msg.options
    assert len(back.padding) == 300 - 244
    assert len(build(msg, min_size=0)) == 244


def test_broadcast_flag_accessor() -> None:
    msg = DhcpMessage()
    assert not msg.broadcast
    msg.broadcast = True
    assert msg.flags == 0x8000 and msg.broadcast
    msg.flags |= 1
    msg.broadcast = False
    assert msg.flags == 1


def test_client_id_key_falls_back_to_hardware_address() -> None:
    msg = DhcpMessage(htype=1, hlen=6, chaddr=MAC + bytes(10))
    assert wire.client_id_key(msg) == ("hardware", b"\x01" + MAC)


def test_long_option_is_split_and_rejoined() -> None:
    # RFC 3396: a value over 255 bytes travels as consecutive instances of its code.
    msg = DhcpMessage(options={53: b"\x05", 224: bytes(range(256)) * 2})
    raw = build(msg, max_size=1500)
    assert parse(raw).options == msg.options
    assert raw.count(b"\xe0\xff") == 2


def test_oversized_options_overload_file_then_sname() -> None:
    options = {53: b"\x05", 54: SERVER}
    options.update({code: bytes([code]) * 60 for code in range(200, 208)})  # 8 x 62 bytes
    msg = DhcpMessage(op=2, options=options)
    raw = build(msg)
    assert len(raw) <= wire.DEFAULT_MAX_SIZE
    assert raw[240:243] == b"\x34\x01\x03"  # option 52 first: file and sname both used
    back = parse(raw)
    assert back.options == options
    assert back.file == bytes(128) and back.sname == bytes(64)


def test_overload_skips_a_used_file_field() -> None:
    options = {code: bytes(100) for code in range(200, 205)}
    msg = DhcpMessage(op=2, file=b"pxelinux.0", options=options)
    with pytest.raises(ValueError, match="max_size"):
        build(msg)
    msg.options = {code: bytes(40) for code in range(200, 208)}
    back = parse(build(msg))
    assert back.options == msg.options
    assert back.file.rstrip(b"\x00") == b"pxelinux.0"


def test_too_large_raises_value_error() -> None:
    msg = DhcpMessage(options={200: bytes(2000)})
    with pytest.raises(ValueError, match="max_size"):
        build(msg)
    assert parse(build(msg, max_size=2400)).options == msg.options


@pytest.mark.parametrize("code", [0, 52, 255])
def test_framing_codes_are_not_options(code: int) -> None:
    with pytest.raises(ValueError):
        build(DhcpMessage(options={code: b"\x01"}))


# -- parsing malformed input ---------------------------------------------------------------


def header(op: int = 1, hlen: int = 6, file: bytes = bytes(128), sname: bytes = bytes(64)) -> bytes:
    return (
        bytes((op, 1, hlen, 0))
        + bytes(4 + 2 + 2 + 16 + 16)
        + sname.ljust(64, b"\x00")
        + file.ljust(128, b"\x00")
        + wire.MAGIC_COOKIE
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "dhcp.header"),
        (header()[:235], "dhcp.header"),
        (header()[:238], "dhcp.cookie"),
        (header()[:236] + b"\x63\x82\x53\x64", "dhcp.cookie"),
        (header(op=0), "dhcp.op"),
        (header(op=3), "dhcp.op"),
        (header(hlen=17), "dhcp.hlen"),
        (header() + b"\x35\x05\x01", "dhcp.option.53"),
        (header() + b"\x0c", "dhcp.option.12"),
        (header() + b"\x34\x01\x04\xff", "dhcp.option.52"),
        (header() + b"\x34\x01\x01\x34\x01\x01\xff", "dhcp.option.52"),  # repeated: 2 bytes
        (header() + b"\x34\x00\xff", "dhcp.option.52"),
        # option 52 inside the field it overloads: a loop if followed
        (header(file=b"\x34\x01\x01\xff") + b"\x34\x01\x01\xff", "dhcp.option.52"),
        (header(sname=b"\x34\x01\x03\xff") + b"\x34\x01\x03\xff", "dhcp.option.52"),
        (header(file=b"\x0c\x7f") + b"\x34\x01\x01\xff", "dhcp.option.12"),  # overruns file
    ],
)
def test_malformed_raises_with_field(raw: bytes, field: str) -> None:
    buf = Buffer(raw)
    with pytest.raises(MalformedPacket) as info:
        pull_dhcp(buf)
    assert info.value.field == field
    assert buf.tell() == 0


def test_overload_parse_order_is_options_file_sname() -> None:
    # RFC 3396: the aggregate is options, file, sname; a split option joins in that order.
    raw = header(file=b"\x0c\x02cd\x0f\x01f\xff", sname=b"\x0c\x01e\xff") + b"\x34\x01\x03\x0c\x02ab\xff"
    msg = parse(raw)
    assert msg.options == {12: b"abcde", 15: b"f"}
    assert msg.file == bytes(128) and msg.sname == bytes(64)
    again = parse(build(msg))
    assert again.options == msg.options


def test_missing_end_is_tolerated_and_kept() -> None:
    raw = header() + b"\x35\x01\x01\x00\x00"
    msg = parse(raw)
    assert not msg.end and msg.padding == b"\x00\x00"
    assert build(msg, min_size=0) == raw


# -- scapy as an independent oracle --------------------------------------------------------

addresses = st.binary(min_size=4, max_size=4)


def ip(value: bytes) -> str:
    return str(ipaddress.IPv4Address(value))


def address(value: bytes) -> tuple[str, bytes]:
    return ip(value), value


def address_list(values: list[bytes]) -> tuple[list[str], bytes]:
    return [ip(a) for a in values], b"".join(values)


def uint(width: int) -> Any:
    return lambda v: (v, v.to_bytes(width, "big"))


def same(value: Any) -> tuple[Any, bytes]:
    return value, bytes(value)


address_lists = st.lists(addresses, min_size=1, max_size=3)

# code: (scapy's name, strategy for (scapy's value, our bytes))
SCAPY_OPTIONS: dict[int, tuple[str, st.SearchStrategy[tuple[Any, bytes]]]] = {
    1: ("subnet_mask", addresses.map(address)),
    3: ("router", address_lists.map(address_list)),
    6: ("name_server", address_lists.map(address_list)),
    12: ("hostname", st.binary(min_size=1, max_size=30).map(same)),
    26: ("interface-mtu", st.integers(68, 0xFFFF).map(uint(2))),
    28: ("broadcast_address", addresses.map(address)),
    50: ("requested_addr", addresses.map(address)),
    51: ("lease_time", st.integers(0, 0xFFFFFFFF).map(uint(4))),
    54: ("server_id", addresses.map(address)),
    55: ("param_req_list", st.lists(st.integers(1, 254), min_size=1, max_size=10).map(same)),
    57: ("max_dhcp_size", st.integers(576, 0xFFFF).map(uint(2))),
    58: ("renewal_time", st.integers(0, 0xFFFFFFFF).map(uint(4))),
    61: ("client_id", st.binary(min_size=2, max_size=20).map(same)),
}


@st.composite
def scapy_messages(draw: st.DrawFn) -> tuple[bytes, DhcpMessage]:
    """A random BOOTP/DHCP message built by scapy, and the message we expect to read from it."""
    fields: dict[str, Any] = {
        "op": draw(st.sampled_from([1, 2])),
        "htype": draw(st.integers(0, 255)),
        "hlen": draw(st.integers(0, 16)),
        "hops": draw(st.integers(0, 255)),
        "xid": draw(st.integers(0, 0xFFFFFFFF)),
        "secs": draw(st.integers(0, 0xFFFF)),
        "flags": draw(st.integers(0, 0xFFFF)),
        "ciaddr": draw(addresses),
        "yiaddr": draw(addresses),
        "siaddr": draw(addresses),
        "giaddr": draw(addresses),
        "chaddr": draw(st.binary(min_size=16, max_size=16)),
        "sname": draw(st.binary(max_size=64)).ljust(64, b"\x00"),
        "file": draw(st.binary(max_size=128)).ljust(128, b"\x00"),
    }
    mtype = draw(st.sampled_from(list(T)))
    scapy_opts: list[object] = [("message-type", int(mtype))]
    ours = {53: bytes((mtype,))}
    for code in draw(st.lists(st.sampled_from(sorted(SCAPY_OPTIONS)), unique=True, max_size=8)):
        name, strategy = SCAPY_OPTIONS[code]
        value, raw = draw(strategy)
        scapy_opts.append((name, *value) if code in (3, 6) else (name, value))
        ours[code] = raw
    for code in draw(st.lists(st.integers(214, 254), unique=True, max_size=3)):  # unknown to scapy
        raw = draw(st.binary(max_size=40))
        scapy_opts.append((code, raw))
        ours[code] = raw
    scapy_opts.append("end")
    packet = BOOTP(
        op=fields["op"],
        htype=fields["htype"],
        hlen=fields["hlen"],
        hops=fields["hops"],
        xid=fields["xid"],
        secs=fields["secs"],
        flags=fields["flags"],
        ciaddr=ip(fields["ciaddr"]),
        yiaddr=ip(fields["yiaddr"]),
        siaddr=ip(fields["siaddr"]),
        giaddr=ip(fields["giaddr"]),
        chaddr=fields["chaddr"],
        sname=fields["sname"],
        file=fields["file"],
    ) / DHCP(options=scapy_opts)
    return bytes(packet), DhcpMessage(options=ours, **fields)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(scapy_messages())
def test_we_read_what_scapy_writes(case: tuple[bytes, DhcpMessage]) -> None:
    raw, expected = case
    msg = parse(raw)
    assert astuple(msg)[:15] == astuple(expected)[:15]
    assert msg.end and msg.padding == b""
    assert build(msg, min_size=0, max_size=len(raw)) == raw


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(scapy_messages())
def test_scapy_reads_what_we_write(case: tuple[bytes, DhcpMessage]) -> None:
    _, msg = case
    raw = build(msg, max_size=1500)
    packet = BOOTP(raw)
    assert (packet.op, packet.htype, packet.hlen, packet.hops, packet.xid, packet.secs) == (
        msg.op,
        msg.htype,
        msg.hlen,
        msg.hops,
        msg.xid,
        msg.secs,
    )
    assert int(packet.flags) == msg.flags
    assert [packet.ciaddr, packet.yiaddr, packet.siaddr, packet.giaddr] == [
        ip(msg.ciaddr),
        ip(msg.yiaddr),
        ip(msg.siaddr),
        ip(msg.giaddr),
    ]
    assert (bytes(packet.chaddr), packet.sname, packet.file) == (msg.chaddr, msg.sname, msg.file)
    assert packet.options == wire.MAGIC_COOKIE
    scapy_options = [opt for opt in packet[DHCP].options if isinstance(opt, tuple)]
    assert [opt for opt in packet[DHCP].options if not isinstance(opt, tuple)][:1] == ["end"]
    by_name = {name: code for code, (name, _) in SCAPY_OPTIONS.items()} | {"message-type": 53}
    seen: dict[int, tuple[Any, ...]] = {}
    for opt in scapy_options:
        name = opt[0]
        seen[name if isinstance(name, int) else by_name[name]] = tuple(opt[1:])
    assert list(seen) == list(msg.options)
    assert seen[53] == (msg.options[53][0],)
    for code, values in seen.items():
        if code in (1, 28, 50, 54):
            assert values == (ip(msg.options[code]),)
        elif code in (3, 6):
            assert list(values) == [ip(a) for a in wire.decode_ip_list(code, msg.options[code])]
        elif code in (26, 51, 57, 58):
            assert values == (wire.decode_uint(code, msg.options[code]),)
        elif code == 55:
            assert list(values[0]) == list(msg.options[55])
        elif code != 53:
            assert values == (msg.options[code],)


# -- robustness and twin equivalence ------------------------------------------------------


def outcome(module: ModuleType, buffer_type: type, raw: bytes) -> tuple[str, object]:
    buf = buffer_type(raw)
    try:
        msg = module.pull_dhcp(buf)
    except MalformedPacket as exc:
        assert buf.tell() == 0
        return ("error", exc.field)
    out = buffer_type()
    module.push_dhcp(out, msg, min_size=0, max_size=4096)
    return ("ok", (astuple(msg), out.data))


def check_twins(raw: bytes) -> None:
    pure, compiled = twins("dhcp")
    pure_buffer, compiled_buffer = twins("buffer")
    outcomes = [
        outcome(pure, pure_buffer.Buffer, raw),
        outcome(compiled, compiled_buffer.Buffer, raw),
    ]
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        # Anything we accept, we can write again and read back to the same message.
        msg = parse(raw)
        again = parse(build(msg, min_size=0, max_size=4096))
        assert astuple(again)[:15] == astuple(msg)[:15]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    check_twins(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_options_after_a_valid_header(tail: bytes) -> None:
    check_twins(header() + tail)


@st.composite
def mutated_captures(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CAPTURED)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "overload", "insert"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(max_size=40))
        elif kind == "overload":
            # Option 52 in the options field, and again inside file and/or sname.
            value = draw(st.integers(0, 4))
            if len(data) > 240:
                data[240:240] = bytes((52, 1, value))
            if len(data) >= 236:
                data[108:111] = bytes((52, 1, draw(st.integers(0, 4))))
                data[44:47] = bytes((52, 1, draw(st.integers(0, 4))))
        elif kind == "insert" and len(data) > 240:
            at = draw(st.integers(240, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(mutated_captures())
def test_mutated_captures(raw: bytes) -> None:
    check_twins(raw)


@pytest.mark.parametrize("raw", CAPTURED)
def test_twins_agree_on_captures(raw: bytes) -> None:
    check_twins(raw)

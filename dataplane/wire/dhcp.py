# cython: annotation_typing=False
"""DHCPv4 messages: the BOOTP fixed part (RFC 2131 §2, RFC 951), the magic cookie and RFC 2132 options.

The same source is compiled by Cython into ``_dhcp`` (see ``setup.py``); this file is the
pure-Python twin and the reference for behaviour.

Options are kept as the aggregate RFC 3396 describes: one ``code -> bytes`` entry per code, in
order of first appearance, every instance of a code concatenated, gathered from the options field,
then ``file``, then ``sname`` when option 52 overloads them. Pad (0), end (255) and option 52 itself
are framing, not content, so they never appear in :attr:`DhcpMessage.options`.

Round trips: :func:`push_dhcp` of a parsed message reproduces the input byte for byte when the input
is laid out the common way (what dnsmasq, udhcpc, dhclient and Kea send): options in order, each code
once or split into consecutive 255-byte instances, no pad bytes between options, anything after END
(kept in :attr:`DhcpMessage.padding`), no overload, and at least ``min_size`` bytes long. Other
layouts round-trip to the same message, not the same bytes.

Overload on output: when the options do not fit in ``max_size``, :func:`push_dhcp` moves the
overflow into ``file`` and then ``sname`` (whichever are empty) behind option 52, splitting options
across fields as RFC 3396 allows; when even that is too small it raises ``ValueError`` saying by how
much. Bad input to ``push_*``/``encode_*`` (a caller bug) raises ``ValueError``; bad network input to
``pull_*``/``decode_*`` raises only :class:`MalformedPacket` naming the field, e.g.
``"dhcp.option.52"``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from . import _select
from .errors import MalformedPacket

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from .buffer import Buffer
    from .dns import _label, read_dns_name
else:
    from ._buffer import Buffer
    from ._dns import _label, read_dns_name

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "BROADCAST_FLAG",
    "CLIENT_PORT",
    "DEFAULT_MAX_SIZE",
    "DHCP_HEADER_LENGTH",
    "FQDN_E",
    "FQDN_N",
    "FQDN_O",
    "FQDN_S",
    "MAGIC_COOKIE",
    "MIN_BOOTP_SIZE",
    "SERVER_PORT",
    "ClasslessRoute",
    "ClientFqdn",
    "DhcpMessage",
    "DhcpMessageType",
    "DhcpOption",
    "client_id_key",
    "decode_classless_routes",
    "decode_client_fqdn",
    "decode_client_id",
    "decode_domain_search",
    "decode_ip",
    "decode_ip_list",
    "decode_message_type",
    "decode_option",
    "decode_parameter_list",
    "decode_relay_agent_info",
    "decode_text",
    "decode_uint",
    "encode_classless_routes",
    "encode_client_fqdn",
    "encode_client_id",
    "encode_domain_search",
    "encode_ip",
    "encode_ip_list",
    "encode_message_type",
    "encode_option",
    "encode_options",
    "encode_parameter_list",
    "encode_relay_agent_info",
    "encode_text",
    "encode_uint",
    "parse_options",
    "pull_dhcp",
    "push_dhcp",
]

SERVER_PORT = 67
CLIENT_PORT = 68

BOOTREQUEST = 1
BOOTREPLY = 2

# RFC 2131 §2: the leftmost bit of 'flags' is BROADCAST; the other 15 MUST be zero (kept as sent).
BROADCAST_FLAG = 0x8000

# RFC 2131 §3: the first four octets of 'options' are 99.130.83.99.
MAGIC_COOKIE = bytes((99, 130, 83, 99))

# RFC 1542 §2.1: relay agents and some clients drop BOOTP messages shorter than 300 bytes.
MIN_BOOTP_SIZE = 300
# RFC 2131 §2: every client must accept 576-byte messages; more only when option 57 says so.
DEFAULT_MAX_SIZE = 576


class DhcpMessageType(IntEnum):
    """Option 53 values (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class DhcpOption(IntEnum):
    """Option codes this module gives typed helpers for (RFC 2132 unless noted)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    HOST_NAME = 12
    DOMAIN_NAME = 15
    INTERFACE_MTU = 26
    BROADCAST_ADDRESS = 28
    REQUESTED_ADDRESS = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_ID = 61
    CLIENT_FQDN = 81  # RFC 4702
    RELAY_AGENT_INFO = 82  # RFC 3046
    DOMAIN_SEARCH = 119  # RFC 3397
    CLASSLESS_ROUTES = 121  # RFC 3442
    END = 255


# DHCP message, RFC 2131 §2 figure 1 (the BOOTP layout of RFC 951), then the RFC 2131 §3 cookie
# field    format  default
# op       B       1 (BOOTREQUEST)   2 = BOOTREPLY
# htype    B       1                 ARP hardware type (1 = Ethernet)
# hlen     B       6                 hardware address length, <= 16 (the size of chaddr)
# hops     B       0                 incremented by relay agents
# xid      I       0                 transaction id chosen by the client
# secs     H       0                 seconds since the client began acquisition
# flags    H       0                 bit 15 = BROADCAST
# ciaddr   4s      0.0.0.0           client address (BOUND, RENEW, REBINDING only)
# yiaddr   4s      0.0.0.0           "your" address, assigned by the server
# siaddr   4s      0.0.0.0           next server (TFTP)
# giaddr   4s      0.0.0.0           relay agent address
# chaddr   16s     zeros             client hardware address, first hlen bytes significant
# sname    64s     zeros             server host name, or options when overloaded (option 52 & 2)
# file     128s    zeros             boot file name, or options when overloaded (option 52 & 1)
# cookie   4s      99.130.83.99      magic cookie, then the options field
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
DHCP_HEADER_LENGTH = HEADER.size  # 236
OPTIONS_OFFSET = DHCP_HEADER_LENGTH + 4  # 240
ZERO_ADDRESS = bytes(4)

# RFC 2132 §9.3: option 52 says which fixed fields carry options; 3 = both.
OVERLOAD_FILE = 1
OVERLOAD_SNAME = 2


@dataclass(slots=True)
class DhcpMessage:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: bytes = ZERO_ADDRESS
    yiaddr: bytes = ZERO_ADDRESS
    siaddr: bytes = ZERO_ADDRESS
    giaddr: bytes = ZERO_ADDRESS
    chaddr: bytes = bytes(16)  # shorter values are zero-filled on output
    sname: bytes = bytes(64)  # all zeros after parsing when option 52 used it for options
    file: bytes = bytes(128)  # likewise
    options: dict[int, bytes] = field(default_factory=dict)
    # The options field ended with END (RFC 2132 §3.2; a few BOOTP stacks omit it).
    end: bool = True
    # Bytes after END (or trailing pads when END was missing), echoed so captures round-trip exactly.
    padding: bytes = b""

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    @broadcast.setter
    def broadcast(self, value: bool) -> None:
        self.flags = (self.flags | BROADCAST_FLAG) if value else (self.flags & ~BROADCAST_FLAG & 0xFFFF)

    @property
    def hardware_address(self) -> bytes:
        """The significant part of ``chaddr``: its first ``hlen`` bytes (the MAC for Ethernet)."""
        return self.chaddr[: self.hlen]

    @property
    def message_type(self) -> DhcpMessageType | None:
        """Option 53, or None for plain BOOTP; a malformed option 53 raises MalformedPacket."""
        raw = self.options.get(53)
        return None if raw is None else decode_message_type(raw)


def client_id_key(msg: DhcpMessage) -> tuple[str, bytes]:
    """The lease key (RFC 2131 §4.2): option 61 when sent, else hardware type and address.

    The two kinds are tagged apart: RFC 4361 DUID client identifiers share no namespace with MACs,
    so a client-id that happens to equal ``htype || chaddr`` must not alias another client's lease.
    """
    client_id = msg.options.get(61)
    if client_id is not None:
        return ("client-id", client_id)
    return ("hardware", bytes((msg.htype,)) + msg.hardware_address)


# -- parsing --------------------------------------------------------------------------------


def _scan(data: bytes, area: str, nested: bool, items: list[tuple[int, bytes]]) -> tuple[int, int]:
    """Append the options of one area to ``items``; return (END offset or -1, end of last option).

    ``nested`` is True inside ``file``/``sname``: option 52 there would make the overload recursive
    (RFC 2131 §4.1 allows it only in the options field), so it is refused instead of followed.
    """
    n = len(data)
    i = 0
    last = 0
    while i < n:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return i, last
        if i + 1 >= n:
            raise MalformedPacket(f"dhcp.option.{code}", f"length octet missing at the end of {area}")
        length = data[i + 1]
        if i + 2 + length > n:
            raise MalformedPacket(
                f"dhcp.option.{code}", f"length {length} overruns {area} ({n - i - 2} bytes left)"
            )
        if code == 52 and nested:
            raise MalformedPacket("dhcp.option.52", f"overload inside the overloaded {area} field")
        items.append((code, data[i + 2 : i + 2 + length]))
        i += 2 + length
        last = i
    return -1, last


def _aggregate(items: list[tuple[int, bytes]]) -> dict[int, bytes]:
    # RFC 3396: every instance of a code is one option split up; concatenate in buffer order.
    options: dict[int, bytes] = {}
    for code, value in items:
        previous = options.get(code)
        options[code] = value if previous is None else previous + value
    return options


def parse_options(data: bytes, area: str = "options") -> dict[int, bytes]:
    """Options in one TLV area (pad and end handled, RFC 3396 instances concatenated)."""
    items: list[tuple[int, bytes]] = []
    _scan(bytes(data), area, False, items)
    return _aggregate(items)


def pull_dhcp(buf: Buffer) -> DhcpMessage:
    """Parse one DHCP message taking the rest of ``buf``; on error the position is left unchanged."""
    start = buf.tell()
    try:
        return _pull_dhcp(buf)
    except MalformedPacket:
        buf.seek(start)
        raise


def _pull_dhcp(buf: Buffer) -> DhcpMessage:
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file) = (
        buf.pull_struct(HEADER, "dhcp.header")
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket("dhcp.op", f"{op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)")
    if hlen > 16:
        raise MalformedPacket("dhcp.hlen", f"{hlen} exceeds the 16-byte chaddr field")
    cookie = buf.pull_bytes(4, "dhcp.cookie")
    if cookie != MAGIC_COOKIE:
        raise MalformedPacket("dhcp.cookie", f"{cookie.hex()} is not the DHCP magic cookie 63825363")
    data = buf.pull_bytes(buf.remaining(), "dhcp.options")

    items: list[tuple[int, bytes]] = []
    end_at, last = _scan(data, "options", False, items)
    end = end_at >= 0
    padding = data[end_at + 1 :] if end else data[last:]

    overload = 0
    overload_raw: bytes | None = None
    others: list[tuple[int, bytes]] = []
    for code, value in items:
        if code == 52:
            # Concatenated like any option (RFC 3396), so a repeated 52 fails the 1-byte check.
            overload_raw = value if overload_raw is None else overload_raw + value
        else:
            others.append((code, value))
    if overload_raw is not None:
        overload = decode_uint(52, overload_raw)
    # RFC 3396: the aggregate buffer is the options field, then file, then sname.
    if overload & OVERLOAD_FILE:
        _scan(file, "file", True, others)
        file = bytes(128)
    if overload & OVERLOAD_SNAME:
        _scan(sname, "sname", True, others)
        sname = bytes(64)
    return DhcpMessage(
        op=op,
        htype=htype,
        hlen=hlen,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        giaddr=giaddr,
        chaddr=chaddr,
        sname=sname,
        file=file,
        options=_aggregate(others),
        end=end,
        padding=padding,
    )


# -- building -------------------------------------------------------------------------------


def _fixed(value: bytes, size: int, name: str) -> bytes:
    if len(value) > size:
        raise ValueError(f"dhcp {name} is {len(value)} bytes, the field holds {size}")
    return bytes(value) + bytes(size - len(value))


def _check_option_code(code: int) -> None:
    if not 0 < code < 255:
        raise ValueError(f"option code {code} is framing (pad/end) or out of range, not content")
    if code == 52:
        raise ValueError("option 52 (overload) is chosen by push_dhcp from the message size")


def encode_options(options: Mapping[int, bytes], *, max_chunk: int = 255) -> bytes:
    """The TLV encoding of ``options`` without END; values longer than ``max_chunk`` are split
    into consecutive instances (RFC 3396)."""
    if not 1 <= max_chunk <= 255:
        raise ValueError(f"max_chunk {max_chunk} outside 1..255")
    out = bytearray()
    for code, value in options.items():
        if not 0 < code < 255:
            raise ValueError(f"option code {code} is framing (pad/end) or out of range, not content")
        if not value:
            out += bytes((code, 0))
            continue
        for pos in range(0, len(value), max_chunk):
            chunk = value[pos : pos + max_chunk]
            out += bytes((code, len(chunk)))
            out += chunk
    return bytes(out)


def _overloaded(msg: DhcpMessage, room: int) -> tuple[bytes, bytes, bytes]:
    """Options field, file and sname with the options spread over them behind option 52.

    Areas are filled in RFC 3396 buffer order, an option split where an area runs out, so the
    receiver's concatenation restores it; ``file``/``sname`` are used only when they are empty.
    """
    capacities = [room - 3 - 1]  # option 52 (3 bytes) first, END last
    names = ["options"]
    if not any(msg.file):
        capacities.append(128 - 1)
        names.append("file")
    if not any(msg.sname):
        capacities.append(64 - 1)
        names.append("sname")
    areas = [bytearray() for _ in capacities]
    a = 0
    for code, value in msg.options.items():
        pos = 0
        while True:
            free = capacities[a] - len(areas[a])
            remaining = len(value) - pos
            if free < 2 or (remaining > 0 and free < 3):
                a += 1
                if a == len(areas):
                    needed = len(encode_options(msg.options)) + 1
                    usable = sum(capacities) + 1
                    raise ValueError(
                        f"dhcp options need about {needed} bytes; max_size allows {room} in the "
                        f"options field and {usable} with the empty file/sname overloaded"
                    )
                continue
            take = min(remaining, free - 2, 255)
            areas[a] += bytes((code, take))
            areas[a] += value[pos : pos + take]
            pos += take
            if pos >= len(value):
                break
    overload = 0
    file = msg.file
    sname = msg.sname
    for name, area in zip(names[1:], areas[1:], strict=True):
        if not area:
            continue
        if name == "file":
            overload |= OVERLOAD_FILE
            file = _fixed(bytes(area) + b"\xff", 128, "file")
        else:
            overload |= OVERLOAD_SNAME
            sname = _fixed(bytes(area) + b"\xff", 64, "sname")
    options_field = bytes((52, 1, overload)) + bytes(areas[0]) + b"\xff"
    return options_field, file, sname


def push_dhcp(
    buf: Buffer, msg: DhcpMessage, *, min_size: int = MIN_BOOTP_SIZE, max_size: int = DEFAULT_MAX_SIZE
) -> None:
    """Write ``msg``, zero-padded to ``min_size`` bytes, at most ``max_size`` bytes long.

    ``max_size`` is the client's limit: 576 (RFC 2131 §2) or what its option 57 allows. Options that
    do not fit overflow into ``file`` and ``sname`` behind option 52; ``ValueError`` if even that
    is not enough (see the module docstring). ``msg.padding`` is dropped when it alone does not fit.
    """
    if max_size < OPTIONS_OFFSET + 1:
        raise ValueError(f"max_size {max_size} cannot hold the 240-byte header and cookie plus END")
    if msg.hlen > 16:
        raise ValueError(f"hlen {msg.hlen} exceeds the 16-byte chaddr field")
    for code in msg.options:
        _check_option_code(code)
    chaddr = _fixed(msg.chaddr, 16, "chaddr")
    sname = _fixed(msg.sname, 64, "sname")
    file = _fixed(msg.file, 128, "file")
    body = encode_options(msg.options)
    room = max_size - OPTIONS_OFFSET
    needed = len(body) + (1 if msg.end else 0)
    if needed <= room:
        options_field = body + (b"\xff" if msg.end else b"") + msg.padding[: room - needed]
    else:
        options_field, file, sname = _overloaded(msg, room)
    buf.push_struct(
        HEADER,
        msg.op,
        msg.htype,
        msg.hlen,
        msg.hops,
        msg.xid,
        msg.secs,
        msg.flags,
        _address(msg.ciaddr, "ciaddr"),
        _address(msg.yiaddr, "yiaddr"),
        _address(msg.siaddr, "siaddr"),
        _address(msg.giaddr, "giaddr"),
        chaddr,
        sname,
        file,
    )
    buf.push_bytes(MAGIC_COOKIE)
    buf.push_bytes(options_field)
    short = min(min_size, max_size) - OPTIONS_OFFSET - len(options_field)
    if short > 0:
        buf.push_bytes(bytes(short))


def _address(value: bytes, name: str) -> bytes:
    if len(value) != 4:
        raise ValueError(f"dhcp {name} must be 4 bytes, got {len(value)}")
    return bytes(value)


# -- typed options --------------------------------------------------------------------------


def _bad(code: int, reason: str) -> MalformedPacket:
    return MalformedPacket(f"dhcp.option.{code}", reason)


# code: (width in bytes, minimum, maximum) for the unsigned integer options.
UINT_OPTIONS: dict[int, tuple[int, int, int]] = {
    26: (2, 68, 0xFFFF),  # RFC 2132 §5.1: the MTU minimum is 68
    51: (4, 0, 0xFFFFFFFF),  # 0xFFFFFFFF = infinite lease
    52: (1, 1, 3),  # RFC 2132 §9.3: 1 file, 2 sname, 3 both
    57: (2, 576, 0xFFFF),  # RFC 2132 §9.10: the minimum legal value is 576
    58: (4, 0, 0xFFFFFFFF),
    59: (4, 0, 0xFFFFFFFF),
}
IP_OPTIONS = frozenset((1, 28, 50, 54))
IP_LIST_OPTIONS = frozenset((3, 6))
TEXT_OPTIONS = frozenset((12, 15, 56))


def decode_ip(code: int, raw: bytes) -> bytes:
    if len(raw) != 4:
        raise _bad(code, f"an address is 4 bytes, got {len(raw)}")
    return bytes(raw)


def encode_ip(code: int, value: bytes) -> bytes:
    if len(value) != 4:
        raise ValueError(f"option {code}: an address is 4 bytes, got {len(value)}")
    return bytes(value)


def decode_ip_list(code: int, raw: bytes) -> list[bytes]:
    if not raw or len(raw) % 4:
        raise _bad(code, f"an address list is a non-zero multiple of 4 bytes, got {len(raw)}")
    return [bytes(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def encode_ip_list(code: int, values: Iterable[bytes]) -> bytes:
    out = b"".join(encode_ip(code, value) for value in values)
    if not out:
        raise ValueError(f"option {code}: an address list needs at least one address")
    return out


def decode_uint(code: int, raw: bytes) -> int:
    width, low, high = UINT_OPTIONS[code]
    if len(raw) != width:
        raise _bad(code, f"expected {width} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if not low <= value <= high:
        raise _bad(code, f"{value} outside {low}..{high}")
    return value


def encode_uint(code: int, value: int) -> bytes:
    width, low, high = UINT_OPTIONS[code]
    if not low <= value <= high:
        raise ValueError(f"option {code}: {value} outside {low}..{high}")
    return value.to_bytes(width, "big")


def decode_text(code: int, raw: bytes) -> str:
    """NVT ASCII text (12 host name, 15 domain name, 56 message); trailing NULs dropped (RFC 2132 §2)."""
    text = bytes(raw).rstrip(b"\x00")
    if not text:
        raise _bad(code, "text options are at least 1 byte, not counting trailing NULs")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(code, "not ASCII text") from None


def encode_text(code: int, value: str) -> bytes:
    raw = value.encode("ascii")
    if not raw:
        raise ValueError(f"option {code}: text options are at least 1 byte")
    return raw


def decode_message_type(raw: bytes) -> DhcpMessageType:
    if len(raw) != 1:
        raise _bad(53, f"expected 1 byte, got {len(raw)}")
    if not 1 <= raw[0] <= 8:
        raise _bad(53, f"unknown message type {raw[0]}")
    return DhcpMessageType(raw[0])


def encode_message_type(value: DhcpMessageType | int) -> bytes:
    return bytes((DhcpMessageType(value).value,))


def decode_parameter_list(raw: bytes) -> list[int]:
    if not raw:
        raise _bad(55, "the parameter request list is at least 1 byte")
    return list(raw)


def encode_parameter_list(codes: Iterable[int]) -> bytes:
    out = bytes(codes)
    if not out:
        raise ValueError("option 55: the parameter request list needs at least one code")
    return out


def decode_client_id(raw: bytes) -> tuple[int, bytes]:
    """(type, identifier): type 1 + MAC, or 255 + IAID + DUID (RFC 4361), or anything else."""
    if len(raw) < 2:
        raise _bad(61, f"a client identifier is at least 2 bytes, got {len(raw)}")
    return raw[0], bytes(raw[1:])


def encode_client_id(kind: int, identifier: bytes) -> bytes:
    if not identifier:
        raise ValueError("option 61: the client identifier needs at least one byte after its type")
    return bytes((kind,)) + bytes(identifier)


# -- option 81, client FQDN (RFC 4702) -----------------------------------------------------

FQDN_S = 0x01  # server should update the A RR
FQDN_O = 0x02  # server overrode the client's S bit
FQDN_E = 0x04  # name is in canonical DNS wire format, not (deprecated) ASCII
FQDN_N = 0x08  # server should not update DNS


@dataclass(slots=True, frozen=True)
class ClientFqdn:
    """Option 81. ``name`` ends with ``.`` when fully qualified (the wire form ends in the root
    label); without the dot it is a partial name the server may complete (RFC 4702 §2.3.1)."""

    flags: int = FQDN_E
    rcode1: int = 0  # RFC 4702 §2.2: deprecated, 0 from clients and 255 from servers
    rcode2: int = 0
    name: str = ""

    @property
    def encoded(self) -> bool:
        return bool(self.flags & FQDN_E)


def _labels_of(name: str, code: int) -> list[bytes]:
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped:
        return []
    labels = [label.encode("ascii") for label in stripped.split(".")]
    for label in labels:
        if not 1 <= len(label) <= 63:
            raise ValueError(f"option {code}: label {label!r} in {name!r} is not 1..63 bytes")
    return labels


def decode_client_fqdn(raw: bytes) -> ClientFqdn:
    field_name = "dhcp.option.81"
    if len(raw) < 3:
        raise _bad(81, f"client FQDN is at least 3 bytes, got {len(raw)}")
    flags, rcode1, rcode2 = raw[0], raw[1], raw[2]
    data = bytes(raw[3:])
    if not flags & FQDN_E:
        try:
            return ClientFqdn(flags, rcode1, rcode2, data.decode("ascii"))
        except UnicodeDecodeError:
            raise _bad(81, "ASCII-encoded name is not ASCII") from None
    # RFC 4702 §2.3.1: canonical wire format, no compression; may stop before the root label.
    labels: list[str] = []
    i = 0
    n = len(data)
    qualified = False
    while i < n:
        length = data[i]
        if length == 0:
            if i + 1 != n:
                raise _bad(81, "data after the root label")
            qualified = True
            break
        if length > 63:
            raise _bad(81, f"label length {length} (compression is not allowed here)")
        if i + 1 + length > n:
            raise _bad(81, f"label length {length} overruns the option")
        labels.append(_label(data[i + 1 : i + 1 + length], field_name))
        i += 1 + length
    name = ".".join(labels) + ("." if qualified else "")
    return ClientFqdn(flags, rcode1, rcode2, name)


def encode_client_fqdn(fqdn: ClientFqdn) -> bytes:
    head = bytes((fqdn.flags, fqdn.rcode1, fqdn.rcode2))
    if not fqdn.flags & FQDN_E:
        return head + fqdn.name.encode("ascii")
    out = bytearray(head)
    for label in _labels_of(fqdn.name, 81):
        out.append(len(label))
        out += label
    if fqdn.name.endswith("."):
        out.append(0)
    return bytes(out)


# -- option 82, relay agent information (RFC 3046) -----------------------------------------


def decode_relay_agent_info(raw: bytes) -> list[tuple[int, bytes]]:
    """Sub-options in order. Servers echo option 82 unchanged (RFC 3046 §2.2), so keep the raw
    option bytes for the reply; this view is for reading circuit-id (1) and remote-id (2)."""
    if len(raw) < 2:
        raise _bad(82, f"relay agent information is at least 2 bytes, got {len(raw)}")
    subs: list[tuple[int, bytes]] = []
    i = 0
    n = len(raw)
    while i < n:
        if i + 2 > n:
            raise _bad(82, "sub-option length missing")
        code = raw[i]
        length = raw[i + 1]
        if i + 2 + length > n:
            raise _bad(82, f"sub-option {code} length {length} overruns the option")
        subs.append((code, bytes(raw[i + 2 : i + 2 + length])))
        i += 2 + length
    return subs


def encode_relay_agent_info(subs: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in subs:
        if len(value) > 255:
            raise ValueError(f"option 82: sub-option {code} is {len(value)} bytes, at most 255")
        out += bytes((code, len(value)))
        out += value
    if not out:
        raise ValueError("option 82: needs at least one sub-option")
    return bytes(out)


# -- option 119, domain search (RFC 3397) --------------------------------------------------


def decode_domain_search(raw: bytes) -> list[str]:
    """Search domains, without trailing dots (all of them are fully qualified)."""
    if not raw:
        raise _bad(119, "the domain search list is at least 1 byte")
    data = bytes(raw)
    names: list[str] = []
    i = 0
    while i < len(data):
        name, i = read_dns_name(data, i, "dhcp.option.119", "option")
        names.append(name)
    return names


def encode_domain_search(names: Iterable[str], *, compress: bool = True) -> bytes:
    """Wire-format names; with ``compress`` each repeated suffix becomes a pointer (RFC 1035 §4.1.4),
    which reproduces the RFC 3397 §2 example and dnsmasq's encoding."""
    out = bytearray()
    seen: dict[tuple[bytes, ...], int] = {}
    for name in names:
        labels = _labels_of(name, 119)
        for i in range(len(labels)):
            suffix = tuple(labels[i:])
            offset = seen.get(suffix)
            if compress and offset is not None:
                out += bytes((0xC0 | offset >> 8, offset & 0xFF))
                break
            if len(out) < 0x4000:  # a pointer has 14 bits of offset
                seen[suffix] = len(out)
            out.append(len(labels[i]))
            out += labels[i]
        else:
            out.append(0)
    if not out:
        raise ValueError("option 119: needs at least one name")
    return bytes(out)


# -- option 121, classless static routes (RFC 3442) ----------------------------------------


@dataclass(slots=True, frozen=True)
class ClasslessRoute:
    """One RFC 3442 route: ``destination`` is 4 bytes (zero past the significant octets)."""

    destination: bytes
    prefix_len: int
    router: bytes


def decode_classless_routes(raw: bytes) -> list[ClasslessRoute]:
    if len(raw) < 5:
        raise _bad(121, f"classless static routes are at least 5 bytes, got {len(raw)}")
    routes: list[ClasslessRoute] = []
    i = 0
    n = len(raw)
    while i < n:
        width = raw[i]
        if width > 32:
            raise _bad(121, f"prefix length {width} exceeds 32")
        # RFC 3442 §2: the destination descriptor carries only ceil(width / 8) significant octets.
        significant = (width + 7) // 8
        if i + 1 + significant + 4 > n:
            raise _bad(121, f"route /{width} overruns the option")
        destination = bytes(raw[i + 1 : i + 1 + significant]) + bytes(4 - significant)
        router = bytes(raw[i + 1 + significant : i + 5 + significant])
        routes.append(ClasslessRoute(destination, width, router))
        i += 5 + significant
    return routes


def encode_classless_routes(routes: Iterable[ClasslessRoute]) -> bytes:
    out = bytearray()
    for route in routes:
        if not 0 <= route.prefix_len <= 32:
            raise ValueError(f"option 121: prefix length {route.prefix_len} outside 0..32")
        if len(route.destination) != 4 or len(route.router) != 4:
            raise ValueError("option 121: destination and router are 4 bytes each")
        significant = (route.prefix_len + 7) // 8
        out.append(route.prefix_len)
        out += route.destination[:significant]
        out += route.router
    if not out:
        raise ValueError("option 121: needs at least one route")
    return bytes(out)


# -- by code ----------------------------------------------------------------------------------


def decode_option(code: int, raw: bytes) -> object:
    """The typed value of option ``code``; unknown codes come back as their bytes."""
    if code in IP_OPTIONS:
        return decode_ip(code, raw)
    if code in IP_LIST_OPTIONS:
        return decode_ip_list(code, raw)
    if code in UINT_OPTIONS:
        return decode_uint(code, raw)
    if code in TEXT_OPTIONS:
        return decode_text(code, raw)
    if code == 53:
        return decode_message_type(raw)
    if code == 55:
        return decode_parameter_list(raw)
    if code == 61:
        return decode_client_id(raw)
    if code == 81:
        return decode_client_fqdn(raw)
    if code == 82:
        return decode_relay_agent_info(raw)
    if code == 119:
        return decode_domain_search(raw)
    if code == 121:
        return decode_classless_routes(raw)
    return bytes(raw)


def encode_option(code: int, value: object) -> bytes:
    """Inverse of :func:`decode_option`: ``encode_option(c, decode_option(c, raw)) == raw`` for
    well-formed options (text options modulo trailing NULs)."""
    if code in IP_OPTIONS and isinstance(value, bytes | bytearray):
        return encode_ip(code, bytes(value))
    if code in IP_LIST_OPTIONS and isinstance(value, list | tuple):
        return encode_ip_list(code, value)
    if code in UINT_OPTIONS and isinstance(value, int):
        return encode_uint(code, value)
    if code in TEXT_OPTIONS and isinstance(value, str):
        return encode_text(code, value)
    if code == 53 and isinstance(value, int):
        return encode_message_type(value)
    if code == 55 and isinstance(value, list | tuple):
        return encode_parameter_list(value)
    if code == 61 and isinstance(value, tuple) and len(value) == 2:
        return encode_client_id(value[0], value[1])
    if code == 81 and isinstance(value, ClientFqdn):
        return encode_client_fqdn(value)
    if code == 82 and isinstance(value, list | tuple):
        return encode_relay_agent_info(value)
    if code == 119 and isinstance(value, list | tuple):
        return encode_domain_search(value)
    if code == 121 and isinstance(value, list | tuple):
        return encode_classless_routes(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise ValueError(f"option {code}: cannot encode {type(value).__name__} {value!r}")

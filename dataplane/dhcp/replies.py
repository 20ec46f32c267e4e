# cython: annotation_typing=False
"""Reply building: OFFER, ACK and NAK messages with their options, addressed and sized to fit.

The same source is compiled by Cython into ``_replies`` (see ``setup.py``), which the compiled
server uses; this file is the pure-Python twin.

Theory of operation
-------------------
The configuration options (RFC 2132) are encoded once, when the server starts
(:meth:`ReplyBuilder.__init__`); a reply copies those the client asked for in its parameter request
list (55), or :data:`~.options.DEFAULT_PARAMETERS` without one, after the message type (53) and
server identifier (54), and (OFFER, ACK to a REQUEST) the lease times 51/58/59. Option 121 (RFC 3442)
goes only to a client that asks for it, and then replaces option 3, which such a client ignores
(RFC 3442 §2). Options 61 (RFC 6842) and 82 (RFC 3046 §2.2) are echoed unchanged, 82 last.

Reply addressing follows RFC 2131 §4.1 (spec 4.3): giaddr set -> the relay, port 67 (broadcast bit
set on a NAK); else a NAK -> 255.255.255.255:68 (RFC 2131 §4.1: "in all cases, when giaddr is zero,
the server broadcasts any DHCPNAK"); else ciaddr set -> ciaddr:68; else broadcast flag -> broadcast;
else unicast to yiaddr with the destination MAC = chaddr.

A reply that does not fit the client's maximum message size (57, at least 576 bytes, at most an
Ethernet frame's worth), even overloaded into ``sname``/``file``, loses its largest optional option
until it fits (counted as ``options_trimmed``); the options of :data:`~.options.MANDATORY` stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.wire import _select

from .events import Reply
from .options import (
    ACK,
    BROADCAST_ADDRESS,
    CLASSLESS_ROUTES,
    CLIENT_ID,
    DEFAULT_PARAMETERS,
    DNS_SERVERS,
    DOMAIN_NAME,
    DOMAIN_SEARCH,
    HOST_NAME,
    INTERFACE_MTU,
    LEASE_TIME,
    MANDATORY,
    MAX_MESSAGE_SIZE,
    MESSAGE_TYPE,
    NAK,
    OFFER,
    PARAMETER_REQUEST_LIST,
    REBINDING_TIME,
    RELAY_AGENT_INFO,
    RENEWAL_TIME,
    ROUTER,
    SERVER_ID,
    SUBNET_MASK,
)

COMPILED = _select.is_compiled(__name__)  # this source also builds the compiled twin
if TYPE_CHECKING or not COMPILED:
    from dataplane.wire.buffer import Buffer
    from dataplane.wire.dhcp import (
        ClasslessRoute,
        DhcpMessage,
        encode_classless_routes,
        encode_domain_search,
        encode_ip_list,
        encode_uint,
        push_dhcp,
    )

    from .pool import int_to_ip, ip_to_int
else:
    from dataplane.wire._buffer import Buffer
    from dataplane.wire._dhcp import (
        ClasslessRoute,
        DhcpMessage,
        encode_classless_routes,
        encode_domain_search,
        encode_ip_list,
        encode_uint,
        push_dhcp,
    )

    from ._pool import int_to_ip, ip_to_int

if TYPE_CHECKING:
    from .server import Reservation, ServerConfig

__all__ = ["INFINITE_LEASE", "ReplyBuilder"]

BOOTREPLY = 2
SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST_FLAG = 0x8000
BROADCAST_IP = "255.255.255.255"
BROADCAST_MAC = b"\xff" * 6
ZERO = bytes(4)
INFINITE_LEASE = 0xFFFFFFFF  # RFC 2132 §9.2
MIN_REPLY = 576  # RFC 2131 §2: every client takes a message of 576 bytes
MAX_REPLY = 1472  # an Ethernet frame's worth of DHCP message (1500 - IP - UDP), whatever 57 says


def _cidr(text: str) -> tuple[bytes, int]:
    address, _, prefix = text.partition("/")
    width = int(prefix) if prefix else 32
    if not 0 <= width <= 32:
        raise ValueError(f"route {text!r}: prefix length outside 0..32")
    value = ip_to_int(address)
    mask = (0xFFFFFFFF << (32 - width)) & 0xFFFFFFFF
    return (value & mask).to_bytes(4, "big"), width


def _ip(text: str) -> bytes:
    return ip_to_int(text).to_bytes(4, "big")


def static_options(config: ServerConfig, mask: int, broadcast_int: int) -> dict[int, bytes]:
    """The configuration options (RFC 2132), encoded once; ``ValueError`` for a bad route."""
    options: dict[int, bytes] = {SUBNET_MASK: mask.to_bytes(4, "big")}
    if config.router:
        options[ROUTER] = _ip(config.router)
    if config.dns_servers:
        options[DNS_SERVERS] = encode_ip_list(DNS_SERVERS, [_ip(a) for a in config.dns_servers])
    if config.domain:
        options[DOMAIN_NAME] = config.domain.encode("ascii")
    if config.mtu is not None:
        options[INTERFACE_MTU] = encode_uint(INTERFACE_MTU, int(config.mtu))
    broadcast = config.broadcast or int_to_ip(broadcast_int)
    options[BROADCAST_ADDRESS] = _ip(broadcast)
    if config.search_domains:
        options[DOMAIN_SEARCH] = encode_domain_search(config.search_domains)
    if config.classless_routes:
        routes = []
        has_default = False
        for destination, router in config.classless_routes:
            prefix, width = _cidr(destination)
            has_default = has_default or width == 0
            routes.append(ClasslessRoute(prefix, width, _ip(router)))
        if not has_default and config.router:
            routes.append(ClasslessRoute(ZERO, 0, _ip(config.router)))
            has_default = True
        # RFC 3442 §2: a client that takes 121 ignores option 3, so 121 without a default
        # route would leave it with none; then 121 is not sent at all.
        if has_default:
            options[CLASSLESS_ROUTES] = encode_classless_routes(routes)
    return options


class ReplyBuilder:
    """Builds the server's replies (see the module docstring).

    ``reserved`` is the lease table's reservations by MAC, read (never changed) for a reserved
    host name (option 12); ``counters`` the server's, where sent replies and trims are counted.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        mask: int,
        broadcast_int: int,
        server_ip: bytes,
        reserved: dict[bytes, Reservation],
        counters: dict[str, int],
    ) -> None:
        self._static = static_options(config, mask, broadcast_int)
        self._server_ip = server_ip
        self._reserved = reserved
        self._counters = counters
        self._lease_time = int(config.lease_time)
        self._t1 = int(self._lease_time * config.t1_ratio)
        self._t2 = int(self._lease_time * config.t2_ratio)

    @property
    def lease_time(self) -> int:
        return self._lease_time

    def nak(self, msg: DhcpMessage) -> Reply:
        return self.reply(msg, NAK, ZERO, lease_time=False, durable=False)

    def reply(self, msg: DhcpMessage, mtype: int, yiaddr: bytes, *, lease_time: bool, durable: bool) -> Reply:
        """The reply of type ``mtype`` (OFFER, ACK, NAK) to ``msg``, giving it ``yiaddr``.

        ``lease_time``: carry 51/58/59 (OFFER, ACK to a REQUEST; not an ACK to INFORM). ``durable``:
        the reply may leave only after the store's commit (see :class:`~.events.Reply`).
        """
        request = msg.options
        options: dict[int, bytes] = {MESSAGE_TYPE: bytes((mtype,)), SERVER_ID: self._server_ip}
        if mtype == NAK:
            self._counters["nak_sent"] += 1
        else:
            if lease_time:
                options[LEASE_TIME] = encode_uint(LEASE_TIME, self._lease_time)
                if self._lease_time != INFINITE_LEASE:
                    options[RENEWAL_TIME] = encode_uint(RENEWAL_TIME, self._t1)
                    options[REBINDING_TIME] = encode_uint(REBINDING_TIME, self._t2)
            raw_prl = request.get(PARAMETER_REQUEST_LIST)
            wanted = DEFAULT_PARAMETERS if not raw_prl else frozenset(raw_prl)
            static = self._static
            classless = CLASSLESS_ROUTES in wanted and CLASSLESS_ROUTES in static
            for code, value in static.items():
                if code == SUBNET_MASK or (code in wanted and code != CLASSLESS_ROUTES):
                    if code == ROUTER and classless:
                        continue  # RFC 3442 §2: ignored by a client that gets 121
                    options[code] = value
            if classless:
                options[CLASSLESS_ROUTES] = static[CLASSLESS_ROUTES]
            if HOST_NAME in wanted and yiaddr != ZERO:
                reservation = self._reserved.get(bytes(msg.chaddr[:6])) if msg.hlen == 6 else None
                if reservation is not None and reservation.hostname:
                    options[HOST_NAME] = reservation.hostname.encode("ascii", "replace")
            self._counters["offer_sent" if mtype == OFFER else "ack_sent"] += 1
        client_id = request.get(CLIENT_ID)
        if client_id is not None:
            options[CLIENT_ID] = client_id  # RFC 6842
        relay = request.get(RELAY_AGENT_INFO)
        if relay is not None:
            options[RELAY_AGENT_INFO] = relay  # RFC 3046 §2.2: echoed unchanged, last
        flags = msg.flags
        giaddr = msg.giaddr
        # RFC 2131 §4.1 (spec 4.3)
        if giaddr != ZERO:
            dst_ip = int_to_ip(int.from_bytes(giaddr, "big"))
            dst_port = SERVER_PORT
            dst_mac: bytes | None = None
            if mtype == NAK:
                flags |= BROADCAST_FLAG
        elif mtype == NAK:
            dst_ip, dst_port, dst_mac = BROADCAST_IP, CLIENT_PORT, BROADCAST_MAC
        elif msg.ciaddr != ZERO:
            dst_ip = int_to_ip(int.from_bytes(msg.ciaddr, "big"))
            dst_port = CLIENT_PORT
            dst_mac = None
        elif flags & BROADCAST_FLAG or yiaddr == ZERO or msg.htype != 1 or msg.hlen != 6:
            dst_ip, dst_port, dst_mac = BROADCAST_IP, CLIENT_PORT, BROADCAST_MAC
        else:
            dst_ip = int_to_ip(int.from_bytes(yiaddr, "big"))
            dst_port = CLIENT_PORT
            dst_mac = bytes(msg.chaddr[:6])
        reply = DhcpMessage(
            op=BOOTREPLY,
            htype=msg.htype,
            hlen=msg.hlen,
            hops=0,
            xid=msg.xid,
            secs=0,
            flags=flags,
            # RFC 2131 table 3: ciaddr is echoed in an ACK, zero in OFFER and NAK.
            ciaddr=msg.ciaddr if mtype == ACK else ZERO,
            yiaddr=yiaddr,
            siaddr=ZERO,
            giaddr=giaddr,
            chaddr=msg.chaddr,
            options=options,
        )
        max_size = MIN_REPLY
        raw_max = request.get(MAX_MESSAGE_SIZE)
        if raw_max is not None and len(raw_max) == 2:
            max_size = max(MIN_REPLY, min(int.from_bytes(raw_max, "big"), MAX_REPLY))
        while True:
            buf = Buffer(capacity=MAX_REPLY)
            try:
                push_dhcp(buf, reply, max_size=max_size)
                break
            except ValueError:
                # Too big even overloaded into file/sname: leave out the largest optional option.
                optional = [code for code in options if code not in MANDATORY]
                if not optional:
                    raise
                del options[max(optional, key=lambda code: len(options[code]))]
                self._counters["options_trimmed"] += 1
        return Reply(buf.data, dst_ip, dst_port, dst_mac, SERVER_PORT, durable, mtype)

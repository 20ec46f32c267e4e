"""The option codes and message types the server speaks, by name, as plain integers.

Named after :class:`dataplane.wire.dhcp.DhcpOption` and :class:`~dataplane.wire.dhcp.DhcpMessageType`
(RFC 2132 unless noted) but held as ``int``: the server compares and indexes with them per packet,
and a plain integer is what the compiled twins handle fastest. Imported by both twins of the server
and of the reply builder.
"""

from __future__ import annotations

from dataplane.wire.dhcp import DhcpMessageType, DhcpOption

# Option 53 values (RFC 2132 §9.6).
DISCOVER = int(DhcpMessageType.DISCOVER)
OFFER = int(DhcpMessageType.OFFER)
REQUEST = int(DhcpMessageType.REQUEST)
DECLINE = int(DhcpMessageType.DECLINE)
ACK = int(DhcpMessageType.ACK)
NAK = int(DhcpMessageType.NAK)
RELEASE = int(DhcpMessageType.RELEASE)
INFORM = int(DhcpMessageType.INFORM)

SUBNET_MASK = int(DhcpOption.SUBNET_MASK)
ROUTER = int(DhcpOption.ROUTER)
DNS_SERVERS = int(DhcpOption.DNS_SERVERS)
HOST_NAME = int(DhcpOption.HOST_NAME)
DOMAIN_NAME = int(DhcpOption.DOMAIN_NAME)
INTERFACE_MTU = int(DhcpOption.INTERFACE_MTU)
BROADCAST_ADDRESS = int(DhcpOption.BROADCAST_ADDRESS)
REQUESTED_ADDRESS = int(DhcpOption.REQUESTED_ADDRESS)
LEASE_TIME = int(DhcpOption.LEASE_TIME)
MESSAGE_TYPE = int(DhcpOption.MESSAGE_TYPE)
SERVER_ID = int(DhcpOption.SERVER_ID)
PARAMETER_REQUEST_LIST = int(DhcpOption.PARAMETER_REQUEST_LIST)
MAX_MESSAGE_SIZE = int(DhcpOption.MAX_MESSAGE_SIZE)
RENEWAL_TIME = int(DhcpOption.RENEWAL_TIME)
REBINDING_TIME = int(DhcpOption.REBINDING_TIME)
CLIENT_ID = int(DhcpOption.CLIENT_ID)
CLIENT_FQDN = int(DhcpOption.CLIENT_FQDN)  # RFC 4702
RELAY_AGENT_INFO = int(DhcpOption.RELAY_AGENT_INFO)  # RFC 3046
DOMAIN_SEARCH = int(DhcpOption.DOMAIN_SEARCH)  # RFC 3397
CLASSLESS_ROUTES = int(DhcpOption.CLASSLESS_ROUTES)  # RFC 3442

# Configuration options sent when the client sends no parameter request list (RFC 2131 §4.3.1
# leaves the choice to the server): what dnsmasq sends, plus our MTU.
DEFAULT_PARAMETERS = frozenset(
    (SUBNET_MASK, ROUTER, DNS_SERVERS, DOMAIN_NAME, INTERFACE_MTU, BROADCAST_ADDRESS)
)
# Never left out of a reply to make it fit (spec 4.4).
MANDATORY = frozenset(
    (
        MESSAGE_TYPE,
        SERVER_ID,
        LEASE_TIME,
        RENEWAL_TIME,
        REBINDING_TIME,
        SUBNET_MASK,
        CLIENT_ID,
        RELAY_AGENT_INFO,
    )
)

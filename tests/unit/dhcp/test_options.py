"""Reply options, decoded by scapy as an independent oracle (spec 4.4)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP

from dataplane.wire.dhcp import decode_domain_search
from tests.unit.dhcp.conftest import PRL, T0, Client, ip, mac_of, make, parse


def scapy_options(payload: bytes) -> dict[str, Any]:
    bootp = BOOTP(payload)
    options: dict[str, Any] = {}
    for item in bootp[DHCP].options:
        if isinstance(item, tuple):
            options[item[0]] = item[1] if len(item) == 2 else item[1:]
    return options


def test_ack_options_decoded_by_scapy(impl: ModuleType) -> None:
    server = make(impl, mtu=1450, lease_time=7200)
    client = Client(server, mac_of(1))
    offer = client.discover(T0)
    assert offer is not None
    reply = client.send(client.message(3, options={50: offer.yiaddr, 54: ip("172.24.254.1")}), T0)[0]
    bootp = BOOTP(reply.payload)
    assert bootp.op == 2 and bootp.yiaddr == "172.24.1.1" and bootp.xid == client.xid
    options = scapy_options(reply.payload)
    assert options["message-type"] == 5
    assert options["server_id"] == "172.24.254.1"
    assert options["lease_time"] == 7200
    assert options["renewal_time"] == 3600
    assert options["rebinding_time"] == 6300
    assert options["subnet_mask"] == "255.255.0.0"
    assert options["router"] == "172.24.254.1"
    assert options["name_server"] == "172.24.254.1"
    assert options["domain"] == b"webspace"
    assert options["interface-mtu"] == 1450
    assert options["broadcast_address"] == "172.24.255.255"


def test_offer_carries_server_id_and_lease_time(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1), prl=None)  # no 55: the default set
    reply = client.send(client.message(1), T0)[0]
    options = scapy_options(reply.payload)
    assert options["message-type"] == 2 and options["server_id"] == "172.24.254.1"
    assert options["lease_time"] == 7200
    assert options["interface-mtu"] == 1450 and options["router"] == "172.24.254.1"


def test_parameter_request_list_is_respected(impl: ModuleType) -> None:
    server = make(impl, search_domains=["webspace", "example.org"])
    client = Client(server, mac_of(1), prl=bytes((1, 6)))
    offer = client.discover(T0)
    assert offer is not None
    # Mandatory ones always; of the rest, only what was asked for.
    assert set(offer.options) == {53, 54, 51, 58, 59, 1, 6}
    client = Client(server, mac_of(2), prl=bytes((1, 119)))
    offer = client.discover(T0)
    # scapy does not decode option 119; the codec's decoder is checked against RFC 3397 elsewhere.
    assert offer is not None and decode_domain_search(offer.options[119]) == ["webspace", "example.org"]


def test_mtu_is_never_below_68(impl: ModuleType) -> None:
    import pytest  # noqa: PLC0415

    with pytest.raises(ValueError, match="MTU"):
        make(impl, mtu=67)
    server = make(impl, mtu=68)
    offer = Client(server, mac_of(1)).discover(T0)
    assert offer is not None and offer.options[26] == b"\x00\x44"


def test_classless_routes_only_when_asked_and_with_the_default_route(impl: ModuleType) -> None:
    server = make(impl, classless_routes=[("10.10.0.0/16", "172.24.254.3")])
    asked = Client(server, mac_of(1), prl=PRL + bytes((121,)))
    reply = asked.send(asked.message(1), T0)[0]
    options = scapy_options(reply.payload)
    routes = options["classless_static_routes"]
    assert "10.10.0.0/16:172.24.254.3" in routes
    assert "0.0.0.0/0:172.24.254.1" in routes  # added: a 121 client ignores option 3
    assert "router" not in options  # 3 omitted when 121 is sent
    not_asked = Client(server, mac_of(2))
    reply = not_asked.send(not_asked.message(1), T0)[0]
    options = scapy_options(reply.payload)
    assert "classless_static_routes" not in options and options["router"] == "172.24.254.1"
    # No default route possible (no router, none listed): 121 is never sent.
    bare = make(impl, router=None, classless_routes=[("10.10.0.0/16", "172.24.254.3")])
    client = Client(bare, mac_of(3), prl=PRL + bytes((121,)))
    offer = client.discover(T0)
    assert offer is not None and 121 not in offer.options and 3 not in offer.options


def test_nak_carries_only_53_and_54(impl: ModuleType) -> None:
    server = make(impl)
    client = Client(server, mac_of(1))
    reply = client.send(client.message(3, options={50: ip("10.0.0.5")}), T0)[0]
    options = scapy_options(reply.payload)
    assert options == {"message-type": 6, "server_id": "172.24.254.1"}
    bootp = BOOTP(reply.payload)
    assert bootp.yiaddr == "0.0.0.0" and bootp.ciaddr == "0.0.0.0"


def test_reply_fits_the_clients_maximum_message_size(impl: ModuleType) -> None:
    many = [f"domain{i:02d}{'x' * 24}" for i in range(30)]  # ~1 kB of option 119, incompressible
    server = make(impl, search_domains=many)
    client = Client(server, mac_of(2), prl=bytes((1, 3, 6, 119)), extra={57: (1500).to_bytes(2, "big")})
    reply = client.send(client.message(1), T0)[0]
    assert 576 < len(reply.payload) <= 1472
    assert decode_domain_search(parse(reply).options[119]) == many
    # Without 57 the reply stays within 576 bytes: what does not fit is left out, never the
    # mandatory options, and the server does not fail.
    client = Client(server, mac_of(1), prl=bytes((1, 3, 6, 119)))
    reply = client.send(client.message(1), T0)[0]
    assert len(reply.payload) <= 576
    offer = parse(reply)
    assert 119 not in offer.options and {53, 54, 51, 1, 3, 6} <= set(offer.options)
    assert server.counters()["options_trimmed"] == 1

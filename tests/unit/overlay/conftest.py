"""Shared set-up of the VTEP tests: both twins, real frames, and VTEPs joined in memory.

The helpers are imported as ``tests.unit.overlay.conftest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import pytest

from dataplane.overlay import vtep as pure_vtep
from dataplane.overlay.events import Transmit
from dataplane.overlay.vtep import Vtep
from dataplane.wire import (
    BROADCAST,
    ETHERTYPE_ARP,
    EthernetHeader,
    Frame,
    IPv4Header,
    UdpHeader,
    _select,
    arp_reply,
    arp_request,
    encode_frame,
    icmp_echo_request,
)
from tests.conftest import require

VNI = 7331
A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"
STRANGER = "198.51.100.9"


def compiled_twin() -> ModuleType:
    module = _select.compiled("vtep", "dataplane.overlay")
    require(module is not None, "the compiled twin dataplane.overlay._vtep is not built")
    assert module is not None
    return module


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each VTEP test runs against the pure-Python twin and the compiled one."""
    return pure_vtep if request.param == "python" else compiled_twin()


def make(impl: ModuleType, local: str = A, vni: int = VNI, **options: Any) -> Vtep:
    return cast(Vtep, impl.Vtep(vni, local, **options))


# -- stations and their frames, built with dataplane.wire -----------------------------------------


@dataclass(frozen=True)
class Host:
    mac: bytes
    ip: bytes


def host(n: int) -> Host:
    return Host(bytes((0x02, 0x16, 0x3E, 0, 0, n)), bytes((172, 24, 0, n)))


H1, H2, H3, H4 = host(1), host(2), host(3), host(4)


def arp_request_frame(src: Host, target: Host) -> bytes:
    """Who has ``target``? Broadcast, padded to the 60-byte minimum as a NIC would."""
    ethernet = EthernetHeader(BROADCAST, src.mac, ETHERTYPE_ARP)
    return encode_frame(Frame(ethernet, arp=arp_request(src.mac, src.ip, target.ip), padding=bytes(18)))


def arp_reply_frame(src: Host, dst: Host) -> bytes:
    ethernet = EthernetHeader(dst.mac, src.mac, ETHERTYPE_ARP)
    return encode_frame(Frame(ethernet, arp=arp_reply(src.mac, src.ip, dst.mac, dst.ip), padding=bytes(18)))


def udp_frame(
    src: Host, dst: Host, payload: bytes = b"hello", *, df: bool = False, dst_mac: bytes | None = None
) -> bytes:
    return encode_frame(
        Frame(
            EthernetHeader(dst.mac if dst_mac is None else dst_mac, src.mac),
            ipv4=IPv4Header(src=src.ip, dst=dst.ip, dont_fragment=df, identification=0x1234),
            udp=UdpHeader(40000, 7, checksum=1),  # non-zero: encode_frame computes it
            payload=payload,
        )
    )


def ping_frame(src: Host, dst: Host, data: bytes = b"ping", *, df: bool = True) -> bytes:
    return encode_frame(
        Frame(
            EthernetHeader(dst.mac, src.mac),
            ipv4=IPv4Header(src=src.ip, dst=dst.ip, dont_fragment=df),
            icmp=icmp_echo_request(1, 1, data),
        )
    )


def vxlan(frame: bytes, vni: int = VNI, flags: int = 0x08) -> bytes:
    """A VXLAN payload as a peer sends it (RFC 7348 §5)."""
    return bytes((flags, 0, 0, 0, vni >> 16, vni >> 8 & 0xFF, vni & 0xFF, 0)) + frame


# -- an in-memory underlay -------------------------------------------------------------------------


@dataclass
class Underlay:
    """VTEPs joined back to back: what one sends reaches the VTEPs it names, from its address."""

    impl: ModuleType
    addresses: tuple[str, ...] = (A, B)
    options: dict[str, Any] = field(default_factory=dict)
    now: float = 0.0
    vteps: dict[str, Vtep] = field(init=False)
    inbox: dict[str, list[bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self.vteps = {a: make(self.impl, a, **self.options) for a in self.addresses}
        self.inbox = {a: [] for a in self.addresses}

    def __getitem__(self, address: str) -> Vtep:
        return self.vteps[address]

    def mesh(self) -> Underlay:
        """Every VTEP peers with every other (one static source), events drained."""
        for address, vtep in self.vteps.items():
            vtep.set_peers("static", [a for a in self.addresses if a != address])
            vtep.drain_events()
        return self

    def send(self, sender: str, frame: bytes) -> Transmit:
        tx = self.vteps[sender].send(frame, self.now)
        for destination in tx.destinations:
            if destination in self.vteps:
                inner = self.vteps[destination].receive(tx.payload, sender, self.now)
                if inner is not None:
                    self.inbox[destination].append(inner)
        return tx

    def take(self) -> dict[str, list[bytes]]:
        """What each VTEP delivered to its TAP since the last call."""
        inbox, self.inbox = self.inbox, {a: [] for a in self.addresses}
        return inbox

    def advance(self, seconds: float) -> None:
        self.now += seconds

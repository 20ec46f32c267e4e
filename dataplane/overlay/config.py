"""Configuration of the overlay agent: flags over environment over a YAML file over defaults.

Every key can be given three ways, highest precedence first:

1. a command-line flag, ``--peers-dns NAME``;
2. an environment variable, ``WEBSPACES_OVERLAY_PEERS_DNS`` (lists comma-separated), or the
   kubelan name it replaces (``KL_IP``, ``KL_VXLAN_VNI`` ... see :data:`KUBELAN_ALIASES`), so a
   kubelan deployment's environment keeps working;
3. a key of the YAML file named by ``--config`` (``peers-dns:`` or ``peers_dns:``).

Unknown YAML keys and bad values are errors naming the key and where the value came from, as
kubelan did, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from program.checks import DNS_NAME as _DNS_NAME
from program.checks import check_bool, check_host_port, check_listen
from program.checks import check_int as _int
from program.checks import check_interface as _check_interface
from program.checks import check_ipv4 as _ipv4
from program.checks import check_log_level as _check_log_level
from program.checks import check_port as _check_port
from program.checks import split_list as _list
from program.config import ConfigError, Key, Table

ENV_PREFIX = "WEBSPACES_OVERLAY_"
DEFAULT_INTERFACE = "overlay0"
DEFAULT_VNI = 7331
DEFAULT_PORT = 4789
DEFAULT_HEALTH = "127.0.0.1:8181"
# Outer UDP checksum: "on" keeps UDP GSO (one send per TSO super-frame); "zero" is RFC 7348 §5's
# SHOULD (SO_NO_CHECK), which the kernel allows only without GSO, one send per datagram: measured at
# about 0.2x kernel VXLAN TCP over veth against 0.7x with GSO, so "on" is the default.
UDP_CHECKSUMS = ("on", "zero")
DEFAULT_UDP_CHECKSUM = "on"
# Send sockets bound to ports spread over 49152-65535, one chosen per inner flow (RFC 7348 §5).
DEFAULT_SOURCE_PORTS = 16
MAX_SOURCE_PORTS = 256
# Busy-poll window of the data path in microseconds: after a round with traffic the data-path
# thread polls for this long before it sleeps, so a reply that comes back soon needs no wake-up.
# Off by default: on the 2-vCPU benchmark VM it did not lower RTT and, with the CPUs shared, raised
# p99 (BENCHMARKS.md, overlay); it is for nodes with a core to spare for the data path.
DEFAULT_BUSY_POLL = 0
MAX_BUSY_POLL = 10000
CPU_LIMIT = 4096  # CONFIG_NR_CPUS upper bound; whether the CPU exists is checked at start-up
FALLBACK_MTU = 1450  # a 1500-byte underlay less the 50 bytes of VXLAN over IPv4 (RFC 7348 §4)


@dataclass(frozen=True, slots=True)
class OverlayConfig:
    interface: str = DEFAULT_INTERFACE
    mtu: int | None = None  # None: MTU of the underlay interface holding `local`, less 50
    mac: str | None = None
    address: str | None = None  # CIDR put on the TAP, e.g. 172.24.254.1/16
    bridge: str | None = None  # existing Linux bridge to enslave the TAP to (LXD hosts)
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    # Outer UDP checksum, "on" (UDP GSO) or "zero" (RFC 7348 §5 SHOULD; no GSO, slower).
    udp_checksum: str = DEFAULT_UDP_CHECKSUM
    # Send sockets on flow-hashed source ports in 49152-65535; 0 sends from `port` (one source port).
    source_ports: int = DEFAULT_SOURCE_PORTS
    # Microseconds the data path keeps polling after traffic before it sleeps; 0: never poll.
    busy_poll: int = DEFAULT_BUSY_POLL
    cpu: int | None = None  # pin the data-path thread to this CPU; None: wherever the kernel runs it
    local: str | None = None  # this node's underlay address (kubelan: the pod IP)
    peers: tuple[str, ...] = ()
    peers_dns: str | None = None  # headless Service name whose A records are the peers
    peers_dns_server: str | None = None  # ADDR[:PORT]; default: first nameserver in resolv.conf
    peers_kubernetes: tuple[str, ...] = ()  # NAMESPACE/SERVICE, EndpointSlices discovery.k8s.io/v1
    # API server URL for --peers-kubernetes; None: in-cluster (https://$KUBERNETES_SERVICE_HOST:PORT).
    # For running outside a pod (kubectl proxy) and for tests against a local replay server.
    kubernetes_api: str | None = None
    health: str = DEFAULT_HEALTH  # ADDR:PORT of /health, /config and /metrics; "" turns it off
    ageing: float = 300.0  # seconds an unrefreshed learned MAC stays in the FDB (kernel default)
    peers_only: bool = True  # accept VXLAN only from current peers (spec 2.6.6)
    hook_up: tuple[str, ...] = ()  # argv run once the device is up (env IFACE)
    hook_change: tuple[str, ...] = ()  # argv run after each peer change (IFACE SERVICE IPS DELETED)
    log_level: str = "info"
    # Keys whose value was given explicitly (flag, environment or file), for /config and messages.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def underlay_mtu_default(self, underlay_mtu: int | None) -> int:
        """The overlay MTU: configured, else underlay - 50, else 1450."""
        if self.mtu is not None:
            return self.mtu
        if underlay_mtu is None:
            return FALLBACK_MTU
        return underlay_mtu - 50

    def kubelan_view(self) -> dict[str, Any]:
        """``GET /config`` in kubelan's Go field names, which LXD-node pods parse (spec 2.3)."""
        return {
            "LogLevel": self.log_level,
            "HTTPAddress": self.health,
            "IP": self.local,
            "Namespace": "",
            "Services": list(self.peers_kubernetes),
            "VXLAN": {
                "Interface": self.interface,
                "MTU": self.mtu if self.mtu is not None else -1,
                "VNI": self.vni,
                "Port": self.port,
            },
            "Hooks": {"Up": list(self.hook_up), "Change": list(self.hook_change)},
        }


# -- validation --------------------------------------------------------------------------------

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_mtu(value: Any) -> int | None:
    mtu = _int(value)
    if mtu == -1:  # kubelan's "auto"
        return None
    if not 68 <= mtu <= 65485:
        raise ValueError(f"MTU out of range 68-65485 (or -1 for auto): {mtu}")
    return mtu


def _check_mac(value: Any) -> str:
    text = str(value).strip().lower()
    if not _MAC.match(text):
        raise ValueError(f"not a MAC address like 02:00:00:00:00:01: {value!r}")
    if int(text[:2], 16) & 1:
        raise ValueError(f"a multicast MAC cannot be an interface address: {value!r}")
    return text


def _check_cidr(value: Any) -> str:
    try:
        interface = ipaddress.IPv4Interface(str(value).strip())
    except ValueError:
        raise ValueError(f"not an IPv4 address with prefix, like 172.24.254.1/16: {value!r}") from None
    if "/" not in str(value):
        raise ValueError(f"needs a prefix length, like 172.24.254.1/16: {value!r}")
    return str(interface)


def _check_vni(value: Any) -> int:
    vni = _int(value)
    if not 1 <= vni <= 0xFFFFFF:
        raise ValueError(f"VNI out of range 1-16777215 (24 bits, RFC 7348): {vni}")
    return vni


def _check_udp_checksum(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in UDP_CHECKSUMS:
        raise ValueError(f"not one of {', '.join(UDP_CHECKSUMS)}: {value!r}")
    return text


def _check_source_ports(value: Any) -> int:
    count = _int(value)
    if not 0 <= count <= MAX_SOURCE_PORTS:
        raise ValueError(
            f"source ports out of range 0-{MAX_SOURCE_PORTS} (0: send from the VXLAN port): {count}"
        )
    return count


def _check_busy_poll(value: Any) -> int:
    micros = _int(value)
    if not 0 <= micros <= MAX_BUSY_POLL:
        raise ValueError(f"busy poll out of range 0-{MAX_BUSY_POLL} microseconds (0: off): {micros}")
    return micros


def _check_cpu(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("", "none", "any"):
        return None
    cpu = _int(value)
    if cpu == -1:
        return None
    if not 0 <= cpu < CPU_LIMIT:
        raise ValueError(f"not a CPU number (0-{CPU_LIMIT - 1}, or -1 for any): {cpu}")
    return cpu


def _check_peers(value: Any) -> tuple[str, ...]:
    return tuple(_ipv4(item) for item in _list(value))


def _check_dns_name(value: Any) -> str:
    text = str(value).strip()
    if not _DNS_NAME.match(text):
        raise ValueError(f"not a DNS name: {text!r}")
    return text


def _check_dns_server(value: Any) -> str:
    host, port = check_host_port(value, default_port=53)
    return f"{host}:{port}"


def _check_services(value: Any, namespace: str | None = None) -> tuple[str, ...]:
    result = []
    for item in _list(value):
        ns, sep, name = item.rpartition("/")
        if not sep:
            if not namespace:
                raise ValueError(f"{item!r} needs a namespace: NAMESPACE/SERVICE")
            ns = namespace
        if not _K8S_NAME.match(ns) or not _K8S_NAME.match(name):
            raise ValueError(f"not NAMESPACE/SERVICE with Kubernetes names: {item!r}")
        result.append(f"{ns}/{name}")
    return tuple(result)


def _check_url(value: Any) -> str:
    text = str(value).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise ValueError(f"not an http:// or https:// URL: {value!r}")
    return text.rstrip("/")


def _check_ageing(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number of seconds: {value!r}") from None
    if not 1.0 <= seconds <= 86400.0:
        raise ValueError(f"ageing out of range 1-86400 s: {seconds}")
    return seconds


def _check_argv(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(part) for part in value)


# kubelan's environment names (spec 2.3), accepted as aliases of ours.
KUBELAN_ALIASES = {
    "KL_IP": "local",
    "KL_VXLAN_INTERFACE": "interface",
    "KL_VXLAN_VNI": "vni",
    "KL_VXLAN_PORT": "port",
    "KL_VXLAN_MTU": "mtu",
    "KL_HTTP_ADDRESS": "health",
    "KL_LOG_LEVEL": "log_level",
    "KL_SERVICES": "peers_kubernetes",
    "KL_HOOKS_UP": "hook_up",
    "KL_HOOKS_CHANGE": "hook_change",
}


def _key(name: str, check: Callable[[Any], Any], metavar: str = "", help: str = "", **more: Any) -> Key:
    aliases = tuple(alias for alias, key in KUBELAN_ALIASES.items() if key == name)
    return Key(name, check, metavar=metavar or None, help=help, env=aliases, **more)


TABLE = Table(
    ENV_PREFIX,
    (
        _key("interface", _check_interface, "NAME", f"TAP device name (default {DEFAULT_INTERFACE})"),
        _key("mtu", _check_mtu, "N", "overlay MTU (default: underlay MTU - 50, else 1450)"),
        _key("mac", _check_mac, "MAC", "MAC address of the TAP (default: kept / random)"),
        _key("address", _check_cidr, "CIDR", "static address on the TAP, e.g. 172.24.254.1/16"),
        _key("bridge", _check_interface, "NAME", "existing Linux bridge to enslave the TAP to"),
        _key("vni", _check_vni, "N", f"VXLAN network identifier (default {DEFAULT_VNI})"),
        _key("port", _check_port, "N", f"VXLAN UDP port (default {DEFAULT_PORT})"),
        _key(
            "udp_checksum",
            _check_udp_checksum,
            "zero|on",
            "outer UDP checksum: on (UDP GSO, the default) or zero (RFC 7348's SHOULD; no GSO, slower)",
        ),
        _key(
            "source_ports",
            _check_source_ports,
            "N",
            f"send sockets on flow-hashed source ports in 49152-65535 (default {DEFAULT_SOURCE_PORTS}; "
            "0: send from --port)",
        ),
        _key(
            "busy_poll",
            _check_busy_poll,
            "MICROSECONDS",
            f"after traffic, poll this long before sleeping (default {DEFAULT_BUSY_POLL}; 0: off); "
            "cuts round-trip latency, costs at most this much CPU time per burst",
        ),
        _key(
            "cpu", _check_cpu, "N", "pin the data-path thread to CPU N (default: not pinned; -1: not pinned)"
        ),
        _key("local", _ipv4, "ADDR", "this node's underlay IPv4 address (required)"),
        # The flag is --peer, once per peer; messages have always named it --peers.
        _key(
            "peers",
            _check_peers,
            "ADDR",
            "a peer VTEP address (repeatable)",
            flag="peer",
            repeatable=True,
            flag_origin="--peers",
        ),
        _key("peers_dns", _check_dns_name, "NAME", "headless Service name whose A records are peers"),
        _key("peers_dns_server", _check_dns_server, "ADDR[:PORT]", "DNS server for --peers-dns"),
        _key(
            "peers_kubernetes",
            _check_services,
            "NS/SERVICE",
            "peers from the Service's EndpointSlices (repeatable; in-cluster credentials)",
            repeatable=True,
        ),
        _key(
            "kubernetes_api",
            _check_url,
            "URL",
            "API server for --peers-kubernetes (default: in-cluster from KUBERNETES_SERVICE_HOST); "
            "a service account token is sent when one is mounted",
        ),
        _key("health", check_listen, "ADDR:PORT", f"health/metrics listener (default {DEFAULT_HEALTH})"),
        _key("ageing", _check_ageing, "SECONDS", "learned-MAC ageing time (default 300)"),
        _key("peers_only", check_bool, "BOOL", "accept VXLAN only from current peers (default true)"),
        _key("hook_up", _check_argv, flag=None),  # argv: environment and file only
        _key("hook_change", _check_argv, flag=None),
        _key("log_level", _check_log_level, "LEVEL", "debug, info, warning or error (default info)"),
    ),
)
KEYS = TABLE.names
CHECKS: dict[str, Callable[[Any], Any]] = {key.attr: key.check for key in TABLE.keys}
assert set(KEYS) == {f.name for f in fields(OverlayConfig) if f.name != "origins"}


def load(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> OverlayConfig:
    """Merge defaults, the YAML file, the environment and the flags (set ones only) into a config."""
    environ = os.environ if environ is None else environ
    # kubelan's KL_NAMESPACE is the namespace of the KL_SERVICES (and --peers-kubernetes) without one.
    namespace = environ.get("KL_NAMESPACE") or None
    loaded = TABLE.load(
        flags,
        environ,
        config_file,
        late_checks={"peers_kubernetes": lambda value: _check_services(value, namespace)},
    )
    config = replace(OverlayConfig(), **loaded.values)
    if config.local is None:
        raise ConfigError(
            "local", f"required: this node's underlay address (--local ADDR or {ENV_PREFIX}LOCAL or KL_IP)"
        )
    if config.local in config.peers:
        config = replace(config, peers=tuple(p for p in config.peers if p != config.local))
    return replace(config, origins=loaded.origins)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``webspaces overlay``; every default is None so that unset flags are known."""
    TABLE.add_arguments(parser)


def flags_from(args: argparse.Namespace) -> dict[str, Any]:
    return TABLE.flags_from(args)

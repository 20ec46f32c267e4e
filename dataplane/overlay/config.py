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

from dataplane.config import DNS_NAME as _DNS_NAME
from dataplane.config import ConfigError, check_bool, read_yaml
from dataplane.config import check_int as _int
from dataplane.config import check_interface as _check_interface
from dataplane.config import check_ipv4 as _ipv4
from dataplane.config import check_log_level as _check_log_level
from dataplane.config import split_list as _list

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


def _host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"expected ADDR:PORT, got {text!r}")
        host, port_text = text.strip(), str(default_port)
    if host == "":
        host = "0.0.0.0"  # kubelan's ":8181" meant every address
    _ipv4(host)
    port = _int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range 1-65535: {port}")
    return host, port


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


def _check_port(value: Any) -> int:
    port = _int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range 1-65535: {port}")
    return port


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
    host, port = _host_port(str(value), default_port=53)
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


def _check_health(value: Any) -> str:
    text = str(value).strip()
    if text in ("", "off", "none"):
        return ""
    host, port = _host_port(text)
    return f"{host}:{port}"


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


CHECKS: dict[str, Callable[[Any], Any]] = {
    "interface": _check_interface,
    "mtu": _check_mtu,
    "mac": _check_mac,
    "address": _check_cidr,
    "bridge": _check_interface,
    "vni": _check_vni,
    "port": _check_port,
    "udp_checksum": _check_udp_checksum,
    "source_ports": _check_source_ports,
    "busy_poll": _check_busy_poll,
    "cpu": _check_cpu,
    "local": _ipv4,
    "peers": _check_peers,
    "peers_dns": _check_dns_name,
    "peers_dns_server": _check_dns_server,
    "peers_kubernetes": _check_services,
    "kubernetes_api": _check_url,
    "health": _check_health,
    "ageing": _check_ageing,
    "peers_only": check_bool,
    "hook_up": _check_argv,
    "hook_change": _check_argv,
    "log_level": _check_log_level,
}
KEYS = tuple(f.name for f in fields(OverlayConfig) if f.name != "origins")
assert set(KEYS) == set(CHECKS)

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


def _apply(values: dict[str, Any], origins: dict[str, str], key: str, raw: Any, origin: str) -> None:
    try:
        if key == "peers_kubernetes":
            values[key] = _check_services(raw, values.get("_namespace"))
        else:
            values[key] = CHECKS[key](raw)
    except ValueError as exc:
        raise ConfigError(key, str(exc), origin) from None
    origins[key] = origin


def load(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> OverlayConfig:
    """Merge defaults, the YAML file, the environment and the flags (set ones only) into a config."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if config_file is not None:
        for raw_key, raw in read_yaml(config_file).items():
            key = str(raw_key).replace("-", "_")
            if key not in CHECKS:
                raise ConfigError(
                    str(raw_key), f"unknown key; valid keys: {', '.join(KEYS)}", str(config_file)
                )
            _apply(values, origins, key, raw, f"{config_file}")
    values["_namespace"] = environ.get("KL_NAMESPACE") or None
    for name, key in KUBELAN_ALIASES.items():
        if name in environ and f"{ENV_PREFIX}{key.upper()}" not in environ:
            _apply(values, origins, key, environ[name], name)
    for key in KEYS:
        name = f"{ENV_PREFIX}{key.upper()}"
        if name in environ:
            _apply(values, origins, key, environ[name], name)
    for key in KEYS:
        raw = flags.get(key)
        if raw is None or raw in ([], ()):
            continue
        flag = "--" + key.replace("_", "-")
        _apply(values, origins, key, raw, flag)
    values.pop("_namespace", None)
    config = replace(OverlayConfig(), **values)
    if config.local is None:
        raise ConfigError(
            "local", f"required: this node's underlay address (--local ADDR or {ENV_PREFIX}LOCAL or KL_IP)"
        )
    if config.local in config.peers:
        config = replace(config, peers=tuple(p for p in config.peers if p != config.local))
    return replace(config, origins=origins)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``webspaces overlay``; every default is None so that unset flags are known."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file with any of the keys below")
    parser.add_argument("--interface", metavar="NAME", help=f"TAP device name (default {DEFAULT_INTERFACE})")
    parser.add_argument("--mtu", metavar="N", help="overlay MTU (default: underlay MTU - 50, else 1450)")
    parser.add_argument("--mac", metavar="MAC", help="MAC address of the TAP (default: kept / random)")
    parser.add_argument("--address", metavar="CIDR", help="static address on the TAP, e.g. 172.24.254.1/16")
    parser.add_argument("--bridge", metavar="NAME", help="existing Linux bridge to enslave the TAP to")
    parser.add_argument("--vni", metavar="N", help=f"VXLAN network identifier (default {DEFAULT_VNI})")
    parser.add_argument("--port", metavar="N", help=f"VXLAN UDP port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--udp-checksum",
        metavar="zero|on",
        help="outer UDP checksum: on (UDP GSO, the default) or zero (RFC 7348's SHOULD; no GSO, slower)",
    )
    parser.add_argument(
        "--source-ports",
        metavar="N",
        help=f"send sockets on flow-hashed source ports in 49152-65535 (default {DEFAULT_SOURCE_PORTS}; "
        "0: send from --port)",
    )
    parser.add_argument(
        "--busy-poll",
        metavar="MICROSECONDS",
        help=f"after traffic, poll this long before sleeping (default {DEFAULT_BUSY_POLL}; 0: off); "
        "cuts round-trip latency, costs at most this much CPU time per burst",
    )
    parser.add_argument(
        "--cpu",
        metavar="N",
        help="pin the data-path thread to CPU N (default: not pinned; -1: not pinned)",
    )
    parser.add_argument("--local", metavar="ADDR", help="this node's underlay IPv4 address (required)")
    parser.add_argument(
        "--peer", dest="peers", action="append", metavar="ADDR", help="a peer VTEP address (repeatable)"
    )
    parser.add_argument("--peers-dns", metavar="NAME", help="headless Service name whose A records are peers")
    parser.add_argument("--peers-dns-server", metavar="ADDR[:PORT]", help="DNS server for --peers-dns")
    parser.add_argument(
        "--peers-kubernetes",
        action="append",
        metavar="NS/SERVICE",
        help="peers from the Service's EndpointSlices (repeatable; in-cluster credentials)",
    )
    parser.add_argument(
        "--kubernetes-api",
        metavar="URL",
        help="API server for --peers-kubernetes (default: in-cluster from KUBERNETES_SERVICE_HOST); "
        "a service account token is sent when one is mounted",
    )
    parser.add_argument(
        "--health", metavar="ADDR:PORT", help=f"health/metrics listener (default {DEFAULT_HEALTH})"
    )
    parser.add_argument("--ageing", metavar="SECONDS", help="learned-MAC ageing time (default 300)")
    parser.add_argument(
        "--peers-only",
        metavar="BOOL",
        help="accept VXLAN only from current peers (default true)",
    )
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error (default info)")

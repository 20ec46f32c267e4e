"""Configuration of ``webspaces dhcp``: flags over environment over a YAML file over defaults.

Every key can be given three ways, highest precedence first:

1. a command-line flag, ``--lease-time 7200`` (list keys repeat the flag: ``--pool A-B --pool C-D``);
2. an environment variable, ``WEBSPACES_DHCP_LEASE_TIME`` (lists comma-separated; a reservation
   list separates reservations with ``;`` because one reservation may hold a comma);
3. a key of the YAML file named by ``--config`` (``lease-time:`` or ``lease_time:``; lists as YAML
   sequences or comma-separated strings).

A list given at a higher level replaces the lower one (flags do not add to the file's pools).
Unknown YAML keys and bad values are errors naming the key and where the value came from. Checks
that involve several keys (a pool outside the subnet, the server address inside a pool, an
exclusion outside every pool) run after merging and name the key that has to change.

The subnet is ``--server-address ADDR/PREFIX``; a bare ``ADDR`` takes the prefix of that address
on the interface at start-up (:func:`with_prefix`), so those checks wait until then.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from program.checks import DNS_NAME as _DNS_NAME
from program.checks import check_int as _int
from program.checks import check_interface as _check_interface
from program.checks import check_ipv4 as _ipv4
from program.checks import check_listen
from program.checks import check_log_level as _check_log_level
from program.checks import split_list as _list
from program.config import ConfigError, Key, Table, read_yaml

ENV_PREFIX = "WEBSPACES_DHCP_"
DEFAULT_LEASE_TIME = 7200  # kuberouter's dnsmasq: 2 h (spec 3.2)
DEFAULT_MTU = 1450  # the overlay MTU, option 26 (spec 3.4); 0 leaves option 26 out
DEFAULT_LEASES = "/var/lib/webspaces/dhcp/leases"
INFINITE = 0xFFFFFFFF  # RFC 2131 §3.3: an infinite lease
MIN_LEASE_TIME = 10  # short leases are for tests; clients renew at T1 = half of it

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Reservation:
    """A static lease: the client whose ``chaddr`` is ``mac`` always gets ``address``."""

    mac: str  # lower case, colon separated
    address: str
    hostname: str | None = None

    def __str__(self) -> str:
        return f"{self.mac}={self.address}" + (f",{self.hostname}" if self.hostname else "")


@dataclass(frozen=True, slots=True)
class DhcpConfig:
    interface: str | None = None  # required: the Linux interface served
    server_address: str | None = None  # required: our address on it (option 54, reply source)
    prefix: int | None = None  # from ADDR/PREFIX, else from the interface at start-up
    pools: tuple[tuple[str, str], ...] = ()  # inclusive ranges, required (at least one)
    exclude: tuple[str, ...] = ()
    lease_time: int = DEFAULT_LEASE_TIME
    router: str | None = None  # option 3; none sent when unset
    dns: tuple[str, ...] = ()  # option 6
    domain: str | None = None  # option 15
    mtu: int = DEFAULT_MTU  # option 26; 0: not sent
    reserve: tuple[Reservation, ...] = ()
    leases: str = DEFAULT_LEASES  # lease store path
    metrics: str = ""  # ADDR:PORT of /metrics; "" (default): no HTTP listener
    log_level: str = "info"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.server_address is None or self.prefix is None:
            return None
        return ipaddress.IPv4Interface(f"{self.server_address}/{self.prefix}").network

    def pool_size(self) -> int:
        """Addresses the pools can hand out (ranges less exclusions)."""
        excluded = {ipaddress.IPv4Address(a) for a in self.exclude}
        total = 0
        for start, end in self.pools:
            low, high = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
            total += high - low + 1 - sum(1 for a in excluded if low <= int(a) <= high)
        return total

    def view(self) -> dict[str, Any]:
        """A JSON-able summary, for logs and tests."""
        return {
            "interface": self.interface,
            "server_address": self.server_address,
            "prefix": self.prefix,
            "pools": [f"{a}-{b}" for a, b in self.pools],
            "exclude": list(self.exclude),
            "lease_time": self.lease_time,
            "router": self.router,
            "dns": list(self.dns),
            "domain": self.domain,
            "mtu": self.mtu,
            "reserve": [str(r) for r in self.reserve],
            "leases": self.leases,
            "metrics": self.metrics,
            "log_level": self.log_level,
        }


# -- single values -----------------------------------------------------------------------------


def _check_server_address(value: Any) -> tuple[str, int | None]:
    text = str(value).strip()
    try:
        interface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"not an IPv4 address or ADDR/PREFIX like 192.0.2.1/24: {value!r}") from None
    prefix = interface.network.prefixlen if "/" in text else None
    if prefix is not None and prefix > 30:
        raise ValueError(f"prefix /{prefix} leaves no room for a pool (at most /30): {value!r}")
    address = interface.ip
    if address.is_unspecified or address.is_multicast or address.is_loopback or text.startswith("255."):
        raise ValueError(f"not a usable host address: {value!r}")
    return str(address), prefix


def _check_pool(value: Any) -> tuple[tuple[str, str], ...]:
    pools = []
    for item in _list(value):
        start_text, sep, end_text = item.partition("-")
        if not sep:
            raise ValueError(f"expected START-END, like 192.0.2.10-192.0.2.200: {item!r}")
        start, end = _ipv4(start_text), _ipv4(end_text)
        if ipaddress.IPv4Address(start) > ipaddress.IPv4Address(end):
            raise ValueError(f"start {start} is after end {end}: {item!r}")
        pools.append((start, end))
    if not pools:
        raise ValueError("empty pool list")
    return tuple(pools)


def _check_addresses(value: Any) -> tuple[str, ...]:
    return tuple(_ipv4(item) for item in _list(value))


def _check_lease_time(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() in ("infinite", "infinity"):
        return INFINITE
    seconds = _int(value)
    if seconds != INFINITE and not MIN_LEASE_TIME <= seconds < INFINITE:
        raise ValueError(
            f"lease time out of range {MIN_LEASE_TIME}-{INFINITE - 1} seconds (or 'infinite'): {seconds}"
        )
    return seconds


def _check_domain(value: Any) -> str:
    text = str(value).strip().rstrip(".")
    if not _DNS_NAME.match(text):
        raise ValueError(f"not a DNS name: {value!r}")
    return text


def _check_mtu(value: Any) -> int:
    mtu = _int(value)
    if mtu == 0:
        return 0
    if not 68 <= mtu <= 65535:  # RFC 2132 §5.1: the minimum legal value is 68
        raise ValueError(f"MTU out of range 68-65535 (0: do not send option 26): {mtu}")
    return mtu


def parse_mac(text: str) -> str:
    """``02:00:00:00:00:01`` (or with dashes, any case) in lower case with colons."""
    cleaned = text.strip()
    if not _MAC.match(cleaned):
        raise ValueError(f"not a MAC address like 02:00:00:00:00:01: {text!r}")
    mac = cleaned.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"a multicast MAC cannot be a client's address: {text!r}")
    return mac


def _check_reserve(value: Any) -> tuple[Reservation, ...]:
    items = _list(value, ";") if isinstance(value, str) else _list(value)
    reservations = []
    for item in items:
        mac_text, sep, rest = item.partition("=")
        if not sep:
            raise ValueError(f"expected MAC=ADDR[,HOSTNAME]: {item!r}")
        address_text, _, hostname = rest.partition(",")
        mac = parse_mac(mac_text)
        address = _ipv4(address_text)
        hostname = hostname.strip()
        if hostname and not _HOSTNAME.match(hostname):
            raise ValueError(f"not a host name (letters, digits, '-', up to 63): {hostname!r} in {item!r}")
        reservations.append(Reservation(mac, address, hostname or None))
    return tuple(reservations)


def _check_leases(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("empty path")
    return text


_LEVEL = "debug, info, warning or error (default info)"
TABLE = Table(
    ENV_PREFIX,
    (
        Key("interface", _check_interface, "the Linux interface to serve (required)", "NAME"),
        Key(
            "server_address",
            _check_server_address,
            "our address on the interface: server identifier and reply source (required; "
            "without /PREFIX the subnet is taken from the interface)",
            "ADDR[/PREFIX]",
        ),
        # One --pool per range reads better than --pools: the flag, variable and key are "pool".
        Key(
            "pools",
            _check_pool,
            "an address range to lease from, inclusive (repeatable; at least one)",
            "START-END",
            label="pool",
            repeatable=True,
        ),
        Key(
            "exclude",
            _check_addresses,
            "an address of a pool never to lease (repeatable)",
            "ADDR",
            repeatable=True,
        ),
        Key(
            "lease_time",
            _check_lease_time,
            f"lease length (default {DEFAULT_LEASE_TIME}, or 'infinite'); T1/T2 are 1/2 and 7/8 of it",
            "SECONDS",
        ),
        Key("router", _ipv4, "default gateway, option 3 (default: none)", "ADDR"),
        Key("dns", _check_addresses, "DNS server, option 6 (repeatable)", "ADDR", repeatable=True),
        Key("domain", _check_domain, "domain name, option 15", "NAME"),
        Key("mtu", _check_mtu, f"interface MTU, option 26 (default {DEFAULT_MTU}; 0: not sent)", "N"),
        Key(
            "reserve",
            _check_reserve,
            "a static lease for the client with this hardware address (repeatable)",
            "MAC=ADDR[,HOSTNAME]",
            repeatable=True,
        ),
        Key("leases", _check_leases, f"lease store (default {DEFAULT_LEASES})", "PATH"),
        Key("metrics", check_listen, "serve Prometheus /metrics here (default: off)", "ADDR:PORT"),
        Key("log_level", _check_log_level, _LEVEL, "LEVEL"),
    ),
)
KEYS = TABLE.names
CHECKS: dict[str, Callable[[Any], Any]] = {key.attr: key.check for key in TABLE.keys}
assert set(KEYS) == {f.name for f in fields(DhcpConfig) if f.name not in ("origins", "prefix")}
NAMES = {key.attr: key.display for key in TABLE.keys}


def flag_of(key: str) -> str:
    return TABLE.flag_of(TABLE.key(key))


def env_of(key: str) -> str:
    return TABLE.env_of(TABLE.key(key))


def load(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> DhcpConfig:
    """Merge defaults, the YAML file, the environment and the flags (set ones only), then check."""
    environ = os.environ if environ is None else environ
    loaded = TABLE.load(flags, environ, config_file)
    values = dict(loaded.values)
    if "server_address" in values:
        values["server_address"], values["prefix"] = values["server_address"]
    config = replace(DhcpConfig(), **values, origins=loaded.origins)
    for key in ("interface", "server_address", "pools"):
        if getattr(config, key) in (None, ()):
            raise ConfigError(NAMES[key], f"required ({flag_of(key)} or {env_of(key)} or the config file)")
    _check_alone(config)
    if config.prefix is not None:
        check_network(config)
    return config


def _origin(config: DhcpConfig, key: str) -> str:
    return config.origins.get(key, "")


def _check_alone(config: DhcpConfig) -> None:
    """Checks that need no subnet: overlaps and duplicates."""
    ranges = sorted(
        (int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b)), f"{a}-{b}") for a, b in config.pools
    )
    for (_, high, first), (low, _, second) in itertools.pairwise(ranges):
        if low <= high:
            raise ConfigError("pool", f"ranges {first} and {second} overlap", _origin(config, "pools"))
    macs: dict[str, Reservation] = {}
    addresses: dict[str, Reservation] = {}
    for reservation in config.reserve:
        if reservation.mac in macs:
            raise ConfigError(
                "reserve", f"{reservation.mac} is reserved twice ({macs[reservation.mac]}, {reservation})",
                _origin(config, "reserve"),
            )  # fmt: skip
        if reservation.address in addresses:
            raise ConfigError(
                "reserve",
                f"{reservation.address} is reserved for two clients ({addresses[reservation.address]}, "
                f"{reservation})",
                _origin(config, "reserve"),
            )
        macs[reservation.mac] = addresses[reservation.address] = reservation


def _in_pool(config: DhcpConfig, address: str) -> str | None:
    value = ipaddress.IPv4Address(address)
    for start, end in config.pools:
        if ipaddress.IPv4Address(start) <= value <= ipaddress.IPv4Address(end):
            return f"{start}-{end}"
    return None


def check_network(config: DhcpConfig) -> None:
    """Checks against the subnet (``server_address``/``prefix``); ConfigError naming the key."""
    network = config.network
    assert network is not None and config.server_address is not None
    server = ipaddress.IPv4Address(config.server_address)
    if server in (network.network_address, network.broadcast_address):
        raise ConfigError(
            "server_address",
            f"{server} is the {'network' if server == network.network_address else 'broadcast'} "
            f"address of {network}",
            _origin(config, "server_address"),
        )
    edges = (network.network_address, network.broadcast_address)
    for start, end in config.pools:
        for address in (start, end):
            value = ipaddress.IPv4Address(address)
            if value not in network:
                raise ConfigError(
                    "pool", f"{start}-{end} is outside the subnet {network}", _origin(config, "pools")
                )
        low, high = ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)
        for edge in edges:
            if low <= edge <= high:
                raise ConfigError(
                    "pool",
                    f"{start}-{end} includes {edge}, the network or broadcast address of {network}",
                    _origin(config, "pools"),
                )
    excluded = set(config.exclude)
    pool = _in_pool(config, config.server_address)
    if pool is not None and config.server_address not in excluded:
        raise ConfigError(
            "server_address",
            f"{server} is inside the pool {pool}; shrink the pool or add --exclude {server}",
            _origin(config, "server_address"),
        )
    if config.router is not None:
        if ipaddress.IPv4Address(config.router) not in network:
            raise ConfigError(
                "router", f"{config.router} is outside the subnet {network}", _origin(config, "router")
            )
        pool = _in_pool(config, config.router)
        if pool is not None and config.router not in excluded:
            raise ConfigError(
                "router",
                f"{config.router} is inside the pool {pool}; "
                f"shrink the pool or add --exclude {config.router}",
                _origin(config, "router"),
            )
    for address in config.exclude:
        if _in_pool(config, address) is None:
            raise ConfigError("exclude", f"{address} is in no pool (a typo?)", _origin(config, "exclude"))
    for reservation in config.reserve:
        value = ipaddress.IPv4Address(reservation.address)
        if value not in network or value in edges:
            raise ConfigError(
                "reserve",
                f"{reservation} reserves an address that is not a host of the subnet {network}",
                _origin(config, "reserve"),
            )
        if reservation.address in (config.server_address, config.router):
            raise ConfigError(
                "reserve",
                f"{reservation} reserves the {'server' if value == server else 'router'} address",
                _origin(config, "reserve"),
            )
    if config.pool_size() <= 0:
        raise ConfigError("pool", "every address of the pools is excluded", _origin(config, "pools"))


def with_prefix(config: DhcpConfig, prefix: int) -> DhcpConfig:
    """``config`` with the subnet learnt from the interface, checked."""
    updated = replace(config, prefix=prefix)
    check_network(updated)
    return updated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``webspaces dhcp``; every default is None so that unset flags are known."""
    TABLE.add_arguments(parser)


def load_leases_path(config_file: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """The lease store path for ``webspaces dhcp leases``: the environment, else the file's
    ``leases`` key, else the default (the rest of the file is not checked: only the path matters)."""
    environ = os.environ if environ is None else environ
    if env_of("leases") in environ:
        return _check_leases(environ[env_of("leases")])
    if config_file is not None:
        document = read_yaml(config_file)
        if "leases" in document:
            try:
                return _check_leases(document["leases"])
            except ValueError as exc:
                raise ConfigError("leases", str(exc), str(config_file)) from None
    return DEFAULT_LEASES


def flags_from(args: argparse.Namespace) -> dict[str, Any]:
    return TABLE.flags_from(args)


__all__ = [
    "DEFAULT_LEASES",
    "DEFAULT_LEASE_TIME",
    "DEFAULT_MTU",
    "ENV_PREFIX",
    "INFINITE",
    "KEYS",
    "ConfigError",
    "DhcpConfig",
    "Reservation",
    "add_arguments",
    "check_network",
    "flags_from",
    "load",
    "parse_mac",
    "with_prefix",
]

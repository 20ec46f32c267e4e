from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.dhcp.config import (
    DEFAULT_LEASE_TIME,
    INFINITE,
    ConfigError,
    Reservation,
    load,
    with_prefix,
)

BASE = {"interface": "eth1", "server_address": "192.0.2.1/24", "pools": ["192.0.2.10-192.0.2.200"]}


def test_minimal_config_and_defaults() -> None:
    config = load(BASE, environ={})
    assert config.interface == "eth1"
    assert (config.server_address, config.prefix) == ("192.0.2.1", 24)
    assert config.pools == (("192.0.2.10", "192.0.2.200"),)
    assert (config.lease_time, config.mtu, config.metrics) == (DEFAULT_LEASE_TIME, 1450, "")
    assert str(config.network) == "192.0.2.0/24"
    assert config.pool_size() == 191


@pytest.mark.parametrize("missing", ["interface", "server_address", "pools"])
def test_required_keys_are_named(missing: str) -> None:
    flags = {key: value for key, value in BASE.items() if key != missing}
    with pytest.raises(ConfigError) as info:
        load(flags, environ={})
    assert info.value.key == ("pool" if missing == "pools" else missing)
    assert "required" in str(info.value)


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    path = tmp_path / "dhcp.yaml"
    path.write_text(
        "interface: eth1\nserver-address: 192.0.2.1/24\npool: [192.0.2.10-192.0.2.20]\n"
        "lease_time: 600\ndns: 192.0.2.53, 192.0.2.54\ndomain: file.example\n"
        "reserve:\n  - 02:00:00:00:00:01=192.0.2.5,web\n"
    )
    environ = {
        "WEBSPACES_DHCP_LEASE_TIME": "900",
        "WEBSPACES_DHCP_POOL": "192.0.2.100-192.0.2.150,192.0.2.160-192.0.2.170",
        "WEBSPACES_DHCP_RESERVE": "02:00:00:00:00:02=192.0.2.6;02-00-00-00-00-03=192.0.2.7,db",
    }
    config = load({"lease_time": "1200", "dns": ["192.0.2.2"]}, environ=environ, config_file=path)
    assert config.lease_time == 1200
    assert config.origins["lease_time"] == "--lease-time"
    assert config.pools == (("192.0.2.100", "192.0.2.150"), ("192.0.2.160", "192.0.2.170"))
    assert config.origins["pools"] == "WEBSPACES_DHCP_POOL"
    assert config.dns == ("192.0.2.2",)
    assert config.domain == "file.example"
    assert config.origins["domain"] == str(path)
    assert config.reserve == (
        Reservation("02:00:00:00:00:02", "192.0.2.6"),
        Reservation("02:00:00:00:00:03", "192.0.2.7", "db"),
    )


def test_yaml_lists_and_every_key(tmp_path: Path) -> None:
    path = tmp_path / "dhcp.yaml"
    path.write_text(
        "interface: eth1\nserver_address: 192.0.2.1\npools:\n  - 192.0.2.10-192.0.2.20\n"
        "exclude: [192.0.2.11]\nlease-time: infinite\nrouter: 192.0.2.1\nmtu: 0\n"
        "leases: /tmp/x\nmetrics: ':9267'\nlog-level: DEBUG\n"
    )
    config = load({}, environ={}, config_file=path)
    assert config.prefix is None  # taken from the interface at start-up
    assert config.exclude == ("192.0.2.11",)
    assert config.lease_time == INFINITE
    assert (config.router, config.mtu, config.leases) == ("192.0.2.1", 0, "/tmp/x")
    assert (config.metrics, config.log_level) == ("0.0.0.0:9267", "debug")
    assert config.pool_size() == 10
    assert with_prefix(config, 24).network is not None


def test_network_checks_wait_for_the_interface_prefix() -> None:
    config = load(
        {**BASE, "server_address": "192.0.2.1", "pools": ["198.51.100.10-198.51.100.20"]}, environ={}
    )
    with pytest.raises(ConfigError) as info:
        with_prefix(config, 24)
    assert info.value.key == "pool"
    assert "outside the subnet 192.0.2.0/24" in str(info.value)


@pytest.mark.parametrize(
    ("flags", "key", "fragment"),
    [
        ({"interface": "a-name-longer-than-15"}, "interface", "interface name"),
        ({"server_address": "192.0.2.300"}, "server_address", "not an IPv4"),
        ({"server_address": "192.0.2.1/31"}, "server_address", "at most /30"),
        ({"server_address": "192.0.2.0/24"}, "server_address", "network address"),
        ({"server_address": "192.0.2.15/24"}, "server_address", "inside the pool"),
        ({"pools": ["192.0.2.10"]}, "pool", "START-END"),
        ({"pools": ["192.0.2.20-192.0.2.10"]}, "pool", "after end"),
        ({"pools": ["192.0.2.10-192.0.3.10"]}, "pool", "outside the subnet"),
        ({"pools": ["198.51.100.1-198.51.100.9"]}, "pool", "outside the subnet"),
        ({"pools": ["192.0.2.2-192.0.2.255"]}, "pool", "broadcast"),
        ({"pools": ["192.0.2.10-192.0.2.20", "192.0.2.15-192.0.2.30"]}, "pool", "overlap"),
        ({"pools": ["192.0.2.10-192.0.2.10"], "exclude": ["192.0.2.10"]}, "pool", "excluded"),
        ({"exclude": ["192.0.2.250"]}, "exclude", "in no pool"),
        ({"exclude": ["nope"]}, "exclude", "not an IPv4"),
        ({"lease_time": "5"}, "lease_time", "out of range"),
        ({"lease_time": "long"}, "lease_time", "not an integer"),
        ({"router": "192.0.2.50"}, "router", "inside the pool"),
        ({"router": "198.51.100.1"}, "router", "outside the subnet"),
        ({"dns": ["192.0.2.1", "x"]}, "dns", "not an IPv4"),
        ({"domain": "bad domain!"}, "domain", "DNS name"),
        ({"mtu": "67"}, "mtu", "68-65535"),
        ({"reserve": ["zz:00:00:00:00:01=192.0.2.5"]}, "reserve", "not a MAC"),
        ({"reserve": ["01:00:5e:00:00:01=192.0.2.5"]}, "reserve", "multicast"),
        ({"reserve": ["02:00:00:00:00:01"]}, "reserve", "MAC=ADDR"),
        ({"reserve": ["02:00:00:00:00:01=192.0.2.5,bad_host!"]}, "reserve", "host name"),
        ({"reserve": ["02:00:00:00:00:01=198.51.100.5"]}, "reserve", "not a host of the subnet"),
        ({"reserve": ["02:00:00:00:00:01=192.0.2.1"]}, "reserve", "server address"),
        (
            {"reserve": ["02:00:00:00:00:01=192.0.2.5", "02:00:00:00:00:01=192.0.2.6"]},
            "reserve",
            "reserved twice",
        ),
        (
            {"reserve": ["02:00:00:00:00:01=192.0.2.5", "02:00:00:00:00:02=192.0.2.5"]},
            "reserve",
            "two clients",
        ),
        ({"metrics": "localhost"}, "metrics", "ADDR:PORT"),
        ({"metrics": "127.0.0.1:0"}, "metrics", "1-65535"),
        ({"log_level": "loud"}, "log_level", "debug, info"),
    ],
)
def test_bad_values_name_the_key_and_the_origin(flags: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({**BASE, **flags}, environ={})
    assert info.value.key == key
    assert fragment in str(info.value)
    assert "--" + key.replace("_", "-") in str(info.value)


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load(BASE, environ={"WEBSPACES_DHCP_MTU": "9"})
    assert "WEBSPACES_DHCP_MTU" in str(info.value)


def test_excluded_server_and_router_may_sit_inside_the_pool() -> None:
    config = load(
        {
            **BASE,
            "server_address": "192.0.2.15/24",
            "router": "192.0.2.16",
            "exclude": ["192.0.2.15", "192.0.2.16"],
        },
        environ={},
    )
    assert config.pool_size() == 189


def test_unknown_yaml_key_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "dhcp.yaml"
    path.write_text("interface: eth1\nleasetime: 5\n")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.key == "leasetime"
    assert "unknown key" in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "pool: [\n"])
def test_malformed_yaml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "dhcp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(BASE, environ={}, config_file=path)
    assert info.value.key == "config"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(BASE, environ={}, config_file=tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)

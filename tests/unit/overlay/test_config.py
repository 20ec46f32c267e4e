from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.overlay.config import OverlayConfig, load
from program.config import ConfigError


def test_defaults_need_only_local() -> None:
    config = load({"local": "192.0.2.1"}, environ={})
    assert config.local == "192.0.2.1"
    assert (config.interface, config.vni, config.port, config.mtu) == ("overlay0", 7331, 4789, None)
    assert config.underlay_mtu_default(1500) == 1450
    assert config.underlay_mtu_default(9000) == 8950
    assert config.underlay_mtu_default(None) == 1450


def test_local_is_required_and_named() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, environ={})
    assert info.value.key == "local"


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text("vni: 100\nport: 4790\npeers-dns: ws.default.svc\nlocal: 192.0.2.9\n")
    environ = {"WEBSPACES_OVERLAY_VNI": "200", "WEBSPACES_OVERLAY_PEERS": "192.0.2.2, 192.0.2.3"}
    config = load({"vni": "300"}, environ=environ, config_file=path)
    assert config.vni == 300
    assert config.port == 4790
    assert config.peers == ("192.0.2.2", "192.0.2.3")
    assert config.peers_dns == "ws.default.svc"
    assert config.origins["vni"] == "--vni"
    assert config.origins["peers"] == "WEBSPACES_OVERLAY_PEERS"
    assert config.origins["port"] == str(path)


def test_kubelan_environment_names_are_aliases() -> None:
    environ = {
        "KL_IP": "192.0.2.5",
        "KL_VXLAN_VNI": "6969",
        "KL_VXLAN_INTERFACE": "lxd-overlay",
        "KL_VXLAN_MTU": "-1",
        "KL_NAMESPACE": "webspaces",
        "KL_SERVICES": "lxd, other/ingress",
        "KL_HTTP_ADDRESS": ":8181",
    }
    config = load({}, environ=environ)
    assert (config.local, config.vni, config.interface, config.mtu) == (
        "192.0.2.5",
        6969,
        "lxd-overlay",
        None,
    )
    assert config.peers_kubernetes == ("webspaces/lxd", "other/ingress")
    assert config.health == "0.0.0.0:8181"
    view = config.kubelan_view()
    assert view["VXLAN"] == {"Interface": "lxd-overlay", "MTU": -1, "VNI": 6969, "Port": 4789}
    assert view["IP"] == "192.0.2.5"


def test_our_name_beats_the_kubelan_alias() -> None:
    config = load({}, environ={"KL_IP": "192.0.2.5", "WEBSPACES_OVERLAY_LOCAL": "192.0.2.6"})
    assert config.local == "192.0.2.6"


@pytest.mark.parametrize(
    ("flags", "key", "fragment"),
    [
        ({"vni": "0"}, "vni", "1-16777215"),
        ({"vni": "16777216"}, "vni", "1-16777215"),
        ({"vni": "seven"}, "vni", "not an integer"),
        ({"port": "70000"}, "port", "1-65535"),
        ({"mtu": "60"}, "mtu", "68-65485"),
        ({"mac": "01:00:5e:00:00:01"}, "mac", "multicast"),
        ({"mac": "zz"}, "mac", "not a MAC"),
        ({"address": "172.24.254.1"}, "address", "prefix"),
        ({"interface": "a-name-longer-than-15"}, "interface", "interface name"),
        ({"peers": ["192.0.2.300"]}, "peers", "not an IPv4"),
        ({"peers_kubernetes": ["noslash"]}, "peers_kubernetes", "namespace"),
        ({"peers_kubernetes": ["Bad/Name"]}, "peers_kubernetes", "Kubernetes names"),
        ({"health": "localhost"}, "health", "ADDR:PORT"),
        ({"ageing": "0"}, "ageing", "1-86400"),
        ({"peers_only": "maybe"}, "peers_only", "boolean"),
        ({"log_level": "loud"}, "log_level", "debug, info"),
        ({"peers_dns": "bad name!"}, "peers_dns", "DNS name"),
        ({"kubernetes_api": "127.0.0.1:6443"}, "kubernetes_api", "URL"),
        ({"kubernetes_api": "ftp://192.0.2.1"}, "kubernetes_api", "URL"),
        ({"udp_checksum": "off"}, "udp_checksum", "on, zero"),
        ({"source_ports": "257"}, "source_ports", "0-256"),
        ({"source_ports": "-1"}, "source_ports", "0-256"),
        ({"source_ports": "many"}, "source_ports", "not an integer"),
        ({"busy_poll": "-1"}, "busy_poll", "0-10000"),
        ({"busy_poll": "10001"}, "busy_poll", "0-10000"),
        ({"busy_poll": "fast"}, "busy_poll", "not an integer"),
        ({"cpu": "-2"}, "cpu", "not a CPU number"),
        ({"cpu": "4096"}, "cpu", "not a CPU number"),
        ({"cpu": "first"}, "cpu", "not an integer"),
    ],
)
def test_bad_values_name_the_key_and_the_origin(flags: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"local": "192.0.2.1", **flags}, environ={})
    assert info.value.key == key
    assert fragment in str(info.value)
    assert "--" + key.replace("_", "-") in str(info.value)


def test_unknown_yaml_key_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text("local: 192.0.2.1\nvnii: 5\n")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.key == "vnii"
    assert "unknown key" in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "vni: [\n"])
def test_malformed_yaml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.key == "config"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load({}, environ={}, config_file=tmp_path / "absent.yaml")


def test_local_address_is_never_its_own_peer() -> None:
    config = load({"local": "192.0.2.1", "peers": ["192.0.2.1", "192.0.2.2"]}, environ={})
    assert config.peers == ("192.0.2.2",)


def test_config_is_immutable() -> None:
    config = OverlayConfig(local="192.0.2.1")
    with pytest.raises(AttributeError):
        config.vni = 5  # type: ignore[misc]


def test_kubernetes_api_from_flag_or_environment() -> None:
    config = load({"local": "192.0.2.1", "kubernetes_api": "http://127.0.0.1:8001/"}, environ={})
    assert config.kubernetes_api == "http://127.0.0.1:8001"
    environ = {"WEBSPACES_OVERLAY_KUBERNETES_API": "https://192.0.2.100:6443"}
    assert load({"local": "192.0.2.1"}, environ=environ).kubernetes_api == "https://192.0.2.100:6443"
    assert load({"local": "192.0.2.1"}, environ={}).kubernetes_api is None


def test_wire_options_default_to_hashed_ports_with_gso() -> None:
    config = load({"local": "192.0.2.1"}, environ={})
    assert (config.udp_checksum, config.source_ports) == ("on", 16)


def test_wire_options_from_flags_environment_and_file(tmp_path: Path) -> None:
    config = load({"local": "192.0.2.1", "udp_checksum": "ZERO", "source_ports": "32"}, environ={})
    assert (config.udp_checksum, config.source_ports) == ("zero", 32)
    assert config.origins["udp_checksum"] == "--udp-checksum"
    environ = {"WEBSPACES_OVERLAY_UDP_CHECKSUM": "zero", "WEBSPACES_OVERLAY_SOURCE_PORTS": "0"}
    config = load({"local": "192.0.2.1"}, environ=environ)
    assert (config.udp_checksum, config.source_ports) == ("zero", 0)
    path = tmp_path / "overlay.yaml"
    path.write_text("local: 192.0.2.1\nudp-checksum: zero\nsource_ports: 8\n")
    config = load({"source_ports": "4"}, environ={}, config_file=path)
    assert (config.udp_checksum, config.source_ports) == ("zero", 4)
    assert config.origins["udp_checksum"] == str(path)
    path.write_text("local: 192.0.2.1\nsource-ports: 1000\n")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.key == "source_ports" and str(path) in str(info.value)


def test_latency_options_default_to_off_and_unpinned() -> None:
    config = load({"local": "192.0.2.1"}, environ={})
    assert (config.busy_poll, config.cpu) == (0, None)


def test_latency_options_from_flags_environment_and_file(tmp_path: Path) -> None:
    config = load({"local": "192.0.2.1", "busy_poll": "50", "cpu": "1"}, environ={})
    assert (config.busy_poll, config.cpu) == (50, 1)
    assert config.origins["busy_poll"] == "--busy-poll" and config.origins["cpu"] == "--cpu"
    environ = {"WEBSPACES_OVERLAY_BUSY_POLL": "20", "WEBSPACES_OVERLAY_CPU": "0"}
    config = load({"local": "192.0.2.1"}, environ=environ)
    assert (config.busy_poll, config.cpu) == (20, 0)
    assert load({"local": "192.0.2.1", "cpu": "-1"}, environ=environ).cpu is None
    path = tmp_path / "overlay.yaml"
    path.write_text("local: 192.0.2.1\nbusy-poll: 30\ncpu: 1\n")
    config = load({}, environ={}, config_file=path)
    assert (config.busy_poll, config.cpu) == (30, 1)
    assert config.origins["cpu"] == str(path)


def test_yaml_booleans_and_numbers_are_booleans(tmp_path: Path) -> None:
    """``peers_only: 1`` in YAML is an int, not a string: it is read as true, not a crash."""
    for text, expected in (
        ("peers_only: 1\n", True),
        ("peers_only: false\n", False),
        ("peers_only: on\n", True),
    ):
        path = tmp_path / "overlay.yaml"
        path.write_text(f"local: 192.0.2.9\n{text}")
        assert load({}, environ={}, config_file=path).peers_only is expected

"""Configuration of ``webspaces images serve``: precedence, validation, OctoLXD's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from program.config import ConfigError
from simplestreams.config import ImagesConfig, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "images.yaml"
    path.write_text(text)
    return path


def test_defaults_are_https_on_8443_from_a_directory() -> None:
    config = load({}, environ={})
    assert config.listen == ("0.0.0.0:8443",)
    assert config.tls and config.plain_listen == ()
    assert [spec.base for spec in config.directories()] == [""]
    assert config.ttl == 300.0
    assert config.github_token is None


def test_flags_win_over_environment_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ttl: 10\nscan_interval: 3\nlog_level: debug\nlisten: [127.0.0.1:1]\n")
    environ = {"WEBSPACES_IMAGES_TTL": "20", "WEBSPACES_IMAGES_LISTEN": "127.0.0.1:2,127.0.0.1:3"}
    config = load({"ttl": "30"}, config_file=path, environ=environ)
    assert (config.ttl, config.scan_interval, config.log_level) == (30.0, 3.0, "debug")
    assert config.listen == ("127.0.0.1:2", "127.0.0.1:3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown key(s) colour"),
        ("ttl: -1\n", "ttl (from"),
        ("listen: [nowhere]\n", "not HOST:PORT"),
        ("backends: [ftp:/x]\n", "expected directory:PATH or github"),
        ("base_path: local/\n", "a base path starts with '/'"),
        ("allow: [justowner]\n", "is not OWNER/REPO"),
        ("aliases: [busybox]\n", "expected NAME=ALIAS"),
        ("tls_cert: /x.pem\n", "tls_cert and tls_key go together"),
        ("prereleases: maybe\n", "not a boolean"),
        ("- a list\n", "must hold a mapping"),
        ("http: {listen_address: ':80', tls: yes}\n", "takes only listen_address"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load({}, config_file=write(tmp_path, text), environ={})


def test_octolxd_names_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "log_level: warning\nhttp:\n  listen_address: ':8080'\n")
    config = load({}, config_file=path, environ={})
    assert (config.log_level, config.plain_listen) == ("warning", (":8080",))
    config = load({}, environ={"OCTOLXD_HTTP_LISTEN_ADDRESS": ":81", "OCTOLXD_LOG_LEVEL": "debug"})
    assert (config.log_level, config.plain_listen) == ("debug", (":81",))


def test_github_beside_a_directory_moves_it_under_local() -> None:
    config = load({"backends": ["directory:/srv/images", "github"]}, environ={})
    assert [(str(spec.path), spec.base) for spec in config.directories()] == [("/srv/images", "/local")]
    with pytest.raises(ConfigError, match="github given twice"):
        load({"backends": ["github", "github"]}, environ={})


def test_token_comes_from_environment_or_file_and_is_not_in_repr(tmp_path: Path) -> None:
    config = load({}, environ={"GITHUB_TOKEN": "ghp_secret1"})
    assert config.github_token == "ghp_secret1"
    assert "ghp_secret1" not in repr(config)
    token_file = tmp_path / "token"
    token_file.write_text("ghp_secret2\n")
    config = load({"github_token_file": str(token_file)}, environ={"GITHUB_TOKEN": "ghp_secret1"})
    assert config.github_token == "ghp_secret2"
    with pytest.raises(ConfigError, match="github_token_file"):
        load({"github_token_file": str(tmp_path / "missing")}, environ={})


def test_aliases_from_yaml_mapping_and_flags(tmp_path: Path) -> None:
    config = load({}, config_file=write(tmp_path, "aliases: {busybox: [bb, tiny]}\n"), environ={})
    assert config.extra_aliases() == {"busybox": ("bb", "tiny")}
    config = load({"aliases": ["debian=deb,stable"]}, environ={})
    assert config.extra_aliases() == {"debian": ("deb", "stable")}
    assert isinstance(config, ImagesConfig)

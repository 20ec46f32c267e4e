"""The configuration loader: precedence, aliases, nested keys, ``*_file`` secrets, errors naming the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from program.checks import check_bool, check_int, check_port, split_list
from program.config import ConfigError, Key, Table

TABLE = Table(
    "TEST_",
    (
        Key("port", check_port, "a port", "N", default=80),
        Key("names", split_list, "a name (repeatable)", "NAME", label="name", repeatable=True),
        Key("verbose", check_bool, "talk", "BOOL", env=("OLD_VERBOSE",)),
        Key("jwt.secret", str, "the signing secret", secret=True),
        Key("jwt.ttl", check_int, "token lifetime", "SECONDS"),
        Key("hook", str, flag=None, yaml=("hooks.up",)),
    ),
)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    assert TABLE.load({}, {}).values == {"port": 80}
    path = write(tmp_path, "port: 81\nverbose: false\nname: [a, b]\n")
    loaded = TABLE.load({"port": "83"}, {"TEST_PORT": "82", "TEST_NAME": "c"}, path)
    assert loaded.values == {"port": 83, "names": ("c",), "verbose": False}
    assert loaded.origins == {"port": "--port", "names": "TEST_NAME", "verbose": str(path)}


def test_every_value_given_is_checked_also_one_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "port: none\n")
    with pytest.raises(ConfigError) as info:
        TABLE.load({"port": "81"}, {}, path)
    assert (info.value.key, info.value.origin) == ("port", str(path))
    assert str(info.value) == f"port (from {path}): not an integer: 'none'"


def test_our_environment_name_beats_an_alias() -> None:
    assert TABLE.load({}, {"OLD_VERBOSE": "yes"}).values["verbose"] is True
    loaded = TABLE.load({}, {"OLD_VERBOSE": "yes", "TEST_VERBOSE": "no"})
    assert loaded.values["verbose"] is False and loaded.origins["verbose"] == "TEST_VERBOSE"


def test_nested_keys_from_a_mapping_a_dotted_key_the_environment_and_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "jwt:\n  secret: from-file\n  ttl: 60\n")
    assert TABLE.load({}, {}, path).values["jwt_secret"] == "from-file"
    path = write(tmp_path, "jwt.ttl: 61\n")
    assert TABLE.load({}, {}, path).values["jwt_ttl"] == 61
    loaded = TABLE.load({"jwt_ttl": "63"}, {"TEST_JWT_TTL": "62"}, path)
    assert (loaded.values["jwt_ttl"], loaded.origins["jwt_ttl"]) == (63, "--jwt-ttl")
    with pytest.raises(ConfigError) as info:
        TABLE.load({}, {}, write(tmp_path, "jwt: {sekret: x}\n"))
    assert info.value.key == "jwt.sekret" and "unknown key(s) jwt.sekret" in str(info.value)


def test_yaml_aliases_and_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, "hooks: {up: /bin/true}\n")
    assert TABLE.load({}, {}, path).values["hook"] == "/bin/true"
    path = write(tmp_path, "hooks: {up: /bin/true}\nhook: /bin/false\n")
    assert TABLE.load({}, {}, path).values["hook"] == "/bin/false"  # the key's own name wins
    assert TABLE.load({}, {}, write(tmp_path, "names: [x]\n")).values["names"] == ("x",)


def test_secrets_from_a_file_at_every_level(tmp_path: Path) -> None:
    secret = write(tmp_path, "  s3cret\n", "secret")
    path = write(tmp_path, f"jwt:\n  secret_file: {secret}\n")
    loaded = TABLE.load({}, {}, path)
    assert (loaded.values["jwt_secret"], loaded.origins["jwt_secret"]) == ("s3cret", str(path))
    loaded = TABLE.load({}, {"TEST_JWT_SECRET_FILE": str(secret)})
    assert (loaded.values["jwt_secret"], loaded.origins["jwt_secret"]) == ("s3cret", "TEST_JWT_SECRET_FILE")
    loaded = TABLE.load({"jwt_secret_file": str(secret)}, {"TEST_JWT_SECRET": "env"})
    assert (loaded.values["jwt_secret"], loaded.origins["jwt_secret"]) == ("s3cret", "--jwt-secret-file")
    assert "jwt_secret" not in TABLE.load({"jwt_secret": "on-the-command-line"}, {}).values
    with pytest.raises(ConfigError) as info:
        TABLE.load({}, {"TEST_JWT_SECRET_FILE": str(tmp_path / "missing")})
    assert info.value.key == "jwt.secret_file" and "cannot read it" in str(info.value)
    with pytest.raises(ConfigError, match="given both"):
        TABLE.load({}, {}, write(tmp_path, f"jwt.secret: a\njwt.secret_file: {secret}\n"))
    with pytest.raises(ConfigError, match="given both"):
        TABLE.load({}, {"TEST_JWT_SECRET_FILE": str(secret), "TEST_JWT_SECRET": "env"})


def test_unknown_keys_are_all_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        TABLE.load({}, {}, write(tmp_path, "colour: blue\nport: 1\nsize: 2\n"))
    assert info.value.key == "colour"
    assert info.value.message.startswith("unknown key(s) colour, size; valid keys: port, name, verbose")


def test_a_section_can_explain_itself(tmp_path: Path) -> None:
    table = Table("T_", TABLE.keys, sections={"hooks": "hooks takes only up"})
    with pytest.raises(ConfigError, match="hooks takes only up") as info:
        table.load({}, {}, write(tmp_path, "hooks: {up: a, down: b}\n"))
    assert info.value.key == "hooks"
    with pytest.raises(ConfigError, match="hooks takes only up"):
        table.load({}, {}, write(tmp_path, "hooks: 5\n"))


@pytest.mark.parametrize(
    ("text", "fragment"), [("- a\n", "must hold a mapping"), ("port: [\n", "not valid YAML")]
)
def test_a_bad_file_is_the_config_key(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        TABLE.load({}, {}, write(tmp_path, text))
    assert info.value.key == "config" and fragment in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        TABLE.load({}, {}, tmp_path / "absent.yaml")


def test_late_checks_replace_the_checker_above_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\n")
    loaded = TABLE.load({}, {"TEST_NAME": "b"}, path, late_checks={"names": lambda v: ("late", v)})
    assert loaded.values["names"] == ("late", "b")
    assert TABLE.load({}, {}, path, late_checks={"names": lambda v: ("late", v)}).values["names"] == ("a",)


def test_arguments_from_the_table() -> None:
    parser = argparse.ArgumentParser()
    TABLE.add_arguments(parser)
    args = parser.parse_args(["--name", "a", "--name", "b", "--jwt-secret-file", "/s", "--jwt-ttl", "5"])
    flags = TABLE.flags_from(args)
    assert flags == {
        "port": None,
        "names": ["a", "b"],
        "verbose": None,
        "jwt_secret": None,
        "jwt_secret_file": "/s",
        "jwt_ttl": "5",
        "hook": None,
    }
    assert args.config is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--hook", "x"])  # environment and file only
    assert "--jwt-secret" not in parser._option_string_actions  # a secret is never a flag itself


def test_names_used_in_messages() -> None:
    key = TABLE.key("names")
    assert (TABLE.env_of(key), TABLE.flag_of(key), key.display) == ("TEST_NAME", "--name", "name")
    assert TABLE.names == ("port", "names", "verbose", "jwt_secret", "jwt_ttl", "hook")
    with pytest.raises(ValueError, match="declared twice"):
        Table("X_", (Key("a", str), Key("a", str)))

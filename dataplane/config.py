"""What every node program's configuration shares: the error type and the YAML file reader.

Each program (``webspaces overlay``, ``webspaces dhcp``) merges flags over environment over a YAML
file over defaults in its own module; a bad value is a :class:`ConfigError` naming the key and
where the value came from, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is missing or invalid; ``key`` names it, ``origin`` says where it came from."""

    def __init__(self, key: str, message: str, origin: str = "") -> None:
        where = f" (from {origin})" if origin else ""
        super().__init__(f"{key}{where}: {message}")
        self.key = key
        self.origin = origin


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file; ConfigError (key ``config``) for anything else."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}", str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"not valid YAML: {exc}", str(path)) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError("config", "the file must hold a mapping of keys to values", str(path))
    return document


# -- value checkers shared by the programs' key tables (each raises ValueError saying why) --------

LOG_LEVELS = ("debug", "info", "warning", "error")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_-]{1,63}\.?$"
)


def check_ipv4(text: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(text).strip()))
    except ValueError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def check_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        raise ValueError(f"not an integer: {value!r}") from None


def split_list(value: Any, separator: str = ",") -> tuple[str, ...]:
    """A list from YAML, or a ``separator``-joined string from a flag or the environment."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(separator)]
    elif isinstance(value, Iterable):
        items = [str(part).strip() for part in value]
    else:
        items = [str(value).strip()]
    return tuple(item for item in items if item)


def check_interface(value: Any) -> str:
    text = str(value).strip()
    if not IFNAME.match(text):
        raise ValueError(f"not a Linux interface name (1-15 of A-Z a-z 0-9 _ . -): {value!r}")
    return text


def check_bool(value: Any) -> bool:
    """A YAML boolean, or true/false, yes/no, on/off, 1/0 from a flag or the environment."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean (true/false): {value!r}")


def check_log_level(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"not one of {', '.join(LOG_LEVELS)}: {value!r}")
    return text

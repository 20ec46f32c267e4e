"""Value checkers for configuration key tables: each takes a raw value (a YAML scalar or list, or a
string from a flag or the environment) and returns the checked value or raises ``ValueError``
saying why; the loader adds the key and the origin (:class:`program.config.ConfigError`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ less the NUL; what iproute2 accepts
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


def check_port(value: Any) -> int:
    port = check_int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range 1-65535: {port}")
    return port


def check_host_port(value: Any, default_port: int | None = None) -> tuple[str, int]:
    """``ADDR:PORT`` (IPv4), or ``ADDR`` alone when there is a ``default_port``; ``:PORT`` is every
    address (kubelan's ``:8181``)."""
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"expected ADDR:PORT, like 127.0.0.1:9267: {value!r}")
        host, port_text = text, str(default_port)
    return check_ipv4(host or "0.0.0.0"), check_port(port_text)


def check_listen(value: Any) -> str:
    """Where an embedded HTTP server listens, ``ADDR:PORT``; "" (also ``off``, ``none``): nowhere."""
    text = str(value).strip()
    if text.lower() in ("", "off", "none"):
        return ""
    host, port = check_host_port(text)
    return f"{host}:{port}"


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

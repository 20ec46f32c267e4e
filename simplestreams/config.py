"""Configuration of ``webspaces images serve``: flags over environment over a YAML file over defaults.

Every key is a flag (``--scan-interval``), an environment variable (``WEBSPACES_IMAGES_SCAN_INTERVAL``)
and a YAML key (``scan_interval``). Unknown YAML keys are an error (spec §6). OctoLXD's names are
accepted for migration (spec §3.1): ``log_level``, ``http.listen_address`` (plain HTTP, which is what
OctoLXD served) and the ``OCTOLXD_*`` variables. The GitHub token is read from the environment only
(``WEBSPACES_IMAGES_GITHUB_TOKEN`` or ``GITHUB_TOKEN``) or from a file, never from a flag, so it
stays out of process listings and logs.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

# The value checkers every program shares (a leaf module: yaml and ipaddress, nothing of the engine).
from dataplane.config import check_bool, check_log_level

from .errors import ConfigError

DEFAULT_STATE_DIR = "/var/lib/webspaces/images"
ENV_PREFIX = "WEBSPACES_IMAGES_"
REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class DirectorySpec:
    path: Path
    base: str  # "" means "/"


@dataclass(frozen=True)
class ImagesConfig:
    backends: tuple[str, ...] = ("directory:/var/lib/webspaces/images/published",)
    base_path: str = ""
    listen: tuple[str, ...] = ("0.0.0.0:8443",)
    plain_listen: tuple[str, ...] = ()
    tls: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    tls_san: tuple[str, ...] = ()
    state_dir: str = DEFAULT_STATE_DIR
    ttl: float = 300.0
    scan_interval: float = 2.0
    github_api: str = "https://api.github.com"
    github_token_file: str = ""
    allow: tuple[str, ...] = ()
    prereleases: bool = True
    support_eol: bool = False
    incus_twin: bool = False
    aliases: tuple[str, ...] = ()  # NAME=ALIAS[,ALIAS...]
    log_level: str = "info"
    github_token: str | None = field(default=None, repr=False)

    def directories(self) -> list[DirectorySpec]:
        specs = [b.partition(":")[2] for b in self.backends if b.startswith("directory:")]
        base = self.base_path
        if not base and "github" in self.backends:
            base = "/local"  # never shadowed by an /<owner>/<repo> route (spec §6)
        if len(specs) > 1 and not base:
            raise ConfigError("backends: more than one directory backend needs distinct base paths")
        return [DirectorySpec(Path(spec), base if i == 0 else f"{base}{i}") for i, spec in enumerate(specs)]

    def extra_aliases(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, tuple[str, ...]] = {}
        for entry in self.aliases:
            name, _, aliases = entry.partition("=")
            result[name] = tuple(a for a in aliases.split(",") if a)
        return result

    def listen_hosts(self) -> list[str]:
        return [split_address(a, "listen")[0] for a in self.listen]


def split_address(text: str, key: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all addresses)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: {text!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value)
    raise ValueError(f"expected a list or a comma-separated string, got {value!r}")


def _as_seconds(value: Any) -> float:
    number = float(value)
    if not 0 < number <= 86400:
        raise ValueError(f"expected seconds in (0, 86400], got {value!r}")
    return number


def _check_backend(value: Any) -> tuple[str, ...]:
    backends = _as_list(value)
    if not backends:
        raise ValueError("at least one backend is needed")
    for backend in backends:
        if backend != "github" and not (backend.startswith("directory:") and len(backend) > 10):
            raise ValueError(f"{backend!r}: expected directory:PATH or github")
    if backends.count("github") > 1:
        raise ValueError("github given twice")
    return backends


def _check_base(value: Any) -> str:
    text = str(value).strip()
    if text in ("", "/"):
        return ""
    if not text.startswith("/") or text.endswith("/") or "//" in text:
        raise ValueError(f"{text!r}: a base path starts with '/' and does not end with one")
    return text


def _check_addresses(value: Any) -> tuple[str, ...]:
    addresses = _as_list(value)
    for address in addresses:
        split_address(address, "address")
    return addresses


def _check_allow(value: Any) -> tuple[str, ...]:
    repos = _as_list(value)
    for repo in repos:
        if not REPO.match(repo):
            raise ValueError(f"{repo!r} is not OWNER/REPO")
    return repos


def _check_aliases(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):  # YAML: {name: [alias, ...]}
        value = [f"{name}={','.join(_as_list(aliases))}" for name, aliases in value.items()]
    entries = _as_list(value) if not isinstance(value, list | tuple) else tuple(map(str, value))
    for entry in entries:
        name, sep, aliases = entry.partition("=")
        if not sep or not name or not aliases or any(c.isspace() for c in entry):
            raise ValueError(f"{entry!r}: expected NAME=ALIAS[,ALIAS...]")
    return entries


CHECKS: dict[str, Callable[[Any], Any]] = {
    "backends": _check_backend,
    "base_path": _check_base,
    "listen": _check_addresses,
    "plain_listen": _check_addresses,
    "tls": check_bool,
    "tls_cert": str,
    "tls_key": str,
    "tls_san": _as_list,
    "state_dir": str,
    "ttl": _as_seconds,
    "scan_interval": _as_seconds,
    "github_api": str,
    "github_token_file": str,
    "allow": _check_allow,
    "prereleases": check_bool,
    "support_eol": check_bool,
    "incus_twin": check_bool,
    "aliases": _check_aliases,
    "log_level": check_log_level,
}
KEYS = tuple(f.name for f in fields(ImagesConfig) if f.name != "github_token")
assert set(KEYS) == set(CHECKS)

HELP = {
    "backends": "where images come from: directory:PATH (a folder of releases, the default) and/or "
    "github (releases of the repository named by the URL, OctoLXD's routes); repeatable",
    "base_path": "URL prefix of the directory backend (default /, or /local beside github)",
    "listen": "HOST:PORT serving HTTPS, and plain HTTP to non-TLS clients on the same port (LXD "
    "probes image files over plain HTTP first); repeatable (default 0.0.0.0:8443)",
    "plain_listen": "HOST:PORT serving plain HTTP only, e.g. :80 for base URLs without a port",
    "tls": "serve TLS on --listen ports (false: plain HTTP only, for a TLS-terminating ingress)",
    "tls_cert": "PEM certificate (chain); default: a self-signed one kept in the state directory",
    "tls_key": "PEM private key for --tls-cert",
    "tls_san": "extra DNS names or IPs for the self-signed certificate; repeatable",
    "state_dir": f"where the generated certificate and the hash cache live (default {DEFAULT_STATE_DIR})",
    "ttl": "seconds a GitHub index is served before it is refreshed (default 300)",
    "scan_interval": "seconds between checks of a directory backend for new files (default 2)",
    "github_api": "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)",
    "github_token_file": "file holding a GitHub token (else WEBSPACES_IMAGES_GITHUB_TOKEN or GITHUB_TOKEN)",
    "allow": "OWNER/REPO the github backend serves (default: any); repeatable",
    "prereleases": "publish GitHub prereleases (default true)",
    "support_eol": "publish support_eol from metadata expiry_date (default false: LXD would prune)",
    "incus_twin": "add an incus.tar.xz item so Incus can use the same index",
    "aliases": "extra aliases: NAME=ALIAS[,ALIAS...]; repeatable",
    "log_level": "debug, info, warning or error (default info)",
}
METAVAR = {
    "backends": "directory:PATH|github",
    "base_path": "/PREFIX",
    "listen": "HOST:PORT",
    "plain_listen": "HOST:PORT",
    "tls": "BOOL",
    "tls_cert": "FILE",
    "tls_key": "FILE",
    "tls_san": "NAME",
    "state_dir": "DIR",
    "ttl": "SECONDS",
    "scan_interval": "SECONDS",
    "github_api": "URL",
    "github_token_file": "FILE",
    "allow": "OWNER/REPO",
    "prereleases": "BOOL",
    "support_eol": "BOOL",
    "incus_twin": "BOOL",
    "aliases": "NAME=ALIAS",
    "log_level": "LEVEL",
}
REPEATABLE = {"backends", "listen", "plain_listen", "tls_san", "allow", "aliases"}
FLAG = {"backends": "backend", "aliases": "alias"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of the keys below")
    for key in KEYS:
        flag = "--" + FLAG.get(key, key).replace("_", "-")
        if key in REPEATABLE:
            parser.add_argument(flag, dest=key, action="append", metavar=METAVAR[key], help=HELP[key])
        else:
            parser.add_argument(flag, dest=key, metavar=METAVAR[key], help=HELP[key])


def _octolxd(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Map OctoLXD's file keys and OCTOLXD_* variables onto ours (spec §3.1)."""
    http = document.pop("http", None)
    if http is not None:
        if not isinstance(http, dict) or set(http) - {"listen_address"}:
            raise ConfigError("http: OctoLXD's http section takes only listen_address")
        if "listen_address" in http:
            document.setdefault("plain_listen", [http["listen_address"]])
    if "OCTOLXD_HTTP_LISTEN_ADDRESS" in environ:
        document["plain_listen"] = [environ["OCTOLXD_HTTP_LISTEN_ADDRESS"]]
    if "OCTOLXD_LOG_LEVEL" in environ:
        document["log_level"] = environ["OCTOLXD_LOG_LEVEL"]
    return document


def load(
    flags: Mapping[str, Any], config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> ImagesConfig:
    env = os.environ if environ is None else environ
    merged: dict[str, tuple[Any, str]] = {}
    if config_file is not None:
        try:
            document = yaml.safe_load(config_file.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config: cannot read {config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {config_file} is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"config: {config_file} must hold a mapping of keys to values")
        document = _octolxd(dict(document), env)
        unknown = sorted(set(document) - set(KEYS))
        if unknown:
            raise ConfigError(f"config: unknown key(s) {', '.join(unknown)} in {config_file}")
        merged.update({key: (value, str(config_file)) for key, value in document.items()})
    elif any(name.startswith("OCTOLXD_") for name in env):
        merged.update({key: (value, "OCTOLXD_*") for key, value in _octolxd({}, env).items()})
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if name in env:
            merged[key] = (env[name], name)
    for key in KEYS:
        value = flags.get(key)
        if value is not None:
            merged[key] = (value, "--" + FLAG.get(key, key).replace("_", "-"))
    values: dict[str, Any] = {}
    for key, (value, origin) in merged.items():
        try:
            values[key] = CHECKS[key](value)
        except (ValueError, TypeError, ConfigError) as exc:
            raise ConfigError(f"{key} (from {origin}): {exc}") from None
    config = ImagesConfig(**values)
    token = env.get(ENV_PREFIX + "GITHUB_TOKEN") or env.get("GITHUB_TOKEN")
    if config.github_token_file:
        try:
            token = Path(config.github_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"github_token_file: cannot read it: {exc.strerror}") from None
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key go together")
    config.directories()  # validates the base paths
    return ImagesConfig(**{**values, "github_token": token or None})

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

from program.checks import check_bool, check_log_level
from program.config import ConfigError, Key, Table, read_secret

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
            raise ConfigError("backends", "more than one directory backend needs distinct base paths")
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
        raise ConfigError(key, f"{text!r} is not HOST:PORT")
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


TABLE = Table(
    ENV_PREFIX,
    (
        Key(
            "backends",
            _check_backend,
            "where images come from: directory:PATH (a folder of releases, the default) and/or "
            "github (releases of the repository named by the URL, OctoLXD's routes); repeatable",
            "directory:PATH|github",
            flag="backend",
            repeatable=True,
        ),
        Key(
            "base_path",
            _check_base,
            "URL prefix of the directory backend (default /, or /local beside github)",
            "/PREFIX",
        ),
        Key(
            "listen",
            _check_addresses,
            "HOST:PORT serving HTTPS, and plain HTTP to non-TLS clients on the same port (LXD "
            "probes image files over plain HTTP first); repeatable (default 0.0.0.0:8443)",
            "HOST:PORT",
            repeatable=True,
        ),
        # OctoLXD served plain HTTP only, on http.listen_address (spec §3.1).
        Key(
            "plain_listen",
            _check_addresses,
            "HOST:PORT serving plain HTTP only, e.g. :80 for base URLs without a port",
            "HOST:PORT",
            repeatable=True,
            env=("OCTOLXD_HTTP_LISTEN_ADDRESS",),
            yaml=("http.listen_address",),
        ),
        Key(
            "tls",
            check_bool,
            "serve TLS on --listen ports (false: plain HTTP only, for a TLS-terminating ingress)",
            "BOOL",
        ),
        Key(
            "tls_cert",
            str,
            "PEM certificate (chain); default: a self-signed one kept in the state directory",
            "FILE",
        ),
        Key("tls_key", str, "PEM private key for --tls-cert", "FILE"),
        Key(
            "tls_san",
            _as_list,
            "extra DNS names or IPs for the self-signed certificate; repeatable",
            "NAME",
            repeatable=True,
        ),
        Key(
            "state_dir",
            str,
            f"where the generated certificate and the hash cache live (default {DEFAULT_STATE_DIR})",
            "DIR",
        ),
        Key(
            "ttl",
            _as_seconds,
            "seconds a GitHub index is served before it is refreshed (default 300)",
            "SECONDS",
        ),
        Key(
            "scan_interval",
            _as_seconds,
            "seconds between checks of a directory backend for new files (default 2)",
            "SECONDS",
        ),
        Key("github_api", str, "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)", "URL"),
        Key(
            "github_token_file",
            str,
            "file holding a GitHub token (else WEBSPACES_IMAGES_GITHUB_TOKEN or GITHUB_TOKEN)",
            "FILE",
        ),
        Key(
            "allow",
            _check_allow,
            "OWNER/REPO the github backend serves (default: any); repeatable",
            "OWNER/REPO",
            repeatable=True,
        ),
        Key("prereleases", check_bool, "publish GitHub prereleases (default true)", "BOOL"),
        Key(
            "support_eol",
            check_bool,
            "publish support_eol from metadata expiry_date (default false: LXD would prune)",
            "BOOL",
        ),
        Key("incus_twin", check_bool, "add an incus.tar.xz item so Incus can use the same index", "BOOL"),
        Key(
            "aliases",
            _check_aliases,
            "extra aliases: NAME=ALIAS[,ALIAS...]; repeatable",
            "NAME=ALIAS",
            flag="alias",
            repeatable=True,
        ),
        Key(
            "log_level",
            check_log_level,
            "debug, info, warning or error (default info)",
            "LEVEL",
            env=("OCTOLXD_LOG_LEVEL",),
        ),
    ),
    config_help="YAML file of the keys below",
    sections={"http": "OctoLXD's http section takes only listen_address"},
)
KEYS = TABLE.names
CHECKS: dict[str, Callable[[Any], Any]] = {key.attr: key.check for key in TABLE.keys}
assert set(KEYS) == {f.name for f in fields(ImagesConfig) if f.name != "github_token"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    TABLE.add_arguments(parser)


def flags_from(args: argparse.Namespace) -> dict[str, Any]:
    return TABLE.flags_from(args)


def load(
    flags: Mapping[str, Any], config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> ImagesConfig:
    env = os.environ if environ is None else environ
    loaded = TABLE.load(flags, env, config_file)
    config = ImagesConfig(**loaded.values)
    # The token is read from the environment or a file, never a flag (spec §6): out of process listings.
    token = env.get(ENV_PREFIX + "GITHUB_TOKEN") or env.get("GITHUB_TOKEN")
    if config.github_token_file:
        token = read_secret(
            config.github_token_file, "github_token_file", loaded.origins.get("github_token_file", "")
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        given = "tls_cert" if config.tls_cert else "tls_key"
        raise ConfigError(given, "tls_cert and tls_key go together", loaded.origins.get(given, ""))
    config.directories()  # validates the base paths
    return ImagesConfig(**{**loaded.values, "github_token": token or None})

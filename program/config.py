"""One configuration loader for every program: defaults < a YAML file < the environment < flags.

A program declares its keys in a :class:`Table` of :class:`Key` rows (name, checker, help, metavar,
flag, environment aliases ...); loading, ``--help`` and the environment are generic. Every key can
be given three ways, highest precedence first:

1. a command-line flag, ``--lease-time 7200`` (a repeatable key repeats the flag);
2. an environment variable ``<PREFIX><KEY>`` (``WEBSPACES_DHCP_LEASE_TIME``), or one of the key's
   alias names (kubelan's ``KL_IP``), read only when ours is absent;
3. a key of the YAML file named by ``--config`` (``lease-time:`` or ``lease_time:``); a nested key
   ``jwt.secret`` is ``jwt: {secret: ...}`` in the file (or ``jwt.secret:``), ``<PREFIX>JWT_SECRET``
   in the environment and ``--jwt-secret`` on the command line.

Within one level a key's own name wins over its aliases, and a list given at a higher level
replaces the lower one. Every value given is checked, also one a higher level overrides, so a typo
never hides behind a default: a bad value or an unknown YAML key is a :class:`ConfigError` naming
the key and where the value came from.

A *secret* key ``x`` may instead be given as ``x_file`` (``--x-file``, ``<PREFIX>X_FILE``), naming a
file whose content, stripped, is the value: a Kubernetes Secret mounted as a file stays out of the
environment, and a secret is never a flag (process listings show flags).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Check = Callable[[Any], Any]


class ConfigError(ValueError):
    """A configuration value is missing or invalid; ``key`` names it, ``origin`` says where it came from."""

    def __init__(self, key: str, message: str, origin: str = "") -> None:
        where = f" (from {origin})" if origin else ""
        super().__init__(f"{key}{where}: {message}")
        self.key = key
        self.message = message
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


def read_secret(path: Any, key: str, origin: str = "") -> str:
    """The stripped content of the file at ``path``: the value of a secret given as ``key``."""
    try:
        return Path(str(path).strip()).read_text().strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read it: {exc.strerror}", origin) from None


_NO_DEFAULT: Any = object()


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key.

    ``name`` is the key (dotted when nested: ``jwt.secret``); ``attr`` (dots as ``_``) is how the
    flags mapping and the loaded values know it. ``label`` is the name messages, the environment
    and the YAML file use when it differs from ``name`` (DHCP's ``pools`` is ``pool``); ``flag``
    the flag's name when it differs from the label (``--backend``), ``None`` for no flag.
    """

    name: str
    check: Check
    help: str = ""
    metavar: str | None = None
    default: Any = _NO_DEFAULT  # None of a default: the program's dataclass holds it
    label: str = ""
    flag: str | None = ""
    repeatable: bool = False
    env: tuple[str, ...] = ()  # other environment names, read when ours is absent
    yaml: tuple[str, ...] = ()  # other YAML names or dotted paths, used when ours is absent
    secret: bool = False  # also ``<name>_file``; never a flag itself
    flag_origin: str = ""  # how messages name a flag's value, when not --FLAG

    @property
    def attr(self) -> str:
        return self.name.replace(".", "_")

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def option(self) -> str | None:
        """The command-line flag, ``--lease-time``; None when the key has none."""
        if self.flag is None:
            return None
        return "--" + (self.flag or self.display).replace("_", "-").replace(".", "-")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a table loaded: checked values (defaults included) and where each given one came from."""

    values: dict[str, Any]
    origins: dict[str, str]


def _normal(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class Table:
    """A program's keys and how to find them: ``env_prefix`` (``WEBSPACES_DHCP_``) and, per YAML
    section, the message an unknown key inside it gets (``sections``; default: unknown key)."""

    env_prefix: str
    keys: tuple[Key, ...]
    config_help: str = "YAML file with any of the keys below"
    sections: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [key.attr for key in self.keys]
        if len(set(names)) != len(names):
            raise ValueError(f"a key is declared twice: {names}")

    # -- names ---------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(key.attr for key in self.keys)

    def key(self, name: str) -> Key:
        for key in self.keys:
            if name in (key.attr, key.name):
                return key
        raise KeyError(name)

    def env_of(self, key: Key) -> str:
        return self.env_prefix + key.display.upper().replace(".", "_").replace("-", "_")

    def flag_of(self, key: Key) -> str:
        """How messages name a value from the flags."""
        return key.flag_origin or key.option() or "--" + key.display.replace("_", "-")

    def _yaml_names(self) -> dict[str, tuple[Key, int, bool]]:
        """Normalised YAML name -> (key, rank, is the _file form); rank 0 is the key's own name."""
        found: dict[str, tuple[Key, int, bool]] = {}
        for key in self.keys:
            for name in {key.name, key.display}:
                found[_normal(name)] = (key, 0, False)
                if key.secret:
                    found[_normal(name) + "_file"] = (key, 0, True)
            for alias in key.yaml:
                found.setdefault(_normal(alias), (key, 1, False))
        return found

    def valid_keys(self) -> str:
        return ", ".join(key.display for key in self.keys)

    # -- loading -------------------------------------------------------------------------------

    def load(
        self,
        flags: Mapping[str, Any],
        environ: Mapping[str, str],
        config_file: Path | None = None,
        *,
        late_checks: Mapping[str, Check] | None = None,
    ) -> Loaded:
        """Merge defaults, the YAML file, the environment and the (set) flags, checking each value.

        ``late_checks`` replace the table's checker of a key for environment and flag values (the
        overlay's ``KL_NAMESPACE`` completes ``KL_SERVICES`` and ``--peers-kubernetes``, not the file).
        """
        values = {key.attr: key.default for key in self.keys if key.has_default}
        origins: dict[str, str] = {}
        if config_file is not None:
            self._apply_level(values, origins, self._from_file(config_file))
        late = dict(late_checks or {})
        self._apply_level(values, origins, self._from_environment(environ), late)
        self._apply_level(values, origins, self._from_flags(flags), late)
        return Loaded(values, origins)

    def _apply_level(
        self,
        values: dict[str, Any],
        origins: dict[str, str],
        given: Iterator[tuple[Key, int, bool, Any, str]],
        checks: Mapping[str, Check] | None = None,
    ) -> None:
        """Apply one level's values: per key only those of the best rank (own name before aliases),
        in the order given; a secret given both as itself and as its file is an error."""
        by_key: dict[str, list[tuple[int, bool, Any, str]]] = {}
        for key, rank, is_file, raw, origin in given:
            by_key.setdefault(key.attr, []).append((rank, is_file, raw, origin))
        for key in self.keys:
            entries = by_key.get(key.attr)
            if not entries:
                continue
            best = min(rank for rank, *_ in entries)
            entries = [entry for entry in entries if entry[0] == best]
            if len({is_file for _, is_file, _, _ in entries}) > 1:
                origin = " and ".join(origin for *_, origin in entries)
                raise ConfigError(key.display, f"given both as {key.display} and as its file", origin)
            check = (checks or {}).get(key.attr, key.check)
            for _, is_file, raw, origin in entries:
                value = read_secret(raw, f"{key.display}_file", origin) if is_file else raw
                try:
                    values[key.attr] = check(value)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(key.display, str(exc), origin) from None
                origins[key.attr] = origin

    def _from_file(self, path: Path) -> Iterator[tuple[Key, int, bool, Any, str]]:
        origin = str(path)
        names = self._yaml_names()
        sections = {name.rpartition(".")[0] for name in names if "." in name}
        sections |= {prefix for section in sections for prefix in _prefixes(section)}
        found: list[tuple[Key, int, bool, Any, str]] = []
        unknown: list[str] = []

        def walk(document: Mapping[Any, Any], prefix: str) -> None:
            for raw_key, raw in document.items():
                name = prefix + str(raw_key)
                normal = _normal(name)
                if normal in names:
                    key, rank, is_file = names[normal]
                    found.append((key, rank, is_file, raw, origin))
                elif normal in sections and isinstance(raw, Mapping):
                    walk(raw, name + ".")
                else:
                    section = next((s for s in _prefixes(normal) if s in self.sections), None)
                    if section is None and normal in self.sections:
                        section = normal
                    if section is not None:
                        raise ConfigError(section, self.sections[section], origin)
                    unknown.append(name)

        walk(read_yaml(path), "")
        if unknown:
            raise ConfigError(
                unknown[0],
                f"unknown key(s) {', '.join(unknown)}; valid keys: {self.valid_keys()}",
                origin,
            )
        yield from found

    def _from_environment(self, environ: Mapping[str, str]) -> Iterator[tuple[Key, int, bool, Any, str]]:
        for key in self.keys:
            name = self.env_of(key)
            if name in environ:
                yield key, 0, False, environ[name], name
            if key.secret and name + "_FILE" in environ:
                yield key, 0, True, environ[name + "_FILE"], name + "_FILE"
            for alias in key.env:
                if alias in environ:
                    yield key, 1, False, environ[alias], alias

    def _from_flags(self, flags: Mapping[str, Any]) -> Iterator[tuple[Key, int, bool, Any, str]]:
        for key in self.keys:
            raw = flags.get(key.attr)
            if key.option() is not None and not key.secret and raw is not None and raw not in ([], ()):
                yield key, 0, False, raw, self.flag_of(key)
            raw = flags.get(key.attr + "_file")
            if key.secret and key.option() is not None and raw is not None:
                yield key, 0, True, raw, self.flag_of(key) + "-file"

    # -- the command line ----------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--config FILE`` and a flag per key; every default is None so that unset flags are known."""
        parser.add_argument("--config", type=Path, metavar="FILE", help=self.config_help)
        for key in self.keys:
            option = key.option()
            if option is None:
                continue
            if key.secret:
                parser.add_argument(option + "-file", dest=key.attr + "_file", metavar="FILE", help=key.help)
                continue
            action = "append" if key.repeatable else "store"
            parser.add_argument(option, dest=key.attr, action=action, metavar=key.metavar, help=key.help)

    def flags_from(self, args: argparse.Namespace) -> dict[str, Any]:
        """The flags mapping :meth:`load` takes, from parsed arguments."""
        flags = {key.attr: getattr(args, key.attr, None) for key in self.keys}
        flags.update(
            {key.attr + "_file": getattr(args, key.attr + "_file", None) for key in self.keys if key.secret}
        )
        return flags


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


__all__ = ["ConfigError", "Key", "Loaded", "Table", "read_secret", "read_yaml"]

"""What every node program's configuration shares: the error type and the YAML file reader.

Each program (``webspaces overlay``, ``webspaces dhcp``) merges flags over environment over a YAML
file over defaults in its own module; a bad value is a :class:`ConfigError` naming the key and
where the value came from, so a typo never silently falls back to a default.
"""

from __future__ import annotations

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

"""Logging set-up of a program: stderr, one line per record, at the configured level."""

from __future__ import annotations

import logging
from collections.abc import Sequence

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, *, quiet: Sequence[str] = (), fmt: str = FORMAT) -> None:
    """Log to stderr at ``level`` (debug, info, warning, error); the ``quiet`` loggers (chatty
    libraries) at warnings at least, whatever the level."""
    logging.basicConfig(level=level.upper(), format=fmt)
    for name in quiet:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))

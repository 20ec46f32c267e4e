"""What every peer source shares: the publish callback, the source protocol, the error type, the
per-streak logging and the retry backoff (spec 2.6)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Callable, Iterable
from typing import Protocol

log = logging.getLogger("dataplane.overlay.discovery")

Publish = Callable[[str, frozenset[str]], None]
"""``publish(source_name, complete_peer_list)``, called by a source each time its list changes."""


class DiscoveryError(Exception):
    """A peer source cannot be set up (bad argument, not in a cluster); the message says why."""


class PeerSource(Protocol):
    """One origin of peers. ``run`` publishes the complete list each time it changes and sets
    ``synced`` after the first; ``error`` describes the current failure streak, None when healthy."""

    @property
    def name(self) -> str: ...

    @property
    def synced(self) -> asyncio.Event: ...

    @property
    def error(self) -> str | None: ...

    async def run(self, publish: Publish) -> None: ...


def _ipv4(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


class _Backoff:
    """Exponential backoff with jitter: ``initial`` doubling up to ``maximum``, each delay drawn
    from its upper half so that many agents restarted together do not retry in step."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return random.uniform(delay / 2, delay)


class _SourceBase:
    """What every source shares: its name, the synced event, the current-list bookkeeping and
    logging once per failure streak."""

    def __init__(self, name: str, self_addresses: Iterable[str] = ()) -> None:
        self.name = name
        self.synced = asyncio.Event()
        self.error: str | None = None
        self.self_addresses = frozenset(self_addresses)
        self._published: frozenset[str] | None = None

    def _publish(self, publish: Publish, peers: Iterable[str]) -> None:
        current = frozenset(peers) - self.self_addresses
        if current != self._published:
            self._published = current
            publish(self.name, current)
        self.synced.set()

    def _failed(self, message: str) -> None:
        if self.error is None:
            log.warning("%s: %s (keeping the last list, retrying)", self.name, message)
        else:
            log.debug("%s: still failing: %s", self.name, message)
        self.error = message

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("%s: recovered", self.name)
            self.error = None

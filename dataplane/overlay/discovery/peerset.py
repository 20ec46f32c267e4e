"""The peer set: runs the sources, applies each complete list by difference, reports changes and
says when every source is synced (spec 2.6.3)."""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .base import DiscoveryError, PeerSource, log
from .hooks import HOOK_TIMEOUT, run_change_hook


@dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    synced: bool  # a complete list was delivered and applied
    peers: int  # addresses in the list applied last
    last_sync: float | None  # Unix time that list was applied
    error: str | None = None  # the current failure streak, or the last apply failure


@dataclass(frozen=True, slots=True)
class PeerHealth:
    synced: bool  # every configured source is synced (spec 2.6.3)
    peers: int  # distinct addresses over all sources
    sources: tuple[SourceHealth, ...]


@dataclass(slots=True)
class _State:
    source: PeerSource
    applied: frozenset[str] = frozenset()
    synced: bool = False
    last_sync: float | None = None
    apply_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Change:
    source: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


ApplyResult = Any
Apply = Callable[[str, frozenset[str]], ApplyResult | Awaitable[ApplyResult]]
OnChange = Callable[[str, tuple[str, ...], tuple[str, ...]], Awaitable[None] | None]


def _address_key(address: str) -> tuple[int, int, str]:
    try:
        return (0, int(ipaddress.IPv4Address(address)), "")
    except ValueError:
        return (1, 0, address)


def _address_order(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(addresses, key=_address_key))


class PeerSet:
    """Runs the sources, applies each complete list by difference and says when all are synced.

    ``apply(source, peers)`` is the VTEP's ``set_peers`` (or a coroutine function that calls it on
    the data-path thread); lists are applied one at a time in publication order, and a source that
    publishes again before its previous list was applied has only its newest list applied. After an
    applied change, ``on_change(source, added, removed)`` runs, then the kubelan change ``hook``
    (argv; environment ``IFACE``, ``SERVICE``, ``IPS`` space-separated, ``DELETED``), once for the
    added and once for the removed addresses, in the background and in order, through
    :func:`.hooks.run_change_hook`: hook failures are only logged, and a hook running over
    ``hook_timeout`` seconds is killed.
    """

    def __init__(
        self,
        sources: Sequence[PeerSource],
        apply: Apply,
        *,
        on_change: OnChange | None = None,
        hook: Sequence[str] = (),
        interface: str = "",
        clock: Callable[[], float] = time.time,
        restart_delay: float = 1.0,
        hook_timeout: float = HOOK_TIMEOUT,
    ) -> None:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DiscoveryError(f"peer sources configured twice: {', '.join(duplicates)}")
        self._states = {s.name: _State(s) for s in sources}
        self._apply = apply
        self._on_change = on_change
        self._hook = tuple(hook)
        self._interface = interface
        self._clock = clock
        self._restart_delay = restart_delay
        self._hook_timeout = hook_timeout
        self._refs: dict[str, int] = {}
        self._pending: dict[str, frozenset[str]] = {}
        self._wake = asyncio.Event()
        self._changes: asyncio.Queue[_Change] = asyncio.Queue()
        self._all_synced = asyncio.Event()
        if not sources:
            self._all_synced.set()

    # -- views ------------------------------------------------------------------------------

    @property
    def peers(self) -> frozenset[str]:
        """Every address some source lists (what the VTEP floods to)."""
        return frozenset(self._refs)

    @property
    def synced(self) -> bool:
        return self._all_synced.is_set()

    async def wait_synced(self) -> None:
        await self._all_synced.wait()

    def health(self) -> PeerHealth:
        sources = tuple(
            SourceHealth(
                name,
                state.synced,
                len(state.applied),
                state.last_sync,
                state.source.error or state.apply_error,
            )
            for name, state in self._states.items()
        )
        return PeerHealth(all(s.synced for s in sources), len(self._refs), sources)

    # -- running ----------------------------------------------------------------------------

    def publish(self, source: str, peers: frozenset[str]) -> None:
        """What sources call: queue ``source``'s complete list for the applier."""
        if source not in self._states:
            raise DiscoveryError(f"unknown peer source {source!r}")
        self._pending.pop(source, None)  # re-queue at the end: lists apply in publication order
        self._pending[source] = frozenset(peers)
        self._wake.set()

    async def run(self) -> None:
        """Run every source, the applier and the notifier until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._applier(), name="peers-apply")
            group.create_task(self._notifier(), name="peers-notify")
            for name, state in self._states.items():
                group.create_task(self._run_source(state.source), name=f"peers-{name}")

    async def _run_source(self, source: PeerSource) -> None:
        delay = self._restart_delay
        while True:
            try:
                await source.run(self.publish)
                return  # finished (a static list): its list stays applied
            except Exception:
                log.exception("%s: peer source failed; restarting in %.1f s", source.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _applier(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                name = next(iter(self._pending))
                await self._apply_one(name, self._pending.pop(name))

    async def _apply_one(self, name: str, peers: frozenset[str]) -> None:
        state = self._states[name]
        old = state.applied
        if state.synced and peers == old:
            return
        try:
            result = self._apply(name, peers)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # the VTEP refused the list, or the data path is gone
            log.warning("%s: could not apply %d peers: %s", name, len(peers), exc)
            state.apply_error = f"apply: {exc}"
            return
        state.apply_error = None
        state.applied = peers
        state.last_sync = self._clock()
        if not state.synced:
            state.synced = True
            log.info("%s: synced, %d peers", name, len(peers))
            if all(s.synced for s in self._states.values()):
                self._all_synced.set()
        added = _address_order(peers - old)
        removed = _address_order(old - peers)
        for address in added:
            self._refs[address] = self._refs.get(address, 0) + 1
        for address in removed:
            count = self._refs[address] - 1
            if count:
                self._refs[address] = count
            else:
                del self._refs[address]
        if added or removed:
            self._changes.put_nowait(_Change(name, added, removed))

    async def _notifier(self) -> None:
        while True:
            change = await self._changes.get()
            if self._on_change is not None:
                try:
                    result = self._on_change(change.source, change.added, change.removed)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("%s: change handler failed", change.source)
            if self._hook:
                for addresses, deleted in ((change.added, False), (change.removed, True)):
                    if addresses:
                        await run_change_hook(
                            self._hook,
                            interface=self._interface,
                            source=change.source,
                            addresses=addresses,
                            deleted=deleted,
                            timeout=self._hook_timeout,
                        )

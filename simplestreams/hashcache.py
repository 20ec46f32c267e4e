"""Hashes and parsed metadata, cached by the identity of the files they were computed from.

Spec/simplestreams.md §6: "hashes and parsed metadata are cached by identity and never recomputed while
it holds" (local files: path, size, mtime_ns, inode; GitHub assets: id, updated_at, digest), and §4
item 1. The resolver builds each key as a tuple of a kind and the identities involved, for example
``("combined", meta.identity, rootfs.identity)``; a changed file has a new identity, hence a new key,
so an entry never needs invalidating, only dropping once nothing uses it.

Persistence is optional (a JSON file) and crash-safe: the new contents go to a temporary file in the
same directory, are fsynced, renamed over the old file and the directory is fsynced, so a crash leaves
either the old or the new cache, never a torn one. A file that cannot be parsed is logged once and
treated as empty: the cost is re-hashing, never a wrong hash being served, because every key embeds
the full identity.

Pruning: :meth:`HashCache.save` drops every entry that was not read or written since the previous
save (unless nothing was). A backend resolves everything it serves on each rebuild and saves after it,
so entries of deleted or replaced files disappear at the next save. Callers that share one cache
between sources rebuilt at different times pass ``prune=False`` except when all of them have been
resolved since the previous save.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("simplestreams.hashcache")

_FORMAT = "simplestreams-hashcache:1"

Key = tuple[Any, ...]
"""A tuple of JSON scalars and nested tuples of them (lists on disk, tuples again once loaded)."""


class HashCache:
    """A mapping from identity keys to JSON-serialisable values, optionally persisted to ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        self._entries: dict[Key, Any] = {}
        self._used: set[Key] = set()
        self._dirty = False
        if path is not None:
            self._entries = _load(path)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def get(self, key: Key) -> Any:
        """The value stored under ``key`` (counted as a hit and kept at the next save), else None."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._used.add(key)
        return value

    def put(self, key: Key, value: Any) -> None:
        """Store ``value`` (JSON-serialisable, not None) under ``key``."""
        if value is None:
            raise ValueError("HashCache cannot store None (it means 'absent')")
        self._used.add(key)
        if self._entries.get(key) != value:
            self._entries[key] = value
            self._dirty = True

    def discard(self, key: Key) -> None:
        """Forget ``key`` (a cached value turned out to be unusable)."""
        if self._entries.pop(key, None) is not None:
            self._dirty = True
        self._used.discard(key)

    def save(self, *, prune: bool = True) -> None:
        """Drop entries unused since the previous save, then write the file if anything changed and
        there is a path. An I/O failure is logged, not raised: the cache is an optimisation and the next
        save retries.

        Nothing is dropped when ``prune`` is False or when nothing at all was used since the previous
        save: an idle save (at shutdown, say) has learnt nothing about which entries are stale."""
        if prune and self._used:
            stale = self._entries.keys() - self._used
            for key in stale:
                del self._entries[key]
            if stale:
                self._dirty = True
            self._used = set()
        if self.path is None or not self._dirty:
            self._dirty = False
            return
        try:
            _write(self.path, dict(self._entries))  # a snapshot: save may run in a worker thread
        except OSError as exc:
            log.warning("cannot save the hash cache %s: %s", self.path, exc)
            return
        self._dirty = False


def _load(path: Path) -> dict[Key, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read the hash cache %s (%s); starting empty", path, exc)
        return {}
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError("not a hash cache file")
        entries: dict[Key, Any] = {}
        for item in document["entries"]:
            key, value = item
            if not isinstance(key, list) or value is None:
                raise ValueError("malformed entry")
            entries[_tuple(key)] = value
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("the hash cache %s is corrupt (%s); starting empty", path, exc)
        return {}
    return entries


def _tuple(value: list[Any]) -> Key:
    return tuple(_tuple(item) if isinstance(item, list) else item for item in value)


def _write(path: Path, entries: dict[Key, Any]) -> None:
    document = {"format": _FORMAT, "entries": [[list(key), value] for key, value in entries.items()]}
    data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    directory = path.parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)

"""simplestreams.hashcache: lookups, crash-safe persistence, corrupt files, pruning (spec §6)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from simplestreams.hashcache import HashCache

IDENTITY = ("/srv/images/docker/v1.0.0/lxd.amd64.tar.xz", 1234, 1_630_163_040_000_000_000, 42)
OTHER = ("/srv/images/docker/v1.0.0/rootfs.amd64.squashfs", 4096, 1_630_163_040_000_000_001, 43)
GITHUB = (123456, "2025-06-01T00:00:00Z", "sha256:" + "a" * 64)


def test_get_put_and_counters() -> None:
    cache = HashCache()
    assert cache.get(("meta", IDENTITY)) is None
    cache.put(("meta", IDENTITY), {"sha256": "a" * 64})
    assert cache.get(("meta", IDENTITY)) == {"sha256": "a" * 64}
    assert ("meta", IDENTITY) in cache and len(cache) == 1
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError, match="None"):
        cache.put(("x",), None)
    cache.discard(("meta", IDENTITY))
    assert cache.get(("meta", IDENTITY)) is None


def test_persistence_round_trip_with_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    cache.put(("combined", IDENTITY, OTHER), {"sha256": "b" * 64})
    cache.put(("meta", GITHUB), {"sha256": "c" * 64, "metadata": {"templates": ["a", "b"]}})
    cache.save()
    loaded = HashCache(path)
    assert loaded.get(("combined", IDENTITY, OTHER)) == {"sha256": "b" * 64}
    assert loaded.get(("meta", GITHUB)) == {"sha256": "c" * 64, "metadata": {"templates": ["a", "b"]}}
    assert len(loaded) == 2


def test_missing_file_is_an_empty_cache_without_noise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "simplestreams.hashcache"):
        assert len(HashCache(tmp_path / "absent.json")) == 0
    assert caplog.records == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"format": "something-else", "entries": []}',
        b'{"format": "simplestreams-hashcache:1", "entries": [["not a list", 1]]}',
        b'{"format": "simplestreams-hashcache:1", "entries": [[["k"]]]}',
        b'{"format": "simplestreams-hashcache:1"}',
        b"\xff\xfe",
    ],
)
def test_corrupt_file_is_an_empty_cache_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, "simplestreams.hashcache"):
        cache = HashCache(path)
    assert len(cache) == 0
    assert len(caplog.records) == 1 and "corrupt" in caplog.records[0].getMessage()
    cache.put(("k",), 1)
    cache.save()
    assert HashCache(path).get(("k",)) == 1


def test_save_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    cache.put(("k",), 1)
    cache.save()
    first = os.stat(path)
    cache.put(("k",), 2)
    cache.save()
    # A new inode: the file was replaced by rename, never rewritten in place (a crash keeps one whole).
    assert os.stat(path).st_ino != first.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]
    assert json.loads(path.read_bytes())["format"] == "simplestreams-hashcache:1"


def test_save_writes_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    cache.put(("k",), 1)
    cache.save()
    before = os.stat(path)
    cache.get(("k",))
    cache.put(("k",), 1)  # same value
    cache.save()
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_save_prunes_what_was_not_used_since_the_previous_save(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    for name in ("a", "b", "c"):
        cache.put((name,), name)
    cache.save()
    assert cache.get(("a",)) == "a"
    cache.put(("d",), "d")
    cache.save()
    loaded = HashCache(path)
    assert (len(loaded), ("a",) in loaded, ("d",) in loaded) == (2, True, True)
    assert (cache.get(("b",)), cache.get(("c",))) == (None, None)


def test_idle_save_and_prune_false_keep_everything(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = HashCache(path)
    cache.put(("a",), 1)
    cache.put(("b",), 2)
    cache.save()
    cache.save()  # nothing used since: e.g. a save at shutdown; learnt nothing about staleness
    assert len(HashCache(path)) == 2
    cache.get(("a",))
    cache.save(prune=False)
    assert len(HashCache(path)) == 2


def test_memory_only_cache_prunes_too() -> None:
    cache = HashCache()
    cache.put(("old",), 1)
    cache.save()
    cache.put(("new",), 2)
    cache.save()
    assert ("old",) not in cache and ("new",) in cache


def test_unwritable_path_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = HashCache(tmp_path / "missing-dir" / "cache.json")
    cache.put(("k",), 1)
    with caplog.at_level(logging.WARNING, "simplestreams.hashcache"):
        cache.save()
    assert len(caplog.records) == 1 and "cannot save" in caplog.records[0].getMessage()
    assert cache.get(("k",)) == 1

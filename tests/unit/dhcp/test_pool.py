"""The address pool: exclusions, order of reuse, and O(1) allocation whatever the size."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from dataplane.dhcp.pool import int_to_ip, ip_to_int

OVERLAY = [("172.24.1.1", "172.24.253.254")]
SLASH_8 = [("10.0.0.1", "10.255.255.254")]


def test_ranges_and_exclusions(pool_impl: ModuleType) -> None:
    pool = pool_impl.Pool(
        [("10.0.0.1", "10.0.0.3"), ("10.0.1.1", "10.0.1.2")], exclude=["10.0.0.2", "9.9.9.9"]
    )
    assert pool.size == 4 and pool.free_count == 4
    got = [pool.allocate() for _ in range(5)]
    assert [int_to_ip(a) for a in got[:4]] == ["10.0.0.1", "10.0.0.3", "10.0.1.1", "10.0.1.2"]
    assert got[4] is None and pool.free_count == 0
    assert not pool.contains(ip_to_int("10.0.0.2")) and not pool.release(ip_to_int("10.0.0.2"))
    assert pool.contains(ip_to_int("10.0.1.2")) and not pool.contains(ip_to_int("10.0.0.4"))


def test_overlay_pool_size(pool_impl: ModuleType) -> None:
    pool = pool_impl.Pool(OVERLAY)
    assert pool.size == 253 * 256 - 2
    assert int_to_ip(pool.allocate()) == "172.24.1.1"


def test_bad_ranges(pool_impl: ModuleType) -> None:
    with pytest.raises(ValueError, match="reversed"):
        pool_impl.Pool([("10.0.0.9", "10.0.0.1")])
    with pytest.raises(ValueError, match="overlaps"):
        pool_impl.Pool([("10.0.0.1", "10.0.0.9"), ("10.0.0.5", "10.0.0.20")])
    with pytest.raises(ValueError):
        pool_impl.Pool([("10.0.0", "10.0.0.1")])


def test_take_release_and_reuse_order(pool_impl: ModuleType) -> None:
    pool = pool_impl.Pool([("10.0.0.1", "10.0.0.10")])
    a = ip_to_int("10.0.0.5")
    assert pool.take(a) and not pool.take(a) and not pool.is_free(a)
    assert pool.allocate(a) != a  # taken: the preferred address is not handed out twice
    assert pool.release(a) and not pool.release(a)  # idempotent
    # Fresh addresses first; released ones after, least recently released first.
    b = ip_to_int("10.0.0.1")
    out = [pool.allocate() for _ in range(8)]
    assert a not in out
    pool.release(b)
    assert pool.allocate() == a and pool.allocate() == b and pool.allocate() is None


def test_preferred_address(pool_impl: ModuleType) -> None:
    pool = pool_impl.Pool(SLASH_8)
    want = ip_to_int("10.200.3.4")
    assert pool.allocate(want) == want
    assert pool.allocate(want) == ip_to_int("10.0.0.1")


def test_allocation_does_not_scan(pool_impl: ModuleType) -> None:
    """A /8 with a million addresses taken out of order: every allocation examines at most two
    candidates and touches no per-address structure beyond what was taken (no scan)."""
    pool = pool_impl.Pool(SLASH_8)
    rng = random.Random(7)
    taken: set[int] = set()
    while len(taken) < 1_000_000:
        addr = ip_to_int("10.0.0.0") + rng.randrange(1, 1 << 24)
        if addr < ip_to_int("10.255.255.255") and pool.take(addr):
            taken.add(addr)
    # Also take the next fresh addresses in order, the worst case for a cursor-and-skip design.
    for offset in range(1, 200_000):
        if pool.take(ip_to_int("10.0.0.0") + offset):
            taken.add(ip_to_int("10.0.0.0") + offset)
    before = pool.probes
    seen = set()
    for _ in range(10_000):
        addr = pool.allocate(None)
        assert addr is not None and addr not in taken and addr not in seen
        seen.add(addr)
    assert pool.probes - before == 10_000  # one candidate each: never a scan
    assert pool.free_count == pool.size - len(taken) - len(seen)


def test_free_count_is_exact_under_random_operations(pool_impl: ModuleType) -> None:
    pool = pool_impl.Pool([("10.0.0.1", "10.0.0.50"), ("10.0.2.1", "10.0.2.30")], exclude=["10.0.0.7"])
    universe = [a for a in range(ip_to_int("10.0.0.0"), ip_to_int("10.0.3.0")) if pool.contains(a)]
    held: set[int] = set()
    rng = random.Random(1)
    for _ in range(5000):
        op = rng.random()
        if op < 0.4:
            addr = pool.allocate(rng.choice(universe) if rng.random() < 0.5 else None)
            if addr is not None:
                assert addr not in held
                held.add(addr)
            else:
                assert len(held) == pool.size
        elif op < 0.6:
            addr = rng.choice(universe)
            assert pool.take(addr) == (addr not in held)
            held.add(addr)
        elif held:
            addr = rng.choice(sorted(held))
            assert pool.release(addr)
            held.discard(addr)
        assert pool.free_count == pool.size - len(held)
        for addr in rng.sample(universe, 3):
            assert pool.is_free(addr) == (addr not in held)

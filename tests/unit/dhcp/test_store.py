"""Lease stores: group commit, crash recovery at every byte, compaction, and a 100k restart."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dataplane.dhcp.events import INFINITE, Lease, LeaseState
from dataplane.dhcp.server import DhcpServer, ServerConfig
from dataplane.dhcp.store import (
    GROWTH,
    HEADER,
    JournalStore,
    MemoryStore,
    SqliteStore,
    decode_lease,
    encode_lease,
    open_store,
)

T = 1_700_000_000.0


def lease(i: int, state: LeaseState = LeaseState.BOUND, client: int | None = None, **kw: object) -> Lease:
    addr = 0x0A000002 + i
    mac = (0x020000000000 + (i if client is None else client)).to_bytes(6, "big")
    values: dict[str, object] = {
        "address": f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}",
        "client": ("hardware", b"\x01" + mac),
        "mac": mac,
        "state": state,
        "expires": T + 7200,
        "updated": T,
        "hostname": f"ws-u{i}",
        "fqdn": None,
        "lease_time": 7200,
    }
    values.update(kw)
    return Lease(**values)  # type: ignore[arg-type]


def by_address(leases: object) -> dict[str, Lease]:
    return {x.address: x for x in leases}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [
        lease(1),
        lease(2, LeaseState.RELEASED),
        lease(3, expires=INFINITE, hostname=None, fqdn="host.webspace."),
        Lease("172.24.1.9", ("", b""), b"", LeaseState.DECLINED, T + 600, T),
        lease(4, client=4, hostname="ünïcode"),
    ],
)
def test_record_round_trip(value: Lease) -> None:
    assert decode_lease(encode_lease(value)) == value


def test_record_decoder_rejects_garbage() -> None:
    body = encode_lease(lease(1))
    for cut in range(len(body)):
        with pytest.raises(ValueError):
            decode_lease(body[:cut])
    with pytest.raises(ValueError):
        decode_lease(body + b"x")


@pytest.fixture(params=["journal", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_kind(kind: str, path: Path) -> JournalStore | SqliteStore:
    return JournalStore(str(path / "leases")) if kind == "journal" else SqliteStore(str(path / "leases.db"))


def test_commit_reopen_and_forget(kind: str, tmp_path: Path) -> None:
    store = open_kind(kind, tmp_path)
    for i in range(10):
        store.record(lease(i))
    store.commit()
    store.record(lease(3, LeaseState.FREE))
    store.record(lease(4, LeaseState.RELEASED))
    store.commit()
    store.record(lease(5, LeaseState.FREE))  # never committed
    del store  # no close(): as after kill -9
    reopened = open_kind(kind, tmp_path)
    loaded = by_address(reopened.load())
    assert len(loaded) == 9 and "10.0.0.5" not in loaded
    assert loaded["10.0.0.6"].state == LeaseState.RELEASED
    assert loaded["10.0.0.7"] == lease(5)
    reopened.close()


def test_open_store() -> None:
    assert isinstance(open_store(None), MemoryStore)
    with pytest.raises(ValueError, match="kind"):
        open_store("/nonexistent/x", "csv")


def committed_journal(tmp_path: Path, batches: list[list[Lease]]) -> tuple[bytes, list[int]]:
    """A journal with ``batches`` committed; its bytes and the end offset after each commit."""
    store = JournalStore(str(tmp_path / "leases"), growth=4096)
    ends = []
    for batch in batches:
        for item in batch:
            store.record(item)
        store.commit()
        ends.append(store._end)
    store.close()
    return (tmp_path / "leases").read_bytes(), ends


def test_crash_at_every_byte_of_the_last_batches(tmp_path: Path) -> None:
    """Cut the journal at every offset of the last two batches (a torn write, then zeros as the
    preallocated file holds, or a shorter file): opening never raises, keeps every batch that
    ended before the cut, and never shows part of a batch as more than the records it completed."""
    batches = [
        [lease(i) for i in range(5)],
        [lease(i, LeaseState.RELEASED) for i in range(3)],
        [lease(7), lease(1, LeaseState.FREE)],
    ]
    data, ends = committed_journal(tmp_path / "src", batches)
    start = ends[0] - 40
    for cut in range(start, ends[-1] + 1):
        for shape in ("short", "zeros", "garbage"):
            case = tmp_path / f"c{cut}{shape}"
            case.mkdir()
            if shape == "short":
                torn = data[:cut]
            elif shape == "zeros":
                torn = data[:cut] + bytes(len(data) - cut)
            else:
                torn = data[:cut] + random.Random(cut).randbytes(64) + bytes(len(data) - cut)
            (case / "leases").write_bytes(torn)
            store = JournalStore(str(case / "leases"), growth=4096)
            loaded = by_address(store.load())
            committed = sum(1 for end in ends if end <= cut)
            # Every committed batch is there; of the torn batch, at most a prefix of its records.
            pending = batches[committed] if committed < len(batches) else []
            allowed = [
                MemoryStoreLike([*batches[:committed], pending[:k]]).records for k in range(len(pending) + 1)
            ]
            assert loaded in allowed, (cut, shape)
            # Reopened after recovery, it is stable and accepts new commits.
            store.record(lease(30))
            store.commit()
            store.close()
            again = by_address(JournalStore(str(case / "leases"), growth=4096).load())
            assert again == {**loaded, lease(30).address: lease(30)}, (cut, shape)


class MemoryStoreLike:
    def __init__(self, batches: list[list[Lease]]) -> None:
        store = MemoryStore()
        for batch in batches:
            for item in batch:
                store.record(item)
            store.commit()
        self.records = store.records


def test_stale_records_after_a_torn_tail_never_come_back(tmp_path: Path) -> None:
    """A torn batch B1 leaves whole records behind its tear; after recovery the journal must not
    replay them after newer commits (they would resurrect an address's old owner)."""
    data, ends = committed_journal(tmp_path / "src", [[lease(0)], [lease(1, client=50), lease(2), lease(3)]])
    # Tear the second batch inside its first record; the later two records stay intact.
    torn = bytearray(data)
    torn[ends[0] + 10] ^= 0xFF
    case = tmp_path / "case"
    case.mkdir()
    (case / "leases").write_bytes(bytes(torn))
    store = JournalStore(str(case / "leases"))
    assert set(by_address(store.load())) == {"10.0.0.2"}
    assert store.recovered_bytes > 0
    store.record(lease(2, client=99))  # 10.0.0.4 to another client, committed after recovery
    store.commit()
    store.close()
    loaded = by_address(JournalStore(str(case / "leases")).load())
    assert loaded["10.0.0.4"] == lease(2, client=99) and set(loaded) == {"10.0.0.2", "10.0.0.4"}


def test_compaction_and_crash_between_its_steps(tmp_path: Path) -> None:
    path = str(tmp_path / "leases")
    store = JournalStore(path, compact_every=50)
    for round_ in range(4):
        for i in range(40):
            store.record(lease(i, LeaseState.BOUND if (i + round_) % 3 else LeaseState.RELEASED))
        store.commit()
    assert store.generation > 1  # compacted
    expected = by_address(store.load())
    assert os.path.exists(path + ".snapshot")
    store.close()
    assert by_address(JournalStore(path).load()) == expected
    # A compaction that wrote the snapshot but died before resetting the journal: the journal
    # still names the old generation, and its records (already in the snapshot) are not replayed.
    store = JournalStore(path, compact_every=10**9)
    store.record(lease(100))
    store.commit()
    old_journal = Path(path).read_bytes()
    store.compact()
    store.close()
    Path(path).write_bytes(old_journal)
    loaded = by_address(JournalStore(path).load())
    assert loaded == {**expected, lease(100).address: lease(100)}
    # A leftover temp snapshot from a compaction that died earlier is ignored and removed.
    Path(path + ".snapshot.tmp").write_bytes(b"partial")
    assert by_address(JournalStore(path).load()) == loaded
    assert not os.path.exists(path + ".snapshot.tmp")


def test_journal_grows_by_preallocated_zeros(tmp_path: Path) -> None:
    store = JournalStore(str(tmp_path / "leases"))
    store.record(lease(1))
    store.commit()
    size = os.path.getsize(tmp_path / "leases")
    assert size >= GROWTH and size > HEADER.size
    store.close()


def test_restart_with_100k_leases(kind: str, tmp_path: Path) -> None:
    """Correctness of a 100k-lease restart (its time is the benchmark's business)."""
    store = open_kind(kind, tmp_path)
    for i in range(100_000):
        store.record(lease(i, client=i))
        if i % 64 == 63:
            store.commit()
    store.close()
    config = ServerConfig("10.0.0.1", [("10.0.0.2", "10.255.255.254")], prefix_len=8)
    reopened = open_kind(kind, tmp_path)
    server = DhcpServer(config, reopened, T + 1)
    bound = [x for x in server.leases() if x.state == LeaseState.BOUND]
    assert len(bound) == 100_000
    assert server.pool.free_count == server.pool.size - 100_000
    assert server.counters()["restored"] == 100_000
    reopened.close()


def test_restart_keeps_one_record_per_client_and_reads_time(tmp_path: Path) -> None:
    store = MemoryStore(
        [
            lease(1, client=1, updated=T - 10),
            lease(2, client=1, updated=T - 5),  # the same client's later binding wins
            lease(3, client=3, expires=T - 1),  # ran out while we were down: EXPIRED, free
            Lease("10.0.0.9", ("", b""), b"", LeaseState.DECLINED, T + 60, T),
            Lease("10.0.0.10", ("", b""), b"", LeaseState.DECLINED, T - 60, T - 700),
            lease(5, LeaseState.OFFERED),  # never stored by the server; ignored
            lease(300, client=300, address="192.168.0.1"),  # off the subnet now
        ]
    )
    config = ServerConfig("10.0.0.1", [("10.0.0.2", "10.0.0.200")], prefix_len=24)
    server = DhcpServer(config, store, T)
    states = {x.address: x.state for x in server.leases()}
    assert states == {
        "10.0.0.4": LeaseState.BOUND,
        "10.0.0.5": LeaseState.EXPIRED,
        "10.0.0.9": LeaseState.DECLINED,
    }
    assert server.pool.is_free(0x0A000005) and not server.pool.is_free(0x0A000009)

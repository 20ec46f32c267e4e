from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane.dhcp import Lease, LeaseState, open_store
from dataplane.dhcp.service import lease_row, read_leases
from webspaces.cli import main


def _store(path: Path) -> None:
    store = open_store(str(path))
    store.record(
        Lease("192.0.2.20", ("hardware", b"\x01\x02\x00\x00\x00\x00\x01"), b"\x02\x00\x00\x00\x00\x01",
              LeaseState.BOUND, 2_000_000_000.0, 1.0, "web", None, 3600)
    )  # fmt: skip
    store.record(
        Lease("192.0.2.10", ("client-id", b"\xff\x00\x01"), b"\x02\x00\x00\x00\x00\x02",
              LeaseState.RELEASED, 1_000_000_000.0, 1.0, None, None, 3600)
    )  # fmt: skip
    store.commit()
    store.close()


def test_leases_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leases"
    _store(path)
    assert main(["dhcp", "leases", "--leases", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["address", "mac", "client", "id", "hostname", "state", "expires"]
    assert lines[1].split()[:5] == ["192.0.2.10", "02:00:00:00:00:02", "ff:00:01", "-", "released"]
    assert lines[2].split()[:5] == ["192.0.2.20", "02:00:00:00:00:01", "-", "web", "bound"]
    assert main(["dhcp", "leases", "--leases", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["address"] for row in rows] == ["192.0.2.10", "192.0.2.20"]
    assert rows[1]["expires"] == "2033-05-18T03:33:20Z"
    assert rows[1]["expires_epoch"] == 2_000_000_000.0


def test_leases_reads_a_copy_and_leaves_the_store_alone(tmp_path: Path) -> None:
    path = tmp_path / "leases"
    _store(path)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.parent.rglob("*"))
    assert [lease_row(lease)["address"] for lease in read_leases(str(path))] == ["192.0.2.10", "192.0.2.20"]
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.parent.rglob("*"))
    assert before == after


def test_leases_of_a_missing_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dhcp", "leases", "--leases", str(tmp_path / "none")]) == 1
    assert "no lease store at" in capsys.readouterr().err


def test_bad_configuration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "dhcp",
        "--interface",
        "eth9",
        "--server-address",
        "192.0.2.1/24",
        "--pool",
        "192.0.2.20-192.0.2.10",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and "--pool" in err and "after end" in err


def test_missing_interface_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["dhcp", "--interface", "nosuchif0", "--server-address", "192.0.2.1/24",
            "--pool", "192.0.2.10-192.0.2.20", "--leases", str(tmp_path / "l")]  # fmt: skip
    assert main(argv) == 1
    assert "nosuchif0" in capsys.readouterr().err

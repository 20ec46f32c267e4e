"""The one hook runner (kubelan's up and change hooks): environment, failures logged, and a hook that
runs over its timeout killed with what it started, checked by PID."""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from pathlib import Path

import pytest

from dataplane.overlay.discovery import hooks


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_a_hook_over_its_timeout_is_killed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pids = tmp_path / "pids"
    # The shell and a child it waits for: both must go, the child with the hook's process group.
    hook = script(tmp_path / "slow.sh", f"sleep 60 &\necho $$ $! > {pids}.tmp\nmv {pids}.tmp {pids}\nwait\n")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        status = asyncio.run(hooks.run_hook([hook], {"IFACE": "ov0"}, timeout=0.5))
    assert status is None
    assert time.monotonic() - started < 10
    shell, child = (int(pid) for pid in pids.read_text().split())
    assert not alive(shell)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert "ran over 0.5 s; killed" in caplog.text


def test_a_cancelled_hook_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pid"
    hook = script(tmp_path / "slow.sh", f"echo $$ > {pids}.tmp\nmv {pids}.tmp {pids}\nexec sleep 60\n")

    async def scenario() -> None:
        task = asyncio.create_task(hooks.run_hook([hook], {}, timeout=60))
        while not pids.exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert not alive(int(pids.read_text()))


def test_the_up_hook_gets_its_environment_and_failures_are_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    ok = script(tmp_path / "ok.sh", f'echo "$IFACE|$KEPT" > {out}\n')
    failing = script(tmp_path / "fail.sh", "echo nope >&2\nexit 3\n")
    monkeypatch.setenv("KEPT", "from-the-agent")
    assert asyncio.run(hooks.run_hook([ok], {"IFACE": "ov0"})) == 0
    assert out.read_text() == "ov0|from-the-agent\n"
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(hooks.run_hook([failing], {}, what="up hook")) == 3
        assert asyncio.run(hooks.run_hook([str(tmp_path / "missing")], {})) is None
        assert asyncio.run(hooks.run_hook([], {})) is None
    assert "up hook" in caplog.text and "exited 3: nope" in caplog.text
    assert "could not start" in caplog.text


def test_the_change_hook_has_kubelan_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = script(tmp_path / "change.sh", f'echo "$IFACE|$SERVICE|$IPS|$DELETED" >> {out}\n')
    for source, deleted in (("k8s:default/ws", False), ("dns:ws.example", True)):
        status = asyncio.run(
            hooks.run_change_hook(
                [hook], interface="ov0", source=source, addresses=("192.0.2.2", "192.0.2.3"), deleted=deleted
            )
        )
        assert status == 0
    assert out.read_text().splitlines() == [
        "ov0|default/ws|192.0.2.2 192.0.2.3|false",
        "ov0|dns:ws.example|192.0.2.2 192.0.2.3|true",
    ]

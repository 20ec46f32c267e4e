"""The namespace helpers without root: names, prerequisites, the order of clean-up (processes by pid
first, then namespaces), stopping processes by pid, failures reported as LabError. The net tier
(tests/net) builds real labs with them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webspaces.lab import netns
from webspaces.lab.netns import LabError, NetLab, can_run, stop_process, wait_for


def test_names_carry_a_prefix_unique_per_process_and_lab() -> None:
    a, b = NetLab("wo"), NetLab("wo")
    assert a.prefix != b.prefix
    assert a.prefix.startswith("wo") and str(os.getpid() % 10000) in a.prefix
    assert a.name("n0") == f"{a.prefix}n0"
    with pytest.raises(LabError, match="longer than 15"):
        a.name("x" * 16)


def test_can_run_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert can_run() == "needs root (network namespaces)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert can_run() is None


def test_close_stops_processes_by_pid_then_removes_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    lab = NetLab("wt")
    first = subprocess.Popen(["sleep", "60"], start_new_session=True)
    second = subprocess.Popen(["sleep", "60"], start_new_session=True)
    lab.processes.extend([first, second])
    lab.namespaces.extend(["ns-a", "ns-b"])

    def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        events.append(f"stop {process.pid}")
        stop_process(process, grace)

    monkeypatch.setattr(netns, "stop_process", stop)
    monkeypatch.setattr(NetLab, "_remove_namespace", staticmethod(lambda name: events.append(f"rm {name}")))
    with lab:
        pass
    lab.close()  # a second close does nothing
    assert events == [f"stop {second.pid}", f"stop {first.pid}", "rm ns-b", "rm ns-a"]
    assert first.returncode is not None and second.returncode is not None


def test_stop_process_terminates_the_group_then_kills(tmp_path: Path) -> None:
    # A process that ignores SIGTERM is killed after the grace period; its child goes with the group.
    script = "import signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    script += f"subprocess.Popen(['sleep', '60']); open({str(tmp_path / 'up')!r}, 'w').close()\n"
    script += "time.sleep(60)\n"
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    assert wait_for((tmp_path / "up").exists, 10)
    started = time.monotonic()
    stop_process(process, grace=0.3)
    assert process.returncode == -9
    assert time.monotonic() - started < 5
    stop_process(process)  # already gone: nothing to do


def test_wait_for_polls_until_true_or_timeout() -> None:
    calls: list[int] = []

    def third_call() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_for(third_call, 5, interval=0.001) and len(calls) == 3
    assert not wait_for(lambda: False, 0.05, interval=0.01)


def test_running_in_a_missing_namespace_is_reported(tmp_path: Path) -> None:
    lab = NetLab("wt")
    missing = lab.name("zz")
    result = lab.try_run(missing, ["true"])
    assert result.returncode == 255 and missing in result.stderr
    with pytest.raises(LabError, match=missing):
        lab.run(missing, ["true"])
    with pytest.raises(LabError, match=missing):
        lab.spawn(missing, ["true"], log=tmp_path / "log")
    assert lab.processes == []
    assert lab.sh([sys.executable, "-c", "print('here')"]).strip() == "here"
    with pytest.raises(LabError, match=r"failed \(3\)"):
        lab.sh([sys.executable, "-c", "raise SystemExit(3)"])

"""The namespace helpers without root: names, prerequisites, the order of clean-up (processes by pid
first, then namespaces), stopping processes by pid, failures reported as LabError. The net tier
(tests/net) builds real labs with them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import NetlinkError

from webspaces.lab import netns
from webspaces.lab.netns import LabError, NetLab, can_run, run_in, stop_process, wait_for


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


def test_run_in_is_try_run_without_a_lab() -> None:
    missing = NetLab("wt").name("zz")
    result = run_in(missing, ["true"])
    assert result.returncode == 255 and missing in result.stderr
    here = run_in(
        None, [sys.executable, "-c", "import os; print(os.environ['W']); raise SystemExit(4)"], env={"W": "x"}
    )
    assert (here.returncode, here.stdout.strip()) == (4, "x")
    absent = run_in(None, ["/nonexistent/program"])
    assert absent.returncode == 255 and absent.stderr.startswith("/nonexistent/program: ")


class _Neighbour(dict[str, int]):
    def __init__(self, family: int, state: int, ifindex: int, dst: str) -> None:
        super().__init__(family=family, state=state, ifindex=ifindex)
        self.dst = dst

    def get_attr(self, name: str) -> str:
        assert name == "NDA_DST"
        return self.dst


class _FakeIpr:
    """The few IPRoute calls the lab makes, recorded; links by name, neighbours as dumped."""

    def __init__(self, links: dict[str, int], neighbours: list[_Neighbour] | None = None) -> None:
        self.links = links
        self.neighbours = neighbours or []
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def link_lookup(self, ifname: str) -> list[int]:
        return [self.links[ifname]] if ifname in self.links else []

    def link(self, command: str, **spec: Any) -> None:
        if spec.get("ifname") == "refused":
            raise NetlinkError(17, "File exists")
        self.calls.append(("link", command, spec))

    def fdb(self, command: str, **spec: Any) -> None:
        self.calls.append(("fdb", command, spec))

    def neigh(self, command: str, **spec: Any) -> list[_Neighbour]:
        if command == "dump":
            return self.neighbours
        if spec["dst"] == "192.0.2.9":
            raise NetlinkError(2, "No such file or directory")  # went away since the dump
        self.calls.append(("neigh", command, spec))
        return []

    def close(self) -> None:
        pass


def test_vxlan_fdb_and_delete_send_what_ip_and_bridge_would() -> None:
    lab = NetLab("wt")
    ipr = _FakeIpr({"v0": 7, "vx0": 8})
    lab._sockets["ns"] = ipr
    lab.vxlan("ns", "vx0", vni=4242, local="192.0.2.1", link="v0", mtu=1450, mac="02:00:5e:10:00:01")
    lab.fdb_append("ns", "vx0", "00:00:00:00:00:00", "192.0.2.2")
    lab.delete_link("ns", "vx0")
    vxlan = {"ifname": "vx0", "kind": "vxlan", "vxlan_id": 4242, "vxlan_local": "192.0.2.1"}
    vxlan |= {
        "vxlan_port": 4789,
        "vxlan_link": 7,
        "vxlan_learning": 1,
        "mtu": 1450,
        "address": "02:00:5e:10:00:01",
    }
    assert ipr.calls == [
        ("link", "add", vxlan),
        ("fdb", "append", {"ifindex": 8, "lladdr": "00:00:00:00:00:00", "dst": "192.0.2.2"}),
        ("link", "del", {"index": 8}),
    ]
    with pytest.raises(LabError, match="no link gone"):
        lab.delete_link("ns", "gone")
    with pytest.raises(LabError, match="creating vxlan refused in ns failed"):
        lab.vxlan("ns", "refused", vni=1, local="192.0.2.1", link="v0")
    lab.close()


def test_flush_neighbours_forgets_the_learned_ones_as_ip_neigh_flush_all() -> None:
    lab = NetLab("wt")
    reachable, stale, permanent, noarp = 0x02, 0x04, 0x80, 0x40
    ipr = _FakeIpr(
        {},
        [
            _Neighbour(socket.AF_INET, reachable, 3, "192.0.2.2"),
            _Neighbour(socket.AF_INET, permanent, 3, "192.0.2.3"),
            _Neighbour(socket.AF_INET, noarp, 3, "192.0.2.4"),
            _Neighbour(socket.AF_INET, 0, 3, "192.0.2.5"),
            _Neighbour(socket.AF_INET, stale, 3, "192.0.2.9"),
            _Neighbour(socket.AF_INET6, stale, 4, "2001:db8::2"),
            _Neighbour(socket.AF_BRIDGE, reachable, 5, "192.0.2.2"),  # an fdb entry, not a neighbour
        ],
    )
    lab._sockets["ns"] = ipr
    lab.flush_neighbours("ns")
    assert ipr.calls == [
        ("neigh", "del", {"family": socket.AF_INET, "ifindex": 3, "dst": "192.0.2.2"}),
        ("neigh", "del", {"family": socket.AF_INET6, "ifindex": 4, "dst": "2001:db8::2"}),
    ]
    lab.close()

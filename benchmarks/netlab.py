"""Network namespaces, veth pairs and processes for real-peer tests and benchmarks.

Everything a :class:`NetLab` makes carries a prefix unique to this process and lab, so parallel or
leftover runs cannot collide, and :meth:`NetLab.close` removes all of it, even after a failure:
the processes it started (by pid, never by name), then its namespaces (which takes their links).
Addresses are the caller's business and must come from the documentation ranges (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24) or 172.24.0.0/16 inside these namespaces.

Test and benchmark code only: it drives ``ip`` and ``sysctl``; product code uses pyroute2.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

_labs = itertools.count()


def can_run() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


class LabError(RuntimeError):
    pass


class NetLab:
    def __init__(self, tag: str = "w") -> None:
        # ≤ 15 characters per interface name: tag + pid digits + lab number + short suffix.
        self.prefix = f"{tag[:2]}{os.getpid() % 10000}{next(_labs) % 100}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for process in reversed(self.processes):
            stop_process(process)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)

    # -- building ----------------------------------------------------------------------------

    def name(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        if len(name) > 15:
            raise LabError(f"interface/namespace name {name!r} is longer than 15 characters")
        return name

    def namespace(self, suffix: str) -> str:
        """A new namespace with IPv6 off (no RS/NS/MLD noise) and loopback up."""
        name = self.name(suffix)
        self.sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.run(name, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        self.run(name, ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        self.run(name, ["ip", "link", "set", "lo", "up"])
        return name

    def veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str, mtu: int = 1500) -> None:
        """A veth pair with one end in each namespace, both up."""
        tmp_a, tmp_b = self.name("xa"), self.name("xb")
        self.sh(
            [
                "ip",
                "link",
                "add",
                tmp_a,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                tmp_b,
                "mtu",
                str(mtu),
            ]
        )
        self.sh(["ip", "link", "set", tmp_a, "netns", ns_a, "name", dev_a])
        self.sh(["ip", "link", "set", tmp_b, "netns", ns_b, "name", dev_b])
        self.run(ns_a, ["ip", "link", "set", dev_a, "up"])
        self.run(ns_b, ["ip", "link", "set", dev_b, "up"])

    def address(self, ns: str, dev: str, cidr: str) -> None:
        self.run(ns, ["ip", "addr", "add", cidr, "dev", dev])

    # -- running -----------------------------------------------------------------------------

    def sh(self, argv: Sequence[str], timeout: float = 30) -> str:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30) -> str:
        return self.sh(["ip", "netns", "exec", ns, *argv], timeout=timeout)

    def try_run(self, ns: str, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def spawn(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns``; it is stopped (by pid) when the lab closes."""
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self.processes.append(process)
        return process


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only this pid and the group it leads."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()

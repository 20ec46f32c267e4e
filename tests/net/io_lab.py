"""Two namespaces joined by a veth, for the I/O port tests and the overlay measurements.

Underlay 192.0.2.1/.2 on the veth; overlay 198.51.100.1/.2 (MTU 1450) either on our TAP driven by a
pump runner (``tests.net.pump_runner``) in each namespace, or on a kernel VXLAN device (the
reference, with its default offloads). The namespaces, the veth and the processes belong to a
:class:`webspaces.lab.netns.NetLab`, so every name carries a per-run prefix and :meth:`IoLab.close`
removes what was created and stops only the processes started here, even after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webspaces.lab.netns import LabError, NetLab, run_in, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
TRANSFER = ROOT / "tests" / "net" / "io_transfer.py"
UNDERLAY = ("192.0.2.1", "192.0.2.2")
OVERLAY = ("198.51.100.1", "198.51.100.2")
MACS = ("02:00:5e:10:00:01", "02:00:5e:10:00:02")
VNI = 4242
MTU = 1450


def in_ns(ns: str, *argv: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns``; with ``check``, CalledProcessError when it fails."""
    result = run_in(ns, argv, timeout)
    if check:
        result.check_returncode()
    return result


@dataclass
class IoLab:
    net: NetLab = field(default_factory=lambda: NetLab("wi"))
    # Pump runners: the ones started here, and any a test starts itself and hands over.
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsio-")))

    @property
    def tag(self) -> str:
        return self.net.prefix

    @property
    def created(self) -> bool:
        return bool(self.net.namespaces)

    @property
    def ns(self) -> tuple[str, str]:
        return (self.net.name("a"), self.net.name("b"))

    @property
    def tap(self) -> str:
        return self.net.name("t")

    @property
    def veth(self) -> str:
        return self.net.name("v")

    def setup(self) -> None:
        a, b = (self.net.namespace(suffix) for suffix in "ab")
        self.net.veth(a, self.veth, b, self.veth)
        for ns, addr in zip(self.ns, UNDERLAY, strict=True):
            self.net.address(ns, self.veth, f"{addr}/24")

    # -- our overlay: a pump runner per namespace ----------------------------------------------

    def start_pumps(self, impl: str, *extra: str) -> None:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
        )
        for i, ns in enumerate(self.ns):
            ready = self.tmp / f"ready{i}"
            ready.unlink(missing_ok=True)
            argv = [
                sys.executable, "-m", "tests.net.pump_runner",
                "--tap", self.tap, "--local", UNDERLAY[i], "--peer", UNDERLAY[1 - i],
                "--address", f"{OVERLAY[i]}/24", "--mac", MACS[i], "--mtu", str(MTU), "--vni", str(VNI),
                "--impl", impl, "--ready", str(ready), "--stats", str(self.tmp / f"stats{i}.json"),
                "--duration", "300", *extra,
            ]  # fmt: skip
            self.procs.append(self.net.spawn(ns, argv, log=self.tmp / f"stderr{i}", env=env, cwd=ROOT))

        def all_ready() -> bool:
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"pump runner exited: {self.stderr()}")
            return all((self.tmp / f"ready{i}").exists() for i in range(2))

        if not wait_for(all_ready, 15):
            raise RuntimeError("pump runner did not become ready")

    def stderr(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("stderr*")))

    def ready_info(self, i: int) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.tmp / f"ready{i}").read_text())
        return info

    def stop_pumps(self) -> list[dict[str, Any]]:
        # SIGTERM to every pid first, so they stop together (a runner a test started itself may
        # lead no process group); stop_process then waits and kills what is left.
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            stop_process(proc, grace=10)
        self.procs.clear()
        stats = []
        for i in range(2):
            path = self.tmp / f"stats{i}.json"
            stats.append(json.loads(path.read_text()) if path.exists() else {})
            path.unlink(missing_ok=True)
        return stats

    def delete_taps(self) -> None:
        self._delete(self.tap)

    # -- the reference: kernel VXLAN with default offloads --------------------------------------

    def start_kernel_vxlan(self) -> None:
        for i, ns in enumerate(self.ns):
            dev = f"{self.tag}x"
            self.net.vxlan(ns, dev, vni=VNI, local=UNDERLAY[i], link=self.veth, mtu=MTU, mac=MACS[i])
            self.net.fdb_append(ns, dev, "00:00:00:00:00:00", UNDERLAY[1 - i])
            self.net.address(ns, dev, f"{OVERLAY[i]}/24")
            self.net.link_up(ns, dev)

    def stop_kernel_vxlan(self) -> None:
        self._delete(f"{self.tag}x")

    def _delete(self, dev: str) -> None:
        """Remove ``dev`` (if there) from both namespaces and forget their neighbours."""
        for ns in self.ns:
            with contextlib.suppress(LabError):
                self.net.delete_link(ns, dev)
            self.net.flush_neighbours(ns)

    # -- traffic -------------------------------------------------------------------------------

    def ping(self, src: int, count: int = 3) -> bool:
        argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "2", OVERLAY[1 - src]]
        return self.net.try_run(self.ns[src], argv, timeout=20).returncode == 0

    def iperf(self, src: int, seconds: float = 2.0, port: int = 5201) -> float:
        """Gbit/s of one TCP stream from namespace ``src`` to the other (received side)."""
        far = OVERLAY[1 - src]
        server = self.net.spawn(self.ns[1 - src], ["iperf3", "-s", "-1", "-B", far, "-p", str(port)])
        try:
            time.sleep(0.3)  # the server's listen
            argv = ["iperf3", "-c", far, "-p", str(port), "-t", str(seconds), "-J"]
            report = json.loads(self.net.try_run(self.ns[src], argv, timeout=seconds + 30).stdout)
            if "error" in report:
                raise RuntimeError(f"iperf3: {report['error']}")
            return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
        finally:
            stop_process(server)

    def tcp_transfer(self, src: int, size: int, port: int = 5301) -> bool:
        """Send ``size`` random bytes over one TCP connection and compare a digest on the far side."""
        far = OVERLAY[1 - src]
        serve = [sys.executable, str(TRANSFER), "serve", far, str(port)]
        server = self.net.spawn(self.ns[1 - src], serve, log=self.tmp / f"serve{port}.log", pipe=True)
        try:
            time.sleep(0.5)  # the server's listen
            send = [sys.executable, str(TRANSFER), "send", far, str(port), str(size)]
            sent = self.net.run(self.ns[src], send, timeout=60)
            out = server.communicate(timeout=30)[0].decode()
            return sent.strip() == out.strip() and bool(out.strip())
        finally:
            stop_process(server)
            if server.stdout:
                server.stdout.close()

    def close(self) -> None:
        try:
            self.stop_pumps()
        finally:
            self.net.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

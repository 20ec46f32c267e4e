"""Two namespaces joined by a veth, for the I/O port tests and the overlay measurements.

Underlay 192.0.2.1/.2 on the veth; overlay 198.51.100.1/.2 (MTU 1450) either on our TAP driven by a
pump runner (``tests.net.pump_runner``) in each namespace, or on a kernel VXLAN device (the
reference, with its default offloads). Every name carries a per-run prefix; :meth:`IoLab.close`
removes what was created and stops only the processes started here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UNDERLAY = ("192.0.2.1", "192.0.2.2")
OVERLAY = ("198.51.100.1", "198.51.100.2")
MACS = ("02:00:5e:10:00:01", "02:00:5e:10:00:02")
VNI = 4242
MTU = 1450


def run(*argv: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def in_ns(ns: str, *argv: str, timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *argv, timeout=timeout, check=check)


@dataclass
class IoLab:
    tag: str = field(default_factory=lambda: f"wsi{os.getpid() % 10000}{int(time.time() * 1000) % 100:02d}")
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsio-")))
    created: bool = False

    @property
    def ns(self) -> tuple[str, str]:
        return (f"{self.tag}a", f"{self.tag}b")

    @property
    def tap(self) -> str:
        return f"{self.tag}t"

    def setup(self) -> None:
        a, b = self.ns
        for ns in self.ns:
            run("ip", "netns", "add", ns)
            self.created = True
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            in_ns(ns, "ip", "link", "set", "lo", "up")
        run(
            "ip",
            "link",
            "add",
            f"{self.tag}v",
            "netns",
            a,
            "type",
            "veth",
            "peer",
            "name",
            f"{self.tag}v",
            "netns",
            b,
        )
        for ns, addr in zip(self.ns, UNDERLAY, strict=True):
            in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", f"{self.tag}v")
            in_ns(ns, "ip", "link", "set", f"{self.tag}v", "up")

    # -- our overlay: a pump runner per namespace ----------------------------------------------

    def start_pumps(self, impl: str, *extra: str) -> None:
        for i, ns in enumerate(self.ns):
            ready = self.tmp / f"ready{i}"
            ready.unlink(missing_ok=True)
            argv = [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "tests.net.pump_runner",
                "--tap",
                self.tap,
                "--local",
                UNDERLAY[i],
                "--peer",
                UNDERLAY[1 - i],
                "--address",
                f"{OVERLAY[i]}/24",
                "--mac",
                MACS[i],
                "--mtu",
                str(MTU),
                "--vni",
                str(VNI),
                "--impl",
                impl,
                "--ready",
                str(ready),
                "--stats",
                str(self.tmp / f"stats{i}.json"),
                "--duration",
                "300",
                *extra,
            ]
            env = dict(
                os.environ,
                PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
            )
            with open(self.tmp / f"stderr{i}", "w") as log:
                self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stderr=log))
        deadline = time.monotonic() + 15
        for i in range(2):
            while not (self.tmp / f"ready{i}").exists():
                for proc in self.procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"pump runner exited: {self.stderr()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("pump runner did not become ready")
                time.sleep(0.05)

    def stderr(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("stderr*")))

    def ready_info(self, i: int) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.tmp / f"ready{i}").read_text())
        return info

    def stop_pumps(self) -> list[dict[str, Any]]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        stats = []
        for i in range(2):
            path = self.tmp / f"stats{i}.json"
            stats.append(json.loads(path.read_text()) if path.exists() else {})
            path.unlink(missing_ok=True)
        return stats

    def delete_taps(self) -> None:
        for ns in self.ns:
            in_ns(ns, "ip", "link", "del", self.tap, check=False)
            in_ns(ns, "ip", "neigh", "flush", "all", check=False)

    # -- the reference: kernel VXLAN with default offloads --------------------------------------

    def start_kernel_vxlan(self) -> None:
        for i, ns in enumerate(self.ns):
            dev = f"{self.tag}x"
            in_ns(
                ns,
                "ip",
                "link",
                "add",
                dev,
                "type",
                "vxlan",
                "id",
                str(VNI),
                "local",
                UNDERLAY[i],
                "dstport",
                "4789",
                "dev",
                f"{self.tag}v",
            )
            in_ns(ns, "ip", "link", "set", dev, "mtu", str(MTU), "address", MACS[i])
            in_ns(ns, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", dev, "dst", UNDERLAY[1 - i])
            in_ns(ns, "ip", "addr", "add", f"{OVERLAY[i]}/24", "dev", dev)
            in_ns(ns, "ip", "link", "set", dev, "up")

    def stop_kernel_vxlan(self) -> None:
        for ns in self.ns:
            in_ns(ns, "ip", "link", "del", f"{self.tag}x", check=False)
            in_ns(ns, "ip", "neigh", "flush", "all", check=False)

    # -- traffic -------------------------------------------------------------------------------

    def ping(self, src: int, count: int = 3) -> bool:
        result = in_ns(
            self.ns[src],
            "ping",
            "-c",
            str(count),
            "-i",
            "0.2",
            "-W",
            "2",
            OVERLAY[1 - src],
            timeout=20,
            check=False,
        )
        return result.returncode == 0

    def iperf(self, src: int, seconds: float = 2.0, port: int = 5201) -> float:
        """Gbit/s of one TCP stream from namespace ``src`` to the other (received side)."""
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns[1 - src],
                "iperf3",
                "-s",
                "-1",
                "-B",
                OVERLAY[1 - src],
                "-p",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            result = in_ns(
                self.ns[src],
                "iperf3",
                "-c",
                OVERLAY[1 - src],
                "-p",
                str(port),
                "-t",
                str(seconds),
                "-J",
                timeout=seconds + 30,
                check=False,
            )
            report = json.loads(result.stdout)
            if "error" in report:
                raise RuntimeError(f"iperf3: {report['error']}")
            return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
        finally:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    def tcp_transfer(self, src: int, size: int, port: int = 5301) -> bool:
        """Send ``size`` random bytes over one TCP connection and compare a digest on the far side."""
        script = ROOT / "tests" / "net" / "io_transfer.py"
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns[1 - src],
                sys.executable,
                str(script),
                "serve",
                OVERLAY[1 - src],
                str(port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)
            sent = in_ns(
                self.ns[src],
                sys.executable,
                str(script),
                "send",
                OVERLAY[1 - src],
                str(port),
                str(size),
                timeout=60,
            )
            out, _ = server.communicate(timeout=30)
            return sent.stdout.strip() == out.strip() and bool(out.strip())
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(5)
            if server.stdout:
                server.stdout.close()

    def close(self) -> None:
        self.stop_pumps()
        if self.created:
            for ns in self.ns:
                run("ip", "netns", "del", ns, check=False)
        for path in sorted(self.tmp.glob("*")):
            path.unlink()
        self.tmp.rmdir()

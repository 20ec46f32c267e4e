"""Namespaces, agents and traffic for the overlay agent's net tests (``webspaces overlay`` run as a
real process in each namespace).

The underlay is a Linux bridge in a hub namespace with one veth per node (``u0`` on the node side,
192.0.2.0/24); each agent owns a TAP ``ov0`` carrying an address from 198.51.100.0/24. Everything
lives in a :class:`webspaces.lab.netns.NetLab`, so :meth:`OverlayLab.close` stops the processes
started here (by pid) and deletes the namespaces even when a test fails; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webspaces.lab.netns import NetLab, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
TRANSFER = ROOT / "tests" / "net" / "io_transfer.py"
VNI = 4242
TAP = "ov0"
UNDERLAY_DEV = "u0"
HEALTH = "127.0.0.1:8181"
DNS_ADDRESS = "192.0.2.53"


def underlay(i: int) -> str:
    """Underlay address of node ``i`` (0-based): 192.0.2.1, .2 ..."""
    return f"192.0.2.{i + 1}"


def overlay(i: int) -> str:
    """Overlay address of node ``i`` (0-based): 198.51.100.1, .2 ..."""
    return f"198.51.100.{i + 1}"


# Fetches a URL inside a namespace; prints {"status": ..., "body": ...} or {"error": ...}.
_HTTP_GET = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
except OSError as e:
    print(json.dumps({"error": str(e)}))
"""


@dataclass
class AgentProcess:
    """One ``webspaces overlay`` process; ``argv`` and ``env`` restart it with the same flags."""

    ns: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    starts: int = 1

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class PingResult:
    sent: int
    received: int
    output: str

    @property
    def lost(self) -> int:
        return self.sent - self.received


@dataclass
class OverlayLab:
    tag: str = "wo"
    net: NetLab = field(init=False)
    tmp: Path = field(init=False)
    nodes: list[str] = field(default_factory=list)
    hub: str | None = None

    def __post_init__(self) -> None:
        self.net = NetLab(self.tag)
        self.tmp = Path(tempfile.mkdtemp(prefix="wsov-"))

    def __enter__(self) -> OverlayLab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.net.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- topology ----------------------------------------------------------------------------

    def bridged(self, count: int) -> list[str]:
        """``count`` node namespaces on one underlay bridge (in a hub namespace): node ``i`` has
        ``u0`` with :func:`underlay` ``(i)``/24."""
        if self.hub is None:
            self.hub = self.net.namespace("hb")
            self.net.bridge(self.hub, "br0")
        added = []
        for _ in range(count):
            i = len(self.nodes)
            ns = self.net.namespace(f"n{i}")
            self.attach(ns, underlay(i))
            self.nodes.append(ns)
            added.append(ns)
        return added

    def attach(self, ns: str, address: str) -> None:
        """Join ``ns`` to the underlay bridge with ``address``/24 on its ``u0``."""
        assert self.hub is not None
        port = f"p{len(self.net.namespaces)}"
        self.net.veth(ns, UNDERLAY_DEV, self.hub, port)
        self.net.enslave(self.hub, port, "br0")
        self.net.address(ns, UNDERLAY_DEV, f"{address}/24")

    def pair(self) -> list[str]:
        """Two node namespaces joined directly by a veth (no bridge), as in the smoke test."""
        a, b = self.net.namespace("n0"), self.net.namespace("n1")
        self.net.veth(a, UNDERLAY_DEV, b, UNDERLAY_DEV)
        for i, ns in enumerate((a, b)):
            self.net.address(ns, UNDERLAY_DEV, f"{underlay(i)}/24")
        self.nodes.extend((a, b))
        return [a, b]

    # -- agents ------------------------------------------------------------------------------

    def agent_argv(self, i: int, *flags: str) -> list[str]:
        return [
            sys.executable, "-m", "webspaces", "overlay",
            "--local", underlay(i), "--interface", TAP, "--address", f"{overlay(i)}/24",
            "--vni", str(VNI), "--health", HEALTH, *flags,
        ]  # fmt: skip

    def agent_env(self, *, pure: bool | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The agent's environment: none of our or kubelan's variables from outside (hermetic), but
        the data path as asked: ``pure`` True or False forces one, None follows this run's
        ``WEBSPACES_NO_EXTENSIONS`` (so the pure-Python pass of the suite runs pure agents)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBSPACES_", "KL_", "KUBERNETES_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        if pure is None:
            pure = os.environ.get("WEBSPACES_NO_EXTENSIONS") == "1"
        if pure:
            env["WEBSPACES_NO_EXTENSIONS"] = "1"
        env.update(extra or {})
        return env

    def start_agent(
        self,
        i: int,
        *flags: str,
        pure: bool | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> AgentProcess:
        """``webspaces overlay`` for node ``i`` in its namespace; with ``wait``, returns once its
        HTTP listener answers (any status)."""
        ns = self.nodes[i]
        argv = self.agent_argv(i, *flags)
        full_env = self.agent_env(pure=pure, extra=env)
        log = self.tmp / f"agent{i}.log"
        process = self.net.spawn(ns, argv, log=log, env=full_env)
        agent = AgentProcess(ns, argv, full_env, log, process)
        if wait:
            self.wait_ready(agent)
        return agent

    def restart(self, agent: AgentProcess, *, wait: bool = True) -> None:
        """Start ``agent`` again with the same flags; the new process logs to a new file."""
        log = agent.log.with_suffix(f".{agent.starts}.log")
        agent.process = self.net.spawn(agent.ns, agent.argv, log=log, env=agent.env)
        agent.log = log
        agent.starts += 1
        if wait:
            self.wait_ready(agent)

    def wait_ready(self, agent: AgentProcess, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if agent.process.poll() is not None:
                raise AssertionError(f"agent exited {agent.process.returncode}:\n{agent.output()}")
            return "status" in self.get(agent.ns, "/health")

        if not wait_for(ready, timeout, interval=0.1):
            raise AssertionError(
                f"agent in {agent.ns} did not answer /health in {timeout} s:\n{agent.output()}"
            )

    def get(self, ns: str, path: str) -> dict[str, Any]:
        """GET ``http://HEALTH{path}`` inside ``ns``: ``{"status", "body"}`` or ``{"error"}``."""
        result = self.net.try_run(ns, [sys.executable, "-c", _HTTP_GET, f"http://{HEALTH}{path}"], timeout=15)
        if result.returncode != 0:
            return {"error": result.stderr}
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def health(self, ns: str) -> tuple[int, dict[str, Any]]:
        answer = self.get(ns, "/health")
        if "status" not in answer:
            return 0, answer
        return int(answer["status"]), json.loads(answer["body"])

    def run_agent_once(
        self, ns: str, argv: Sequence[str], env: dict[str, str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run an agent command line that is expected to exit by itself; bounded."""
        return self.net.try_run(ns, argv, timeout, env=env)

    # -- traffic -----------------------------------------------------------------------------

    def ping(
        self, ns: str, address: str, count: int = 3, interval: float = 0.2, wait: float = 1.0
    ) -> PingResult:
        result = self.net.try_run(
            ns,
            ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), address],
            timeout=count * (interval + wait) + 10,
        )
        return parse_ping(result.stdout + result.stderr)

    def start_ping(
        self, ns: str, address: str, count: int, interval: float, name: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """A ping running in the background; :func:`parse_ping` its log once it exits."""
        log = self.tmp / f"{name}.ping"
        argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", address]
        return self.net.spawn(ns, argv, log=log), log

    def reachable(self, ns: str, address: str, timeout: float = 10.0) -> bool:
        """Whether one ping gets through within ``timeout`` seconds (ARP and FDB settle first)."""
        return wait_for(
            lambda: self.ping(ns, address, count=1, wait=0.5).received == 1, timeout, interval=0.1
        )

    def tcp_transfer(self, src: str, dst: str, address: str, size: int, port: int = 5301) -> None:
        """``size`` random bytes over one TCP connection from ``src`` to ``address`` (in ``dst``);
        asserts the SHA-256 of what arrived equals that of what was sent."""
        out = self.tmp / f"transfer-{port}.out"
        server = self.net.spawn(dst, [sys.executable, str(TRANSFER), "serve", address, str(port)], log=out)
        try:
            listening = wait_for(lambda: f":{port}" in self.net.try_run(dst, ["ss", "-Hltn"]).stdout, 10)
            assert listening, f"transfer server on {address}:{port} did not listen"
            sent = self.net.try_run(
                src, [sys.executable, str(TRANSFER), "send", address, str(port), str(size)], timeout=60
            )
            assert sent.returncode == 0, f"send to {address}:{port} failed: {sent.stderr}"
            server.wait(30)
            received = out.read_text().strip()
            assert received and received == sent.stdout.strip(), (
                f"{size} bytes to {address}: sent {sent.stdout.strip()}, received {received!r}"
            )
        finally:
            stop_process(server)

    def iperf_server(self, ns: str, address: str, port: int = 5201) -> subprocess.Popen[bytes]:
        server = self.net.spawn(
            ns, ["iperf3", "-s", "-1", "-B", address, "-p", str(port)], log=self.tmp / f"iperf-s{port}.log"
        )
        listening = wait_for(lambda: f":{port}" in self.net.try_run(ns, ["ss", "-Hltn"]).stdout, 10)
        assert listening, f"iperf3 server on {address}:{port} did not listen"
        return server

    def iperf(self, src: str, dst: str, address: str, *, seconds: int, port: int = 5201) -> dict[str, Any]:
        """One TCP stream for ``seconds``; the iperf3 JSON report (asserts exit 0, no error)."""
        server = self.iperf_server(dst, address, port)
        try:
            argv = ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]
            result = self.net.try_run(src, argv, timeout=seconds + 30)
            report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
            assert result.returncode == 0 and "error" not in report, (
                f"iperf3 exited {result.returncode}: {report.get('error')} {result.stderr}"
            )
            return report
        finally:
            stop_process(server)

    # -- DNS ---------------------------------------------------------------------------------

    def dns_namespace(self) -> str:
        ns = self.net.namespace("dn")
        self.attach(ns, DNS_ADDRESS)
        return ns

    def start_dnsmasq(self, ns: str, hosts: Path) -> subprocess.Popen[bytes]:
        """dnsmasq serving the A records of ``hosts`` at :data:`DNS_ADDRESS`:53 with a 1 s TTL;
        SIGHUP to the returned process (``ip netns exec`` execs dnsmasq: its own pid) re-reads it."""
        log = self.tmp / "dnsmasq.log"
        argv = [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--addn-hosts={hosts}", "--local-ttl=1", "--port=53", f"--listen-address={DNS_ADDRESS}",
            "--bind-interfaces", f"--pid-file={self.tmp}/dnsmasq.pid", "--log-facility=-",
        ]  # fmt: skip
        process = self.net.spawn(ns, argv, log=log)
        started = wait_for(lambda: f"read {hosts}" in log.read_text(errors="replace"), 10)
        assert started and process.poll() is None, (
            f"dnsmasq did not start:\n{log.read_text(errors='replace')}"
        )
        return process

    @staticmethod
    def reload_dnsmasq(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGHUP)  # only the dnsmasq we started, by its pid


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def parse_ping(output: str) -> PingResult:
    match = _PING_SUMMARY.search(output)
    if match is None:
        return PingResult(0, 0, output)
    return PingResult(int(match.group(1)), int(match.group(2)), output)


def wait_health(lab: OverlayLab, ns: str, status: int, timeout: float) -> dict[str, Any]:
    """Poll ``/health`` in ``ns`` until it answers ``status``; the last body."""
    last: list[tuple[int, dict[str, Any]]] = []

    def check() -> bool:
        last.append(lab.health(ns))
        return last[-1][0] == status

    if not wait_for(check, timeout, interval=0.2):
        raise AssertionError(f"/health in {ns} not {status} within {timeout} s: {last[-1] if last else None}")
    return last[-1][1]

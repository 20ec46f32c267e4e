"""``overlay``: one TCP stream, 64-byte UDP forwarding and ping RTT over three VXLAN overlays.

Two namespaces joined by a veth (underlay 192.0.2.1/.2, MTU 1500), overlay 198.51.100.1/.2 with
MTU 1450 on each side, VNI 4242, UDP 4789, the same pinned inner MACs in every configuration:

* ``kernel-vxlan``: the reference, a kernel VXLAN device at each end (default offloads, static
  all-zeros FDB entry towards the peer);
* ``ours-compiled``: ``webspaces overlay`` at each end, compiled data path (``dataplane.pump._tunnel``);
* ``ours-pure``: the same agent with ``WEBSPACES_NO_EXTENSIONS=1`` (the pure-Python twin).

Each configuration gets a fresh pair of namespaces (so no neighbour, FDB or TAP state carries over,
gotcha 2 of ``spec/dataplane.md`` §6), and the agent's start-up log must name the data path it was
asked for. A full run has three rounds (a quick run one); each round builds the three
configurations in turn, afresh, and measures each one in this order (the median over rounds is
reported; interleaving spreads background load over all three):

* **TCP**: ``iperf3 -c -t SECONDS -J``, one stream .1 -> .2, the receiver's bits/s
  (``end.sum_received``).
* **64-byte UDP forwarding**: "64-byte" is the inner Ethernet frame on the wire counting its FCS,
  as in RFC 2544: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 18 (payload) + 4 (FCS) = 64 bytes; the
  frame the TAP or VXLAN device handles is 60 bytes, and its underlay packet is 110 bytes (+50).
  A bounded generator (this module's ``blast`` command: ``sendmmsg`` batches of 256 through ctypes,
  one flow) sends 18-byte datagrams .1 -> .2:9 as fast as it can for SECONDS. Delivered = packets
  counted by an nftables rule in the receiver's ``input`` hook (which then drops them, so no
  receiving application competes for CPU and no ICMP port-unreachable flows back); the value is
  delivered packets per second of sending. For our agent, ``/metrics`` also gives the frames each
  agent forwarded (sender side: TAP -> VXLAN, receiver side: VXLAN -> TAP) and ``/proc`` the CPU
  time it spent, hence frames per CPU-second of each agent: the "per core" figure.
* **RTT**: ``ping -c N -i INTERVAL`` .1 -> .2 on an idle overlay, p50 and p99 of the per-packet
  times (nearest rank).

The agents' CPU time during the TCP runs is recorded in ``notes``. Everything runs under timeouts
inside namespaces this scenario creates (:class:`~webspaces.lab.netns.NetLab`), removed on any exit.
A missing prerequisite (root, iproute2, iperf3, ping, nft, the compiled data path) is reported on
stderr with exit status 2.

``python -m benchmarks.scenarios.overlay blast DST PORT SECONDS`` is the generator, run inside the
sending namespace; it prints ``{"sent": N, "seconds": S}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from webspaces.lab.netns import LabError, NetLab, can_run, stop_process, wait_for

from ..harness import Options, Report, Result, Scenario, ScenarioUnavailableError, register

ROOT = Path(__file__).resolve().parents[2]
UNDERLAY = ("192.0.2.1", "192.0.2.2")
OVERLAY = ("198.51.100.1", "198.51.100.2")
MACS = ("02:00:5e:10:00:01", "02:00:5e:10:00:02")
VNI = 4242
VXLAN_PORT = 4789
MTU = 1450
HEALTH = "127.0.0.1:8181"  # each namespace has its own loopback
IPERF_PORT = 5201
SINK_PORT = 9  # discard
PAYLOAD = 18  # 64-byte inner frame with FCS, see the module docstring
BATCH = 256

IMPLS = ("kernel-vxlan", "ours-compiled", "ours-pure")


@dataclass(frozen=True, slots=True)
class Plan:
    runs: int
    tcp_seconds: int
    pps_seconds: float
    pings: int
    ping_interval: float


FULL = Plan(runs=3, tcp_seconds=10, pps_seconds=10.0, pings=1000, ping_interval=0.002)
QUICK = Plan(runs=1, tcp_seconds=2, pps_seconds=2.0, pings=100, ping_interval=0.005)


class MissingPrerequisiteError(Exception):
    """A prerequisite is missing: reported in one line, exit status 2."""


# -- the generator (runs in the sending namespace) ----------------------------------------------------


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def blast(destination: str, port: int, seconds: float, size: int = PAYLOAD, batch: int = BATCH) -> int:
    """Send ``size``-byte datagrams to ``destination:port`` for ``seconds``; the number sent.

    Unconnected (``msg_name`` set on every message), so an ICMP error cannot fail a later send.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    sendmmsg = libc.sendmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    address = (
        socket.AF_INET.to_bytes(2, sys.byteorder)
        + port.to_bytes(2, "big")
        + socket.inet_aton(destination)
        + bytes(8)
    )
    name = ctypes.create_string_buffer(address, len(address))
    payload = ctypes.create_string_buffer(bytes(range(size)), size)
    iov = _Iovec(ctypes.cast(payload, ctypes.c_void_p), size)
    messages = (_Mmsghdr * batch)()
    for message in messages:
        message.msg_hdr.msg_name = ctypes.cast(name, ctypes.c_void_p)
        message.msg_hdr.msg_namelen = len(address)
        message.msg_hdr.msg_iov = ctypes.pointer(iov)
        message.msg_hdr.msg_iovlen = 1
    sent = 0
    fd = sock.fileno()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for _ in range(16):
                count = sendmmsg(fd, messages, batch, 0)
                if count > 0:
                    sent += count
    finally:
        sock.close()
    return sent


# -- small parsers --------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in (0, 1])."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def ping_times(output: str) -> list[float]:
    """Per-packet RTTs in ms from ``ping`` output (``... time=0.123 ms``)."""
    times = []
    for line in output.splitlines():
        _, found, rest = line.partition(" time=")
        if found:
            times.append(float(rest.split()[0]))
    return times


def prometheus_values(text: str) -> dict[str, float]:
    """``name{labels}`` -> value from the Prometheus text format (comments skipped)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
    return values


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one configuration ----------------------------------------------------------------------------------


@dataclass
class Bed:
    """A fresh pair of namespaces with one overlay configuration up on both."""

    lab: NetLab
    impl: str
    workdir: Path
    ns: tuple[str, str] = ("", "")
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def build(self) -> None:
        lab = self.lab
        self.ns = (lab.namespace("a"), lab.namespace("b"))
        lab.veth(self.ns[0], "u0", self.ns[1], "u0", mtu=1500)
        for ns, address in zip(self.ns, UNDERLAY, strict=True):
            lab.address(ns, "u0", f"{address}/24")
        if self.impl == "kernel-vxlan":
            self._kernel()
        else:
            self._agents(compiled=self.impl == "ours-compiled")
        if not wait_for(self._pings, 20, interval=0.2):
            raise LabError(f"{self.impl}: no ping across the overlay after 20 s{self._logs()}")

    def _kernel(self) -> None:
        for i, ns in enumerate(self.ns):
            run = self.lab.run
            vxlan = ["type", "vxlan", "id", str(VNI), "local", UNDERLAY[i], "dstport", str(VXLAN_PORT)]
            run(ns, ["ip", "link", "add", "vx0", *vxlan, "dev", "u0"])
            run(ns, ["ip", "link", "set", "vx0", "mtu", str(MTU), "address", MACS[i]])
            run(ns, ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", UNDERLAY[1 - i]])
            run(ns, ["ip", "addr", "add", f"{OVERLAY[i]}/24", "dev", "vx0"])
            run(ns, ["ip", "link", "set", "vx0", "up"])

    def _agents(self, compiled: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSPACES_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        if not compiled:
            env["WEBSPACES_NO_EXTENSIONS"] = "1"
        for i, ns in enumerate(self.ns):
            argv = [sys.executable, "-m", "webspaces", "overlay", "--interface", "ov0"]
            argv += ["--local", UNDERLAY[i], "--peer", UNDERLAY[1 - i], "--address", f"{OVERLAY[i]}/24"]
            argv += ["--mac", MACS[i], "--mtu", str(MTU), "--vni", str(VNI), "--port", str(VXLAN_PORT)]
            argv += ["--health", HEALTH]
            self.agents.append(self.lab.spawn(ns, argv, log=self.workdir / f"agent{i}.log", env=env))
        for i, ns in enumerate(self.ns):
            if not wait_for(partial(self._healthy, ns), 30, interval=0.2):
                raise LabError(f"{self.impl}: agent in {ns} not healthy after 30 s{self._logs()}")
            wanted = "compiled data path" if compiled else "pure-Python data path"
            if wanted not in (self.workdir / f"agent{i}.log").read_text():
                raise LabError(f"{self.impl}: the agent did not log {wanted!r}{self._logs()}")

    def _logs(self) -> str:
        logs = sorted(self.workdir.glob("agent*.log"))
        return "".join(f"\n--- {p.name}:\n{p.read_text()[-2000:]}" for p in logs)

    def _pings(self) -> bool:
        result = self.lab.try_run(self.ns[0], ["ping", "-c", "1", "-W", "1", OVERLAY[1]], timeout=5)
        return result.returncode == 0

    def _http(self, ns: str, path: str) -> tuple[int, str]:
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
        )
        url = urllib.parse.urljoin(f"http://{HEALTH}", path)
        result = self.lab.try_run(ns, [sys.executable, "-c", code, url], timeout=15)
        if result.returncode != 0 or not result.stdout:
            return 0, ""
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def _healthy(self, ns: str) -> bool:
        return self._http(ns, "/health")[0] == 200

    def metrics(self) -> list[dict[str, float]]:
        return [prometheus_values(self._http(ns, "/metrics")[1]) for ns in self.ns]

    def agent_cpu(self) -> list[float]:
        return [cpu_seconds(agent.pid) for agent in self.agents]

    # -- measurements -----------------------------------------------------------------------------

    def tcp(self, seconds: int) -> dict[str, float]:
        """One iperf3 run .1 -> .2; the receiver's Gbit/s, retransmits, agents' CPU share."""
        before = self.agent_cpu() if self.agents else []
        result = self.lab.try_run(
            self.ns[0],
            ["iperf3", "-c", OVERLAY[1], "-p", str(IPERF_PORT), "-t", str(seconds), "-J"],
            timeout=seconds + 30,
        )
        after = self.agent_cpu() if self.agents else []
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise LabError(f"{self.impl}: iperf3 printed no JSON: {result.stderr.strip()}") from None
        if "error" in report:
            raise LabError(f"{self.impl}: iperf3: {report['error']}")
        end = report["end"]
        measured: dict[str, float] = {
            "gbit_s": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": float(end["sum_sent"].get("retransmits", 0)),
        }
        span = float(end["sum_received"]["seconds"]) or seconds
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            measured[f"agent{i}_cpu_share"] = (a - b) / span
        return measured

    def pps(self, seconds: float) -> dict[str, float]:
        """One generator run .1 -> .2:9 with 18-byte payloads; delivered packets/s at .2."""
        receiver = self.ns[1]
        self.lab.run(receiver, ["nft", "flush", "ruleset"])
        self.lab.run(receiver, ["nft", "add", "table", "inet", "bench"])
        self.lab.run(
            receiver,
            ["nft", "add chain inet bench input { type filter hook input priority 0 ; policy accept ; }"],
        )
        self.lab.run(
            receiver,
            ["nft", f"add rule inet bench input ip daddr {OVERLAY[1]} udp dport {SINK_PORT} counter drop"],
        )
        dropped_before = self._tx_dropped()
        metrics_before = self.metrics() if self.agents else []
        cpu_before = self.agent_cpu() if self.agents else []
        argv = [sys.executable, "-m", "benchmarks.scenarios.overlay", "blast"]
        argv += [OVERLAY[1], str(SINK_PORT), str(seconds)]
        env_prefix = ["env", f"PYTHONPATH={ROOT}"]
        result = self.lab.try_run(self.ns[0], [*env_prefix, *argv], timeout=seconds + 30)
        if result.returncode != 0:
            raise LabError(f"{self.impl}: generator failed: {result.stderr.strip()[-2000:]}")
        time.sleep(0.3)  # frames still queued in the TAP, the sockets and the agents
        cpu_after = self.agent_cpu() if self.agents else []
        metrics_after = self.metrics() if self.agents else []
        sent = json.loads(result.stdout)
        listing = self.lab.run(receiver, ["nft", "-j", "list", "chain", "inet", "bench", "input"])
        delivered = 0
        for item in json.loads(listing)["nftables"]:
            for expression in item.get("rule", {}).get("expr", []):
                if "counter" in expression:
                    delivered += int(expression["counter"]["packets"])
        elapsed = float(sent["seconds"])
        measured = {
            "pps": delivered / elapsed,
            "offered_pps": sent["sent"] / elapsed,
            # Frames the sender's overlay device dropped (a full TAP queue: the agent fell behind).
            "device_tx_dropped": self._tx_dropped() - dropped_before,
        }
        if self.agents:
            # Frames each agent forwarded, and per CPU-second it spent (what one core would carry).
            encap = _delta(
                metrics_before[0], metrics_after[0], 'webspaces_overlay_datapath{stat="tap_rx_frames"}'
            )
            decap = _delta(
                metrics_before[1], metrics_after[1], 'webspaces_overlay_datapath{stat="tap_tx_frames"}'
            )
            encap_cpu = cpu_after[0] - cpu_before[0]
            decap_cpu = cpu_after[1] - cpu_before[1]
            measured["encap_pps"] = encap / elapsed
            measured["decap_pps"] = decap / elapsed
            measured["encap_cpu_share"] = encap_cpu / elapsed
            measured["decap_cpu_share"] = decap_cpu / elapsed
            if encap_cpu > 0:
                measured["encap_frames_per_cpu_s"] = encap / encap_cpu
            if decap_cpu > 0:
                measured["decap_frames_per_cpu_s"] = decap / decap_cpu
        return measured

    def _tx_dropped(self) -> float:
        device = "vx0" if self.impl == "kernel-vxlan" else "ov0"
        path = f"/sys/class/net/{device}/statistics/tx_dropped"
        return float(self.lab.run(self.ns[0], ["cat", path]).strip())

    def rtt(self, count: int, interval: float) -> dict[str, float]:
        result = self.lab.try_run(
            self.ns[0],
            ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", OVERLAY[1]],
            timeout=count * interval + 30,
        )
        times = ping_times(result.stdout)
        if len(times) < count // 2:
            raise LabError(f"{self.impl}: ping got {len(times)} of {count} replies: {result.stderr.strip()}")
        return {
            "p50_us": round(percentile(times, 0.50) * 1000, 1),
            "p99_us": round(percentile(times, 0.99) * 1000, 1),
            "replies": float(len(times)),
        }


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@contextlib.contextmanager
def bed(impl: str) -> Iterator[Bed]:
    with NetLab("ov") as lab, tempfile.TemporaryDirectory(prefix="wsbench-") as workdir:
        testbed = Bed(lab, impl, Path(workdir))
        testbed.build()
        server = lab.spawn(testbed.ns[1], ["iperf3", "-s", "-B", OVERLAY[1], "-p", str(IPERF_PORT)])
        listening = wait_for(
            lambda: bool(
                lab.try_run(testbed.ns[1], ["ss", "-Hltn", f"sport = :{IPERF_PORT}"], timeout=5).stdout
            ),
            10,
            interval=0.1,
        )
        if not listening:
            raise LabError(f"{impl}: iperf3 server did not listen")
        try:
            yield testbed
        finally:
            stop_process(server)
            for agent in testbed.agents:  # before the lab deletes the namespaces under them
                stop_process(agent)


def measure(plan: Plan) -> dict[str, dict[str, list[dict[str, float]]]]:
    """``plan.runs`` rounds; each round builds every configuration afresh, in turn, and measures it.

    Interleaving the configurations (rather than all runs of one, then the next) spreads any drift
    or background load on the machine over all three, and the median drops an outlying round.
    """
    measured: dict[str, dict[str, list[dict[str, float]]]] = {
        impl: {"tcp": [], "pps": [], "rtt": []} for impl in IMPLS
    }
    for _ in range(plan.runs):
        for impl in IMPLS:
            with bed(impl) as testbed:
                measured[impl]["tcp"].append(testbed.tcp(plan.tcp_seconds))
                measured[impl]["pps"].append(testbed.pps(plan.pps_seconds))
                measured[impl]["rtt"].append(testbed.rtt(plan.pings, plan.ping_interval))
    return measured


# -- the scenario ---------------------------------------------------------------------------------------


def check_prerequisites() -> None:
    reason = can_run()
    if reason is not None:
        raise MissingPrerequisiteError(reason)
    for tool in ("iperf3", "ping", "nft", "ss", "bridge"):
        if shutil.which(tool) is None:
            raise MissingPrerequisiteError(f"needs {tool} on PATH (scripts/setup-host.sh installs it)")
    if importlib.util.find_spec("dataplane.pump._tunnel") is None:
        raise MissingPrerequisiteError(
            "the compiled data path dataplane.pump._tunnel is not built (pip install -e . builds it)"
        )


def _median(runs: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs if key in run))


def run(options: Options) -> Report:
    try:
        check_prerequisites()
    except MissingPrerequisiteError as exc:
        raise ScenarioUnavailableError(str(exc)) from None
    plan = QUICK if options.quick else FULL
    started = time.monotonic()
    load_before = os.getloadavg()
    measured = measure(plan)

    results: list[Result] = []
    table: dict[tuple[str, str], float] = {}

    def add(name: str, impl: str, value: float, unit: str, digits: int) -> None:
        table[(name, impl)] = value
        results.append(Result(name, impl, round(value, digits), unit))

    for impl in IMPLS:
        add("tcp 1 stream", impl, _median(measured[impl]["tcp"], "gbit_s"), "Gbit/s", 3)
    for impl in IMPLS:
        add("udp 64B delivered", impl, _median(measured[impl]["pps"], "pps"), "packets/s", 0)
    for impl in IMPLS:
        add("rtt p50", impl, _median(measured[impl]["rtt"], "p50_us"), "us", 1)
    for impl in IMPLS:
        add("rtt p99", impl, _median(measured[impl]["rtt"], "p99_us"), "us", 1)
    for impl in IMPLS[1:]:
        add(
            "udp 64B per agent CPU-s (encap)",
            impl,
            _median(measured[impl]["pps"], "encap_frames_per_cpu_s"),
            "frames/CPU-s",
            0,
        )
        add(
            "udp 64B per agent CPU-s (decap)",
            impl,
            _median(measured[impl]["pps"], "decap_frames_per_cpu_s"),
            "frames/CPU-s",
            0,
        )

    def ratio(numerator: tuple[str, str], denominator: tuple[str, str]) -> float:
        return round(table[numerator] / table[denominator], 3)

    ratios = {
        "tcp_vs_kernel": ratio(("tcp 1 stream", "ours-compiled"), ("tcp 1 stream", "kernel-vxlan")),
        "tcp_vs_pure_python": ratio(("tcp 1 stream", "ours-compiled"), ("tcp 1 stream", "ours-pure")),
        "rtt_p99_vs_kernel": ratio(("rtt p99", "ours-compiled"), ("rtt p99", "kernel-vxlan")),
        "rtt_p50_vs_kernel": ratio(("rtt p50", "ours-compiled"), ("rtt p50", "kernel-vxlan")),
        "pps_64b": round(table[("udp 64B delivered", "ours-compiled")]),
        "pps_vs_kernel": ratio(("udp 64B delivered", "ours-compiled"), ("udp 64B delivered", "kernel-vxlan")),
        # The "per core" figure: the slower of the two agents, in frames per CPU-second.
        "pps_64b_per_agent_core": round(
            min(
                table[("udp 64B per agent CPU-s (encap)", "ours-compiled")],
                table[("udp 64B per agent CPU-s (decap)", "ours-compiled")],
            )
        ),
    }
    return Report(
        results=results,
        ratios=ratios,
        notes={
            "plan": {
                "runs": plan.runs,
                "tcp_seconds": plan.tcp_seconds,
                "pps_seconds": plan.pps_seconds,
                "pings": plan.pings,
                "ping_interval": plan.ping_interval,
            },
            "topology": {
                "underlay": f"{UNDERLAY[0]}/24 <-> {UNDERLAY[1]}/24 over veth, MTU 1500",
                "overlay": f"{OVERLAY[0]}/24 <-> {OVERLAY[1]}/24, MTU {MTU}, VNI {VNI}, UDP {VXLAN_PORT}",
                "direction": "all traffic .1 -> .2; ping replies .2 -> .1",
            },
            "frame_64b": "inner Ethernet 14 + IPv4 20 + UDP 8 + payload 18 + FCS 4 = 64 B (60 B without FCS)",
            "pps_counted": "nftables counter+drop in the receiver's input hook; delivered / sending seconds",
            "runs": measured,
            "seconds": round(time.monotonic() - started, 1),
            # Other load on the machine skews every figure; a busy machine shows here.
            "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        },
    )


register(
    Scenario(
        name="overlay",
        description="VXLAN overlay over veth: kernel vs our agent (compiled, pure); TCP, 64B pps, RTT",
        run=run,
    )
)


def _main(argv: Sequence[str]) -> int:
    commands: dict[str, Callable[[Sequence[str]], int]] = {"blast": _blast_command}
    if not argv or argv[0] not in commands:
        print("usage: python -m benchmarks.scenarios.overlay blast DST PORT SECONDS", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def _blast_command(argv: Sequence[str]) -> int:
    destination, port, seconds = argv[0], int(argv[1]), float(argv[2])
    began = time.monotonic()
    sent = blast(destination, port, seconds)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - began, 6)}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

"""``dhcp``: perfdhcp DORA rate against our server (compiled, pure), dnsmasq and Kea; allocation and restart.

**Lease rate.** Two namespaces joined by a veth, on the webspaces LAN plan (kuberouter parity,
spec 1): ``perfdhcp`` (Debian's ``kea-admin``) in one, at 172.24.254.2/16, the server in the other,
at 172.24.254.1/16. perfdhcp always acts as a relay (spec 4.3, gotcha 7): it sends from port 67
with ``giaddr`` = 172.24.254.2, so every server serves the production pool 172.24.1.1-172.24.253.254
(64,766 addresses) of the giaddr's subnet, and perfdhcp simulates :data:`CLIENTS` clients (``-R``),
as many as a busy LAN has containers: the lease file grows to thousands of entries, which is what
the reference's one-file-rewrite-per-change lease database pays for. Each configuration gets fresh
namespaces and a fresh lease file:

* ``ours-compiled``: ``webspaces dhcp`` with its durable lease store (``--leases``, an fsync per
  batch of ACKs);
* ``ours-pure``: the same with ``WEBSPACES_NO_EXTENSIONS=1`` (the pure-Python twin);
* ``dnsmasq``: dnsmasq 2.90 with a lease file (rewritten and fsynced once per pass of its event
  loop, so as durable as ours, and bound by fsync latency), ``--no-ping`` (gotcha 5: its ICMP probe spaces
  offers ~3 s apart), ``--dhcp-lease-max`` above the client count, ``--quiet-dhcp`` (no log line
  per packet, like the others), DNS off;
* ``kea``: kea-dhcp4 2.2 with the ``memfile`` lease store and ``persist: false`` (gotcha 9): its
  leases live in memory only and a restart loses them all, unlike ours;
* ``kea-persist`` (full run only): the same with ``persist: true`` (a CSV lease file, appended per
  lease, never fsynced: it survives ``kill -9`` but not a power cut).

The rate is found by stepping the offered rate: from :attr:`Plan.start_rate`, doubling while a step
passes, then bisecting between the last passing and the first failing rate. A step is one bounded
perfdhcp run (``-r RATE -p SECONDS``); it passes when at most :data:`MAX_DROP` (2.5 %) of the
DISCOVERs sent did not end in an ACK received (a DORA exchange not completed, whichever of its two
halves was lost). The value is the best passing step's completed exchanges (ACKs received) per second
of sending. Every step is recorded in ``notes``, with the CPU time the server process spent during
it (``/proc``): the **leases per server CPU-second** at the best step is reported beside the rate.
The server is pinned to CPU 1 and perfdhcp (single-threaded) to CPU 0 with ``taskset``, so each has
a core to itself: unpinned, perfdhcp's two threads and the server fight over the two cores and
every server tops out near perfdhcp's own limit (~8k/s here); pinned, perfdhcp drives ~16k/s.

**Allocation with 1k vs 1M leases** (in-process, the compiled core over :class:`MemoryStore`, so the
allocator is timed, not the disk): a server is restored with ``BASE`` bound leases occupying the
start of a 4M-address pool (the worst case for an allocator that scans), then DISCOVER + REQUEST
for :attr:`Plan.alloc_clients` new clients is timed, best of :attr:`Plan.alloc_repeats`. The
addresses (100.64.0.0/10) are numbers in memory only: no packet leaves the process.

**Restart with 100k leases**: a child process writes 100k bound leases through the durable store
(``open_store``, commits of 1000), then a fresh process times ``open_store`` + ``DhcpServer(...)``
(restoring every lease); the time of the whole process (interpreter start and imports included)
is recorded beside it.

``python -m benchmarks.scenarios.dhcp populate|restart ...`` are the child processes' commands.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from webspaces.lab.netns import LabError, NetLab, can_run, stop_process, wait_for

from ..harness import Options, Report, Result, Scenario, ScenarioUnavailableError, register

ROOT = Path(__file__).resolve().parents[2]
RELAY_ADDRESS = "172.24.254.2"  # perfdhcp's interface address: its giaddr
SERVER_ADDRESS = "172.24.254.1"
PREFIX = 16
POOL = ("172.24.1.1", "172.24.253.254")  # the production pool, in the giaddr's subnet
CLIENTS = 20_000  # perfdhcp -R: simulated clients, fewer than the pool
LEASE_TIME = 3600
MAX_DROP = 0.025  # a step passes with at most 2.5 % of exchanges not completed
CONFIRM_BELOW = 0.15  # a step failing with fewer drops than this may be noise: it is run again
CLIENT_CPU, SERVER_CPU = 0, 1  # pinned apart (see `pin`)
CLIENT_DEV = "c0"
SERVER_DEV = "s0"

# In-process allocation and restart: a pool far bigger than 1M (numbers in memory, never on a wire).
BIG_SERVER = "100.64.0.1"
BIG_PREFIX = 10
BIG_POOL = ("100.64.0.10", "100.127.255.250")

IMPLS = ("ours-compiled", "ours-pure", "dnsmasq", "kea", "kea-persist")


@dataclass(frozen=True, slots=True)
class Plan:
    step_seconds: float  # perfdhcp -p of every step
    start_rate: int
    max_rate: int
    bisections: int
    confirm_failures: bool  # run a failing step once more before taking it as failed (noise)
    impls: tuple[str, ...]
    alloc_base: tuple[int, int]  # bound leases before timing: (small, large)
    alloc_clients: int
    alloc_repeats: int
    restart_leases: int


FULL = Plan(
    step_seconds=3.0,
    start_rate=250,
    max_rate=64_000,
    bisections=4,
    confirm_failures=True,
    impls=IMPLS,
    alloc_base=(1_000, 1_000_000),
    alloc_clients=20_000,
    alloc_repeats=3,
    restart_leases=100_000,
)
QUICK = Plan(
    step_seconds=1.0,
    start_rate=500,
    max_rate=32_000,
    bisections=1,
    confirm_failures=False,
    impls=IMPLS[:4],
    alloc_base=(1_000, 100_000),
    alloc_clients=5_000,
    alloc_repeats=1,
    restart_leases=10_000,
)


class MissingPrerequisiteError(Exception):
    """A prerequisite is missing: reported in one line, exit status 2."""


# -- perfdhcp --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One perfdhcp run at ``offered`` exchanges/s for ``seconds``."""

    offered: int
    seconds: float
    discover_sent: int
    offer_received: int
    request_sent: int
    ack_received: int
    server_cpu_s: float = 0.0  # CPU time the server process spent during the step

    @property
    def per_server_cpu_s(self) -> float:
        """Completed exchanges per CPU-second of the server (0 when not measured)."""
        return self.ack_received / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    @property
    def completed_per_s(self) -> float:
        return self.ack_received / self.seconds

    @property
    def drop_fraction(self) -> float:
        """DORA exchanges begun (DISCOVERs sent) that did not end in an ACK received."""
        if self.discover_sent <= 0:
            return 1.0
        return max(0.0, 1.0 - self.ack_received / self.discover_sent)

    @property
    def passed(self) -> bool:
        return self.discover_sent > 0 and self.drop_fraction <= MAX_DROP

    def view(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "completed_per_s": round(self.completed_per_s, 1),
            "per_server_cpu_s": round(self.per_server_cpu_s, 1),
            "drop_pct": round(100 * self.drop_fraction, 2),
            "passed": self.passed,
        }


_SECTION = re.compile(r"\*\*\*Statistics for: (DISCOVER-OFFER|REQUEST-ACK)\*\*\*")
_FIELD = re.compile(r"^(sent packets|received packets|drops): (\d+)", re.MULTILINE)


def parse_perfdhcp(output: str) -> dict[str, dict[str, int]]:
    """``{"DISCOVER-OFFER": {"sent packets": n, "received packets": n, "drops": n}, "REQUEST-ACK": ...}``."""
    parsed: dict[str, dict[str, int]] = {}
    matches = list(_SECTION.finditer(output))
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(output)
        parsed[match.group(1)] = {
            name: int(value) for name, value in _FIELD.findall(output, match.end(), end)
        }
    return parsed


def step_from_output(offered: int, seconds: float, output: str, server_cpu_s: float = 0.0) -> Step:
    parsed = parse_perfdhcp(output)
    discover = parsed.get("DISCOVER-OFFER")
    if discover is None or "sent packets" not in discover:
        raise LabError(f"perfdhcp printed no DISCOVER-OFFER statistics:\n{output[-2000:]}")
    # With no OFFER at all perfdhcp sends no REQUEST and may print no REQUEST-ACK section.
    request = parsed.get("REQUEST-ACK", {})
    return Step(
        offered=offered,
        seconds=seconds,
        discover_sent=discover["sent packets"],
        offer_received=discover.get("received packets", 0),
        request_sent=request.get("sent packets", 0),
        ack_received=request.get("received packets", 0),
        server_cpu_s=server_cpu_s,
    )


def find_rate(run_step: Callable[[int], Step], plan: Plan) -> tuple[Step | None, list[Step]]:
    """Double the offered rate from ``plan.start_rate`` while steps pass, then bisect.

    With ``plan.confirm_failures`` a rate failing narrowly (under :data:`CONFIRM_BELOW` drops) is
    tried once more and fails only if it fails twice. Returns the best passing step (None when even
    the lowest rate tried failed) and every step run.
    """
    steps: list[Step] = []

    def measure(rate: int) -> Step:
        step = run_step(rate)
        steps.append(step)
        if not step.passed and plan.confirm_failures and step.drop_fraction < CONFIRM_BELOW:
            step = run_step(rate)
            steps.append(step)
        return step

    best: Step | None = None
    failed: int | None = None
    rate = plan.start_rate
    while rate <= plan.max_rate:
        step = measure(rate)
        if not step.passed:
            failed = rate
            break
        best = step
        rate *= 2
    if best is None:  # the first step failed: halve down to a rate that passes
        rate = plan.start_rate // 2
        while rate >= 10:
            step = measure(rate)
            if step.passed:
                best = step
                break
            failed = rate
            rate //= 2
    if best is None or failed is None:
        return best, steps
    low, high = best.offered, failed
    for _ in range(plan.bisections):
        mid = (low + high) // 2
        if mid in (low, high):
            break
        step = measure(mid)
        if step.passed:
            low = mid
            if step.completed_per_s > best.completed_per_s:
                best = step
        else:
            high = mid
    return best, steps


# -- the servers -----------------------------------------------------------------------------------------


def ours_available() -> str | None:
    """None when ``webspaces dhcp`` and its core run here, else why not (one line).

    ``webspaces dhcp --help`` must work, and a child process must get an ACK from the core with a
    durable store (``smoke``): a stub or a broken build is reported as missing, never measured.
    """
    for argv in (["-m", "webspaces", "dhcp", "--help"], ["-m", "benchmarks.scenarios.dhcp", "smoke"]):
        result = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=_env(compiled=True),
            cwd=ROOT,
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit {result.returncode}"
            return f"`python {' '.join(argv)}` failed: {last}"
    return None


def _env(*, compiled: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("WEBSPACES_NO_EXTENSIONS", None)
    if not compiled:
        env["WEBSPACES_NO_EXTENSIONS"] = "1"
    return env


def kea_config(workdir: Path, *, persist: bool) -> dict[str, Any]:
    database: dict[str, Any] = {"type": "memfile", "persist": persist, "lfc-interval": 0}
    if persist:
        database["name"] = str(workdir / "kea-leases4.csv")
    return {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [SERVER_DEV], "dhcp-socket-type": "raw"},
            "lease-database": database,
            "valid-lifetime": LEASE_TIME,
            "subnet4": [
                {"id": 1, "subnet": f"172.24.0.0/{PREFIX}", "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}]}
            ],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    "output_options": [{"output": str(workdir / "kea.log")}],
                    "severity": "INFO",  # start-up lines only; per-packet logging is DEBUG
                }
            ],
        }
    }


@dataclass
class Bed:
    """Fresh namespaces with one DHCP server up, and perfdhcp to drive it."""

    lab: NetLab
    impl: str
    workdir: Path
    client_ns: str = ""
    server_ns: str = ""
    server: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def build(self) -> None:
        lab = self.lab
        self.client_ns, self.server_ns = lab.namespace("c"), lab.namespace("s")
        lab.veth(self.client_ns, CLIENT_DEV, self.server_ns, SERVER_DEV)
        lab.address(self.client_ns, CLIENT_DEV, f"{RELAY_ADDRESS}/{PREFIX}")
        lab.address(self.server_ns, SERVER_DEV, f"{SERVER_ADDRESS}/{PREFIX}")
        self.log = self.workdir / f"{self.impl}.log"
        argv, env, ready = self._server()
        self.server = lab.spawn(self.server_ns, [*pin(SERVER_CPU), *argv], log=self.log, env=env)
        if not wait_for(ready, 30, interval=0.1):
            raise LabError(f"{self.impl}: the server did not come up in 30 s{self.logs()}")

    def _server(self) -> tuple[list[str], dict[str, str] | None, Callable[[], bool]]:
        if self.impl.startswith("ours-"):
            compiled = self.impl == "ours-compiled"
            argv = [sys.executable, "-m", "webspaces", "dhcp", "--interface", SERVER_DEV]
            argv += ["--server-address", f"{SERVER_ADDRESS}/{PREFIX}", "--pool", f"{POOL[0]}-{POOL[1]}"]
            argv += ["--lease-time", str(LEASE_TIME), "--leases", str(self.workdir / "leases")]
            argv += ["--log-level", "warning"]
            return argv, _env(compiled=compiled), self._port_67_bound
        if self.impl == "dnsmasq":
            argv = [
                "dnsmasq",
                "--no-daemon",
                "--quiet-dhcp",
                "--port=0",
                "--no-ping",
                f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
                f"--dhcp-lease-max={CLIENTS * 10}",
                f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,{LEASE_TIME}",
                "--dhcp-authoritative",
                f"--interface={SERVER_DEV}",
                "--bind-interfaces",
                "--conf-file=/dev/null",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            ]
            return argv, None, self._port_67_bound
        persist = self.impl == "kea-persist"
        config = self.workdir / "kea-dhcp4.json"
        config.write_text(json.dumps(kea_config(self.workdir, persist=persist), indent=2))
        env = dict(os.environ)
        env.update({"KEA_PIDFILE_DIR": str(self.workdir), "KEA_LOCKFILE_DIR": "none"})
        env["KEA_LOGGER_DESTINATION"] = str(self.workdir / "kea.log")
        return ["kea-dhcp4", "-c", str(config)], env, self._kea_started

    def _port_67_bound(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise LabError(f"{self.impl}: the server exited ({self.server.returncode}){self.logs()}")
        result = self.lab.try_run(self.server_ns, ["ss", "-Hlun", "sport = :67"], timeout=5)
        return bool(result.stdout.strip())

    def _kea_started(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise LabError(f"{self.impl}: kea-dhcp4 exited ({self.server.returncode}){self.logs()}")
        log = self.workdir / "kea.log"
        return log.exists() and "DHCP4_STARTED" in log.read_text(errors="replace")

    def logs(self) -> str:
        found = [self.log, self.workdir / "kea.log"]
        return "".join(
            f"\n--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in found if p.exists()
        )

    def step(self, rate: int, seconds: float) -> Step:
        argv = [*pin(CLIENT_CPU), "perfdhcp", "-4", "-g", "single", "-l", CLIENT_DEV]
        argv += ["-r", str(rate), "-R", str(CLIENTS)]
        argv += ["-p", f"{seconds:g}", "-W", "300000"]  # 0.3 s for the last replies after sending
        assert self.server is not None
        cpu_before = cpu_seconds(self.server.pid)
        result = self.lab.try_run(self.client_ns, argv, timeout=seconds + 30)
        if self.server.poll() is not None:
            raise LabError(f"{self.impl}: the server died during a step at {rate}/s{self.logs()}")
        cpu = cpu_seconds(self.server.pid) - cpu_before
        step = step_from_output(rate, seconds, result.stdout + result.stderr, cpu)
        time.sleep(0.3)  # let an overloaded server drain its socket before the next step
        return step


def pin(cpu: int) -> list[str]:
    """``taskset -c CPU`` on a machine with two CPUs or more (else nothing): the server gets one
    core to itself, perfdhcp the other, so neither steals the other's CPU."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds; ``ip netns exec`` execs in place."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def bed(impl: str) -> Iterator[Bed]:
    with NetLab("dh") as lab, tempfile.TemporaryDirectory(prefix="wsbench-dhcp-") as workdir:
        testbed = Bed(lab, impl, Path(workdir))
        try:
            testbed.build()
            yield testbed
        finally:
            if testbed.server is not None:  # before the lab deletes the namespaces under it
                stop_process(testbed.server)


def measure_rate(impl: str, plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    with bed(impl) as testbed:
        best, steps = find_rate(lambda rate: testbed.step(rate, plan.step_seconds), plan)
        log_tail = testbed.logs()[-600:] if best is None else ""
    return {
        "leases_per_s": round(best.completed_per_s, 1) if best is not None else 0.0,
        # At the best passing step: each server at its own highest sustained load.
        "per_server_cpu_s": round(best.per_server_cpu_s, 1) if best is not None else 0.0,
        "best_step": best.view() if best is not None else None,
        "steps": [step.view() for step in steps],
        "seconds": round(time.monotonic() - started, 1),
        **({"log_tail": log_tail} if log_tail else {}),
    }


# -- in-process: allocation and restart -------------------------------------------------------------------

_COOKIE = b"\x63\x82\x53\x63"


def dhcp_request(mac: bytes, xid: int, message_type: int, options: bytes = b"") -> bytes:
    """A minimal BOOTREQUEST from ``mac`` (no giaddr, no ciaddr) with options 53 + ``options``."""
    header = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0, bytes(4), bytes(4), bytes(4), bytes(4))
    return (
        header
        + mac.ljust(16, b"\0")
        + bytes(192)
        + _COOKIE
        + bytes((53, 1, message_type))
        + options
        + b"\xff"
    )


def _mac(prefix: int, index: int) -> bytes:
    return bytes((0x02, prefix)) + index.to_bytes(4, "big")


def _big_config() -> Any:
    from dataplane.dhcp import ServerConfig  # noqa: PLC0415 - only when measured

    return ServerConfig(
        server_address=BIG_SERVER, pools=[BIG_POOL], prefix_len=BIG_PREFIX, lease_time=LEASE_TIME
    )


def bound_leases(count: int, now: float, mac_prefix: int = 0xA0) -> Iterator[Any]:
    """``count`` bound leases on the first addresses of :data:`BIG_POOL`."""
    from dataplane.dhcp import Lease, LeaseState, int_to_ip, ip_to_int  # noqa: PLC0415

    first = ip_to_int(BIG_POOL[0])
    for k in range(count):
        mac = _mac(mac_prefix, k)
        yield Lease(
            address=int_to_ip(first + k),
            client=("hardware", b"\x01" + mac),
            mac=mac,
            state=LeaseState.BOUND,
            expires=now + 86_400,
            updated=now,
            lease_time=86_400,
        )


def time_allocations(base: int, clients: int, repeats: int) -> dict[str, Any]:
    """Seconds per new lease (DISCOVER + REQUEST) with ``base`` leases already bound; best of ``repeats``."""
    from dataplane.dhcp import DhcpServer, MemoryStore, implementation  # noqa: PLC0415

    now = time.time()
    store = MemoryStore()
    began = time.perf_counter()
    for lease in bound_leases(base, now):
        store.record(lease)
    store.commit()
    server = DhcpServer(_big_config(), store, now)
    setup = time.perf_counter() - began
    server_id = bytes((54, 4)) + bytes(int(part) for part in BIG_SERVER.split("."))
    runs: list[float] = []
    granted = 0
    for repeat in range(repeats):
        macs = [_mac(0xB0 + repeat, k) for k in range(clients)]
        discovers = [dhcp_request(mac, k + 1, 1) for k, mac in enumerate(macs)]
        began = time.perf_counter()
        for k, mac in enumerate(macs):
            offer = server.receive(discovers[k], now)
            if not offer:
                continue
            yiaddr = offer[0].payload[16:20]
            request = dhcp_request(mac, k + 1, 3, bytes((50, 4)) + yiaddr + server_id)
            replies = server.receive(request, now)
            granted += sum(1 for reply in replies if reply.message_type == 5)
            if k % 64 == 63:
                store.commit()
                server.drain_events()
        store.commit()
        server.drain_events()
        runs.append(time.perf_counter() - began)
    if granted != clients * repeats:
        raise LabError(f"allocation with {base} leases: {granted} of {clients * repeats} clients got an ACK")
    best = min(runs)
    return {
        "base": base,
        "clients": clients,
        "implementation": implementation(),
        "setup_s": round(setup, 2),
        "runs_s": [round(run, 4) for run in runs],
        "us_per_lease": round(best / clients * 1e6, 3),
    }


def _child(argv: Sequence[str], timeout: float, compiled: bool = True) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.scenarios.dhcp", *argv]
    began = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=_env(compiled=compiled)
    )
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    measured: dict[str, Any] = json.loads(result.stdout)
    measured["process_wall_s"] = round(wall, 3)
    return measured


def measure_restart(leases: int, workdir: Path) -> dict[str, Any]:
    path = str(workdir / "leases")
    written = _child(["populate", path, str(leases)], timeout=300)
    loads = {
        impl: _child(["restart", path, str(leases)], timeout=300, compiled=impl == "ours-compiled")
        for impl in ("ours-compiled", "ours-pure")
    }
    return {"written": written, "restart": loads}


def _populate_command(argv: Sequence[str]) -> int:
    from dataplane.dhcp import open_store  # noqa: PLC0415

    path, count = argv[0], int(argv[1])
    began = time.perf_counter()
    store = open_store(path)
    for k, lease in enumerate(bound_leases(count, time.time())):
        store.record(lease)
        if k % 1000 == 999:
            store.commit()
    store.close()
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else 0
    if Path(path).is_file():
        size = Path(path).stat().st_size
    print(json.dumps({"leases": count, "write_s": round(time.perf_counter() - began, 3), "bytes": size}))
    return 0


def _smoke_command(argv: Sequence[str]) -> int:
    """One DISCOVER + REQUEST through the core with a durable store in a temporary directory."""
    from dataplane.dhcp import DhcpServer, open_store  # noqa: PLC0415

    del argv
    with tempfile.TemporaryDirectory(prefix="wsbench-dhcp-") as workdir:
        store = open_store(str(Path(workdir) / "leases"))
        server = DhcpServer(_big_config(), store, time.time())
        mac = _mac(0xC0, 1)
        offer = server.receive(dhcp_request(mac, 1, 1), time.time())
        if not offer:
            print("no OFFER to a DISCOVER", file=sys.stderr)
            return 1
        server_id = bytes((54, 4)) + bytes(int(part) for part in BIG_SERVER.split("."))
        options = bytes((50, 4)) + offer[0].payload[16:20] + server_id
        replies = server.receive(dhcp_request(mac, 1, 3, options), time.time())
        store.commit()
        store.close()
    if [reply.message_type for reply in replies] != [5]:
        print(f"no ACK to a REQUEST: {[reply.message_type for reply in replies]}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True}))
    return 0


def _restart_command(argv: Sequence[str]) -> int:
    from dataplane.dhcp import DhcpServer, implementation, open_store  # noqa: PLC0415

    path, count = argv[0], int(argv[1])
    began = time.perf_counter()
    store = open_store(path)
    server = DhcpServer(_big_config(), store, time.time())
    load = time.perf_counter() - began
    restored = len(server.leases())
    store.close()
    if restored != count:
        print(f"restored {restored} leases of {count}", file=sys.stderr)
        return 1
    print(json.dumps({"leases": restored, "load_s": round(load, 4), "implementation": implementation()}))
    return 0


# -- the scenario ---------------------------------------------------------------------------------------


def check_prerequisites() -> None:
    reason = can_run()
    if reason is not None:
        raise MissingPrerequisiteError(reason)
    for tool, package in (
        ("perfdhcp", "kea-admin"),
        ("dnsmasq", "dnsmasq-base"),
        ("kea-dhcp4", "kea-dhcp4-server"),
        ("ss", "iproute2"),
    ):
        if shutil.which(tool) is None:
            raise MissingPrerequisiteError(f"needs {tool} on PATH (Debian package {package})")


def run(options: Options) -> Report:
    try:
        check_prerequisites()
    except MissingPrerequisiteError as exc:
        raise ScenarioUnavailableError(str(exc)) from None
    plan = QUICK if options.quick else FULL
    started = time.monotonic()
    load_before = os.getloadavg()
    missing = ours_available()
    impls = [impl for impl in plan.impls if missing is None or not impl.startswith("ours-")]
    if missing is not None:
        print(f"dhcp: ours NOT measured (reported as missing in notes): {missing}", file=sys.stderr)

    rates: dict[str, dict[str, Any]] = {}
    for impl in impls:
        rates[impl] = measure_rate(impl, plan)

    results: list[Result] = []
    for impl in impls:
        if rates[impl]["leases_per_s"] > 0:
            results.append(Result("DORA at <=2.5% drops", impl, rates[impl]["leases_per_s"], "leases/s"))
    for impl in impls:
        if rates[impl]["per_server_cpu_s"] > 0:
            results.append(
                Result("DORA per server CPU-second", impl, rates[impl]["per_server_cpu_s"], "leases/CPU-s")
            )
    ratios: dict[str, float] = {}

    def rate(impl: str) -> float:
        return float(rates.get(impl, {}).get("leases_per_s", 0.0))

    def ratio(name: str, numerator: float, denominator: float) -> None:
        if numerator > 0 and denominator > 0 and math.isfinite(numerator / denominator):
            ratios[name] = round(numerator / denominator, 3)

    ratio("vs_kea", rate("ours-compiled"), rate("kea"))
    ratio("vs_dnsmasq", rate("ours-compiled"), rate("dnsmasq"))
    ratio("vs_kea_persist", rate("ours-compiled"), rate("kea-persist"))
    ratio("compiled_vs_pure", rate("ours-compiled"), rate("ours-pure"))

    def per_cpu(impl: str) -> float:
        return float(rates.get(impl, {}).get("per_server_cpu_s", 0.0))

    ratio("vs_kea_per_cpu", per_cpu("ours-compiled"), per_cpu("kea"))
    ratio("vs_dnsmasq_per_cpu", per_cpu("ours-compiled"), per_cpu("dnsmasq"))
    ratio("compiled_vs_pure_per_cpu", per_cpu("ours-compiled"), per_cpu("ours-pure"))

    in_process: dict[str, Any] = {}
    if missing is None:
        small, large = plan.alloc_base
        alloc = [
            _child(["alloc", str(base), str(plan.alloc_clients), str(plan.alloc_repeats)], 600)
            for base in (small, large)
        ]
        in_process["alloc"] = alloc
        for entry in alloc:
            results.append(
                Result(
                    f"alloc with {entry['base']:,} bound", "ours-compiled", entry["us_per_lease"], "us/lease"
                )
            )
        ratio("alloc_1m_vs_1k", alloc[1]["us_per_lease"], alloc[0]["us_per_lease"])
        with tempfile.TemporaryDirectory(prefix="wsbench-dhcp-") as workdir:
            restart = measure_restart(plan.restart_leases, Path(workdir))
        in_process["restart"] = restart
        for impl, loaded in restart["restart"].items():
            results.append(
                Result(f"restart, load {plan.restart_leases:,} leases", impl, loaded["load_s"], "s")
            )
        ratio("restart_100k_s", restart["restart"]["ours-compiled"]["load_s"], 1.0)

    notes: dict[str, Any] = {
        "plan": asdict(plan),
        "topology": (
            f"perfdhcp at {RELAY_ADDRESS}/{PREFIX} (relay, giaddr) <-veth-> "
            f"server at {SERVER_ADDRESS}/{PREFIX}; "
            f"pool {POOL[0]}-{POOL[1]}; perfdhcp -R {CLIENTS}; lease time {LEASE_TIME} s"
        ),
        "pass_rule": f"a step passes when <= {MAX_DROP:.1%} of DISCOVERs sent did not end in an ACK received",
        "durability": {
            "ours-compiled": "durable: journal, fsync per batch before the ACKs leave",
            "ours-pure": "durable: journal, fsync per batch before the ACKs leave",
            "dnsmasq": "durable: lease file rewritten and fsynced once per event-loop pass (strace)",
            "kea": "memfile persist=false: leases in memory only, lost on restart",
            "kea-persist": "memfile persist=true: CSV appended per lease, never fsynced (strace)",
        },
        "rates": rates,
        "in_process": in_process,
        "seconds": round(time.monotonic() - started, 1),
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
    }
    if missing is not None:
        notes["missing"] = {"ours-compiled": missing, "ours-pure": missing}
    return Report(results=results, ratios=ratios, notes=notes)


register(
    Scenario(
        name="dhcp",
        description="perfdhcp DORA/s at <=2.5% drops: ours (compiled, pure) vs dnsmasq, Kea; alloc, restart",
        run=run,
    )
)


def _alloc_command(argv: Sequence[str]) -> int:
    print(json.dumps(time_allocations(int(argv[0]), int(argv[1]), int(argv[2]))))
    return 0


def _main(argv: Sequence[str]) -> int:
    commands: dict[str, Callable[[Sequence[str]], int]] = {
        "alloc": _alloc_command,
        "populate": _populate_command,
        "restart": _restart_command,
        "smoke": _smoke_command,
    }
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m benchmarks.scenarios.dhcp"
            " alloc BASE CLIENTS REPEATS | populate PATH N | restart PATH N | smoke",
            file=sys.stderr,
        )
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

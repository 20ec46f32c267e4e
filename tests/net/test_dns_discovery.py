"""DNS peer discovery against a real DNS server: dnsmasq in a namespace of our own serving the A
records of a headless Service from an ``--addn-hosts`` file, and :class:`DnsSource` running in the
same namespace (a child process started with ``ip netns exec``), printing each list it publishes.

Records are added and removed by rewriting the hosts file and sending SIGHUP to the dnsmasq we
started (dnsmasq re-reads ``--addn-hosts`` on SIGHUP); the published lists must follow within a
bound. Stopping dnsmasq must keep the last list (a failure, not an empty list).

Hygiene (spec/dataplane.md section 6): one namespace with a per-run name, IPv6 off, 192.0.2.0/24
only, every process bounded, only our own pids signalled, everything removed in ``finally``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
SERVER = "192.0.2.53"
PORT = 5353
NAME = "ws.lab.example"

CHILD = """
import asyncio, json, sys
from dataplane.overlay.discovery import DnsSource

def publish(source, peers):
    print(json.dumps(sorted(peers)), flush=True)

async def main():
    source = DnsSource(sys.argv[1], server=(sys.argv[2], int(sys.argv[3])), min_interval=0.2,
                       max_interval=1.0, timeout=0.5, search=())
    await asyncio.wait_for(source.run(publish), float(sys.argv[4]))

try:
    asyncio.run(main())
except TimeoutError:
    pass
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=check)


class Lines:
    """The JSON lines a child prints, read on a thread so that waits can be bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[list[str]] = queue.Queue()
        self.seen: list[list[str]] = []
        assert process.stdout is not None
        self.stream = process.stdout
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(json.loads(line))

    def close(self) -> None:
        """After the child exited: the reader reaches end of file, then the pipe is closed."""
        self.thread.join(timeout=10)
        self.stream.close()

    def expect(self, check: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no published list {what} within {timeout} s; seen {self.seen}")
            try:
                peers = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(peers)
            if check(peers):
                return peers

    def quiet(self, seconds: float) -> None:
        try:
            peers = self.queue.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"published {peers} although nothing changed")


@pytest.mark.net
def test_dns_source_follows_dnsmasq_records() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(shutil.which("dnsmasq") is not None, "needs dnsmasq (Debian dnsmasq-base)")
    require(shutil.which("ip") is not None, "needs iproute2")

    ns = f"wsdd{os.getpid() % 100000}"  # <= 15 characters
    tmp = Path(tempfile.mkdtemp(prefix="wsdd-"))
    hosts = tmp / "hosts"
    processes: list[subprocess.Popen[str]] = []
    lines: Lines | None = None
    created = False

    def start_dnsmasq() -> subprocess.Popen[str]:
        log = (tmp / "dnsmasq.log").open("a")
        process = subprocess.Popen(
            # `ip netns exec` execs dnsmasq, so this pid is dnsmasq's own.
            ["ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
             "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--local=/lab.example/",
             "--local-ttl=1", "--auth-ttl=1", f"--port={PORT}", f"--listen-address={SERVER}",
             "--bind-interfaces", f"--pid-file={tmp}/dnsmasq.pid", "--log-facility=-"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        log.close()
        processes.append(process)
        return process

    def write_hosts(*addresses: str) -> None:
        hosts.write_text("".join(f"{a} {NAME}\n" for a in addresses))

    def hup(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGHUP)  # our own dnsmasq: re-read --addn-hosts

    try:
        sh("ip", "netns", "add", ns)
        created = True
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{SERVER}/32", "dev", "lo")

        write_hosts("192.0.2.10", "192.0.2.11", "192.0.2.12")
        dnsmasq = start_dnsmasq()
        deadline = time.monotonic() + 10
        while "read " + str(hosts) not in (tmp / "dnsmasq.log").read_text():
            assert dnsmasq.poll() is None, (tmp / "dnsmasq.log").read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.05)

        with (tmp / "child.log").open("w") as child_log:
            child = subprocess.Popen(
                # Bounded: the child stops by itself after 90 s.
                ["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, NAME, SERVER, str(PORT), "90"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE, stderr=child_log, text=True,
            )  # fmt: skip
        processes.append(child)
        lines = Lines(child)

        first = lines.expect(bool, 10, "at start")
        assert first == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
        lines.quiet(1.5)  # re-resolved at the 1 s TTL, unchanged: nothing published

        write_hosts("192.0.2.11", "192.0.2.12", "192.0.2.13")  # one added, one removed
        hup(dnsmasq)
        lines.expect(lambda p: p == ["192.0.2.11", "192.0.2.12", "192.0.2.13"], 5, "after a change")

        write_hosts()  # the Service lost every endpoint: NXDOMAIN, a complete empty list
        hup(dnsmasq)
        lines.expect(lambda p: p == [], 5, "after removing every record")

        write_hosts("192.0.2.14", "192.0.2.15")
        hup(dnsmasq)
        lines.expect(lambda p: p == ["192.0.2.14", "192.0.2.15"], 5, "after adding records back")

        # The server goes away: the last list stays (nothing published), the failure is logged once
        # per streak, then the server comes back.
        dnsmasq.terminate()
        dnsmasq.wait(timeout=10)
        lines.quiet(3.0)
        assert (tmp / "child.log").read_text().count("keeping the last list") == 1
        write_hosts("192.0.2.16")
        start_dnsmasq()
        lines.expect(lambda p: p == ["192.0.2.16"], 10, "after the server came back")
        assert child.poll() is None, (tmp / "child.log").read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if lines is not None:
            lines.close()
        if created:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

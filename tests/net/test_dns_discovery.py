"""DNS peer discovery against a real DNS server: dnsmasq in a namespace of our own serving the A
records of a headless Service from an ``--addn-hosts`` file, and :class:`DnsSource` running in the
same namespace (a child process the lab starts in it), printing each list it publishes.

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

from tests.conftest import require_tools
from webspaces.lab.netns import NetLab

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


class Lines:
    """The JSON lines a child prints, read on a thread so that waits can be bounded."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
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
    require_tools("dnsmasq")

    tmp = Path(tempfile.mkdtemp(prefix="wsdd-"))
    hosts = tmp / "hosts"
    lines: Lines | None = None

    def start_dnsmasq() -> subprocess.Popen[bytes]:
        # Exec'd in place inside the namespace, so this pid is dnsmasq's own.
        argv = [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--addn-hosts={hosts}", "--local=/lab.example/", "--local-ttl=1", "--auth-ttl=1",
            f"--port={PORT}", f"--listen-address={SERVER}", "--bind-interfaces",
            f"--pid-file={tmp}/dnsmasq.pid", "--log-facility=-",
        ]  # fmt: skip
        return lab.spawn(ns, argv, log=tmp / f"dnsmasq.{len(lab.processes)}.log")

    def dnsmasq_log() -> str:
        return "".join(p.read_text() for p in sorted(tmp.glob("dnsmasq.*.log")))

    def write_hosts(*addresses: str) -> None:
        hosts.write_text("".join(f"{a} {NAME}\n" for a in addresses))

    def hup(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGHUP)  # our own dnsmasq: re-read --addn-hosts

    try:
        with NetLab("dd") as lab:
            ns = lab.namespace("n")
            lab.address(ns, "lo", f"{SERVER}/32")

            write_hosts("192.0.2.10", "192.0.2.11", "192.0.2.12")
            dnsmasq = start_dnsmasq()
            deadline = time.monotonic() + 10
            while "read " + str(hosts) not in dnsmasq_log():
                assert dnsmasq.poll() is None, dnsmasq_log()
                assert time.monotonic() < deadline, "dnsmasq did not start"
                time.sleep(0.05)

            # Bounded: the child stops by itself after 90 s.
            child = lab.spawn(
                ns,
                [sys.executable, "-c", CHILD, NAME, SERVER, str(PORT), "90"],
                log=tmp / "child.log",
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                pipe=True,
            )
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

            # The server goes away: the last list stays (nothing published), the failure is logged
            # once per streak, then the server comes back.
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
            lines.quiet(3.0)
            assert (tmp / "child.log").read_text().count("keeping the last list") == 1
            write_hosts("192.0.2.16")
            start_dnsmasq()
            lines.expect(lambda p: p == ["192.0.2.16"], 10, "after the server came back")
            assert child.poll() is None, (tmp / "child.log").read_text()
    finally:
        # The lab stopped the processes (by pid) and removed the namespace on leaving the block.
        if lines is not None:
            lines.close()
        shutil.rmtree(tmp, ignore_errors=True)

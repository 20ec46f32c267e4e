"""Namespaces, the DHCP server and real clients for the DHCP net tests (``webspaces dhcp`` run as a
real process, udhcpc, dhclient and perfdhcp as its clients).

Topology: a server namespace holding a Linux bridge ``br0`` (192.0.2.1/24, the interface served)
and one veth per client namespace, enslaved to the bridge; the client end is ``c0``. Addresses are
192.0.2.0/24 only, IPv6 is off in every namespace, every name carries the lab's unique prefix, and
:meth:`DhcpLab.close` stops the processes started here (by pid) and deletes the namespaces even when
a test fails. Clients run with hook scripts of ours that record what they were given and configure
only their own namespace's interface (never ``/etc/resolv.conf``, spec 6 gotcha 6).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webspaces.lab.netns import NetLab, stop_process, wait_for

SERVER = "192.0.2.1"
PREFIX = 24
POOL = ("192.0.2.100", "192.0.2.199")
BRIDGE = "br0"
CLIENT_DEV = "c0"
DNS = ("192.0.2.53", "192.0.2.54")
DOMAIN = "lab.example"
MTU = 1450

# udhcpc -s: records each call ($1 = deconfig, bound, renew, nak ...) with its environment, and
# applies bound/renew to the interface so that unicast renewals to the address reach udhcpc.
UDHCPC_SCRIPT = """#!/bin/sh
out="{dir}/udhcpc.events"
{{ echo "event=$1"; env | grep -E '^(ip|mask|subnet|router|dns|domain|mtu|lease|serverid|broadcast)='; \
echo "--"; }} >> "$out"
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr replace "$ip/${{mask:-24}}" dev "$interface" ;;
esac
exit 0
"""

# dhclient -sf: the same for ISC dhclient ($reason = PREINIT, BOUND, RENEW, REBIND, RELEASE ...).
DHCLIENT_SCRIPT = """#!/bin/sh
out="{dir}/dhclient.events"
{{ echo "event=$reason"; env | grep -E '^new_|^old_ip_address='; echo "--"; }} >> "$out"
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/24" dev "$interface" ;;
  RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
"""

DHCLIENT_CONF = """request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        host-name, interface-mtu;
send host-name "wsdhclient";
"""


@dataclass
class ServerProcess:
    ns: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class DhcpLab:
    tag: str = "wd"
    net: NetLab = field(init=False)
    tmp: Path = field(init=False)
    server_ns: str = ""
    clients: list[str] = field(default_factory=list)
    leases: Path = field(init=False)

    def __post_init__(self) -> None:
        self.net = NetLab(self.tag)
        self.tmp = Path(tempfile.mkdtemp(prefix="wsdhcp-"))
        self.leases = self.tmp / "leases"

    def __enter__(self) -> DhcpLab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for pidfile in self.tmp.glob("*.pid"):  # dhclient daemons write their own pid files
                self._kill_pidfile(pidfile)
            self.net.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _kill_pidfile(self, pidfile: Path) -> None:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if pid > 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # -- topology ----------------------------------------------------------------------------

    def build(self, clients: int) -> None:
        self.server_ns = self.net.namespace("s")
        self.net.bridge(self.server_ns, BRIDGE)
        self.net.address(self.server_ns, BRIDGE, f"{SERVER}/{PREFIX}")
        for _ in range(clients):
            self.add_client()

    def add_client(self, address: str | None = None) -> str:
        i = len(self.clients)
        ns = self.net.namespace(f"c{i}")
        port = f"p{i}"
        self.net.veth(ns, CLIENT_DEV, self.server_ns, port)
        self.net.enslave(self.server_ns, port, BRIDGE)
        if address is not None:
            self.net.address(ns, CLIENT_DEV, f"{address}/{PREFIX}")
        self.clients.append(ns)
        return ns

    def mac(self, ns: str, dev: str = CLIENT_DEV) -> str:
        return self.net.run(ns, ["cat", f"/sys/class/net/{dev}/address"]).strip()

    def addresses(self, ns: str, dev: str = CLIENT_DEV) -> list[str]:
        out = self.net.run(ns, ["ip", "-j", "-4", "addr", "show", "dev", dev])
        return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]

    # -- the server --------------------------------------------------------------------------

    def server_argv(self, *flags: str, lease_time: int = 3600) -> list[str]:
        return [
            sys.executable, "-m", "webspaces", "dhcp",
            "--interface", BRIDGE, "--server-address", f"{SERVER}/{PREFIX}",
            "--pool", f"{POOL[0]}-{POOL[1]}", "--router", SERVER,
            "--dns", DNS[0], "--dns", DNS[1], "--domain", DOMAIN, "--mtu", str(MTU),
            "--lease-time", str(lease_time), "--leases", str(self.leases), *flags,
        ]  # fmt: skip

    def start_server(self, argv: list[str], ns: str | None = None, log: str = "server.log") -> ServerProcess:
        ns = ns or self.server_ns
        path = self.tmp / log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = self.net.spawn(ns, argv, log=path, env=env)
        server = ServerProcess(ns, argv, path, process)
        return server

    def wait_ready(self, server: ServerProcess, timeout: float = 20.0, starts: int = 1) -> None:
        def ready() -> bool:
            return server.output().count(" dhcp on ") >= starts or server.process.poll() is not None

        if not wait_for(ready, timeout) or server.process.poll() is not None:
            raise AssertionError(f"server did not start:\n{server.output()[-3000:]}")

    def stop(self, server: ServerProcess) -> None:
        stop_process(server.process)

    def leases_json(self) -> list[dict[str, Any]]:
        result = subprocess.run(
            [sys.executable, "-m", "webspaces", "dhcp", "leases", "--leases", str(self.leases), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    # -- clients -----------------------------------------------------------------------------

    def script(self, name: str, template: str) -> Path:
        path = self.tmp / name
        path.write_text(template.format(dir=self.tmp))
        path.chmod(0o755)
        return path

    def events(self, name: str) -> list[dict[str, str]]:
        """The hook script's records: one dict per call, ``event`` plus the variables it got."""
        path = self.tmp / name
        if not path.exists():
            return []
        records: list[dict[str, str]] = []
        current: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line == "--":
                records.append(current)
                current = {}
            elif "=" in line:
                key, _, value = line.partition("=")
                current[key] = value.strip("'")
        return records


# -- pcap -------------------------------------------------------------------------------------------


def pcap_frames(path: Path) -> Iterator[bytes]:
    """Frames of a pcap file that tcpdump may still be writing (an incomplete last record ends it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    record = struct.Struct(endian + "IIII")
    offset = 24
    while offset + record.size <= len(data):
        _, _, captured, _ = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > len(data):
            return
        yield data[offset : offset + captured]
        offset += captured

"""``webspaces dhcp`` with real clients (issue 4, net tier): BusyBox udhcpc and ISC dhclient, each
in a namespace of its own on the served bridge, get a lease with the configured options, renew it
(seen on the wire as a RENEWING REQUEST, ciaddr set and no option 50/54, and in the store as a later
expiry), and release it; the two never share an address and ``webspaces dhcp leases --json`` lists
both. 192.0.2.0/24 only, IPv6 off, every process bounded and stopped by pid, namespaces removed even
on failure (see :mod:`tests.net.dhcp_lab`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.wire import DhcpMessageType, MalformedPacket, decode_frame
from tests.conftest import require_tools
from tests.net.dhcp_lab import (
    CLIENT_DEV,
    DHCLIENT_CONF,
    DHCLIENT_SCRIPT,
    DNS,
    DOMAIN,
    MTU,
    SERVER,
    UDHCPC_SCRIPT,
    DhcpLab,
    pcap_frames,
)
from webspaces.lab.netns import wait_for

pytestmark = pytest.mark.net

METRICS = "127.0.0.1:9267"
LEASE_TIME = 20  # T1 = 10 s: dhclient, which has no renew signal, renews by itself within the test


@pytest.fixture
def lab() -> Iterator[DhcpLab]:
    require_tools("udhcpc", "dhclient", "tcpdump")
    with DhcpLab() as built:
        yield built


def requests_seen(pcap: Path) -> list[tuple[str, str, bool]]:
    """(client MAC, ciaddr, has option 50 or 54) of every REQUEST in the capture."""
    seen = []
    for raw in pcap_frames(pcap):
        try:
            frame = decode_frame(raw)
        except MalformedPacket:  # a frame tcpdump truncated; not a REQUEST we need
            continue
        message = frame.dhcp
        if message is None or message.options.get(53) != bytes((DhcpMessageType.REQUEST,)):
            continue
        seen.append(
            (
                message.chaddr[:6].hex(":"),
                ".".join(str(b) for b in message.ciaddr),
                50 in message.options or 54 in message.options,
            )
        )
    return seen


def lease_of(lab: DhcpLab, mac: str) -> dict[str, Any] | None:
    for row in lab.leases_json():
        if row["mac"] == mac:
            return row
    return None


def last_event(lab: DhcpLab, name: str, *kinds: str) -> dict[str, str] | None:
    found = [record for record in lab.events(name) if record.get("event") in kinds]
    return found[-1] if found else None


def test_udhcpc_and_dhclient_lease_renew_release(lab: DhcpLab, tmp_path: Path) -> None:
    started = time.monotonic()
    lab.build(clients=2)
    udhcpc_ns, dhclient_ns = lab.clients
    udhcpc_mac, dhclient_mac = lab.mac(udhcpc_ns), lab.mac(dhclient_ns)
    pcap = lab.tmp / "server.pcap"
    tcpdump_log = lab.tmp / "tcpdump.log"
    lab.net.spawn(
        lab.server_ns,
        [
            "timeout",
            "150",
            "tcpdump",
            "-i",
            "br0",
            "-U",
            "-n",
            "-w",
            str(pcap),
            "udp and (port 67 or port 68)",
        ],
        log=tcpdump_log,
    )
    assert wait_for(lambda: "listening on" in tcpdump_log.read_text(errors="replace"), 10)
    server = lab.start_server(
        lab.server_argv("--log-level", "debug", "--metrics", METRICS, lease_time=LEASE_TIME)
    )
    lab.wait_ready(server)

    # -- both clients get a lease with the configured options -----------------------------------
    udhcpc_script = lab.script("udhcpc.sh", UDHCPC_SCRIPT)
    udhcpc_pid = lab.tmp / "udhcpc.pid"
    lab.net.spawn(
        udhcpc_ns,
        ["timeout", "120", "udhcpc", "-f", "-i", CLIENT_DEV, "-s", str(udhcpc_script), "-p", str(udhcpc_pid),
         "-O", "mtu", "-t", "5", "-T", "1", "-A", "1", "-x", "hostname:wsudhcpc"],
        log=lab.tmp / "udhcpc.log",
    )  # fmt: skip
    dhclient_script = lab.script("dhclient.sh", DHCLIENT_SCRIPT)
    conf = lab.tmp / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    dhclient_args = ["-sf", str(dhclient_script), "-cf", str(conf), "-lf", str(lab.tmp / "dhclient.leases"),
                     "-pf", str(lab.tmp / "dhclient.pid")]  # fmt: skip
    lab.net.spawn(
        dhclient_ns,
        ["timeout", "120", "dhclient", "-d", "-v", *dhclient_args, CLIENT_DEV],
        log=lab.tmp / "dhclient.log",
    )
    assert wait_for(lambda: last_event(lab, "udhcpc.events", "bound") is not None, 20), lab.events(
        "udhcpc.events"
    )
    assert wait_for(lambda: last_event(lab, "dhclient.events", "BOUND") is not None, 30), (
        lab.tmp / "dhclient.log"
    ).read_text()
    bound = last_event(lab, "udhcpc.events", "bound")
    assert bound is not None
    assert bound["router"] == SERVER
    assert bound["dns"].split() == list(DNS)
    assert bound["domain"] == DOMAIN
    assert bound["mtu"] == str(MTU)
    assert bound["lease"] == str(LEASE_TIME)
    assert (bound["subnet"], bound["serverid"]) == ("255.255.255.0", SERVER)
    udhcpc_address = bound["ip"]
    dbound = last_event(lab, "dhclient.events", "BOUND")
    assert dbound is not None
    assert dbound["new_routers"] == SERVER
    assert dbound["new_domain_name_servers"].split() == list(DNS)
    assert dbound["new_domain_name"] == DOMAIN
    assert dbound["new_interface_mtu"] == str(MTU)
    assert dbound["new_dhcp_lease_time"] == str(LEASE_TIME)
    assert dbound["new_subnet_mask"] == "255.255.255.0"
    assert dbound["new_dhcp_server_identifier"] == SERVER
    dhclient_address = dbound["new_ip_address"]
    assert udhcpc_address != dhclient_address, "two clients got the same address"

    rows = {row["mac"]: row for row in lab.leases_json()}
    assert rows[udhcpc_mac]["address"] == udhcpc_address
    assert rows[dhclient_mac]["address"] == dhclient_address
    assert rows[udhcpc_mac]["state"] == rows[dhclient_mac]["state"] == "bound"
    assert rows[udhcpc_mac]["hostname"] == "wsudhcpc"
    assert rows[dhclient_mac]["hostname"] == "wsdhclient"
    assert len({row["address"] for row in rows.values()}) == len(rows)

    # -- udhcpc renews on SIGUSR1: a unicast RENEWING REQUEST, and the expiry moves --------------
    before = rows[udhcpc_mac]["expires_epoch"]
    time.sleep(1.1)
    os.kill(int(udhcpc_pid.read_text().strip()), signal.SIGUSR1)
    assert wait_for(lambda: last_event(lab, "udhcpc.events", "renew") is not None, 10), lab.events(
        "udhcpc.events"
    )
    renewed = lease_of(lab, udhcpc_mac)
    assert renewed is not None and renewed["address"] == udhcpc_address
    assert renewed["expires_epoch"] > before + 1
    assert wait_for(lambda: (udhcpc_mac, udhcpc_address, False) in requests_seen(pcap), 5)

    # -- dhclient renews at T1 (10 s into its lease) ---------------------------------------------
    dhclient_before = rows[dhclient_mac]["expires_epoch"]
    assert wait_for(lambda: last_event(lab, "dhclient.events", "RENEW", "REBIND") is not None, 20), (
        lab.tmp / "dhclient.log"
    ).read_text()
    drenewed = lease_of(lab, dhclient_mac)
    assert drenewed is not None and drenewed["address"] == dhclient_address
    assert drenewed["expires_epoch"] > dhclient_before + 1
    assert wait_for(lambda: (dhclient_mac, dhclient_address, False) in requests_seen(pcap), 5)
    assert "LeaseRenewed" in server.output()

    # -- release: udhcpc on SIGUSR2, dhclient -r (unicast RELEASE from its configured address) ---
    os.kill(int(udhcpc_pid.read_text().strip()), signal.SIGUSR2)
    assert wait_for(lambda: (lease_of(lab, udhcpc_mac) or {}).get("state") == "released", 10), (
        lab.leases_json()
    )
    assert lab.addresses(dhclient_ns) == [dhclient_address]
    release = lab.net.try_run(
        dhclient_ns, ["timeout", "30", "dhclient", "-r", "-v", *dhclient_args, CLIENT_DEV]
    )
    assert release.returncode == 0, release.stderr
    assert wait_for(lambda: (lease_of(lab, dhclient_mac) or {}).get("state") == "released", 10), (
        lab.leases_json()
    )
    fetch = (
        f"import urllib.request as u; print(u.urlopen('http://{METRICS}/metrics', timeout=5).read().decode())"
    )
    metrics = lab.net.run(lab.server_ns, [sys.executable, "-c", fetch])
    assert 'webspaces_dhcp_leases{state="released"} 2.0' in metrics
    assert 'webspaces_dhcp_packets_total{direction="tx",type="ack"}' in metrics
    assert 'webspaces_dhcp_packets_total{direction="rx",type="discover"}' in metrics
    assert "webspaces_dhcp_commits_total" in metrics
    assert "webspaces_dhcp_batch_size_bucket" in metrics
    assert "webspaces_dhcp_pool_free 100.0" in metrics
    final = lab.leases_json()
    assert {row["address"] for row in final} == {udhcpc_address, dhclient_address}
    assert server.process.poll() is None, server.output()[-2000:]
    assert time.monotonic() - started < 90

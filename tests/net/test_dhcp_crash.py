"""``webspaces dhcp`` killed with SIGKILL under a perfdhcp load, again and again (issue 4, crash tier).

perfdhcp (Debian's kea-admin) runs in a client namespace as a relay (its interface address
192.0.2.2 is the giaddr, spec 6 gotcha 7) at a steady rate over 80 simulated clients; tcpdump on its
side records every ACK the "clients" saw. The server is killed at random moments (at least 20
times) and restarted at once on the same lease store. After each restart, every (address, MAC) an
ACK carried so far must be a BOUND lease of that MAC in the store (nothing acknowledged was lost),
no address may ever have been ACKed to two MACs, and no MAC may hold two addresses. Leases are one
hour and perfdhcp never releases, so nothing may legitimately move. The ACK set is read before the
store, so every ACK in it was sent, hence committed, before the store is read.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.dhcp.events import LeaseState
from dataplane.dhcp.service import read_leases
from dataplane.wire import DhcpMessageType, MalformedPacket, decode_frame
from tests.conftest import require_tools
from tests.net.dhcp_lab import CLIENT_DEV, SERVER, DhcpLab, ServerProcess, pcap_frames
from webspaces.lab.netns import wait_for

pytestmark = pytest.mark.net

RELAY = "192.0.2.2"  # perfdhcp's interface address: its giaddr
CLIENTS = 80  # perfdhcp -R, fewer than the 100-address pool
RATE = 150  # DORA exchanges per second offered
KILLS = 20
BUDGET = 75.0  # seconds for the kill loop


@pytest.fixture
def lab() -> Iterator[DhcpLab]:
    require_tools("perfdhcp", "tcpdump")
    with DhcpLab(tag="wk") as built:
        yield built


def acks_seen(pcap: Path) -> list[tuple[str, str]]:
    """(yiaddr, chaddr MAC) of every ACK captured (a frame tcpdump is still writing is skipped)."""
    acks = []
    for raw in pcap_frames(pcap):
        try:
            message = decode_frame(raw).dhcp
        except MalformedPacket:  # a truncated last frame
            continue
        if message is None or message.options.get(53) != bytes((DhcpMessageType.ACK,)):
            continue
        acks.append((".".join(str(b) for b in message.yiaddr), message.chaddr[:6].hex(":")))
    return acks


def check_store(lab: DhcpLab, acks: list[tuple[str, str]]) -> int:
    """Every ACKed (address, MAC) is a BOUND lease of that MAC; no address ACKed to two MACs, no
    MAC bound twice. Returns the number of distinct leases checked."""
    owners: dict[str, set[str]] = {}
    for address, mac in acks:
        owners.setdefault(address, set()).add(mac)
    shared = {address: macs for address, macs in owners.items() if len(macs) > 1}
    assert not shared, f"addresses ACKed to two clients: {shared}"
    leases = {lease.address: lease for lease in read_leases(str(lab.leases))}
    for address, macs in owners.items():
        lease = leases.get(address)
        assert lease is not None, f"ACKed lease of {address} lost"
        assert lease.mac.hex(":") in macs, f"{address}: ACKed to {macs}, stored for {lease.mac.hex(':')}"
        assert lease.state == LeaseState.BOUND, f"{address}: {lease.state.name} after restart"
    bound_macs = [lease.mac for lease in leases.values() if lease.state == LeaseState.BOUND]
    assert len(bound_macs) == len(set(bound_macs)), "a client holds two addresses"
    return len(owners)


def test_kill_9_under_perfdhcp_load_loses_no_acked_lease(lab: DhcpLab) -> None:
    started = time.monotonic()
    seed = int(os.environ.get("WEBSPACES_CRASH_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    lab.build(clients=0)
    relay_ns = lab.add_client(address=RELAY)
    pcap = lab.tmp / "relay.pcap"
    tcpdump_log = lab.tmp / "tcpdump.log"
    lab.net.spawn(
        relay_ns,
        ["timeout", "150", "tcpdump", "-i", CLIENT_DEV, "-U", "-n", "-w", str(pcap),
         f"udp and src host {SERVER} and src port 67"],
        log=tcpdump_log,
    )  # fmt: skip
    assert wait_for(lambda: "listening on" in tcpdump_log.read_text(errors="replace"), 10)

    argv = lab.server_argv(lease_time=3600)
    server = lab.start_server(argv, log="server-0.log")
    lab.wait_ready(server)
    perfdhcp = lab.net.spawn(
        relay_ns,
        ["timeout", "140", "perfdhcp", "-4", "-r", str(RATE), "-R", str(CLIENTS), "-p", "130",
         "-l", CLIENT_DEV],
        log=lab.tmp / "perfdhcp.log",
    )  # fmt: skip
    assert wait_for(lambda: len(acks_seen(pcap)) >= 20, 15), (lab.tmp / "perfdhcp.log").read_text()

    kills = 0
    checked = 0
    restarts: list[float] = []
    while kills < KILLS:
        assert time.monotonic() - started < BUDGET, f"only {kills} kills in {BUDGET} s (seed {seed})"
        acked_before = len(acks_seen(pcap))
        time.sleep(rng.uniform(0.1, 1.2))
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        kills += 1
        began = time.monotonic()
        server = lab.start_server(argv, log=f"server-{kills}.log")
        lab.wait_ready(server)
        restarts.append(time.monotonic() - began)
        acks = acks_seen(pcap)  # read before the store: each of these was committed before it
        checked = check_store(lab, acks)
        assert len(acks) >= acked_before
        assert perfdhcp.poll() is None, (lab.tmp / "perfdhcp.log").read_text()[-2000:]

    # The restarted server keeps serving: more ACKs arrive, and the final store still holds them all.
    total = len(acks_seen(pcap))
    assert wait_for(lambda: len(acks_seen(pcap)) > total + 20, 10)
    checked = check_store(lab, acks_seen(pcap))
    assert checked >= CLIENTS // 2
    print(
        f"crash test: seed {seed}, {kills} kills, {len(acks_seen(pcap))} ACKs over {checked} leases checked, "
        f"restart {max(restarts):.2f} s at most, {time.monotonic() - started:.1f} s in all"
    )
    assert isinstance(server, ServerProcess)

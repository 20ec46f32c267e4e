"""The overlay agent (``webspaces overlay``) as real processes in namespaces of our own (issue 3,
net tier): a LAN of three agents, interop with a kernel VXLAN device, the wire seen by tshark,
peers following DNS and Kubernetes discovery, a kill and restart under load, start-up errors and
the health and metrics endpoints.

Underlay 192.0.2.0/24, overlay 198.51.100.0/24, every name prefixed per run, every process bounded
and stopped by pid; the lab is removed even when a test fails (see :mod:`tests.net.overlay_lab`).
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_tools
from tests.net.overlay_lab import (
    DNS_ADDRESS,
    TAP,
    VNI,
    OverlayLab,
    overlay,
    parse_ping,
    underlay,
    wait_health,
)
from webspaces.lab.netns import wait_for

pytestmark = pytest.mark.net

DNS_NAME = "ws.test"


@pytest.fixture
def lab() -> Iterator[OverlayLab]:
    require_tools("ping", "ss")
    with OverlayLab() as built:
        yield built


def dns_flags() -> tuple[str, ...]:
    return ("--peers-dns", DNS_NAME, "--peers-dns-server", f"{DNS_ADDRESS}:53")


def write_hosts(path: Path, *nodes: int) -> None:
    path.write_text("".join(f"{underlay(i)} {DNS_NAME}\n" for i in nodes))


def sources(body: dict[str, object]) -> dict[str, tuple[bool, int]]:
    """``/health`` body -> {source name: (synced, peers)}."""
    listed = body["sources"]
    assert isinstance(listed, list)
    return {s["name"]: (s["synced"], s["peers"]) for s in listed}


def dns_peers_become(lab: OverlayLab, ns: str, count: int, timeout: float = 10.0) -> bool:
    """Whether the agent in ``ns`` reports its DNS source synced with ``count`` peers in time."""
    return wait_for(lambda: sources(lab.health(ns)[1]) == {f"dns:{DNS_NAME}": (True, count)}, timeout)


def gbits(report: dict[str, object]) -> float:
    end = report["end"]
    assert isinstance(end, dict)
    return float(end["sum_received"]["bits_per_second"]) / 1e9


# -- 1. three agents form a LAN ------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure-python"])
def test_three_agents_form_a_lan(lab: OverlayLab, pure: bool) -> None:
    if not pure:
        built = importlib.util.find_spec("dataplane.pump._tunnel") and importlib.util.find_spec(
            "dataplane.overlay._vtep"
        )
        require(
            bool(built),
            "the compiled data path (dataplane.pump._tunnel, dataplane.overlay._vtep) is not built",
        )
    lab.bridged(3)
    agents = []
    for i in range(3):
        peers = [flag for j in range(3) if j != i for flag in ("--peer", underlay(j))]
        agents.append(lab.start_agent(i, *peers, pure=pure, wait=False))
    for agent in agents:
        lab.wait_ready(agent)
        expected = "pure-Python data path" if pure else "compiled data path"
        assert expected in agent.output(), agent.output()
    for i, agent in enumerate(agents):
        body = wait_health(lab, agent.ns, 200, 10)
        assert sources(body) == {"static": (True, 2)}
        assert sorted(body["peers"]) == sorted(underlay(j) for j in range(3) if j != i)

    for i in range(3):
        for j in range(3):
            if i != j:
                assert lab.reachable(lab.nodes[i], overlay(j)), f"{overlay(i)} cannot reach {overlay(j)}"
                result = lab.ping(lab.nodes[i], overlay(j), count=3, interval=0.05)
                assert result.sent == 3 and result.lost == 0, result.output
    size = (2 if pure else 8) << 20
    for port, (i, j) in enumerate(((0, 1), (1, 2), (2, 0)), start=5301):
        lab.tcp_transfer(lab.nodes[i], lab.nodes[j], overlay(j), size, port=port)


# -- 2. against a kernel VXLAN device with default offloads ---------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("checksum", ["default", "zero"])
def test_agent_interoperates_with_a_kernel_vxlan_device(
    lab: OverlayLab, capsys: pytest.CaptureFixture[str], checksum: str
) -> None:
    require_tools("iperf3", "bridge")
    ours, kernel = lab.pair()
    flags = ("--udp-checksum", "zero") if checksum == "zero" else ()
    agent = lab.start_agent(0, "--peer", underlay(1), *flags)
    # The reference: kernel VXLAN with its default offloads (inner checksums left partial).
    lab.net.run(kernel, [
        "ip", "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "local", underlay(1),
        "dstport", "4789", "nolearning", "dev", "u0",
    ])  # fmt: skip
    lab.net.run(kernel, ["ip", "link", "set", "vx0", "mtu", "1450"])
    lab.net.run(kernel, ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", underlay(0)])
    lab.net.address(kernel, "vx0", f"{overlay(1)}/24")
    lab.net.run(kernel, ["ip", "link", "set", "vx0", "up"])
    wait_health(lab, ours, 200, 10)

    assert lab.reachable(ours, overlay(1)), agent.output()
    for src, dst in ((ours, overlay(1)), (kernel, overlay(0))):
        result = lab.ping(src, dst, count=3, interval=0.05)
        assert result.lost == 0, result.output
    # Kernel sends (its TSO/checksum-partial segments reach us), then we send.
    kernel_to_ours = lab.iperf(kernel, ours, overlay(0), seconds=5, port=5201)
    ours_to_kernel = lab.iperf(ours, kernel, overlay(1), seconds=5, port=5202)
    for report in (kernel_to_ours, ours_to_kernel):
        received = report["end"]["sum_received"]["bytes"]
        assert received > 10 << 20, f"only {received} bytes in 5 s"
        assert gbits(report) > 0.05
    with capsys.disabled():
        print(
            f"\n  agent<->kernel VXLAN TCP (outer checksum {checksum}):"
            f" kernel->agent {gbits(kernel_to_ours):.2f} Gbit/s,"
            f" agent->kernel {gbits(ours_to_kernel):.2f} Gbit/s"
        )
    assert agent.process.poll() is None, agent.output()


# -- 3. the wire, decoded by tshark ---------------------------------------------------------------


# Sends one UDP datagram to each port in a range: one inner flow per destination port.
_UDP_FLOWS = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for port in range(int(sys.argv[2]), int(sys.argv[3])):
        s.sendto(b"flow", (sys.argv[1], port))
"""
FLOW_PORTS = range(7001, 7017)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("checksum", ["default", "zero"])
def test_capture_shows_rfc7348_vxlan(lab: OverlayLab, checksum: str) -> None:
    """RFC 7348 §5 on the wire, decoded by tshark: destination port 4789, I flag, our VNI, the
    source port a hash of the inner flow in 49152-65535 (one port per flow, flows spread), and the
    outer UDP checksum 0 with ``--udp-checksum zero`` (the default keeps it on for UDP GSO)."""
    require_tools("tshark")
    a, _ = lab.pair()
    flags = ("--udp-checksum", "zero") if checksum == "zero" else ()
    lab.start_agent(0, "--peer", underlay(1), *flags)
    lab.start_agent(1, "--peer", underlay(0), *flags)
    pcap = lab.tmp / "underlay.pcap"
    log = lab.tmp / "tshark.log"
    pcap.touch()
    pcap.chmod(0o666)  # dumpcap may drop privileges before writing
    capture = lab.net.spawn(
        a,
        ["tshark", "-i", "u0", "-f", "udp port 4789", "-w", str(pcap), "-c", "500", "-a", "duration:20"],
        log=log,
    )
    # tshark needs a moment before it captures (spec 6, gotcha 10).
    assert wait_for(lambda: "Capturing on" in log.read_text(errors="replace"), 15), log.read_text()
    time.sleep(1.0)
    assert lab.reachable(a, overlay(1))
    result = lab.ping(a, overlay(1), count=3, interval=0.05)
    assert result.lost == 0, result.output
    lab.net.run(
        a, [sys.executable, "-c", _UDP_FLOWS, overlay(1), str(FLOW_PORTS[0]), str(FLOW_PORTS[-1] + 1)]
    )
    time.sleep(0.5)
    capture.send_signal(signal.SIGINT)  # our own tshark, by pid: flush and exit
    capture.wait(15)

    fields = [
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "udp.dstport",
        "udp.checksum",
        "vxlan.flags",
        "vxlan.vni",
        "icmp.type",
    ]
    decoded = lab.net.sh(
        [
            "tshark",
            "-r",
            str(pcap),
            "-Y",
            "vxlan",
            "-T",
            "fields",
            *(f for name in fields for f in ("-e", name)),
        ]
    )
    # Repeated fields (outer and inner ip.src, udp.*) come comma-separated, the outer first.
    raw = [dict(zip(fields, line.split("\t"), strict=True)) for line in decoded.splitlines() if line.strip()]
    rows = [{name: value.split(",")[0] for name, value in row.items()} for row in raw]
    echoes = [r for r in rows if r["icmp.type"] in ("8", "0")]
    assert len(echoes) >= 6, decoded  # 3 requests and 3 replies, at least
    assert {(r["ip.src"], r["icmp.type"]) for r in echoes} >= {(underlay(0), "8"), (underlay(1), "0")}
    for row in rows:
        assert row["udp.dstport"] == "4789"
        assert int(row["vxlan.vni"]) == VNI
        assert int(row["vxlan.flags"], 16) & 0x0800  # the I flag
        assert 49152 <= int(row["udp.srcport"]) <= 65535, row
        if checksum == "zero":
            assert int(row["udp.checksum"], 16) == 0, row
    assert {r["ip.src"] for r in rows} == {underlay(0), underlay(1)}
    # The inner UDP flows from a: each leaves from one outer source port, and they spread.
    ports_by_flow: dict[int, set[int]] = {}
    for row in raw:
        inner = row["udp.dstport"].split(",")
        if row["ip.src"].startswith(underlay(0) + ",") and len(inner) == 2 and int(inner[1]) in FLOW_PORTS:
            ports_by_flow.setdefault(int(inner[1]), set()).add(int(row["udp.srcport"].split(",")[0]))
    assert set(ports_by_flow) == set(FLOW_PORTS), decoded
    assert all(len(ports) == 1 for ports in ports_by_flow.values()), ports_by_flow
    assert len(set().union(*ports_by_flow.values())) >= 2, ports_by_flow


# -- 4. DNS discovery: a peer removed and re-added while traffic flows -----------------------------


@pytest.mark.timeout(90)
def test_dns_peer_removed_and_readded_while_traffic_flows(lab: OverlayLab) -> None:
    require_tools("dnsmasq")
    nodes = lab.bridged(3)
    dns = lab.dns_namespace()
    hosts = lab.tmp / "hosts"
    write_hosts(hosts, 0, 1, 2)
    dnsmasq = lab.start_dnsmasq(dns, hosts)
    agents = [lab.start_agent(i, *dns_flags(), wait=False) for i in range(3)]
    for agent in agents:
        lab.wait_ready(agent)
    for agent in agents:
        body = wait_health(lab, agent.ns, 200, 15)
        assert sources(body) == {f"dns:{DNS_NAME}": (True, 2)}, body
    a, b, c = nodes
    assert lab.reachable(a, overlay(1)) and lab.reachable(a, overlay(2))

    # A ping A -> B every 50 ms across the whole change.
    ping, ping_log = lab.start_ping(a, overlay(1), count=100_000, interval=0.05, name="a-b")
    time.sleep(0.5)

    write_hosts(hosts, 0, 1)  # C leaves the Service
    lab.reload_dnsmasq(dnsmasq)
    for ns in (a, b):
        assert dns_peers_become(lab, ns, 1), lab.health(ns)
    assert lab.health(a)[1]["peers"] == [underlay(1)]
    assert lab.ping(a, overlay(2), count=3, interval=0.1, wait=0.5).received == 0, "A still reaches removed C"
    assert lab.health(a)[0] == 200  # a smaller complete list is still a synced source

    write_hosts(hosts, 0, 1, 2)  # C is back
    lab.reload_dnsmasq(dnsmasq)
    for ns in (a, b):
        assert dns_peers_become(lab, ns, 2), lab.health(ns)
    assert lab.reachable(a, overlay(2)), "A does not reach C after it was re-added"
    assert lab.reachable(c, overlay(0))
    time.sleep(0.5)

    ping.send_signal(signal.SIGINT)  # our own ping, by pid: print the summary and exit
    ping.wait(10)
    result = parse_ping(ping_log.read_text())
    assert result.sent >= 20, result.output
    print(f"A -> B across the peer change: {result.received}/{result.sent} echoes answered")
    assert result.lost <= 1, f"A -> B lost {result.lost} of {result.sent} across the peer change"
    assert "peers from dns:ws.test: +none -192.0.2.3" in agents[0].output()
    assert "peers from dns:ws.test: +192.0.2.3 -none" in agents[0].output()


# -- 5. killed and restarted during an iperf3 run ---------------------------------------------------


@pytest.mark.timeout(90)
def test_agent_killed_and_restarted_keeps_the_tcp_flow(lab: OverlayLab) -> None:
    require_tools("iperf3")
    a, b = lab.pair()
    agent = lab.start_agent(0, "--peer", underlay(1))
    lab.start_agent(1, "--peer", underlay(0))
    assert "created a persistent TAP" in agent.output()
    assert lab.reachable(a, overlay(1))
    server = lab.iperf_server(b, overlay(1))
    report_path = lab.tmp / "iperf.json"
    client = lab.net.spawn(
        a,
        ["iperf3", "-c", overlay(1), "-t", "10", "-i", "1", "-J", "--connect-timeout", "5000"],
        log=report_path,
    )
    time.sleep(3.0)
    assert client.poll() is None, report_path.read_text()
    agent.process.kill()  # SIGKILL, our agent's own pid (ip netns exec execs it)
    agent.process.wait(5)
    killed_at = time.monotonic()
    # The TAP outlives the agent, with its address (persistent, never deleted).
    shown = lab.net.run(a, ["ip", "-4", "-o", "addr", "show", "dev", TAP])
    assert f"{overlay(0)}/24" in shown, shown
    lab.restart(agent)
    restarted_in = time.monotonic() - killed_at
    assert "adopted the existing persistent TAP" in agent.output(), agent.output()

    assert client.wait(30) == 0, report_path.read_text()
    server.wait(10)
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"]
    per_second = [interval["sum"]["bytes"] for interval in report["intervals"]]
    assert len(per_second) >= 10
    print(f"restarted in {restarted_in:.2f} s; bytes per second: {per_second}")
    # The flow moved data before the kill and again after the restart, on the same connection.
    assert sum(per_second[:3]) > 0
    assert sum(per_second[-3:]) > 1 << 20, f"no data after the restart ({restarted_in:.1f} s): {per_second}"
    assert report["end"]["sum_received"]["bytes"] > 0


# -- 6. Kubernetes discovery end to end -------------------------------------------------------------

REPLAY_CHILD = """
import asyncio, sys
from tests.k8s_replay import Replay, endpoint, endpoint_slice, serve

async def main():
    replay = Replay()
    me, ready_peer, unready_peer, stranger = sys.argv[1:5]
    replay.apply(endpoint_slice("ws-abc12", "ws", [
        endpoint(me), endpoint(ready_peer), endpoint(unready_peer, ready=False, serving=False)]))
    replay.apply(endpoint_slice("other-x1", "other", [endpoint(stranger)]))
    async with serve(replay) as url:
        print(url, flush=True)
        await asyncio.sleep(float(sys.argv[5]))

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_kubernetes_discovery_end_to_end(lab: OverlayLab) -> None:
    a, _, _ = lab.bridged(3)
    url_log = lab.tmp / "replay.log"
    replay = lab.net.spawn(
        a,
        [sys.executable, "-c", REPLAY_CHILD, underlay(0), underlay(1), underlay(2), "192.0.2.99", "60"],
        log=url_log,
        env=lab.agent_env(),
    )
    started = wait_for(lambda: "http://" in url_log.read_text() or replay.poll() is not None, 15)
    assert started and replay.poll() is None, f"replay server:\n{url_log.read_text()}"
    url = re.search(r"http://\S+", url_log.read_text())
    assert url is not None, url_log.read_text()
    agent = lab.start_agent(0, "--peers-kubernetes", "default/ws", "--kubernetes-api", url.group(0))
    lab.start_agent(1, "--peer", underlay(0), "--peer", underlay(2))
    lab.start_agent(2, "--peer", underlay(0), "--peer", underlay(1))
    body = wait_health(lab, a, 200, 15)
    assert sources(body) == {"k8s:default/ws": (True, 2)}, body  # self excluded, not-ready included
    assert sorted(body["peers"]) == [underlay(1), underlay(2)]
    assert lab.reachable(a, overlay(1)), agent.output()
    assert lab.reachable(a, overlay(2)), agent.output()
    assert lab.ping(a, overlay(2), count=3, interval=0.05).lost == 0
    config = json.loads(lab.get(a, "/config")["body"])
    assert config["Services"] == ["default/ws"] and config["VXLAN"]["Interface"] == TAP


# -- 7. start-up errors: clear messages, non-zero exits ---------------------------------------------


@pytest.mark.timeout(90)
def test_startup_errors_are_clear(lab: OverlayLab) -> None:
    require_tools("setpriv")
    a, _ = lab.pair()
    env = lab.agent_env()
    argv = lab.agent_argv(0, "--peer", underlay(1))

    def fails(code: int, *fragments: str, argv: list[str] = argv, env: dict[str, str] = env) -> str:
        result = lab.run_agent_once(a, argv, env)
        message = result.stderr
        assert result.returncode == code, f"exit {result.returncode}, wanted {code}: {message}"
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in: {message}"
        assert "Traceback" not in message, message
        print(f"exit {result.returncode}: {message.strip()}")
        return message

    # Root without CAP_NET_ADMIN.
    no_cap = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", *argv]
    fails(1, "CAP_NET_ADMIN", argv=no_cap)
    # The bridge to join does not exist; the TAP the agent created for it is not left behind.
    fails(1, "bridge", "nosuchbr", argv=[*argv, "--bridge", "nosuchbr"])
    assert lab.net.try_run(a, ["ip", "link", "show", TAP]).returncode != 0, "a failed start left its TAP"
    # The VXLAN port is taken.
    holder = lab.net.spawn(
        a,
        [sys.executable, "-c", "import socket, time\n"
         f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{underlay(0)}', 4789))\n"
         "print('bound', flush=True); time.sleep(60)"],
        log=lab.tmp / "holder.log",
    )  # fmt: skip
    assert wait_for(lambda: "bound" in (lab.tmp / "holder.log").read_text(), 10)
    fails(1, "port", "4789")
    holder.kill()
    holder.wait(5)
    # --local that no interface here holds.
    fails(1, "local", "192.0.2.77", argv=[*lab.agent_argv(0), "--local", "192.0.2.77"])
    # Bad values name the key, from a flag and from the environment.
    fails(2, "vni", "--vni", argv=[*argv, "--vni", "99999999"])
    fails(2, "mtu", "WEBSPACES_OVERLAY_MTU", env={**env, "WEBSPACES_OVERLAY_MTU": "jumbo"})
    fails(2, "busy_poll", "--busy-poll", argv=[*argv, "--busy-poll", "-3"])
    # A CPU this process may not run on (valid as a number, checked against the affinity mask).
    fails(1, "cpu", "4000", argv=[*argv, "--cpu", "4000"])
    # An unknown YAML key.
    config = lab.tmp / "overlay.yaml"
    config.write_text(f"local: {underlay(0)}\nvnii: 5\n")
    fails(
        2, "vnii", "unknown key", argv=[sys.executable, "-m", "webspaces", "overlay", "--config", str(config)]
    )
    # And after all that, a good start works (nothing was left half-made).
    agent = lab.start_agent(0, "--peer", underlay(1))
    assert agent.process.poll() is None


# -- 8. health before and after sync; metrics count frames ----------------------------------------


@pytest.mark.timeout(60)
def test_health_waits_for_peer_sync_and_metrics_count_frames(lab: OverlayLab) -> None:
    require_tools("dnsmasq")
    a, _ = lab.bridged(2)
    dns = lab.dns_namespace()  # the server's address answers, but nothing listens on :53 yet
    agent = lab.start_agent(0, *dns_flags())
    lab.start_agent(1, "--peer", underlay(0))
    status, body = lab.health(a)
    assert status == 503, body
    assert body["device"]["up"] is True and body["healthy"] is False
    assert sources(body) == {f"dns:{DNS_NAME}": (False, 0)}, body

    hosts = lab.tmp / "hosts"
    write_hosts(hosts, 0, 1)
    lab.start_dnsmasq(dns, hosts)
    body = wait_health(lab, a, 200, 15)
    assert sources(body) == {f"dns:{DNS_NAME}": (True, 1)} and body["peers"] == [underlay(1)], body

    assert lab.reachable(a, overlay(1)), agent.output()
    assert lab.ping(a, overlay(1), count=5, interval=0.05).lost == 0
    answer = lab.get(a, "/metrics")
    assert answer.get("status") == 200, answer
    metrics = answer["body"]

    def value(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
        assert match, f"{name} missing from /metrics:\n{metrics}"
        return float(match.group(1))

    assert value('webspaces_overlay_frames_total{direction="rx"}') >= 5
    assert value('webspaces_overlay_frames_total{direction="tx"}') >= 5
    assert value('webspaces_overlay_bytes_total{direction="tx"}') >= 5 * 98
    assert value(f'webspaces_overlay_peers{{source="dns:{DNS_NAME}"}}') == 1
    assert value("webspaces_overlay_healthy") == 1

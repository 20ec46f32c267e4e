#!/usr/bin/env bash
# Capture real kernel IPv4/ICMP/TCP/UDP traffic for the wire tests (root; re-runnable; leaves
# nothing behind).
#
#   bash tests/data/wire/capture_l4.sh [OUTPUT_DIR]     (default: this directory)
#
# Three namespaces in a line, A - M - B, M routing between two /26s of 192.0.2.0/24:
#   A a0 192.0.2.1/26  <->  m0 192.0.2.2/26 M m1 192.0.2.65/26  <->  b0 192.0.2.66/26 B
# The M-B link has MTU 1280, so a 1400-byte DF datagram from A earns Fragmentation Needed from M.
# Captured on A's a0 (IP only, no ARP), with checksum offload off on every veth so every captured
# checksum is complete:
#   test_ipv4_capture.pcap  everything below
#   test_icmp_capture.pcap  echo x2, echo with record route (IP option), port unreachable,
#                           fragmentation needed (MTU 1280), time exceeded (TTL 1 at M)
#   test_tcp_capture.pcap   one connection A -> B: SYN with MSS/SACK-permitted/timestamps/WS, data,
#                           FIN
#   test_udp_capture.pcap   one datagram to a listener, one to a closed port
set -euo pipefail

OUT=$(cd "${1:-$(dirname "$0")}" && pwd)
A="wsc$$a"
M="wsc$$m"
B="wsc$$b"
PIDS=()
WORK=$(mktemp -d)

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$M" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

in_a() { ip netns exec "$A" "$@"; }
in_m() { ip netns exec "$M" "$@"; }
in_b() { ip netns exec "$B" "$@"; }

for ns in "$A" "$M" "$B"; do
    ip netns add "$ns"
    # Before any link exists, or router solicitations and MLD reports pollute the captures.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    # Linux rate-limits ICMP errors per destination; the script sends several in a row.
    ip netns exec "$ns" sysctl -qw net.ipv4.icmp_ratelimit=0
    ip -n "$ns" link set lo up
done
in_m sysctl -qw net.ipv4.ip_forward=1

ip -n "$A" link add a0 address 02:00:00:00:0a:01 type veth peer name m0 address 02:00:00:00:0a:02 netns "$M"
ip -n "$M" link add m1 address 02:00:00:00:0b:01 mtu 1280 type veth peer name b0 address 02:00:00:00:0b:02 mtu 1280 netns "$B"
ip -n "$A" addr add 192.0.2.1/26 dev a0
ip -n "$M" addr add 192.0.2.2/26 dev m0
ip -n "$M" addr add 192.0.2.65/26 dev m1
ip -n "$B" addr add 192.0.2.66/26 dev b0
for pair in "$A a0" "$M m0" "$M m1" "$B b0"; do
    set -- $pair
    # Without this the veth leaves TCP/UDP checksums partial (dataplane spec 5.3) and GRO may merge.
    ip netns exec "$1" ethtool -K "$2" tx off rx off gro off gso off tso off >/dev/null 2>&1 || true
    ip -n "$1" link set "$2" up
done
ip -n "$A" route add 192.0.2.64/26 via 192.0.2.2
ip -n "$B" route add 192.0.2.0/26 via 192.0.2.65

# Resolve neighbours first so the capture holds no ARP-triggered delays or drops.
in_a timeout 5 ping -q -c 1 -W 2 192.0.2.66 >/dev/null

# -Z root: Debian's tcpdump otherwise drops to its own user, who cannot write WORK.
in_a timeout 60 tcpdump -Z root -U -n -s 2048 -i a0 -w "$WORK/all.pcap" ip 2>"$WORK/a0.log" &
PIDS+=($!)
for _ in $(seq 50); do
    if grep -q "listening on" "$WORK/a0.log"; then
        break
    fi
    sleep 0.1
done
sleep 1

# ICMP: echo, echo with the record route option, time exceeded (TTL 1 expires at M),
# fragmentation needed (DF and 1428 bytes into M's 1280-byte link).
in_a timeout 10 ping -c 2 -i 0.2 -W 2 -p 5753 -s 24 192.0.2.66 >/dev/null
in_a timeout 10 ping -c 1 -W 2 -R -s 16 192.0.2.66 >/dev/null
in_a timeout 10 ping -c 1 -W 2 -t 1 -s 16 192.0.2.66 >/dev/null || true
in_a timeout 10 ping -c 1 -W 2 -M do -s 1400 192.0.2.66 >/dev/null || true

# TCP: B serves one connection, echoes upper-cased, closes; A connects, sends, reads.
in_b timeout 10 python3 -c '
import socket
s = socket.create_server(("192.0.2.66", 7000))
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
' &
PIDS+=($!)
sleep 0.5
in_a timeout 10 python3 -c '
import socket
c = socket.create_connection(("192.0.2.66", 7000), timeout=5)
c.sendall(b"hello webspaces")
c.recv(100)
c.close()
'

# UDP: one datagram to a listener on 7001, one to closed port 7002 (port unreachable from B).
in_b timeout 10 python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.66", 7001))
s.settimeout(5)
s.recvfrom(100)
' &
PIDS+=($!)
sleep 0.5
in_a timeout 10 python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"udp to a listener", ("192.0.2.66", 7001))
s.sendto(b"udp to nobody", ("192.0.2.66", 7002))
time.sleep(0.5)
'
sleep 1

for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
PIDS=()

split() {  # split NAME FILTER
    tcpdump -Z root -r "$WORK/all.pcap" -w "$OUT/$1" "$2" 2>/dev/null
    printf '%s: %s frames\n' "$1" "$(tcpdump -r "$OUT/$1" 2>/dev/null | wc -l)"
}
split test_ipv4_capture.pcap ip
split test_icmp_capture.pcap icmp
split test_tcp_capture.pcap tcp
split test_udp_capture.pcap udp

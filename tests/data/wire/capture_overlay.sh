#!/usr/bin/env bash
# Capture real kernel VXLAN traffic for the wire tests (root; re-runnable; leaves nothing behind).
#
#   bash tests/data/wire/capture_overlay.sh [OUTPUT_DIR]     (default: this directory)
#
# Two network namespaces joined by a veth pair (underlay 192.0.2.1/.2), each with a kernel VXLAN
# device vx0 (VNI 7331, UDP 4789, static FDB to the other side) holding 198.51.100.1/.2. Writes:
#   test_vxlan_capture.pcap  the underlay veth: inner ARP, ping, one TCP connection and one UDP
#                            datagram (answered by ICMP port unreachable), all inside VXLAN
#   test_arp_capture.pcap    the inner vx0 device: the plain ARP request and reply
# The kernel VXLAN sender over veth leaves inner TCP/UDP checksums partial (dataplane spec 5.3): the
# captured inner segments carry the pseudo-header seed, which the tests complete.
set -euo pipefail

OUT=$(cd "${1:-$(dirname "$0")}" && pwd)
A="wsv$$a"
B="wsv$$b"
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
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

in_a() { ip netns exec "$A" "$@"; }
in_b() { ip netns exec "$B" "$@"; }

ip netns add "$A"
ip netns add "$B"
for ns in "$A" "$B"; do
    # Before any link exists, or router solicitations and MLD reports pollute the captures.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done

ip -n "$A" link add u0 address 02:00:00:00:01:01 type veth peer name u0 address 02:00:00:00:01:02 netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev u0
ip -n "$B" addr add 192.0.2.2/24 dev u0
ip -n "$A" link set u0 up
ip -n "$B" link set u0 up

side() {  # side NS LOCAL REMOTE INNER MAC
    ip -n "$1" link add vx0 address "$5" type vxlan id 7331 local "$2" dstport 4789 nolearning
    in_"$6" bridge fdb append 00:00:00:00:00:00 dev vx0 dst "$3"
    ip -n "$1" addr add "$4/24" dev vx0
    ip -n "$1" link set vx0 up
}
side "$A" 192.0.2.1 192.0.2.2 198.51.100.1 02:00:00:00:02:01 a
side "$B" 192.0.2.2 192.0.2.1 198.51.100.2 02:00:00:00:02:02 b

# -Z root: Debian's tcpdump otherwise drops to its own user, who cannot write OUT.
in_a timeout 30 tcpdump -Z root -U -n -i u0 -w "$WORK/vxlan.pcap" udp port 4789 2>"$WORK/u0.log" &
PIDS+=($!)
in_a timeout 30 tcpdump -Z root -U -n -i vx0 -w "$WORK/arp.pcap" arp 2>"$WORK/vx0.log" &
PIDS+=($!)
for _ in $(seq 50); do
    if grep -q "listening on" "$WORK/u0.log" && grep -q "listening on" "$WORK/vx0.log"; then
        break
    fi
    sleep 0.1
done
sleep 1

# One TCP exchange: B serves one connection, answers and closes; A connects, sends, reads.
in_b timeout 10 python3 -c '
import socket
s = socket.create_server(("198.51.100.2", 7000))
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
' &
SERVER=$!
PIDS+=("$SERVER")
sleep 0.5

in_a timeout 5 ping -c 2 -i 0.2 -W 1 198.51.100.2 >/dev/null
in_a timeout 5 python3 -c '
import socket
c = socket.create_connection(("198.51.100.2", 7000), timeout=3)
c.sendall(b"hello overlay")
assert c.recv(100) == b"HELLO OVERLAY"
c.close()
'
wait "$SERVER"
# Nothing listens on 7001: B answers with ICMP port unreachable quoting the datagram.
in_a timeout 5 python3 -c '
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"ping over udp", ("198.51.100.2", 7001))
'
sleep 1

for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
done
for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
done
PIDS=()

cp "$WORK/vxlan.pcap" "$OUT/test_vxlan_capture.pcap"
cp "$WORK/arp.pcap" "$OUT/test_arp_capture.pcap"
echo "wrote $OUT/test_vxlan_capture.pcap and $OUT/test_arp_capture.pcap"

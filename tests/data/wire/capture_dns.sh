#!/bin/bash
# Re-create tests/data/wire/test_dns_capture.pcap: real DNS exchanges between glibc's stub resolver
# (getent) and dnsmasq serving the A records of a headless service from an --addn-hosts file.
#
# Usage (root): tests/data/wire/capture_dns.sh [output.pcap]
#
# Exchanges, in order, one query and its answer each:
#   1. getent ahostsv4 ws.lab.example: A answered by three A records (TTL 7)
#   2. getent ahostsv4 alias.lab.example: A answered by a CNAME to ws.lab.example plus its A records
#   3. getent ahostsv4 gone.lab.example: NXDOMAIN (the domain is --local, so dnsmasq is authoritative)
# glibc asks with EDNS (options edns0), so queries and answers carry an OPT record.
#
# Hygiene (spec/dataplane.md section 6): two namespaces of our own with unique names, 192.0.2.0/24
# only, IPv6 off before links exist, checksum offload off so captured checksums are complete, every
# process bounded by `timeout`, only the pids started here are signalled, and a trap removes the
# namespaces, the /etc/netns/<ns> resolv.conf that `ip netns exec` mounts for the client, and the
# temporary files, even on failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/test_dns_capture.pcap}
tag=wsn$$                # unique per run; names stay <= 15 characters
srv=${tag}s cli=${tag}c  # namespaces
vs=${tag}a vc=${tag}b    # veth ends (server, client)
tmp=$(mktemp -d "/tmp/${tag}.XXXXXX")
made_netns_dir=false
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    rm -rf "/etc/netns/$cli"
    if $made_netns_dir; then
        rmdir /etc/netns 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}

for ns in "$srv" "$cli"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
# Fixed locally administered MACs keep the capture reproducible field for field.
ip link add "$vs" address 02:00:00:00:05:01 netns "$srv" type veth \
    peer name "$vc" address 02:00:00:00:05:02 netns "$cli"
ip -n "$srv" addr add 192.0.2.1/24 dev "$vs"
ip -n "$cli" addr add 192.0.2.2/24 dev "$vc"
ip netns exec "$srv" ethtool -K "$vs" tx off >/dev/null
ip netns exec "$cli" ethtool -K "$vc" tx off >/dev/null
ip -n "$srv" link set "$vs" up
ip -n "$cli" link set "$vc" up

# `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf for the client only.
[[ -d /etc/netns ]] || { mkdir /etc/netns; made_netns_dir=true; }
mkdir "/etc/netns/$cli"
printf 'nameserver 192.0.2.1\noptions edns0 attempts:1 timeout:2\n' >"/etc/netns/$cli/resolv.conf"

cat >"$tmp/hosts" <<'EOF'
192.0.2.11 ws.lab.example
192.0.2.12 ws.lab.example
192.0.2.13 ws.lab.example
EOF

timeout 60 ip netns exec "$srv" tcpdump -i "$vs" -U -n -w "$tmp/capture.pcap" 'udp port 53' \
    2>"$tmp/tcpdump.log" &
pids+=($!)
wait_for 10 grep -q "listening on" "$tmp/tcpdump.log"

timeout 60 ip netns exec "$srv" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
    --addn-hosts="$tmp/hosts" --local=/lab.example/ --cname=alias.lab.example,ws.lab.example \
    --local-ttl=7 --port=53 --listen-address=192.0.2.1 --bind-interfaces \
    --pid-file="$tmp/dnsmasq.pid" --log-queries >"$tmp/dnsmasq.log" 2>&1 &
pids+=($!)
wait_for 10 grep -q "read $tmp/hosts" "$tmp/dnsmasq.log"

timeout 10 ip netns exec "$cli" getent ahostsv4 ws.lab.example
timeout 10 ip netns exec "$cli" getent ahostsv4 alias.lab.example
timeout 10 ip netns exec "$cli" getent ahostsv4 gone.lab.example || true  # exit 2: not found

sleep 1  # let tcpdump write the last answer
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
cp "$tmp/capture.pcap" "$out"
echo "wrote $out: $(tcpdump -r "$out" -n 2>/dev/null | wc -l) packets" >&2

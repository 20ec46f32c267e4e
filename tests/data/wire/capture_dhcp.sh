#!/bin/bash
# Re-create tests/data/wire/test_dhcp_capture.pcap: real DHCPv4 exchanges between dnsmasq and two
# real clients (BusyBox udhcpc, ISC dhclient), captured on the server side of a veth pair.
#
# Usage (root): tests/data/wire/capture_dhcp.sh [output.pcap]
#
# Hygiene (spec/dataplane.md section 6): two namespaces of our own with unique names, 192.0.2.0/24
# only, IPv6 off before links exist (no RS/NS/MLD noise), every process bounded by `timeout`, only
# the pids started here are signalled, and a trap removes namespaces and temporary files even on
# failure. Clients run with no-op hook scripts so they never touch the host's /etc/resolv.conf.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/test_dhcp_capture.pcap}
tag=wsd$$                # unique per run; names stay <= 15 characters
srv=${tag}s cli=${tag}c  # namespaces
vs=${tag}a vc=${tag}b    # veth ends (server, client)
tmp=$(mktemp -d "/tmp/${tag}.XXXXXX")
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -s $tmp/dhclient.pid ]]; then
        # dhclient writes its own pid; it is the process we started (or already gone).
        kill "$(cat "$tmp/dhclient.pid")" 2>/dev/null || true
    fi
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
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
ip link add "$vs" address 02:00:00:00:02:01 netns "$srv" type veth \
    peer name "$vc" address 02:00:00:00:02:02 netns "$cli"
ip -n "$srv" addr add 192.0.2.1/24 dev "$vs"
ip -n "$srv" link set "$vs" up
ip -n "$cli" link set "$vc" up

timeout 90 ip netns exec "$srv" tcpdump -i "$vs" -U -n -w "$tmp/capture.pcap" \
    'udp and (port 67 or port 68)' 2>"$tmp/tcpdump.log" &
pids+=($!)
wait_for 10 grep -q "listening on" "$tmp/tcpdump.log"

# Options beyond the brief's baseline give the capture real encodings of 6, 119 (dnsmasq
# compresses it, RFC 3397 section 2) and 121 (RFC 3442) to check against.
timeout 90 ip netns exec "$srv" dnsmasq --no-daemon --port=0 --no-ping \
    --dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,120 --dhcp-option=26,1450 \
    --dhcp-option=6,192.0.2.53 --dhcp-option=option:domain-search,lab.example.com,example.com \
    --dhcp-option=option:classless-static-route,0.0.0.0/0,192.0.2.1,192.0.2.128/25,192.0.2.2 \
    --dhcp-authoritative --pid-file="$tmp/dnsmasq.pid" --dhcp-leasefile="$tmp/dnsmasq.leases" \
    --interface="$vs" --bind-interfaces --conf-file=/dev/null --log-dhcp \
    >"$tmp/dnsmasq.log" 2>&1 &
pids+=($!)
# --no-daemon writes no pid file: the pid recorded is our `timeout` job, and readiness is its log.
wait_for 10 grep -q "DHCP, IP range" "$tmp/dnsmasq.log"

# 1. udhcpc: DISCOVER/OFFER/REQUEST/ACK with 12 (hostname), 81 (-F: client FQDN) and 61.
timeout 20 ip netns exec "$cli" udhcpc -f -q -n -i "$vc" -s /bin/true -t 3 -T 1 \
    -x hostname:wsudhcpc -F wsudhcpc.example.com

# 2. dhclient from a stale cached lease: INIT-REBOOT REQUEST for an address outside the range,
#    which authoritative dnsmasq NAKs, then DORA; then a RELEASE. RELEASE is unicast from the
#    leased address, so the address is configured by hand (the hook script is a no-op).
cat >"$tmp/dhclient.conf" <<'EOF'
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
send host-name "wsdhclient";
send dhcp-client-identifier 00:01:00:01:2b:3c:4d:5e:02:00:00:00:02:02;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        domain-search, host-name, interface-mtu, rfc3442-classless-static-routes;
EOF
cat >"$tmp/dhclient.leases" <<EOF
lease {
  interface "$vc";
  fixed-address 192.0.2.200;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 192.0.2.1;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
EOF
timeout 30 ip netns exec "$cli" dhclient -d -1 -v -sf /bin/true -cf "$tmp/dhclient.conf" \
    -lf "$tmp/dhclient.leases" -pf "$tmp/dhclient.pid" "$vc" >"$tmp/dhclient.log" 2>&1 &
pids+=($!)
leased() { grep -q "fixed-address 192.0.2.1[0-5][0-9];" "$tmp/dhclient.leases"; }
wait_for 20 leased
address=$(grep -o "fixed-address 192.0.2.1[0-5][0-9]" "$tmp/dhclient.leases" | tail -1 | cut -d' ' -f2)
ip -n "$cli" addr add "$address/24" dev "$vc"
timeout 20 ip netns exec "$cli" dhclient -r -v -sf /bin/true -cf "$tmp/dhclient.conf" \
    -lf "$tmp/dhclient.leases" -pf "$tmp/dhclient.pid" "$vc" >>"$tmp/dhclient.log" 2>&1

sleep 1  # let tcpdump write the RELEASE
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
cp "$tmp/capture.pcap" "$out"
echo "wrote $out: $(tcpdump -r "$out" -n 2>/dev/null | wc -l) packets" >&2

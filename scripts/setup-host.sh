#!/usr/bin/env bash
# Idempotent host set-up for webspaces on Debian 12, run as root.
#
# Installs every Debian package the project, its tests and its benchmarks use (real peers:
# dnsmasq, Kea, perfdhcp, udhcpc, dhclient, iperf3, LXD, nftables ...), then creates .venv at the
# repository root and installs the project with its dev extras into it.
#
# It installs packages only: it never starts a daemon, and never touches the host's network,
# DNS or firewall configuration. Re-running it is cheap: packages already present are skipped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

packages=(
    # build
    build-essential python3-dev python3-venv pkg-config git
    libnetfilter-queue-dev libnfnetlink-dev
    # network tools and real peers
    iproute2 iputils-ping ethtool nftables iptables conntrack iperf3 tcpdump tshark socat hping3
    dnsmasq-base kea-dhcp4-server kea-admin udhcpc isc-dhcp-client busybox-static
    # images and LXD
    squashfs-tools xz-utils lxd lxd-client
    # benchmarks
    nginx-light wrk curl
)

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages); try: sudo $0"
    exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer once, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    # --no-install-recommends keeps daemons' optional extras out; policy-rc.d below keeps any
    # service the packages ship from being started: installing must not change the host.
    policy="/usr/sbin/policy-rc.d"
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages already installed"
fi

python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    "$python" -m venv "$venv"
fi

stamp="$venv/.installed"
inputs=("$root/pyproject.toml" "$root/setup.py")
stale=0
[ -f "$stamp" ] || stale=1
for f in "${inputs[@]}" "$root"/dataplane/*/_*.pyx "$root"/dataplane/*/_*.pxd; do
    [ -e "$f" ] && [ "$f" -nt "$stamp" ] && stale=1
done

if [ "$stale" = 1 ]; then
    log "installing webspaces[dev] into $venv (editable)"
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel cython
    # The editable install registers the packages only; the extensions are compiled once, below,
    # in place and incrementally (pip's own build would compile them in a throw-away directory,
    # and `make build` would then compile them all a second time).
    WEBSPACES_NO_EXTENSIONS=1 "$venv/bin/python" -m pip install -q --no-build-isolation -e "$root[dev]"
    touch "$stamp"
else
    log "$venv is up to date"
fi

# Incremental: only extensions whose sources changed are recompiled (a no-op takes under a second).
log "building the Cython extensions in place"
(cd "$root" && "$venv/bin/python" setup.py -q build_ext --inplace)
log "done"

#!/usr/bin/env bash
# Build the busybox test image (spec/simplestreams.md §8) into the directory backend OUTDIR:
#   OUTDIR/busybox/v<version>/{lxd,rootfs}.<arch>.* with sidecars, via simplestreams.builder.
#
# busybox comes from Debian's busybox-static: the installed package's /bin/busybox when it is
# there, else the .deb fetched with `apt-get download` and unpacked with `dpkg-deb -x` (installing it
# would conflict with the busybox package). The rootfs is busybox, its applet symlinks, an inittab
# whose rcS brings up eth0 with udhcpc, and the small files of images/busybox/rootfs; hostname and
# hosts are LXD templates (images/busybox/templates).
#
# Reproducible: every timestamp is CREATED, every mode is set here and every file is owned by root
# in the image, so a rebuild gives byte-identical files and the same fingerprint, and running this
# again when the version is already published with the same bytes changes nothing (exit 0). A
# different busybox with the same IMAGE_VERSION is refused: bump IMAGE_VERSION.
#
# Usage: scripts/build-test-image.sh OUTDIR     (make image: OUTDIR=build/images)
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
outdir=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PY:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
version=${IMAGE_VERSION:-1.35.0-1}
created=2025-01-01T00:00:00Z
expiry_days=3650 # a test image must not look expired to LXD while the tests use it

log() { printf 'build-test-image: %s\n' "$*" >&2; }

umask 022
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] \
    && dpkg -S /bin/busybox 2>/dev/null | grep -q '^busybox-static:'; then
    busybox=/bin/busybox
    log "busybox from the installed busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"
else
    log "fetching busybox-static with apt-get download"
    chmod 0755 "$work" # apt-get download runs as _apt, which must be able to write here
    (cd "$work" && apt-get download -qq busybox-static)
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
    busybox=$work/deb/bin/busybox
fi

rootfs=$work/rootfs
mkdir -m 0755 "$rootfs"
for dir in bin sbin usr usr/bin usr/sbin usr/share usr/share/udhcpc etc etc/init.d \
    dev proc sys run var var/log; do
    mkdir -p -m 0755 "$rootfs/$dir"
done
mkdir -m 1777 "$rootfs/tmp"
mkdir -m 0700 "$rootfs/root"
ln -s ../run "$rootfs/var/run"
install -m 0755 "$busybox" "$rootfs/bin/busybox"

# One symlink per applet, at the path busybox itself reports (bin/sh, sbin/init, sbin/udhcpc ...).
applets=0
while IFS= read -r applet; do
    case "$applet" in
        "" | bin/busybox | linuxrc) continue ;;
    esac
    mkdir -p -m 0755 "$rootfs/$(dirname "$applet")"
    ln -s /bin/busybox "$rootfs/$applet"
    applets=$((applets + 1))
done < <("$rootfs/bin/busybox" --list-full | LC_ALL=C sort)
[ -L "$rootfs/sbin/init" ] || { log "busybox has no init applet"; exit 1; }
log "rootfs: busybox and $applets applet links"

overlay=$root/images/busybox/rootfs
for file in etc/inittab etc/passwd etc/group etc/hostname etc/hosts etc/os-release; do
    install -m 0644 "$overlay/$file" "$rootfs/$file"
done
install -m 0640 "$overlay/etc/shadow" "$rootfs/etc/shadow"
install -m 0755 "$overlay/etc/init.d/rcS" "$rootfs/etc/init.d/rcS"
install -m 0755 "$overlay/usr/share/udhcpc/default.script" "$rootfs/usr/share/udhcpc/default.script"

# The template files' modes do not matter (the tarball sets 0644), their content does.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$py" -c \
    'import sys; from simplestreams.builder import main; sys.exit(main(sys.argv[1:]))' \
    "$rootfs" --into "$outdir" --name busybox --version "$version" \
    --os busybox --release 1.35 --description "busybox test image" \
    --template-dir "$root/images/busybox/templates" \
    --creation-date "$created" --expiry-days "$expiry_days"

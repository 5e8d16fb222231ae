#!/bin/sh
# Build (once) a Debian 13 "trixie" chroot holding GIMP 3.0 with Python plug-in support and pyzmq.
# Debian 12 only ships GIMP 2.10, whose Python plug-ins are gone; GIMP 3 needs trixie's libraries.
# Also installs the host tools GIMP UI tests use (xvfb, xauth, x11-utils) when missing.
#
#   sh tests/hosts/gimp.sh                      # as root; builds or reuses the chroot
#   IRODORI_GIMP_CHROOT=/some/dir sh tests/hosts/gimp.sh
#
# The chroot is reused while its marker file exists; the marker is written only after a full, checked
# build, so a half-built chroot is wiped and rebuilt. This script leaves nothing mounted: tests mount
# /proc per run in a private mount namespace (tests/hostlib.py:run_gimp).
set -eu

ROOT=${IRODORI_GIMP_CHROOT:-/var/cache/irodori/gimp-chroot}
MIRROR=${IRODORI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
MARKER="$ROOT/.irodori-gimp-ready"
PACKAGES="gimp python3-zmq python3-gi gir1.2-gegl-0.4"

die() { echo "gimp.sh: ERROR: $*" >&2; exit 1; }

apt_host() {  # apt_host [options] packages: retries once after `apt-get update` (stale or missing lists)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
}

# Host tools for tests that show GIMP's UI on a private X server (hostlib.Xvfb, xwininfo).
host_missing=""
command -v Xvfb >/dev/null 2>&1 || host_missing="xvfb xauth"
command -v xwininfo >/dev/null 2>&1 || host_missing="$host_missing x11-utils"
if [ -n "$host_missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "gimp.sh: installing host tools:$host_missing"
        # shellcheck disable=SC2086
        apt_host --no-install-recommends $host_missing || die "could not install$host_missing with apt-get (see above)."
    else
        echo "gimp.sh: WARNING: missing$host_missing (GIMP UI tests need them; install as root)" >&2
    fi
fi

if [ -f "$MARKER" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    echo "gimp.sh: reusing GIMP chroot $ROOT ($(cat "$MARKER"))"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "no GIMP chroot at $ROOT and not root: run as root (sudo sh tests/hosts/gimp.sh), or set IRODORI_GIMP_CHROOT to a built one."
command -v chroot >/dev/null 2>&1 || die "chroot not found (coreutils)."

if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap not found and no apt-get to install it; install debootstrap by hand."
    echo "gimp.sh: installing debootstrap"
    apt_host debootstrap || die "could not install debootstrap with apt-get (see above)."
fi

mounted_under() {  # prints mount points at or below $1 (from this mount namespace's table)
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo
}

unmount_all() {  # deepest first
    for m in $(mounted_under "$ROOT" | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
}

if [ -e "$ROOT" ]; then
    echo "gimp.sh: $ROOT exists without a completed-build marker: removing it and starting over"
    unmount_all
    [ -z "$(mounted_under "$ROOT")" ] || die "something is still mounted under $ROOT ($(mounted_under "$ROOT")); unmount it and rerun."
    rm -rf "$ROOT"
fi
mkdir -p "$(dirname "$ROOT")"

start=$(date +%s)
echo "gimp.sh: debootstrap trixie into $ROOT (from $MIRROR)"
debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" || die "debootstrap failed (see above; is $MIRROR reachable?)."

# Keep services from starting inside the chroot during package installs.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

# /proc only while installing, in a private mount namespace so nothing is left mounted even if killed.
echo "gimp.sh: installing $PACKAGES inside the chroot"
unshare --mount --propagation private sh -c '
    set -e
    mount -t proc proc "$1/proc"
    chroot "$1" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $2 && apt-get clean"
' sh "$ROOT" "$PACKAGES" || die "apt-get install inside the chroot failed (see above)."

version=$(unshare --mount --propagation private sh -c '
    mount -t proc proc "$1/proc" && chroot "$1" env HOME=/root gimp-console-3.0 --version
' sh "$ROOT") || die "gimp-console-3.0 does not run inside the chroot."
chroot "$ROOT" python3 -c 'import zmq, gi; gi.require_version("Gegl", "0.4"); from gi.repository import Gegl' \
    || die "python3 inside the chroot cannot import zmq / gi / Gegl."

echo "$version; built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s" > "$MARKER"
echo "gimp.sh: done: $(cat "$MARKER")"

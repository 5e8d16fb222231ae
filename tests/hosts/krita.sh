#!/bin/sh
# Install real Krita (Debian 12 package: Krita 5.1.5, system Python 3.11, PyQt5, pyzmq) and the tools
# for real-window screenshots under Xvfb (Xvfb, xwd; tests/hostlib.py turns xwd dumps into PNG itself,
# so ImageMagick is not needed).
# Idempotent: installs only what is missing and runs `apt-get update` at most once.
# Usage (as root): sh tests/hosts/krita.sh
set -eu

PY=/usr/bin/python3   # Krita's embedded Python is the system one, never a venv's

krita_missing=""
command -v kritarunner >/dev/null 2>&1 || krita_missing="krita"
"$PY" -c 'import PyQt5.QtCore, PyQt5.sip' >/dev/null 2>&1 || krita_missing="$krita_missing python3-pyqt5"
"$PY" -c 'import zmq' >/dev/null 2>&1 || krita_missing="$krita_missing python3-zmq"

tools_missing=""
command -v Xvfb >/dev/null 2>&1 || tools_missing="xvfb xauth"
command -v xwd >/dev/null 2>&1 || tools_missing="$tools_missing x11-apps"

if [ -z "$krita_missing$tools_missing" ]; then
    echo "krita.sh: Krita host already installed ($(command -v kritarunner))"
    exit 0
fi

echo "krita.sh: missing:$krita_missing $tools_missing"
if [ "$(id -u)" != 0 ]; then
    echo "krita.sh: ERROR: not root, cannot install. Run: sudo sh tests/hosts/krita.sh" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "krita.sh: ERROR: apt-get not found; this script supports Debian 12 only." >&2
    echo "krita.sh: install Krita 5 (with python3-pyqt5, python3-zmq), xvfb, x11-apps by hand." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_install() {  # apt_install [apt-get options] packages... ; retries once after `apt-get update`
    if [ "$updated" = 0 ] && ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        apt-get update -q && updated=1
    fi
    apt-get install -y -q "$@" && return 0
    if [ "$updated" = 0 ]; then
        apt-get update -q && updated=1
        apt-get install -y -q "$@" && return 0
    fi
    echo "krita.sh: ERROR: apt-get install $* failed (see above)." >&2
    exit 1
}

# Krita with its recommends (python3-sip etc.), exactly as verified in shared/docs/hosts.md.
# shellcheck disable=SC2086
[ -z "$krita_missing" ] || apt_install krita python3-pyqt5 python3-zmq
# shellcheck disable=SC2086
[ -z "$tools_missing" ] || apt_install --no-install-recommends $tools_missing

command -v kritarunner >/dev/null 2>&1 || { echo "krita.sh: ERROR: kritarunner still missing after install" >&2; exit 1; }
"$PY" -c 'import zmq, PyQt5.QtCore' || { echo "krita.sh: ERROR: $PY cannot import zmq and PyQt5" >&2; exit 1; }
echo "krita.sh: done: $(command -v kritarunner)"

#!/usr/bin/env bash
# Installs the Debian packages Lichen needs, once (idempotent): apt-get runs only
# when something is missing, as root or with passwordless sudo.
#   scripts/system-deps.sh base   what `make run` needs (a Python that can make a venv)
#   scripts/system-deps.sh build  base's, plus the headers pip builds the dev extra's
#                                 native packages against (bluezero's dbus-python and
#                                 PyGObject): before `pip install -e '.[dev]'`
#   scripts/system-deps.sh test   build's, plus what the tests run (Mosquitto, PostgreSQL,
#                                 dbus-daemon for the BlueZ stand-in, Chromium for the
#                                 browser tests — Playwright drives it and never downloads
#                                 a browser of its own, …)
#   scripts/system-deps.sh bench  test's, plus Node.js and npm (the PouchDB reference)
set -euo pipefail
want="${1:-test}"
PYTHON="${PYTHON:-python3}"

packages=()
if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
case "$want" in base|build|test|bench) ;; *)
  echo "system-deps: unknown level '$want' (base, build, test or bench)" >&2; exit 2;;
esac
if [ "$want" != "base" ]; then
  packages+=(gcc pkg-config libdbus-1-dev libglib2.0-dev libgirepository1.0-dev libcairo2-dev
             gir1.2-glib-2.0)
  # a Python without its headers (Debian's own python3) needs python3-dev to build them
  if ! "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    packages+=(python3-dev)
  fi
fi
if [ "$want" = "test" ] || [ "$want" = "bench" ]; then
  # systemd: systemd-analyze verifies the service unit, and boots the unit test's container
  packages+=(iproute2 nftables util-linux socat make mosquitto postgresql dbus-daemon systemd
             chromium)
fi
if [ "$want" = "bench" ]; then
  # A nodejs that bundles its own npm (and conflicts with Debian's) is left alone.
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: please install: ${missing[*]} (no apt-get here)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "system-deps: need root to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Builds a wheelhouse: wheels of lichen and of everything it needs, for installing
# on a board with no network (docs/install.md), then checks that a fresh virtual
# environment installs from it with no index at all.
#   scripts/wheelhouse.sh [DIR]     (default dist/wheelhouse)
#   EXTRAS=mqtt,gpio,i2c,serial,mdns (the default): what a board usually needs;
#   EXTRAS= for the agent alone. ble and ble-hci are left out: bluezero's
#   dbus-python and PyGObject build from source against system headers (on
#   Raspberry Pi OS take python3-dbus and python3-gi from apt), and Bumble is
#   large; postgres and cloud are for the cloud role, not a board.
# The wheels are for this machine's Python version and architecture: build the
# wheelhouse for a Pi on a Pi (or an arm64 machine) with the same Python.
set -euo pipefail
dest="${1:-dist/wheelhouse}"
EXTRAS="${EXTRAS-mqtt,gpio,i2c,serial,mdns}"
PYTHON="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")/.." && pwd)"
spec="$here"
requirement="lichen"
if [ -n "$EXTRAS" ]; then
  spec="$here[$EXTRAS]"
  requirement="lichen[$EXTRAS]"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Built aside, then put in place: an interrupted build leaves the old wheelhouse whole.
"$PYTHON" -m pip wheel --disable-pip-version-check -q --wheel-dir "$work/wheels" "$spec"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/wheels" "$dest"

# The check: a fresh venv, no index, only the wheelhouse.
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --disable-pip-version-check -q --no-index \
  --find-links "$dest" "$requirement"
"$work/venv/bin/lichen" --version >/dev/null
echo "wheelhouse: $(ls "$dest" | wc -l) wheels, $(du -sh "$dest" | cut -f1), in $dest" \
  "(extras: ${EXTRAS:-none}); a fresh venv installs $requirement from it offline"

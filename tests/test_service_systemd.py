"""The units under a real systemd: the machine's own, booted as PID 1 in a
throwaway container (tests/helpers/systemd_container.py). Lichen is installed
offline from a wheelhouse (`make wheelhouse`) into /opt/lichen with the
system's Python; a card's lichen.toml in /boot/firmware is picked up by
lichen-firstboot.service; lichen.service runs sandboxed as a dynamic user and
is active only once the agent said READY=1; its lines reach the journal with
their priorities; a stopped (stuck) agent is killed by the watchdog and
restarted; a configuration error is not restarted; and `lichen service remove`
leaves the home.

What only a real Raspberry Pi shows (a FAT boot partition, the device groups,
BLE through bluetoothd) is listed in docs/install.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers.systemd_container import SYSTEM_PYTHON, boot, unavailable

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

CONFIG = """\
[node]
name = "card-node"
board = "sim"

[[sensors.sim]]
name = "climate"
kind = "climate"
interval = 0.5
"""

SCRIPT = r"""
set -x
# 0. the offline install of docs/install.md: the system's Python, a venv, the wheelhouse
@PYTHON@ -m venv /opt/lichen
/opt/lichen/bin/pip install --disable-pip-version-check -q --no-index \
  --find-links @WHEELHOUSE@ lichen > $OUT/pip.txt 2>&1 || { cat $OUT/pip.txt; exit 1; }
L=/opt/lichen/bin/lichen
show() { systemctl show lichen.service -p "$1" --value; }
wait_for() {  # wait_for SECONDS COMMAND…: poll until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $deadline ] || { echo "timed out: $*"; return 1; }; sleep 0.1; done
}
mkdir -p /boot/firmware
cat > /boot/firmware/lichen.toml <<'TOML'
@CONFIG@TOML

# 1. install (twice: the second changes nothing) and start, as a first boot would
$L service install --watchdog 4 > $OUT/install1.txt 2>&1; echo $? > $OUT/install1.rc
$L service install --watchdog 4 > $OUT/install2.txt 2>&1
systemd-analyze verify /etc/systemd/system/lichen.service \
  /etc/systemd/system/lichen-firstboot.service > $OUT/verify.txt 2>&1
systemctl start lichen.service && echo 0 > $OUT/start.rc || {
  echo $? > $OUT/start.rc; systemctl status lichen.service lichen-firstboot.service --no-pager
  journalctl -b --no-pager | tail -80; exit 1; }
systemctl show lichen.service -p ActiveState -p SubState -p StatusText -p User \
  -p DynamicUser -p MainPID -p NRestarts > $OUT/after-start.txt
systemctl show lichen-firstboot.service -p Result -p ActiveState > $OUT/firstboot.txt
ls -A /boot/firmware > $OUT/boot-after.txt
cp /boot/firmware/lichen-firstboot.txt $OUT/ 2>/dev/null
stat -c '%U %a %n' /var/lib/private/lichen /var/lib/private/lichen/identity.key \
  /var/lib/private/lichen/lichen.toml > $OUT/home-owner.txt 2>&1
readlink /var/lib/lichen > $OUT/home-link.txt
pid=$(cat /proc/$(show MainPID)/status | awk '/^Uid/{print $2}'); echo "$pid" > $OUT/agent-uid.txt

# 2. readings flow and the summary reaches systemctl status
wait_for 60 sh -c '[ -n "$(systemctl show lichen.service -p StatusText --value | grep stored)" ]'
show StatusText > $OUT/status-text.txt
$L --home /var/lib/lichen status --json > $OUT/lichen-status.json 2>&1
$L service status > $OUT/service-status.txt 2>&1

# 3. the watchdog: a stopped agent is killed and restarted
old=$(show MainPID)
[ "$old" -gt 1 ] || { echo "no main process: $old"; exit 1; }
kill -STOP "$old"
wait_for 60 sh -c '[ "$(systemctl show lichen.service -p NRestarts --value)" -ge 1 ]'
wait_for 60 sh -c '[ "$(systemctl show lichen.service -p ActiveState --value)" = active ]'
echo "$old $(show MainPID) $(show NRestarts)" > $OUT/watchdog.txt

# 4. a configuration error stops it for good (exit 2 is not restarted), at priority err
systemctl stop lichen.service
printf '\n[log]\ndurability = "sometimes"\n' >> /var/lib/private/lichen/lichen.toml
systemctl start lichen.service && echo 0 > $OUT/bad-start.rc || echo $? > $OUT/bad-start.rc
wait_for 30 sh -c '[ "$(systemctl show lichen.service -p ActiveState --value)" = failed ]'
systemctl show lichen.service -p ActiveState -p Result -p ExecMainStatus -p NRestarts \
  > $OUT/after-bad.txt

# 5. the journal: priorities, one time per line
journalctl -u lichen.service -o json --no-pager > $OUT/journal.json
journalctl -u lichen.service -p err --no-pager -o cat > $OUT/journal-err.txt
journalctl -u lichen.service --no-pager -o short > $OUT/journal-short.txt
journalctl -u lichen-firstboot.service --no-pager -o cat > $OUT/journal-firstboot.txt

# 6. remove: units gone, the home kept
$L service remove > $OUT/remove.txt 2>&1; echo $? > $OUT/remove.rc
ls /etc/systemd/system/lichen.service /etc/systemd/system/lichen-firstboot.service \
  > $OUT/units-after-remove.txt 2>&1
ls /var/lib/private/lichen/identity.key > $OUT/home-after-remove.txt 2>&1
echo done > $OUT/done
"""


def _props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_units_under_a_real_systemd(tmp_path: Path):
    wheelhouse = tmp_path / "wheelhouse"
    subprocess.run(
        [str(REPO / "scripts" / "wheelhouse.sh"), str(wheelhouse)],
        env=dict(os.environ, EXTRAS="", PYTHON=sys.executable),
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        SCRIPT.replace("@PYTHON@", str(SYSTEM_PYTHON))
        .replace("@WHEELHOUSE@", str(wheelhouse))
        .replace("@CONFIG@", CONFIG)
    )
    out = boot(tmp_path / "container", script, binds=(wheelhouse,))
    log = (out / "script.log").read_text(errors="replace")
    assert (out / "done").exists(), log[-4000:]

    # installed, idempotently; both units verify where they were written
    assert (out / "install1.rc").read_text().strip() == "0", (out / "install1.txt").read_text()
    assert "(written)" in (out / "install1.txt").read_text()
    second = (out / "install2.txt").read_text()
    assert second.count("(unchanged)") == 2 and "(written)" not in second
    assert (out / "verify.txt").read_text().strip() == ""

    # first boot: consumed from /boot/firmware, the node made before the agent started
    assert _props(out / "firstboot.txt")["Result"] == "success"
    assert (out / "boot-after.txt").read_text().split() == ["lichen-firstboot.txt"]
    assert "initialised from this partition" in (out / "lichen-firstboot.txt").read_text()

    # active after READY=1, as a dynamic user owning its private state directory
    started = _props(out / "after-start.txt")
    assert (out / "start.rc").read_text().strip() == "0"
    assert started["ActiveState"] == "active" and started["SubState"] == "running"
    assert started["DynamicUser"] == "yes"
    assert started["StatusText"] == "running: 1 sensors"
    assert (out / "home-link.txt").read_text().strip() == "private/lichen"
    owners = (out / "home-owner.txt").read_text().split("\n")
    assert all(line.split()[0] == "lichen" for line in owners if line), owners
    assert "700 /var/lib/private/lichen" in owners[0]
    assert (out / "agent-uid.txt").read_text().strip() not in ("0", "")

    assert "readings stored in the last 10 s" in (out / "status-text.txt").read_text()
    status = json.loads((out / "lichen-status.json").read_text())
    assert status["name"] == "card-node" and status["agent"]["state"] == "running"
    assert "active (running)" in (out / "service-status.txt").read_text()

    old, new, restarts = (out / "watchdog.txt").read_text().split()
    assert old != new and int(restarts) >= 1
    journal = [json.loads(line) for line in (out / "journal.json").read_text().splitlines()]
    systemd_lines = [j["MESSAGE"] for j in journal if j.get("_PID") == "1"]
    assert any("Watchdog timeout" in m for m in systemd_lines), systemd_lines[-20:]

    # a configuration error: failed with exit 2, not restarted, said at priority err
    bad = _props(out / "after-bad.txt")
    assert bad["ActiveState"] == "failed" and bad["ExecMainStatus"] == "2"
    assert bad["NRestarts"] == "0"  # a new start counts afresh; none since it failed
    errors = (out / "journal-err.txt").read_text()
    assert "lichen: configuration error" in errors and "durability" in errors

    # the agent's lines: info at 6 without a time of their own
    agent = [j for j in journal if j.get("SYSLOG_IDENTIFIER") == "lichen"]
    started_lines = [j for j in agent if "msg=started" in j["MESSAGE"]]
    assert started_lines and all(j["PRIORITY"] == "6" for j in started_lines)
    assert all(not j["MESSAGE"][:4].isdigit() for j in agent), agent[:3]
    assert all(j["MESSAGE"].startswith(("level=", "lichen: ")) for j in agent), agent[:3]
    assert "node initialised from the boot partition" in (out / "journal-firstboot.txt").read_text()

    assert (out / "remove.rc").read_text().strip() == "0"
    assert "No such file" in (out / "units-after-remove.txt").read_text()
    assert (out / "home-after-remove.txt").read_text().strip().endswith("identity.key")

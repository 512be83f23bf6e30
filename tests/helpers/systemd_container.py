"""Booting the machine's own systemd in a throwaway container, for tests of the
service units under a real service manager.

The container is made of Linux namespaces (mount, PID, cgroup, network, UTS,
IPC) around an overlay of the host's root: the lower layer is ``/`` read-only,
the upper a tmpfs, so everything the container writes (units in
/etc/systemd/system, /var/lib/lichen, the journal) vanishes with it. systemd
runs as its PID 1, boots to a target of the test's (basic.target plus one
oneshot running the test's script), and powers off when the script ends;
the script's findings are written to a directory bound into the container;
systemd's own messages go to the container's journal, which the script reads.

Needs root, ``unshare`` and ``pivot_root`` (util-linux), overlayfs and systemd
installed (``scripts/system-deps.sh test``); :func:`unavailable` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SYSTEM_PYTHON", "boot", "unavailable"]

SYSTEMD = Path("/lib/systemd/systemd")
#: the system's Python, which a board's /opt/lichen venv is made with
SYSTEM_PYTHON = Path("/usr/bin/python3")
OUT = "/lichen-out"  # inside the container; systemd mounts a tmpfs over /run

_BOOT = r"""
set -eu
T=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs "$T/ovl"
mkdir -p "$T/ovl/up" "$T/ovl/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/ovl/up,workdir=$T/ovl/work" "$T/root"
for dir in $BIND; do
  mkdir -p "$T/root$dir"; mount --rbind "$dir" "$T/root$dir"
done
mount --rbind /dev "$T/root/dev"
touch "$T/out/console"; mount --bind "$T/out/console" "$T/root/dev/console"
mount -t proc proc "$T/root/proc"
mount -t sysfs -o ro sysfs "$T/root/sys"
mkdir -p "$T/root$OUT"; mount --bind "$T/out" "$T/root$OUT"
cp "$T/out/lichen-test.service" "$T/out/lichen-test.target" "$T/root/etc/systemd/system/"
cd "$T/root"; mkdir -p .oldroot; pivot_root . .oldroot; cd /; umount -l /.oldroot
exec /usr/bin/env -i container=lichen-test "$SYSTEMD" --system --unit=lichen-test.target \
  --log-target=journal --show-status=no
"""

_TARGET = """[Unit]
Description=Lichen test: basic.target and the test's script
Requires=basic.target lichen-test.service
After=basic.target
AllowIsolate=yes
"""

_SERVICE = f"""[Unit]
Description=Lichen test script
After=basic.target
[Service]
Type=oneshot
ExecStart=-/bin/bash {OUT}/script.sh
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=append:{OUT}/script.log
StandardError=append:{OUT}/script.log
TimeoutStartSec=600
"""


def unavailable() -> str | None:
    """Why a container cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "booting systemd in a container needs root (namespaces, mounts)"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} missing (scripts/system-deps.sh test installs systemd)"
    for tool in ("unshare", "pivot_root", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} missing (util-linux)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    probe = [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv"]
    if not SYSTEM_PYTHON.exists() or subprocess.run(probe, capture_output=True).returncode:
        return f"{SYSTEM_PYTHON} cannot make a venv (python3-venv)"
    return None


def boot(work: Path, script: str, *, binds: tuple[Path, ...] = (), timeout: float = 400.0) -> Path:
    """Boot a container that runs ``script`` (bash) once basic.target is reached,
    and powers off when it ends; return the output directory (``script.log``,
    ``console`` and whatever the script wrote to ``$OUT``). ``binds``: host
    directories seen at the same path inside (the repository and this virtual
    environment always are)."""
    for sub in ("ovl", "root", "out"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    out = work / "out"
    (out / "script.sh").write_text(f"OUT={OUT}\n{script}")
    (out / "lichen-test.target").write_text(_TARGET)
    (out / "lichen-test.service").write_text(_SERVICE)
    repo = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ,
        BIND=" ".join(sorted({str(repo), sys.prefix, *map(str, binds)})),
        OUT=OUT,
        SYSTEMD=str(SYSTEMD),
    )
    command = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--cgroup", "--net"]
    command += ["--uts", "--ipc"]
    command += ["--mount-proc", "bash", "-c", _BOOT, "boot", str(work)]
    with (out / "unshare.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # the namespace's init: everything in it dies with it
            process.wait()
            raise AssertionError(
                f"the container did not power off within {timeout} s; its script's log:\n"
                + _tail(out / "script.log")
            ) from None
    return out


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({exc})"

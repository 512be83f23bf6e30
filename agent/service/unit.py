"""The systemd units ``lichen service install`` writes, rendered from a :class:`ServiceSpec`.

Two units:

``lichen.service``            ``lichen run`` as a sandboxed ``Type=notify`` service
                              with a watchdog, restarted when it fails
``lichen-firstboot.service``  a oneshot that runs ``lichen firstboot`` before it,
                              only when a ``lichen.toml`` (or a fleet invite) waits
                              on the boot partition (:mod:`.firstboot`)

The choices (a dynamic user, the sandbox, the restart policy, which address
families and groups) are explained in ``docs/install.md`` and
``docs/decisions.md``; :func:`render_service` is their single source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import LichenError

__all__ = [
    "BOOT_DIRS",
    "BOOT_FILES",
    "DEVICE_GROUPS",
    "FIRSTBOOT_UNIT",
    "MARKER",
    "SERVICE_UNIT",
    "STATE_ROOT",
    "ServiceSpec",
    "executable_path",
    "interpreter_of",
    "render_firstboot",
    "render_service",
]

SERVICE_UNIT = "lichen.service"
FIRSTBOOT_UNIT = "lichen-firstboot.service"
#: the first line of every unit we write: `install` replaces and `remove` deletes only these
MARKER = "# Written by `lichen service install`"
#: where systemd keeps a service's StateDirectory=
STATE_ROOT = PurePosixPath("/var/lib")
#: the boot partition on current Raspberry Pi OS, then on older releases
BOOT_DIRS = (PurePosixPath("/boot/firmware"), PurePosixPath("/boot"))
#: the files `lichen firstboot` picks up there
BOOT_FILES = ("lichen.toml", "lichen-invite.txt")
#: groups that own the board's devices on Raspberry Pi OS (GPIO, I²C, SPI, UART, BLE
#: through BlueZ); the unit names those that exist on this system
DEVICE_GROUPS = ("gpio", "i2c", "spi", "dialout", "bluetooth")
#: AF_UNIX: journald, the notify socket, D-Bus (BlueZ); AF_INET/AF_INET6: TCP gossip,
#: MQTT, HTTP; AF_NETLINK: the interface list (mDNS); AF_BLUETOOTH: BLE
ADDRESS_FAMILIES = "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_BLUETOOTH"
_HOME_LIKE = ("/home", "/root", "/run/user")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+/@:-]*$")


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """What the units say.

    ``executable``: the absolute path of the ``lichen`` command to run (the one
    of the installed virtual environment); ``home``: the node's home; ``user``:
    a system user to run as, or None for a dynamic user (systemd makes one, and
    keeps the home under ``/var/lib`` owned by it); ``groups``: supplementary
    groups for the board's devices; ``watchdog_s``: ``WatchdogSec=``."""

    executable: PurePosixPath
    home: PurePosixPath = STATE_ROOT / "lichen"
    user: str | None = None
    groups: tuple[str, ...] = ()
    watchdog_s: int = 60
    #: the Python the command runs with (its ``#!`` line, symlinks resolved), if known
    interpreter: PurePosixPath | None = None
    boot_dirs: tuple[PurePosixPath, ...] = field(default=BOOT_DIRS)

    def __post_init__(self) -> None:
        for what, path in (("the lichen command", self.executable), ("the home", self.home)):
            if not _SAFE_PATH.match(str(path)) or ".." in path.parts:
                raise LichenError(
                    f"{what} {str(path)!r}: a unit needs an absolute path of letters, digits "
                    "and ._+-@: only (no spaces, quotes, % or $). Fix: install Lichen in a "
                    "virtual environment such as /opt/lichen"
                )
        if self.user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.user):
            raise LichenError(f"user {self.user!r} is not a valid system user name")
        if self.user is None and self.state_directory is None:
            raise LichenError(
                f"--home {self.home}: a dynamic user can own a home under {STATE_ROOT}/ only. "
                f"Fix: --home {STATE_ROOT}/lichen, or --user NAME (an existing system user "
                "that owns the home)"
            )
        if self.watchdog_s < 4:
            raise LichenError(f"watchdog {self.watchdog_s} s: at least 4 s")

    @property
    def state_directory(self) -> str | None:
        """``StateDirectory=`` for a home under ``/var/lib``, else None."""
        try:
            relative = self.home.relative_to(STATE_ROOT)
        except ValueError:
            return None
        return str(relative) if str(relative) != "." else None

    @property
    def protect_home(self) -> str:
        """``yes`` hides /home, /root and /run/user; ``read-only`` when the command,
        its Python or the home lives there."""
        return "read-only" if self.in_homes() else "yes"

    def in_homes(self) -> list[PurePosixPath]:
        """The command, its interpreter and the home, where under /home, /root or
        /run/user (a virtual environment made from a Python in a user's home)."""
        paths = [p for p in (self.executable, self.interpreter, self.home) if p is not None]
        return [
            p for p in paths if any(str(p) == t or str(p).startswith(t + "/") for t in _HOME_LIKE)
        ]


def _identity_lines(spec: ServiceSpec) -> list[str]:
    if spec.user is None:
        return ["DynamicUser=yes"]
    return [f"User={spec.user}"]


def render_service(spec: ServiceSpec) -> str:
    """``lichen.service``."""
    exe = str(spec.executable).replace("%", "%%")
    home = str(spec.home).replace("%", "%%")
    lines = [
        f"{MARKER}; edit with `systemctl edit lichen` (a drop-in), not here.",
        "[Unit]",
        "Description=Lichen edge agent (sensors into a signed, replicated log)",
        f"After=network-online.target time-sync.target {FIRSTBOOT_UNIT}",
        "Wants=network-online.target",
        # not initialised (no lichen.toml on the boot partition, no `lichen init`):
        # skipped with a condition, not restarted in a loop
        f"ConditionPathExists={home}/identity.key",
        # never give up: a board in a field has no one to press restart
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exe} run",
        f"Environment=LICHEN_HOME={home}",
        f"WatchdogSec={spec.watchdog_s}",
        "Restart=always",
        "RestartSec=5",
        # exit 2 is a configuration error: restarting cannot fix it
        "RestartPreventExitStatus=2",
        "TimeoutStartSec=120",
        "TimeoutStopSec=30",
        # SIGTERM to the agent alone, which stops its process-isolated plugins itself
        "KillMode=mixed",
        *_identity_lines(spec),
    ]
    if spec.groups:
        lines.append(f"SupplementaryGroups={' '.join(spec.groups)}")
    if spec.state_directory is not None:
        lines += [f"StateDirectory={spec.state_directory}", "StateDirectoryMode=0700"]
    else:
        lines.append(f"ReadWritePaths={home}")
    lines += [
        f"WorkingDirectory={home}",
        "UMask=0077",
        # the sandbox: the agent writes its home and nothing else
        "ProtectSystem=strict",
        f"ProtectHome={spec.protect_home}",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictSUIDSGID=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        f"RestrictAddressFamilies={ADDRESS_FAMILIES}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def render_firstboot(spec: ServiceSpec) -> str:
    """``lichen-firstboot.service``: runs as root (the boot partition is root's),
    with no network and a read-only system but for the boot partition and the home."""
    exe = str(spec.executable).replace("%", "%%")
    home = str(spec.home).replace("%", "%%")
    conditions = [
        f"ConditionPathExists=|{directory}/{name}"
        for directory in spec.boot_dirs
        for name in BOOT_FILES
    ]
    writable = " ".join(f"-{d}" for d in spec.boot_dirs)
    return "\n".join(
        [
            f"{MARKER}; edit with `systemctl edit lichen-firstboot` (a drop-in), not here.",
            "[Unit]",
            "Description=Lichen first boot: the node's configuration from the boot partition",
            "After=local-fs.target",
            f"Before={SERVICE_UNIT}",
            *conditions,
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart={exe} firstboot",
            f"Environment=LICHEN_HOME={home}",
            "ProtectSystem=strict",
            f"ReadWritePaths={writable} {spec.home.parent}",
            f"ProtectHome={spec.protect_home}",
            "PrivateTmp=yes",
            "PrivateNetwork=yes",
            "NoNewPrivileges=yes",
            "RestrictAddressFamilies=AF_UNIX",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "",
            "[Install]",
            f"WantedBy={SERVICE_UNIT}",
            "",
        ]
    )


def interpreter_of(path: Path) -> PurePosixPath | None:
    """The real path of the interpreter on ``path``'s ``#!`` line, if it has one."""
    try:
        with path.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return PurePosixPath(os.path.realpath(words[0])) if words else None


def executable_path(path: Path) -> PurePosixPath:
    """An absolute path for ``ExecStart=`` (symlinks kept: a virtual environment's
    ``bin/lichen`` is the command, whatever its interpreter links to)."""
    return PurePosixPath(path.absolute())

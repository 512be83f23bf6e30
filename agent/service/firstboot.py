"""First boot from the SD card: a ``lichen.toml`` (and a fleet invite) left on the
boot partition becomes this node's configuration.

Someone flashes a card with Raspberry Pi Imager, copies ``lichen.toml`` onto its
boot partition (FAT, readable on any laptop: ``/boot/firmware`` on current
Raspberry Pi OS, ``/boot`` on older ones) and puts it in a board.
``lichen-firstboot.service`` runs ``lichen firstboot`` before the agent starts:

1. **Validate first.** The file is checked as ``lichen run`` would check it (the
   TOML, every key, the board profile, every sensor, transport and uplink table
   against its installed plugin) before anything is touched. An invalid file
   is renamed ``lichen.toml.invalid`` with the reason next to it in
   ``lichen.toml.invalid.txt`` — readable from the laptop that wrote it — and
   the node is left exactly as it was.
2. **Initialise** (``lichen init`` semantics) a home that is not a node yet: a new
   identity, the configuration, an empty log. A home that is already a node
   keeps its identity and log; its ``lichen.toml`` is replaced (the old one kept
   as ``lichen.toml.previous``). Each step replaces its file atomically and
   fsyncs it, and the boot file is consumed last: a power cut half-way leaves
   the file on the card, and the next boot finishes the job.
3. **Consume.** The file may hold a broker password, and the FAT partition has
   no permissions: once its copy is fsynced in the home (mode 0600), it is
   overwritten with zeros, fsynced, and deleted. ``lichen-firstboot.txt`` on the
   partition then says which node was made (its id, no secret).

A fleet invite (``lichen-invite.txt``) is carried the same way into
``HOME/state/fleet-invite.pending`` and reported as pending: joining a fleet
from it is not implemented yet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, LichenError
from ..fsutil import atomic_write, fsync_dir
from ..home import PRIVATE_FILE, Home, lost_identity
from ..logs import event
from . import unit

__all__ = [
    "BOOT_DIRS",
    "CONFIG_NAME",
    "INVITE_NAME",
    "FirstBoot",
    "FirstBootResult",
    "find_boot_dir",
]

log = logging.getLogger("lichen.firstboot")

#: the boot partition on current Raspberry Pi OS, then on older releases
BOOT_DIRS = tuple(Path(d) for d in unit.BOOT_DIRS)
CONFIG_NAME, INVITE_NAME = unit.BOOT_FILES
REPORT_NAME = "lichen-firstboot.txt"
PENDING_INVITE = "fleet-invite.pending"
MAX_CONFIG_BYTES = 1 << 20
MAX_INVITE_BYTES = 64 << 10

_Check = Callable[[str, Path], None]


def find_boot_dir(candidates: tuple[Path, ...] = BOOT_DIRS) -> Path | None:
    """The first of ``candidates`` holding a file to pick up (else None)."""
    for directory in candidates:
        if any((directory / name).is_file() for name in (CONFIG_NAME, INVITE_NAME)):
            return directory
    return None


@dataclass
class FirstBootResult:
    """What one run did: ``initialised`` (a new node), ``reconfigured`` (a new
    ``lichen.toml`` for an existing node), the files ``refused`` (with the
    reason) and ``consumed``, and whether an invite is now pending."""

    node_id: str | None = None
    initialised: bool = False
    reconfigured: bool = False
    invite_pending: bool = False
    consumed: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)


class FirstBoot:
    """Picks up the boot partition's files into ``home`` (see the module's text)."""

    def __init__(self, home: Home, boot_dir: Path) -> None:
        self.home, self.boot_dir = home, boot_dir

    def run(self) -> FirstBootResult:
        result = FirstBootResult()
        config_file = self.boot_dir / CONFIG_NAME
        invite_file = self.boot_dir / INVITE_NAME
        config_text = self._take(config_file, MAX_CONFIG_BYTES, self._check_config, result)
        invite = self._take(invite_file, MAX_INVITE_BYTES, _check_invite, result)
        lost = lost_identity(self.home)
        if lost is not None and (config_text is not None or invite is not None):
            # the boot files stay on the card: nothing is consumed for a home we cannot use
            raise LichenError(f"the boot partition's files were left in place: {lost}")
        if config_text is not None:
            self._apply_config(config_text, result)
            self._consume(config_file, result)
        if invite is not None:
            if not self.home.identity.exists():
                event(log, "fleet invite left on the boot partition: this home is not a "
                      "node yet (put a lichen.toml next to it)", logging.WARNING,
                      file=invite_file)  # fmt: skip
            else:
                pending = self.home.state / PENDING_INVITE
                atomic_write(pending, invite.encode("utf-8"), mode=PRIVATE_FILE)
                self._give_to_owner(pending)
                self._consume(invite_file, result)
                result.invite_pending = True
                event(log, "fleet invite carried; pending (joining a fleet is not "
                      "available in this version)", logging.WARNING, to=pending)  # fmt: skip
        if result.node_id is None and self.home.identity.exists():
            from ..identity import load_identity

            result.node_id = str(load_identity(self.home.identity).node_id)
        if result.consumed:
            self._report(result)
        return result

    # ----------------------------------------------------------- validation

    def _take(self, path: Path, limit: int, check: _Check, result: FirstBootResult) -> str | None:
        """The text of ``path`` if it is there and valid; an invalid one is renamed
        with its reason beside it (and recorded in ``result.refused``)."""
        try:
            with path.open("rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        try:
            if len(data) > limit:
                raise ConfigError(f"larger than {limit} bytes", file=str(path))
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"not UTF-8 text ({exc})", file=str(path)) from None
            check(text, path)
        except LichenError as exc:
            self._refuse(path, str(exc))
            result.refused[path] = str(exc)
            return None
        return text

    def _check_config(self, text: str, path: Path) -> None:
        """Everything ``lichen run`` checks before it starts, without starting."""
        from ..board import load_board
        from ..config import parse_config
        from ..plugins import configure_links
        from ..runtime.configure import configure_sensors

        config = parse_config(text, str(path))
        try:
            load_board(config.node.board)
        except LichenError as exc:
            raise ConfigError(str(exc), file=str(path), key="[node] board") from None
        configure_sensors(config)
        configure_links(config)

    def _refuse(self, path: Path, reason: str) -> None:
        invalid = path.with_name(path.name + ".invalid")
        explanation = path.with_name(path.name + ".invalid.txt")
        os.replace(path, invalid)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        text = (
            f"{path.name} was not used ({stamp}): nothing on this node was changed.\n\n"
            f"{reason}\n\nFix the file, rename it back to {path.name} and boot again.\n"
        )
        atomic_write(explanation, text.encode("utf-8"))
        fsync_dir(path.parent)
        event(log, "boot file refused", logging.ERROR, file=path, renamed=invalid, error=reason)

    # ------------------------------------------------------------- applying

    def _apply_config(self, text: str, result: FirstBootResult) -> None:
        from ..identity import Identity, load_identity, save_identity
        from ..store.log_store import LogStore

        home = self.home
        home.create()
        if home.identity.exists():
            identity = load_identity(home.identity)
            if home.config.exists():
                previous = home.path / (CONFIG_NAME + ".previous")
                atomic_write(previous, home.config.read_bytes(), mode=PRIVATE_FILE)
                self._give_to_owner(previous)
            result.reconfigured = True
        else:
            identity = Identity.generate()
            save_identity(identity, home.identity)
            result.initialised = True
        node = str(identity.node_id)
        atomic_write(home.config, _named(text, node).encode("utf-8"), mode=PRIVATE_FILE)
        LogStore(home.database).close()  # made (and migrated) now, not at the agent's start
        for path in (home.path, home.identity, home.config, *home.private_files()):
            self._give_to_owner(path)
        result.node_id = node
        event(log, "node initialised from the boot partition" if result.initialised
              else "configuration replaced from the boot partition",
              node=node, home=home.path)  # fmt: skip

    def _give_to_owner(self, path: Path) -> None:
        """Files root writes into a home owned by the service's user become that
        user's (systemd re-owns a StateDirectory= only when its top changes hands)."""
        if os.geteuid() != 0:
            return
        with contextlib.suppress(FileNotFoundError):
            owner = self.home.path.stat()
            st = path.lstat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.lchown(path, owner.st_uid, owner.st_gid)
                if path.parent != self.home.path and path.parent.is_relative_to(self.home.path):
                    self._give_to_owner(path.parent)

    def _consume(self, path: Path, result: FirstBootResult) -> None:
        """Zero the file's bytes where they lie, then delete it (the FAT partition
        has no permissions; the copy in the home is fsynced already)."""
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            os.pwrite(fd, b"\0" * size, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        with contextlib.suppress(OSError):  # not every filesystem syncs a directory
            fsync_dir(path.parent)
        result.consumed.append(path)

    def _report(self, result: FirstBootResult) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        what = "initialised" if result.initialised else "updated"
        lines = [f"Lichen node {result.node_id} {what} from this partition ({stamp}).", ""]
        lines += [f"consumed and deleted: {p.name}" for p in result.consumed]
        if result.invite_pending:
            lines.append(
                "fleet invite: carried, pending (joining a fleet comes in a later version)"
            )
        lines.append("")
        with contextlib.suppress(OSError):
            atomic_write(self.boot_dir / REPORT_NAME, "\n".join(lines).encode("utf-8"))


def _check_invite(text: str, path: Path) -> None:
    if not text.strip():
        raise ConfigError("the fleet invite is empty", file=str(path))


def _named(text: str, node: str) -> str:
    """The configuration with a first line naming the node, as ``lichen init``
    writes it (``lichen`` finds the node a home belonged to from it)."""
    first = text.partition("\n")[0]
    if f"({node})" in first:
        return text
    return f"# lichen.toml — configuration of node ({node}), from the boot partition.\n{text}"

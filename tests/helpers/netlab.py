"""A small network lab of namespaces for multi-node tests (root only).

``NetLab(n, tag)`` creates the namespaces ``lichen-pt-<tag>-0`` … ``-<n-1>``
("hosts") and ``lichen-pt-<tag>-br``, which holds the bridge ``br0``. Each
host has one interface, ``eth0``, the namespace end of a veth pair whose
other end, ``p<i>``, is a port of the bridge; hosts get ``10.201.<k>.<10+i>/24``.
No interface lives in the caller's namespace, so the lab cannot clash with
the machine's own network, and deleting the namespaces deletes everything.

On entry, leftovers of an earlier lab with the same prefix (namespaces and the
processes still in them) are removed; on exit everything is removed, also
after a failure half-way.

Faults, per host:

* :meth:`NetLab.set_loss` — nftables ``numgen random mod 100 < P drop`` in
  the table ``inet lichen_faults`` of the host's namespace, on what it
  receives (by default) or sends;
* :meth:`NetLab.rate_limit` — ``tc … tbf`` on ``eth0`` and, for the other
  direction, on the bridge port;
* :meth:`NetLab.cut` / :meth:`NetLab.restore` — an nftables drop-all on the
  host's bridge port, in the table ``bridge lichen_faults`` of the bridge
  namespace (silent, like a link failing along the way), or
  ``ip link set eth0 down``;
* :meth:`NetLab.block` — the bridge drops all traffic between two hosts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "PREFIX",
    "Host",
    "NetLab",
    "NetLabError",
    "leftovers",
    "remove_namespaces",
    "why_no_netlab",
]

PREFIX = "lichen-pt-"
TABLE = "lichen_faults"
Direction = Literal["out", "in", "both"]


class NetLabError(RuntimeError):
    """A lab command failed; the message holds the command and its stderr."""


def _nft_in(namespace: str, script: str) -> None:
    argv = ["ip", "netns", "exec", namespace, "nft", "-f", "-"]
    result = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=15)
    if result.returncode != 0:
        raise NetLabError(f"nft in {namespace} failed: {result.stderr.strip()}\n{script}")


def _run(argv: Sequence[str], check: bool = True, timeout: float = 15) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise NetLabError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def why_no_netlab() -> str | None:
    """Why a lab cannot be built here (the exact reason), or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "creating network namespaces needs root"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"the {tool} command ({package}) is not installed"
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "-n", probe, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        _run(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", TABLE])
        _run(["tc", "-n", probe, "qdisc", "add", "dev", "v0", "root", "tbf",
              "rate", "100kbit", "burst", "4kb", "latency", "400ms"])  # fmt: skip
    except (NetLabError, OSError, subprocess.TimeoutExpired) as error:
        return f"cannot build a network lab here: {error}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Namespaces whose name starts with ``prefix``."""
    names = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]
    return sorted(name for name in names if name.startswith(prefix))


def remove_namespaces(prefix: str, grace: float = 3.0) -> None:
    """Kill (by PID: SIGTERM, then SIGKILL) what still runs in the namespaces named
    ``prefix…``, then delete them. What is already gone is fine."""
    names = leftovers(prefix)
    pids = {
        int(pid)
        for name in names
        for pid in _run(["ip", "netns", "pids", name], check=False).split()
        if pid.isdigit()
    }
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if _alive(pid)}
            time.sleep(0.05)
        if not pids:
            break
    for name in names:
        _run(["ip", "netns", "del", name], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has left its namespaces already
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass(frozen=True)
class Host:
    """One namespace of the lab and its single interface."""

    index: int
    namespace: str
    ip: str
    interface: str = "eth0"

    @property
    def port(self) -> str:
        """Its bridge port (in the bridge namespace)."""
        return f"p{self.index}"

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class NetLab:
    """``n`` hosts on one bridge; a context manager (see the module doc)."""

    def __init__(self, n: int, tag: str | None = None, subnet: int | None = None) -> None:
        if not 1 <= n <= 200:
            raise ValueError("a lab has 1 to 200 hosts")
        self.tag = tag or secrets.token_hex(3)
        self.prefix = f"{PREFIX}{self.tag}-"
        k = zlib.crc32(self.tag.encode()) % 256 if subnet is None else subnet
        self.subnet = f"10.201.{k}.0/24"
        self.bridge_namespace = f"{self.prefix}br"
        self.hosts = [Host(i, f"{self.prefix}{i}", f"10.201.{k}.{10 + i}") for i in range(n)]

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        remove_namespaces(self.prefix)
        try:
            self._build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _build(self) -> None:
        br = self.bridge_namespace
        _run(["ip", "netns", "add", br])
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        self._nft_bridge(
            f"add table bridge {TABLE}\n"
            f"add chain bridge {TABLE} cut "
            "{ type filter hook forward priority 0; policy accept; }\n"
            f"add chain bridge {TABLE} block "
            "{ type filter hook forward priority 0; policy accept; }\n"
        )
        for host in self.hosts:
            ns = host.namespace
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", br, "link", "add", host.port, "type", "veth",
                  "peer", "name", host.interface, "netns", ns])  # fmt: skip
            _run(["ip", "-n", br, "link", "set", host.port, "master", "br0"])
            _run(["ip", "-n", br, "link", "set", host.port, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{host.ip}/24", "dev", host.interface])
            _run(["ip", "-n", ns, "link", "set", host.interface, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._nft(host, self._table_script())

    def remove(self) -> None:
        """Stop what runs in the lab and delete its namespaces (the veths go with them)."""
        remove_namespaces(self.prefix)

    def exists(self) -> bool:
        """Whether any namespace of this lab (or a leftover with its prefix) exists."""
        return bool(leftovers(self.prefix))

    # --- commands ------------------------------------------------------------------------

    def run(self, host: Host, *argv: str, check: bool = True, timeout: float = 15) -> str:
        """Run ``argv`` in ``host``'s namespace; its stdout."""
        return _run(host.command(*argv), check=check, timeout=timeout)

    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host``'s namespace (``ip netns exec`` execs it: same PID)."""
        return subprocess.Popen(host.command(*argv), **kwargs)

    # --- faults --------------------------------------------------------------------------

    def _table_script(self) -> str:
        chains = [("loss_out", "output", 0), ("loss_in", "input", 0)]
        lines = [f"add table inet {TABLE}"]
        for name, hook, priority in chains:
            lines.append(
                f"add chain inet {TABLE} {name} "
                f"{{ type filter hook {hook} priority {priority}; policy accept; }}"
            )
        return "\n".join(lines) + "\n"

    def _nft(self, host: Host, script: str) -> None:
        _nft_in(host.namespace, script)

    def _nft_bridge(self, script: str) -> None:
        _nft_in(self.bridge_namespace, script)

    def set_loss(self, host: Host, percent: int, direction: Direction = "in") -> None:
        """Drop ``percent`` % of the packets entering (``in``) and/or leaving (``out``)
        ``host`` through its interface, at random; 0 removes the loss.

        Loss on ``in`` is invisible to the sender, like loss on a wire; on ``out``
        the sender's send fails with EPERM (TCP retransmits, UDP sees the error)."""
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage")
        iface = host.interface
        lines = [f"flush chain inet {TABLE} loss_out", f"flush chain inet {TABLE} loss_in"]
        if percent:
            if direction in ("out", "both"):
                lines.append(f'add rule inet {TABLE} loss_out oifname "{iface}" '
                             f"numgen random mod 100 < {percent} drop")  # fmt: skip
            if direction in ("in", "both"):
                lines.append(f'add rule inet {TABLE} loss_in iifname "{iface}" '
                             f"numgen random mod 100 < {percent} drop")  # fmt: skip
        self._nft(host, "\n".join(lines) + "\n")

    def rate_limit(
        self,
        host: Host,
        rate: str = "100kbit",
        burst: str = "4kb",
        latency: str = "400ms",
        both_ways: bool = True,
    ) -> None:
        """A token bucket on ``host``'s interface (what it sends) and, ``both_ways``,
        on its bridge port (what it receives)."""
        tbf = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        _run(["tc", "-n", host.namespace, "qdisc", "replace", "dev", host.interface, *tbf])
        if both_ways:
            _run(["tc", "-n", self.bridge_namespace, "qdisc", "replace", "dev", host.port, *tbf])

    def clear_rate_limit(self, host: Host) -> None:
        _run(["tc", "-n", host.namespace, "qdisc", "del", "dev", host.interface, "root"],
             check=False)  # fmt: skip
        _run(["tc", "-n", self.bridge_namespace, "qdisc", "del", "dev", host.port, "root"],
             check=False)  # fmt: skip

    def cut(self, host: Host, how: Literal["drop", "down"] = "drop") -> None:
        """Cut ``host`` off. ``drop``: the bridge drops everything to and from its
        port, silently — the host's interface stays up and its sends "succeed",
        as when a link fails somewhere along the way. ``down``: take the host's
        interface down (its sends fail at once)."""
        if how == "down":
            _run(["ip", "-n", host.namespace, "link", "set", host.interface, "down"])
            return
        self._nft_bridge(
            f'add rule bridge {TABLE} cut iifname "{host.port}" drop\n'
            f'add rule bridge {TABLE} cut oifname "{host.port}" drop\n'
        )

    def restore(self, host: Host) -> None:
        """Undo :meth:`cut` (either kind) for ``host``; other hosts' cuts stay."""
        listing = _run(["ip", "netns", "exec", self.bridge_namespace,
                        "nft", "-a", "list", "chain", "bridge", TABLE, "cut"])  # fmt: skip
        handles = [
            line.rsplit("# handle ", 1)[1].strip()
            for line in listing.splitlines()
            if f'"{host.port}"' in line and "# handle " in line
        ]
        if handles:
            self._nft_bridge(
                "".join(f"delete rule bridge {TABLE} cut handle {h}\n" for h in handles)
            )
        _run(["ip", "-n", host.namespace, "link", "set", host.interface, "up"])

    def block(self, one: Host, other: Host) -> None:
        """Drop all traffic between two hosts (both ways), at the bridge; each keeps
        reaching the others. For a topology where they talk only through a third."""
        self._nft_bridge(
            f'add rule bridge {TABLE} block iifname "{one.port}" oifname "{other.port}" drop\n'
            f'add rule bridge {TABLE} block iifname "{other.port}" oifname "{one.port}" drop\n'
        )

    def ruleset(self, host: Host | None = None) -> str:
        """The nftables ruleset of ``host`` (or of the bridge), for messages."""
        if host is None:
            return _run(["ip", "netns", "exec", self.bridge_namespace, "nft", "list", "ruleset"])
        return self.run(host, "nft", "list", "ruleset")

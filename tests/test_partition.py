"""Nodes in separate network namespaces converge across loss, a slow link, a
faulty proxy and a partition (root only; skipped otherwise, with the reason).

``test_lab_faults`` checks the lab itself: that the faults it applies act on
real traffic and that nothing is left behind. ``test_three_nodes_converge``
runs real ``lichen run`` processes in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LICHEN
from tests.helpers.faultproxy import FaultProxyProcess
from tests.helpers.netlab import Host, NetLab, NetLabError, leftovers, why_no_netlab

pytestmark = pytest.mark.slow

PORT = 7000
PROXY_PORT = 7100


@pytest.fixture(scope="module")
def lab_possible() -> None:
    reason = why_no_netlab()
    if reason is not None:
        pytest.skip(reason)


# --- the lab on its own ----------------------------------------------------------------

_UDP_COUNT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(2.0)
print("ready", flush=True)
n = 0
try:
    while s.recv(100) != b"end":
        n += 1
except TimeoutError:
    pass
print(n, flush=True)
"""

_UDP_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.0005)
for _ in range(20):
    s.sendto(b"end", (sys.argv[1], int(sys.argv[2])))
"""

_TCP_ECHO = """
import socket, sys, threading
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
def echo(c):
    with c:
        while d := c.recv(65536):
            c.sendall(d)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""

_TCP_SEND = """
import socket, sys, time
start = time.monotonic()
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4])) as s:
    data = b"z" * int(sys.argv[3])
    s.sendall(data)
    got = 0
    while got < len(data):
        got += len(s.recv(65536))
print(round(time.monotonic() - start, 3))
"""


def _python(lab: NetLab, host: Host, code: str, *args: object, timeout: float = 30) -> str:
    argv = [sys.executable, "-c", code, *map(str, args)]
    return lab.run(host, *argv, timeout=timeout).strip()


def _start(lab: NetLab, host: Host, code: str, *args: object) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", code, *map(str, args)]
    process: subprocess.Popen[str] = lab.popen(
        host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_lab_faults(lab_possible: None) -> None:
    """Loss drops about its share of packets, tbf slows a bulk transfer, a cut
    blocks and a restore heals, the proxy forwards across namespaces, and the
    namespaces are gone afterwards (also a leftover planted with the prefix)."""
    with NetLab(3, tag=f"lab{os.getpid()}") as lab:
        a, b, p = lab.hosts
        subprocess.run(["ip", "netns", "add", f"{lab.prefix}9"], check=True)  # a leftover
        assert f"{lab.prefix}9" in leftovers(lab.prefix)
    assert leftovers(lab.prefix) == []

    with NetLab(3, tag=f"lab{os.getpid()}") as lab:
        a, b, p = lab.hosts
        assert sorted(leftovers(lab.prefix)) == sorted(
            [lab.bridge_namespace] + [h.namespace for h in lab.hosts]
        )
        echo = _start(lab, b, _TCP_ECHO, b.ip, PORT)
        fast = float(_python(lab, a, _TCP_SEND, b.ip, PORT, 100_000, 10))

        # 20 % loss on what b receives: ~800 of 1000 datagrams arrive
        lab.set_loss(b, 20)
        counter = _start(lab, b, _UDP_COUNT, b.ip, 9000)
        _python(lab, a, _UDP_SEND, b.ip, 9000, 1000)
        out, _ = counter.communicate(timeout=10)
        received = int(out.split()[-1])
        assert 700 <= received <= 900, received
        lab.set_loss(b, 0)

        # 100 kbit/s each way: 50 kB echoed take about 4 s; far longer than without
        lab.rate_limit(b)
        slow = float(_python(lab, a, _TCP_SEND, b.ip, PORT, 50_000, 20))
        assert slow > 3 and slow > 5 * fast, (slow, fast)
        lab.clear_rate_limit(b)

        # a cut: silence; a restore: back
        for how in ("drop", "down"):
            lab.cut(b, how)
            with pytest.raises(NetLabError):
                _python(lab, a, _TCP_SEND, b.ip, PORT, 10, 1, timeout=10)
            lab.restore(b)
            _python(lab, a, _TCP_SEND, b.ip, PORT, 10, 5)

        # a block between a and b: silence between them, p still reaches b
        lab.block(a, b)
        with pytest.raises(NetLabError):
            _python(lab, a, _TCP_SEND, b.ip, PORT, 10, 1, timeout=10)
        _python(lab, p, _TCP_SEND, b.ip, PORT, 10, 5)

        # the proxy in its own namespace, driven from here through its stdin: a reaches
        # b through it
        target = f"{b.ip}:{PORT}"
        with FaultProxyProcess(f"{p.ip}:{PROXY_PORT}", target, prefix=p.command()) as proxy:
            _python(lab, a, _TCP_SEND, p.ip, PROXY_PORT, 30_000, 5)
            stats = proxy.command("stats")
            assert stats["bytes_up"] == stats["bytes_down"] == 30_000
            proxy.command("delay 500 up")
            assert float(_python(lab, a, _TCP_SEND, p.ip, PROXY_PORT, 10, 5)) >= 0.5
            proxy.command("cut")
            with pytest.raises(NetLabError):
                _python(lab, a, _TCP_SEND, p.ip, PROXY_PORT, 10, 1, timeout=10)
            proxy.command("restore")
            _python(lab, a, _TCP_SEND, p.ip, PROXY_PORT, 10, 5)
        echo.kill()
        echo.communicate()
    assert leftovers(lab.prefix) == []


# --- three nodes -----------------------------------------------------------------------

RUN_BEFORE_PARTITION = 20.0
PARTITION = 15.0
CONVERGE_TIMEOUT = 120.0


def _lichen(home: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
    return subprocess.run(
        [str(LICHEN), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def _status(home: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(_ok(_lichen(home, "status", "--json")))
    return status


def _feeds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {feed["author"]: feed for feed in status["feeds"]}


def _own_head(status: dict[str, Any]) -> int:
    own = [feed for feed in status["feeds"] if feed["own"]]
    return int(own[0]["head_seq"]) if own else 0


def _lagging(statuses: dict[str, dict[str, Any]], targets: dict[str, int]) -> list[str]:
    """What keeps the nodes from having converged to ``targets`` (author → seq)."""
    problems = []
    for name, status in statuses.items():
        feeds = _feeds(status)
        for feed in feeds.values():
            span = feed["head_seq"] - feed["low_seq"] + 1
            if feed["entries"] != span:
                problems.append(
                    f"{name}: feed {feed['author'][:12]} holds {feed['entries']} entries "
                    f"for seq {feed['low_seq']}..{feed['head_seq']}"
                )
        for author, seq in targets.items():
            held = feeds.get(author)
            if held is None:
                problems.append(f"{name}: no feed of {author[:12]}")
            elif held["head_seq"] < seq:
                problems.append(f"{name}: {author[:12]} at {held['head_seq']} < {seq}")
    return problems


class _Node:
    """One ``lichen run`` in a lab host; its output goes to a file."""

    def __init__(self, name: str, home: Path, host: Host) -> None:
        self.name, self.home, self.host = name, home, host
        self.log = home.parent / f"{name}.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.node_id = ""

    @property
    def address(self) -> str:
        return f"tcp://{self.host.ip}:{PORT}"

    def start(self, lab: NetLab, peers: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LICHEN_HOME"}
        argv = [str(LICHEN), "--home", str(self.home), "run", "--listen", self.address]
        for peer in peers:
            argv += ["--peer", peer]
        with self.log.open("wb") as out:
            self.process = lab.popen(self.host, argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def check_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"node {self.name}: lichen run exited {self.process.returncode}\n"
                        f"{self.tail()}")  # fmt: skip

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, by PID; the exit status."""
        process = self.process
        if process is None:
            return None
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        return process.returncode


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[_Node]]:
    made: list[_Node] = []
    yield made
    for node in made:
        node.stop()


@pytest.mark.timeout(280)
def test_three_nodes_converge(lab_possible: None, tmp_path: Path, nodes: list[_Node]) -> None:
    """Three nodes converge after loss, a slow link, proxy faults and a partition.

    Topology: namespaces A, B, C and P, one bridge (in a namespace of its own),
    10.201.k.0/24. Each node runs ``lichen run`` on port 7000 of its namespace
    with static peers: A dials B, B dials C, C dials A — but C dials A through
    the fault proxy in P (P:7100 → A:7000), and the bridge drops all direct
    traffic between A and C, so A and C talk only through the proxy (or learn
    of each other through B). Every node trusts the other two.

    Faults, throughout: 20 % random loss on what each of A, B and C receives
    (nftables ``numgen random``), and B's link limited to 100 kbit/s each way
    (tc tbf). At ~3 s the proxy delays both ways by 150 ms, at ~8 s it stalls,
    at ~12 s it is restored. At ~20 s A is partitioned from B and C for ~15 s
    (the bridge drops everything on A's port, and the proxy resets its
    connections and refuses new ones); the sensors keep producing throughout.

    Then: by ~120 s after healing, every node holds every node's feed at least
    up to that node's own head at healing, with no seq missing or held twice
    (entries == head_seq - low_seq + 1); after SIGTERM, ``log verify`` passes on
    every home; and no namespace of the lab is left.
    """
    lab = NetLab(4, tag=f"part{os.getpid()}")
    with lab:
        hosts = dict(zip("abcp", lab.hosts))
        for name in "abc":
            home = tmp_path / name
            _ok(_lichen(home, "init", "--name", f"node-{name}", "--board", "sim"))
            node = _Node(name, home, hosts[name])
            node.node_id = _ok(_lichen(home, "id")).strip()
            nodes.append(node)
        a, b, c = nodes
        for node in nodes:
            for other in nodes:
                if other is not node:
                    _ok(_lichen(node.home, "trust", "add", other.node_id))

        for host in (hosts["a"], hosts["b"], hosts["c"]):
            lab.set_loss(host, 20)
        lab.rate_limit(hosts["b"], rate="100kbit", burst="4kb", latency="400ms")
        lab.block(hosts["a"], hosts["c"])

        p = hosts["p"]
        proxy = FaultProxyProcess(f"{p.ip}:{PROXY_PORT}", f"{a.host.ip}:{PORT}", prefix=p.command())
        with proxy:
            a.start(lab, [b.address])
            b.start(lab, [c.address])
            c.start(lab, [f"tcp://{p.ip}:{PROXY_PORT}"])
            started = time.monotonic()

            def at(offset: float) -> None:
                """Sleep until ``offset`` s after the start, checking the nodes run."""
                while (left := started + offset - time.monotonic()) > 0:
                    for node in nodes:
                        node.check_running()
                    time.sleep(min(left, 1.0))

            at(3)
            proxy.command("delay 150 both")
            at(8)
            proxy.command("stall")
            at(12)
            proxy.command("restore")
            at(RUN_BEFORE_PARTITION)
            before = {node.name: _status(node.home) for node in nodes}

            through_proxy = proxy.command("stats")  # A and C talked through it
            assert through_proxy["bytes_up"] > 0 and through_proxy["bytes_down"] > 0, through_proxy
            lab.cut(a.host)
            proxy.command("cut")
            at(RUN_BEFORE_PARTITION + 2)
            cut_views = {node.name: _feeds(_status(node.home)) for node in nodes}
            at(RUN_BEFORE_PARTITION + PARTITION)
            healed_views = {node.name: _feeds(_status(node.home)) for node in nodes}
            lab.restore(a.host)
            proxy.command("restore")
            targets = {node.node_id: _own_head(_status(node.home)) for node in nodes}

            # the partition was real: A learnt nothing new of B and C, nor they of A
            for node, others in ((a, (b, c)), (b, (a,)), (c, (a,))):
                for other in others:
                    old = cut_views[node.name].get(other.node_id, {}).get("head_seq")
                    new = healed_views[node.name].get(other.node_id, {}).get("head_seq")
                    assert old == new, f"{node.name} heard from {other.name} while cut off"
            # and everyone kept producing meanwhile
            for node in nodes:
                assert targets[node.node_id] > _own_head(before[node.name]), node.name

            deadline = time.monotonic() + CONVERGE_TIMEOUT
            while True:
                for node in nodes:
                    node.check_running()
                statuses = {node.name: _status(node.home) for node in nodes}
                problems = _lagging(statuses, targets)
                if not problems:
                    break
                if time.monotonic() > deadline:
                    logs = "\n".join(f"--- {n.name}\n{n.tail()}" for n in nodes)
                    pytest.fail(
                        f"no convergence {CONVERGE_TIMEOUT:.0f} s after healing:\n"
                        + "\n".join(problems)
                        + f"\nproxy: {proxy.command('stats')}\n{logs}"
                    )
                time.sleep(1)
            converged_after = time.monotonic() - (started + RUN_BEFORE_PARTITION + PARTITION)

            stats = proxy.command("stats")

            for node in nodes:
                code = node.stop()
                assert code is not None, f"{node.name} did not stop"
        for node in nodes:
            _ok(_lichen(node.home, "log", "verify"))
    assert not lab.exists()
    assert leftovers(lab.prefix) == []
    print(f"converged {converged_after:.1f} s after healing; proxy: {stats}")

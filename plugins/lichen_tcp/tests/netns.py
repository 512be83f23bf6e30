"""A second network stack for mDNS tests: a namespace joined to ours by a veth pair,
and a TCP transport running in it as a separate process.

``VethNamespace`` (root only) creates the namespace ``lichen-test-<tag>``
and the pair ``lct<tag>h`` (ours) ⇄ ``lct<tag>p`` (the namespace's), with
addresses from a /30 in 10.200.0.0/13, and removes both on exit — also
after a failure half-way. ``python -m lichen_tcp.tests.netns --node ID --ip
IP`` is the peer: it runs a :class:`TcpTransport` on ``IP`` with mDNS, prints
one JSON object per line (``ready``, each ``sighting``, each ``echoed``
stream) and obeys ``heads DIGEST`` and ``quit`` on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
from types import TracebackType

from agent.errors import TransportError
from agent.plugin_api import Stream

__all__ = ["VethNamespace"]


def _ip(*argv: str, check: bool = True) -> None:
    subprocess.run(["ip", *argv], check=check, capture_output=True, timeout=10)


class VethNamespace:
    """A network namespace and a veth pair into it; a context manager."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.namespace = f"lichen-test-{tag}"
        self.host_interface = f"lct{tag}h"
        self.peer_interface = f"lct{tag}p"
        n = int(tag, 16) % (8 * 256 * 64)  # a /30 somewhere in 10.200.0.0/13
        base = f"10.{200 + n // (256 * 64)}.{n // 64 % 256}"
        self.host_ip = f"{base}.{n % 64 * 4 + 1}"
        self.peer_ip = f"{base}.{n % 64 * 4 + 2}"

    def __enter__(self) -> VethNamespace:
        try:
            _ip("netns", "add", self.namespace)
            _ip("link", "add", self.host_interface, "type", "veth",
                "peer", "name", self.peer_interface)  # fmt: skip
            _ip("link", "set", self.peer_interface, "netns", self.namespace)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_interface)
            _ip("link", "set", self.host_interface, "up")
            inside = ("netns", "exec", self.namespace, "ip")
            _ip(*inside, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer_interface)
            _ip(*inside, "link", "set", self.peer_interface, "up")
            _ip(*inside, "link", "set", "lo", "up")
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

    def remove(self) -> None:
        """Delete the pair (both ends go together) and the namespace; what is gone is fine."""
        _ip("link", "del", self.host_interface, check=False)
        _ip("netns", "del", self.namespace, check=False)

    def exists(self) -> bool:
        def run(*argv: str) -> str:
            return subprocess.run(argv, check=False, capture_output=True, text=True).stdout

        listed, links = run("ip", "netns", "list"), run("ip", "-o", "link")
        return self.namespace in listed or self.host_interface in links

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def peer_command(self, node_id: str) -> list[str]:
        """The peer program, inside the namespace, on its end of the pair."""
        module = "lichen_tcp.tests.netns"
        return self.command(sys.executable, "-m", module, "--node", node_id, "--ip", self.peer_ip)


# --- the peer program -------------------------------------------------------------------


def _say(**event: object) -> None:
    print(json.dumps(event), flush=True)


async def _echo(stream: Stream) -> None:
    total = 0
    try:
        while data := await stream.receive():
            await stream.send(data)
            total += len(data)
    except TransportError:
        pass
    finally:
        await stream.close()
    _say(event="echoed", bytes=total, peer=stream.peer)


async def _peer(node_id: str, ip: str) -> None:
    from lichen_tcp.tests.helpers import context_of, make_transport

    transport = make_transport(node_id, host=ip, interfaces=[ip], advertise=True, browse=True,
                               announce_interval=1.0)  # fmt: skip
    await transport.start()
    _say(event="ready", address=transport.address)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def report() -> None:
        async for s in transport.sightings():
            _say(event="sighting", address=s.address, node_id=s.node_id, heads=s.heads_digest)

    async def serve() -> None:
        while True:
            task = asyncio.create_task(_echo(await transport.accept()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    background = [asyncio.create_task(report()), asyncio.create_task(serve())]
    try:
        while line := (await stdin.readline()).decode().split():
            if line[0] == "heads":
                context_of(transport).digest = line[1]
                transport.heads_changed()
            elif line[0] == "quit":
                break
    finally:
        for task in [*background, *tasks]:
            task.cancel()
        await asyncio.gather(*background, *tasks, return_exceptions=True)
        await transport.close()
        _say(event="closed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--node", required=True)
    parser.add_argument("--ip", required=True)
    args = parser.parse_args()
    asyncio.run(_peer(args.node, args.ip))


if __name__ == "__main__":
    main()

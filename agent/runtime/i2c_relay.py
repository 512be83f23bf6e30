"""I²C buses of the agent, used from a process-isolated instance's child.

On a board a child opens ``/dev/i2c-N`` itself, as a thread would. When the
agent was given its buses instead — simulated chips in a test
(:class:`agent.testing.FakeI2CBus`), whose registers, hooks and faults live
in the test's process — the child must reach those very objects: the agent
hands it one end of a socket pair (as it hands it the control pipe), serves
each transfer the child sends on its bus (:func:`serve`), and the child's
buses are :class:`RelayedI2CBus` objects that send them. An error comes back
as the same error, with the same message.

One JSON object a line each way::

    {"bus": 1, "address": 118, "register": 247, "data": "", "length": 8}
    {"data": "655ac07eed00..."}  or  {"error": "nack" | "io", "problem": "..."}
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from collections.abc import Callable, Iterable

from ..i2c import I2CBus, I2CError, I2CNack

__all__ = ["RelayedI2CBus", "relayed_buses", "serve"]


def serve(sock: socket.socket, bus: Callable[[int], I2CBus]) -> threading.Thread:
    """Answer the child's transfers on ``sock`` with ``bus(number)``'s, in a thread
    that ends (and closes ``sock``) when the child closes its end."""

    def run() -> None:
        with sock, sock.makefile("rwb") as stream:
            for line in stream:
                request = json.loads(line)
                reply: dict[str, object]
                try:
                    data = bus(request["bus"])._transfer(
                        request["address"],
                        request["register"],
                        bytes.fromhex(request["data"]),
                        request["length"],
                    )
                    reply = {"data": data.hex()}
                except I2CNack:
                    reply = {"error": "nack"}
                except I2CError as exc:
                    reply = {"error": "io", "problem": exc.problem}
                except Exception as exc:  # reported to the child, which raises it there
                    reply = {"error": "io", "problem": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):  # the child is gone
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()

    thread = threading.Thread(target=run, name="i2c-relay", daemon=True)
    thread.start()
    return thread


class RelayedI2CBus(I2CBus):
    """The child's side: bus ``number`` of the agent, over the socket pair."""

    def __init__(self, number: int, stream: io.BufferedIOBase, lock: threading.Lock) -> None:
        self.number = number
        self.name = f"i2c-{number}"
        self._stream = stream
        self._lock = lock

    def _transfer(self, address: int, register: int | None, data: bytes, length: int) -> bytes:
        request = {
            "bus": self.number,
            "address": address,
            "register": register,
            "data": data.hex(),
            "length": length,
        }
        with self._lock:
            self._stream.write(json.dumps(request).encode() + b"\n")
            self._stream.flush()
            line = self._stream.readline()
            if not line.endswith(b"\n"):
                raise I2CError(self.name, address, "the agent closed the I²C relay")
        reply = json.loads(line)
        if "data" in reply:
            return bytes.fromhex(reply["data"])
        if reply["error"] == "nack":
            raise I2CNack(self.name, address, register=register)
        raise I2CError(self.name, address, reply["problem"], register=register)


def relayed_buses(fd: int, numbers: Iterable[int]) -> dict[int, I2CBus]:
    """The buses ``numbers`` of the agent, over the socket inherited as ``fd``."""
    stream = socket.socket(fileno=fd).makefile("rwb")
    lock = threading.Lock()
    return {number: RelayedI2CBus(number, stream, lock) for number in numbers}

"""Simulated I²C chips for tests: a register map with hooks, on a fake bus.

A :class:`FakeI2CDevice` is what most chips look like from the bus — 256
one-byte registers behind a pointer that the first written byte sets and
every byte read or written advances — plus hooks for what a chip does on its
own: a write to a control register starts a measurement (``on_write``), a
read of a status register changes it (``on_read``). Chips driven by commands
instead of registers (the SHT3x) take ``on_command`` and answer the next read
with :meth:`FakeI2CDevice.respond`. Faults are injected per chip: not
``present`` (every transfer is a NACK), :meth:`FakeI2CDevice.fail_next`
(a NACK or an I/O error for the next transfers), :meth:`FakeI2CDevice.corrupt_next`
(a bit flipped in the next reads)::

    from agent.testing import FakeI2CBus, FakeI2CDevice, AgentHarness

    bus = FakeI2CBus(1)
    chip = bus.attach(0x48, FakeI2CDevice({0x00: 0x19, 0x01: 0x80}))
    with AgentHarness(config, tmp_path, i2c=bus) as agent:
        ...
        chip.fail_next(2, "nack")

The bus is the one the agent gives plugins (``context.i2c(1)``), also to a
process-isolated instance: the agent relays its transfers to the test's bus.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Literal

from .i2c import I2CBus, I2CError, I2CNack

__all__ = ["FakeI2CBus", "FakeI2CDevice", "Fault"]

Fault = Literal["nack", "io", "timeout"]
#: ``hook(device, register, value)`` after a byte is written into ``register``
WriteHook = Callable[["FakeI2CDevice", int, int], None]
#: ``hook(device, register)`` before ``register`` is read
ReadHook = Callable[["FakeI2CDevice", int], None]
#: ``hook(device, written_bytes)`` for a command chip's every write
CommandHook = Callable[["FakeI2CDevice", bytes], None]


class FakeI2CDevice:
    """A simulated chip: registers, hooks and injectable faults."""

    def __init__(
        self,
        registers: Mapping[int, int] | None = None,
        *,
        on_write: Mapping[int, WriteHook] | None = None,
        on_read: Mapping[int, ReadHook] | None = None,
        on_command: CommandHook | None = None,
    ) -> None:
        self.registers: dict[int, int] = dict(registers or {})
        self.on_write = dict(on_write or {})
        self.on_read = dict(on_read or {})
        self.on_command = on_command
        #: False: the chip is unplugged, every transfer to it is a NACK
        self.present = True
        #: every write the chip received, as bytes (register pointer first)
        self.writes: list[bytes] = []
        self.pointer = 0
        self._response: bytes | None = None
        self._faults: list[Fault] = []
        self._corrupt = 0

    def set_block(self, register: int, data: bytes) -> None:
        """Put ``data`` into consecutive registers from ``register`` (no hooks)."""
        for offset, byte in enumerate(data):
            self.registers[(register + offset) & 0xFF] = byte

    def block(self, register: int, length: int) -> bytes:
        """What ``length`` consecutive registers from ``register`` hold (no hooks)."""
        return bytes(self.registers.get((register + i) & 0xFF, 0) for i in range(length))

    def respond(self, data: bytes) -> None:
        """What the next plain read returns (a command chip's answer); until then,
        and after it was read, a plain read of a command chip is a NACK."""
        self._response = bytes(data)

    def fail_next(self, count: int = 1, fault: Fault = "nack") -> None:
        """The next ``count`` transfers to this chip fail: ``"nack"`` (no
        acknowledgement), ``"io"`` (an I/O error) or ``"timeout"``."""
        self._faults.extend([fault] * count)

    def corrupt_next(self, count: int = 1) -> None:
        """The next ``count`` reads come back with the lowest bit of their last byte
        flipped (a checksum then fails)."""
        self._corrupt += count

    # -- the bus's side --------------------------------------------------

    def take_fault(self) -> Fault | None:
        return self._faults.pop(0) if self._faults else None

    def receive(self, data: bytes) -> None:
        """A write transaction: a command, or a register pointer and bytes for it."""
        self.writes.append(data)
        if self.on_command is not None:
            self.on_command(self, data)
            return
        if not data:
            return  # an address probe
        self.pointer = data[0]
        for byte in data[1:]:
            register = self.pointer
            self.registers[register] = byte
            self.pointer = (register + 1) & 0xFF
            hook = self.on_write.get(register)
            if hook is not None:
                hook(self, register, byte)

    def send(self, length: int) -> bytes | None:
        """A read transaction: ``length`` bytes, or None for a NACK."""
        if self._response is not None:
            data, self._response = self._response[:length], None
            data += b"\xff" * (length - len(data))  # a released bus reads as ones
        elif self.on_command is not None:
            return None
        else:
            out = bytearray()
            for _ in range(length):
                register = self.pointer
                hook = self.on_read.get(register)
                if hook is not None:
                    hook(self, register)
                out.append(self.registers.get(register, 0))
                self.pointer = (register + 1) & 0xFF
            data = bytes(out)
        if self._corrupt and data:
            self._corrupt -= 1
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        return data


class FakeI2CBus(I2CBus):
    """A bus of simulated chips, by address (``attach``)."""

    def __init__(self, number: int = 1) -> None:
        self.number = number
        self.name = f"i2c-{number}"
        self.devices: dict[int, FakeI2CDevice] = {}
        self._lock = threading.Lock()
        #: transfers made (each read, write or register access counts one)
        self.transfers = 0

    def attach(self, address: int, device: FakeI2CDevice) -> FakeI2CDevice:
        """Put ``device`` on the bus at ``address``; returns it."""
        self.devices[address] = device
        return device

    def _transfer(self, address: int, register: int | None, data: bytes, length: int) -> bytes:
        with self._lock:
            self.transfers += 1
            device = self.devices.get(address)
            if device is None or not device.present:
                raise I2CNack(self.name, address, register=register)
            fault = device.take_fault()
            if fault == "nack":
                raise I2CNack(self.name, address, register=register)
            if fault == "io":
                raise I2CError(
                    self.name, address, "Input/output error (errno 5)", register=register
                )
            if fault == "timeout":
                raise I2CError(
                    self.name,
                    address,
                    "the bus timed out (a chip holding SDA or SCL low? power-cycle it)",
                    register=register,
                )
            head = (b"" if register is None else bytes([register])) + data
            if head or not length:
                device.receive(head)
            if not length:
                return b""
            answer = device.send(length)
            if answer is None:
                raise I2CNack(self.name, address, register=register)
            return answer

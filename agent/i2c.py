"""The I²C bus seam: what a sensor plugin reads and writes a chip through.

A plugin asks its context for a bus — ``bus = self.context.i2c(1)`` — and
talks to its chip with four calls::

    bus.write(0x44, b"\\x24\\x00")              # a command (a plain write)
    data = bus.read(0x44, 6)                    # a plain read
    calibration = bus.read_register(0x76, 0x88, 26)   # a register block
    bus.write_register(0x76, 0xF4, b"\\x25")     # into a register

``read_register`` is one combined transaction (the register pointer written,
then a repeated start and the read), as every register-mapped chip expects.
Every failure is an :class:`I2CError` naming the bus, the address and the
register; a chip that does not acknowledge its address is the subclass
:class:`I2CNack`. Both are :class:`~agent.errors.SampleError`\\ s: raised from
``sample()`` they are counted on the instance and the slot is skipped, raised
from ``open()`` the instance is restarted with backoff.

On a board the bus is the kernel's ``/dev/i2c-N`` through ``smbus2`` (the
``lichen[i2c]`` extra, imported when a bus is first used); tests give the
agent simulated chips instead (:class:`agent.testing.FakeI2CBus`).
"""

from __future__ import annotations

import errno
import threading
from abc import ABC, abstractmethod
from typing import Any

from .errors import SampleError
from .extras import require_module

__all__ = ["I2CBus", "I2CError", "I2CNack", "SMBusI2C", "describe_transfer"]

#: what ``lichen[i2c]`` installs, and for whom
_INSTALL = "'lichen[i2c]'"
_PURPOSE = "an I²C sensor"


def describe_transfer(bus: str, address: int, register: int | None = None) -> str:
    """``i2c-1 address 0x76 register 0xF7``: where a transfer went, for messages."""
    where = f"{bus} address 0x{address:02X}"
    return where if register is None else f"{where} register 0x{register:02X}"


class I2CError(SampleError):
    """A transfer on an I²C bus failed. ``bus``, ``address`` and ``register`` (None
    for a plain read or write) say where; ``problem`` what happened."""

    def __init__(
        self, bus: str, address: int, problem: str, *, register: int | None = None
    ) -> None:
        self.bus = bus
        self.address = address
        self.register = register
        self.problem = problem
        super().__init__(f"{describe_transfer(bus, address, register)}: {problem}")


class I2CNack(I2CError):
    """No chip acknowledged the address (absent, unpowered, miswired, another
    address — or busy, for chips that refuse reads while they measure)."""

    def __init__(self, bus: str, address: int, *, register: int | None = None) -> None:
        super().__init__(
            bus,
            address,
            "no acknowledgement (NACK): nothing answers at this address. Fix: check the "
            "wiring (SDA, SCL, 3V3, GND), the address (i2cdetect -y BUS lists what answers), "
            "and that the chip is powered",
            register=register,
        )


def _check(address: int, register: int | None = None, length: int | None = None) -> None:
    if not 0x03 <= address <= 0x77:
        raise ValueError(f"I²C address 0x{address:02X} is outside 0x03…0x77 (7-bit addresses)")
    if register is not None and not 0 <= register <= 0xFF:
        raise ValueError(f"register 0x{register:X} is not one byte")
    if length is not None and length < 1:
        raise ValueError(f"cannot read {length} bytes")


class I2CBus(ABC):
    """One I²C bus (an adapter, ``i2c-1``). Safe to share between threads: each
    call is one transaction, made under the bus's lock."""

    #: the bus's name in messages, ``i2c-1``
    name: str

    def read(self, address: int, length: int) -> bytes:
        """Read ``length`` bytes from the chip at ``address`` (a plain read)."""
        _check(address, length=length)
        return self._transfer(address, None, b"", length)

    def write(self, address: int, data: bytes) -> None:
        """Write ``data`` to the chip at ``address`` (a plain write: a command)."""
        _check(address)
        self._transfer(address, None, bytes(data), 0)

    def read_register(self, address: int, register: int, length: int = 1) -> bytes:
        """Read ``length`` bytes starting at ``register`` (the chip's pointer
        increments), in one combined transaction."""
        _check(address, register, length)
        return self._transfer(address, register, b"", length)

    def write_register(self, address: int, register: int, data: bytes | int) -> None:
        """Write ``data`` (bytes, or one byte as an int) starting at ``register``."""
        _check(address, register)
        payload = bytes([data]) if isinstance(data, int) else bytes(data)
        self._transfer(address, register, payload, 0)

    @abstractmethod
    def _transfer(self, address: int, register: int | None, data: bytes, length: int) -> bytes:
        """One transaction: write ``register`` (if any) and ``data``, then read
        ``length`` bytes (after a repeated start). I2CError on failure."""

    def close(self) -> None:  # noqa: B027  # most buses hold nothing
        """Release the bus (the agent does, when it stops)."""


class SMBusI2C(I2CBus):
    """``/dev/i2c-N`` through smbus2's ``I2C_RDWR`` (opened at first use)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"i2c-{number}"
        self._lock = threading.Lock()
        self._smbus: Any = None
        self._module: Any = None

    def _open(self) -> Any:
        if self._smbus is None:
            self._module = require_module("smbus2", install=_INSTALL, purpose=_PURPOSE)
            try:
                self._smbus = self._module.SMBus(self.number)
            except FileNotFoundError:
                raise SampleError(
                    f"there is no /dev/{self.name}. Fix: enable I²C (sudo raspi-config nonint "
                    "do_i2c 0, or dtparam=i2c_arm=on in /boot/firmware/config.txt) and reboot"
                ) from None
            except PermissionError:
                raise SampleError(
                    f"no permission to open /dev/{self.name}. Fix: add the agent's user to "
                    "the i2c group (sudo adduser USER i2c)"
                ) from None
        return self._smbus

    def _transfer(self, address: int, register: int | None, data: bytes, length: int) -> bytes:
        with self._lock:
            smbus = self._open()
            msg = self._module.i2c_msg
            head = (b"" if register is None else bytes([register])) + data
            messages = [msg.write(address, head)] if head or not length else []
            if length:
                messages.append(msg.read(address, length))
            try:
                smbus.i2c_rdwr(*messages)
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.EREMOTEIO):
                    raise I2CNack(self.name, address, register=register) from None
                problem = (
                    "the bus timed out (a chip holding SDA or SCL low? power-cycle it)"
                    if exc.errno == errno.ETIMEDOUT
                    else f"{exc.strerror or exc} (errno {exc.errno})"
                )
                raise I2CError(self.name, address, problem, register=register) from None
            return bytes(messages[-1]) if length else b""

    def close(self) -> None:
        with self._lock:
            if self._smbus is not None:
                self._smbus.close()
                self._smbus = None

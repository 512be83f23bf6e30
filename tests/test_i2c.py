"""The I²C bus seam: the register-map fake (pointer, hooks, faults, NACKs), the
smbus2 back end's errors, the relay a process-isolated instance uses, and how
a failed sample shows in status."""

from __future__ import annotations

import errno
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.errors import SampleError
from agent.extras import MissingExtra
from agent.i2c import I2CError, I2CNack, SMBusI2C
from agent.runtime.i2c_relay import relayed_buses, serve
from agent.testing import FakeI2CBus, FakeI2CDevice

NACK = "no acknowledgement (NACK): nothing answers at this address"


def test_registers_auto_increment_and_hooks_run() -> None:
    bus = FakeI2CBus(3)
    started: list[int] = []

    def measure(device: FakeI2CDevice, register: int, value: int) -> None:
        started.append(value)
        device.set_block(0x10, b"\x12\x34")

    reads: list[int] = []
    chip = bus.attach(
        0x40,
        FakeI2CDevice(
            {0x00: 0xAA, 0x01: 0xBB},
            on_write={0x02: measure},
            on_read={0x01: lambda device, register: reads.append(register)},
        ),
    )
    assert bus.read_register(0x40, 0x00, 2) == b"\xaa\xbb"
    assert reads == [0x01]
    assert bus.read(0x40, 1) == b"\x00"  # the pointer moved on to 0x02
    bus.write_register(0x40, 0x02, 0x07)
    assert started == [0x07] and bus.read_register(0x40, 0x10, 2) == b"\x12\x34"
    bus.write(0x40, b"\x20\x01\x02")  # a pointer, then two bytes
    assert chip.block(0x20, 2) == b"\x01\x02"
    assert chip.writes[-1] == b"\x20\x01\x02"
    bus.write_register(0x40, 0xFF, b"\x05\x06")  # the pointer wraps
    assert (chip.registers[0xFF], chip.registers[0x00]) == (0x05, 0x06)


def test_a_command_chip_answers_once_then_nacks() -> None:
    bus = FakeI2CBus(1)
    chip = bus.attach(0x44, FakeI2CDevice(on_command=lambda d, data: d.respond(data[::-1])))
    bus.write(0x44, b"\x01\x02")
    assert bus.read(0x44, 3) == b"\x02\x01\xff"  # a released bus reads as ones
    with pytest.raises(I2CNack):
        bus.read(0x44, 2)
    assert chip.writes == [b"\x01\x02"]


def test_absent_chips_and_injected_faults_name_bus_address_and_register() -> None:
    bus = FakeI2CBus(1)
    with pytest.raises(I2CNack, match="^i2c-1 address 0x50 register 0x0F: " + re.escape(NACK)):
        bus.read_register(0x50, 0x0F, 1)
    chip = bus.attach(0x50, FakeI2CDevice({0x0F: 1}))
    chip.fail_next(1, "io")
    chip.fail_next(1, "timeout")
    chip.fail_next(1, "nack")
    with pytest.raises(I2CError, match=r"^i2c-1 address 0x50 register 0x0F: Input/output"):
        bus.read_register(0x50, 0x0F)
    with pytest.raises(I2CError, match=r"^i2c-1 address 0x50: the bus timed out"):
        bus.write(0x50, b"\x00")
    with pytest.raises(I2CNack):
        bus.read(0x50, 1)
    assert bus.read_register(0x50, 0x0F) == b"\x01"  # the faults are used up
    chip.corrupt_next()
    assert bus.read_register(0x50, 0x0F) == b"\x00"
    chip.present = False
    with pytest.raises(I2CNack) as caught:
        bus.write_register(0x50, 0x01, 2)
    assert (caught.value.bus, caught.value.address, caught.value.register) == ("i2c-1", 0x50, 1)
    assert isinstance(caught.value, SampleError)  # a failed sample, in sample()


def test_bad_arguments_are_refused_before_the_bus() -> None:
    bus = FakeI2CBus(1)
    with pytest.raises(ValueError, match="outside 0x03…0x77"):
        bus.read(0x80, 1)
    with pytest.raises(ValueError, match="register 0x100 is not one byte"):
        bus.read_register(0x40, 0x100)
    with pytest.raises(ValueError, match="cannot read 0 bytes"):
        bus.read(0x40, 0)
    assert bus.transfers == 0


def test_smbus2_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smbus2", None)
    with pytest.raises(MissingExtra) as caught:
        SMBusI2C(1).read(0x76, 1)
    assert str(caught.value) == (
        "an I²C sensor needs smbus2, which is not installed. Fix: pip install 'lichen[i2c]'"
    )


def test_a_bus_the_kernel_does_not_have_says_how_to_enable_it() -> None:
    with pytest.raises(SampleError, match=r"there is no /dev/i2c-97\. Fix: enable I²C"):
        SMBusI2C(97).read_register(0x76, 0xD0)


class _Adapter:
    """Stands in for smbus2.SMBus: fails every transfer with ``errno``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.closed = False

    def i2c_rdwr(self, *messages: Any) -> None:
        raise OSError(self.code, "adapter says no")

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("code", "kind", "message"),
    [
        (errno.EREMOTEIO, I2CNack, NACK),
        (errno.ENXIO, I2CNack, NACK),
        (errno.ETIMEDOUT, I2CError, "the bus timed out (a chip holding SDA or SCL low?"),
        (errno.EIO, I2CError, f"adapter says no (errno {errno.EIO})"),
    ],
)
def test_kernel_errors_become_i2c_errors(code: int, kind: type[I2CError], message: str) -> None:
    import smbus2

    bus = SMBusI2C(1)
    bus._module, bus._smbus = smbus2, _Adapter(code)
    with pytest.raises(kind) as caught:
        bus.read_register(0x76, 0xF7, 8)
    assert type(caught.value) is kind
    assert str(caught.value).startswith(f"i2c-1 address 0x76 register 0xF7: {message}")
    adapter = bus._smbus
    bus.close()
    assert adapter.closed


def test_the_relay_carries_transfers_and_errors_to_another_process_end() -> None:
    bus = FakeI2CBus(1)
    chip = bus.attach(0x76, FakeI2CDevice({0xD0: 0x60}))
    ours, theirs = socket.socketpair()
    server = serve(ours, {1: bus}.__getitem__)
    relayed = relayed_buses(theirs.detach(), [1])[1]
    assert relayed.name == "i2c-1"
    assert relayed.read_register(0x76, 0xD0) == b"\x60"
    relayed.write_register(0x76, 0xF4, 0x25)
    assert chip.registers[0xF4] == 0x25
    with pytest.raises(I2CNack, match="^i2c-1 address 0x77 register 0xD0: " + re.escape(NACK)):
        relayed.read_register(0x77, 0xD0)
    chip.fail_next(1, "io")
    with pytest.raises(I2CError, match=r"^i2c-1 address 0x76: Input/output error \(errno 5\)$"):
        relayed.write(0x76, b"\x00")
    relayed.write(0x76, b"")  # an address probe
    assert chip.writes[-1] == b""
    relayed._stream.close()  # type: ignore[attr-defined]  # the child ends
    server.join(5)
    assert not server.is_alive()


def test_status_shows_failed_samples(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.status import _echo_sensor

    _echo_sensor(
        {
            "name": "air", "state": "running", "readings": 12, "restarts": 0,
            "last_error": None, "refused": 0, "sample_errors": 3,
            "last_sample_error": "i2c-1 address 0x44: CRC mismatch",
        }
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "restarts 0  sample errors 3" in out
    assert "last sample error: i2c-1 address 0x44: CRC mismatch" in out


def test_the_guides_i2c_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/plugins.md's worked I²C example: its plugin, installed as a distribution
    with an entry point, passes its test as the guide prints it."""
    guide = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text("utf-8")
    section = guide.split("### An I²C sensor, worked through", 1)[1].split("\n### ", 1)[0]
    plugin, test = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    site = tmp_path / "site"
    (site / "tmp102_example-0.1.dist-info").mkdir(parents=True)
    (site / "tmp102_example.py").write_text(plugin)
    (site / "tmp102_example-0.1.dist-info" / "entry_points.txt").write_text(
        "[lichen.sensors]\ntmp102 = tmp102_example:TMP102\n"
    )
    monkeypatch.syspath_prepend(str(site))
    namespace: dict[str, Any] = {}
    exec(compile(test, "docs/plugins.md", "exec"), namespace)
    namespace["test_tmp102"](tmp_path / "home")

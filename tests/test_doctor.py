"""``lichen doctor`` against fake system trees: a /proc, /sys, /dev, /boot and
/run built per test under a directory given as ``--sysroot`` (or
``LICHEN_SYSROOT``), with the real command run as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.doctor import Check, Doctor, config_txt_lines

from .conftest import LICHEN, run_lichen

PI4 = "Raspberry Pi 4 Model B Rev 1.4\x00"


def tree(root: Path, files: dict[str, str]) -> Path:
    """Make ``files`` (absolute path → contents; a trailing ``/`` a directory) under ``root``."""
    for path, text in files.items():
        target = root / path.lstrip("/")
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return root


def healthy_pi(root: Path, **extra: str) -> Path:
    return tree(
        root,
        {
            "/proc/device-tree/model": PI4,
            "/boot/firmware/config.txt": "# made by raspi-config\n[all]\n"
            "dtparam=i2c_arm=on\ndtoverlay=w1-gpio\nenable_uart=0\n",
            "/dev/i2c-1": "",
            "/sys/bus/w1/devices/w1_bus_master1/": "",
            "/sys/class/bluetooth/hci0/": "",
            "/sys/class/rfkill/rfkill0/type": "bluetooth\n",
            "/sys/class/rfkill/rfkill0/soft": "0\n",
            "/sys/class/rfkill/rfkill0/hard": "0\n",
            "/sys/class/rfkill/rfkill1/type": "wlan\n",
            "/sys/class/rfkill/rfkill1/soft": "0\n",
            "/sys/class/rfkill/rfkill1/hard": "0\n",
            "/sys/class/net/wlan0/wireless/": "",
            "/sys/class/rtc/rtc0/": "",
            "/run/systemd/timesync/synchronized": "",
            **extra,
        },
    )


def node(tmp_path: Path, board: str, extra: str = "") -> Path:
    home = tmp_path / "home"
    run_lichen("init", "--board", board, "--name", "field-1", home=home)
    config = home / "lichen.toml"
    text = config.read_text()
    if "[gpio]" in extra:  # one [gpio] table: the test's
        text = text.replace("[gpio]\n", "", 1)
    config.write_text(text + extra)
    return home


def doctor(home: Path, root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    environment = {**os.environ, "LICHEN_HOME": str(home), **(env or {})}
    command = [str(LICHEN), "doctor", *args]
    if env is None:
        command += ["--sysroot", str(root)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=environment, check=False
    )


def by_name(output: str) -> dict[str, dict[str, str]]:
    report = json.loads(output)
    return {c["name"]: c for c in report["checks"]}


PI_CONFIG = """
[gpio]
pin_factory = "mock"
buses = ["i2c1", "w1"]

[[sensors.bme280]]
name = "weather"

[[sensors.gpio_button]]
name = "door"
pin = 17
"""


def test_a_healthy_pi_passes(tmp_path: Path) -> None:
    home = node(tmp_path, "rpi-4", PI_CONFIG)
    root = healthy_pi(tmp_path / "root")
    result = doctor(home, root, "--json", env={"LICHEN_SYSROOT": str(root)})
    assert result.returncode == 0, result.stdout + result.stderr
    checks = by_name(result.stdout)
    assert json.loads(result.stdout)["ok"] is True
    assert {c["status"] for c in checks.values()} <= {"ok", "skip"}, checks
    assert checks["board"]["detail"] == "Raspberry Pi 4 Model B Rev 1.4: profile 'rpi-4'"
    assert "/dev/i2c-1" in checks["bus i2c1"]["detail"]
    assert checks["bus w1"]["status"] == "ok"
    assert checks["bluetooth"]["detail"] == "hci0" and checks["wifi"]["detail"] == "wlan0"
    assert checks["clock sync"]["status"] == checks["rtc"]["status"] == "ok"


@pytest.mark.slow
def test_each_problem_names_its_fix(tmp_path: Path) -> None:
    home = node(
        tmp_path,
        "rpi-4",
        PI_CONFIG
        + '\n[[transports.ble]]\nname = "ble"\nbackend = "bluez"\n'
        + '\n[[sensors.serial]]\nname = "gps"\nport = "/dev/serial0"\nbus = "uart0"\n',
    )
    root = healthy_pi(
        tmp_path / "root",
        **{
            "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
            # I²C not enabled at all; 1-Wire enabled but not applied (no reboot yet);
            # SPI enabled but not declared
            "/boot/firmware/config.txt": "dtoverlay=w1-gpio\ndtparam=spi=on\nenable_uart=1\n",
            "/dev/serial0": "",
            "/sys/class/rfkill/rfkill0/soft": "1\n",
            "/etc/systemd/system/lichen.service": "[Service]\n",
        },
    )
    (root / "dev/i2c-1").unlink()
    (root / "sys/bus/w1/devices/w1_bus_master1").rmdir()
    result = doctor(home, root, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = by_name(result.stdout)
    board = checks["board"]
    assert board["status"] == "fail" and "Raspberry Pi 5 Model B" in board["detail"]
    assert board["fix"] == 'board = "rpi-5" in [node] of lichen.toml'
    i2c = checks["bus i2c1"]
    assert i2c["status"] == "fail" and "/dev/i2c-1 is missing" in i2c["detail"]
    assert "dtparam=i2c_arm=on" in i2c["fix"] and "raspi-config nonint do_i2c 0" in i2c["fix"]
    w1 = checks["bus w1"]
    assert w1["status"] == "fail" and w1["fix"].startswith("reboot")
    assert checks["bus uart0"]["status"] == "ok"  # a serial sensor's bus, and /dev/serial0
    spi = checks["bus spi0"]
    assert spi["status"] == "warn" and spi["fix"] == 'add "spi0" to [gpio] buses'
    bluetooth = checks["bluetooth"]
    assert bluetooth["status"] == "fail" and bluetooth["fix"] == "rfkill unblock bluetooth"
    assert checks["service"] == {
        "name": "service",
        "status": "ok",
        "detail": "installed (etc/systemd/system/lichen.service)",
        "fix": "",
    }

    text = doctor(home, root)
    assert text.returncode == 1
    assert "FAIL  board" in text.stdout and "fix: rfkill unblock bluetooth" in text.stdout
    assert text.stdout.rstrip().endswith("4 problems, 1 warning")


@pytest.mark.slow
def test_a_generic_debian_board_with_an_i2c_sensor(tmp_path: Path) -> None:
    home = node(tmp_path, "generic", '\n[[sensors.bme280]]\nname = "weather"\nbus = 3\n')
    root = tree(tmp_path / "root", {"/sys/class/net/eth0/": ""})
    checks = by_name(doctor(home, root, "--json").stdout)
    assert checks["board"] == {
        "name": "board",
        "status": "ok",
        "detail": "profile 'generic' (no device-tree model)",
        "fix": "",
    }
    bus = checks["bus i2c3"]
    assert bus["status"] == "fail" and "/dev/i2c-3 is missing" in bus["detail"]
    assert "modprobe i2c-dev" in bus["fix"]
    assert checks["pin factory"]["status"] == "skip"
    assert checks["wifi"]["status"] == "skip"  # a wired machine is no problem
    tree(root, {"/dev/i2c-3": ""})
    result = doctor(home, root, "--json")
    assert by_name(result.stdout)["bus i2c3"]["status"] == "ok"


def test_a_missing_extra_names_the_pip_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = node(tmp_path, "rpi-4", PI_CONFIG)
    root = healthy_pi(tmp_path / "root")
    monkeypatch.setitem(sys.modules, "smbus2", None)  # Python's own "not installed"
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    checks = {c.name: c for c in run_doctor(home, root)}
    assert checks["extras: smbus2"] == Check(
        "extras: smbus2",
        "fail",
        'smbus2 is not installed; [[sensors.bme280]] "weather" need it',
        "pip install 'lichen[i2c]'",
    )
    assert checks["extras: gpiozero"].fix == "pip install 'lichen[gpio]'"


def run_doctor(home: Path, root: Path, now: float | None = None) -> list[Check]:
    config = load_config(home / "lichen.toml")
    clock = (lambda: now) if now is not None else None
    options: dict[str, Any] = {"now": clock} if clock else {}
    return Doctor(root=root, home=home, config=config, **options).run()


def test_the_pin_factory_on_a_pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = healthy_pi(tmp_path / "root")
    home = node(tmp_path, "rpi-4")  # no GPIO sensor yet: a warning
    monkeypatch.setitem(sys.modules, "lgpio", None)
    factory = {c.name: c for c in run_doctor(home, root)}["pin factory"]
    assert factory.status == "warn" and "lgpio" in factory.fix
    config = home / "lichen.toml"
    config.write_text(config.read_text() + '[[sensors.gpio_button]]\nname = "b"\npin = 17\n')
    factory = {c.name: c for c in run_doctor(home, root)}["pin factory"]
    assert factory.status == "fail" and factory.detail == "lgpio: lgpio is not installed"
    config.write_text(config.read_text().replace("[gpio]\n", '[gpio]\npin_factory = "rpigpio"\n'))
    config.write_text(config.read_text().replace('board = "rpi-4"', 'board = "rpi-5"'))
    tree(root, {"/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"})
    factory = {c.name: c for c in run_doctor(home, root)}["pin factory"]
    assert factory.status == "fail" and factory.fix == 'pin_factory = "lgpio" in [gpio]'


def test_a_bus_without_a_known_device_is_judged_by_config_txt(tmp_path: Path) -> None:
    """The Pi 4's extra UARTs get /dev/ttyAMA numbers in the order they are
    enabled: config.txt is what tells whether one is on."""
    home = node(tmp_path, "rpi-4", '\n[gpio]\nbuses = ["uart3"]\n')
    root = healthy_pi(tmp_path / "root")
    uart3 = {c.name: c for c in run_doctor(home, root)}["bus uart3"]
    assert uart3.status == "fail" and uart3.fix.startswith("add dtoverlay=uart3 to")
    tree(root, {"/boot/firmware/config.txt": "dtparam=i2c_arm=on\ndtoverlay=uart3\n"})
    uart3 = {c.name: c for c in run_doctor(home, root)}["bus uart3"]
    assert uart3.status == "ok" and "dtoverlay=uart3 in /boot/firmware/config.txt" in uart3.detail


@pytest.mark.slow
def test_a_clock_never_set_and_a_full_disk(tmp_path: Path) -> None:
    home = node(tmp_path, "rpi-zero-2w", '\n[retention]\nmin_free = "1000000GB"\n')
    root = tree(tmp_path / "root", {"/proc/device-tree/model": "Raspberry Pi Zero 2 W Rev 1.0"})
    checks = {c.name: c for c in run_doctor(home, root, now=86_400.0 * 365)}
    assert checks["clock"].status == "fail" and "1971" in checks["clock"].detail
    assert checks["clock sync"].status == "warn"  # no flag, and the root is not "/"
    assert checks["rtc"].status == "warn" and "RTC" in checks["rtc"].fix
    assert checks["disk"].status == "fail" and "min_free" in checks["disk"].detail
    assert checks["bluetooth"].status == "warn"  # the board has BLE, nothing uses it
    assert checks["wifi"].status == "warn" and "brcmfmac" in checks["wifi"].fix


@pytest.mark.slow
def test_no_configuration_is_a_problem_with_its_fix(tmp_path: Path) -> None:
    root = tree(tmp_path / "root", {})
    result = doctor(tmp_path / "nowhere", root, "--json")
    assert result.returncode == 1
    config = by_name(result.stdout)["config"]
    assert config["status"] == "fail" and "lichen --home" in config["detail"]
    home = node(tmp_path, "generic", "\n[gpio]\nbuses = 3\n")
    config = by_name(doctor(home, root, "--json").stdout)["config"]
    assert config["status"] == "fail" and "[gpio] buses" in config["detail"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dtparam=i2c_arm=on,spi=on # both\n", {"dtparam=i2c_arm=on", "dtparam=spi=on"}),
        (
            "#dtparam=i2c_arm=on\n\n[pi4]\ndtoverlay = w1-gpio,gpiopin=17\n",
            {"dtoverlay=w1-gpio,gpiopin=17"},
        ),
    ],
)
def test_config_txt_lines(text: str, expected: set[str]) -> None:
    assert config_txt_lines(text) == expected


def test_built_in_plugins_name_extras_that_exist() -> None:
    import tomllib

    from lichen_ble import BleTransport
    from lichen_ble.config import BleConfig
    from lichen_gpio import AnalogSensor, ButtonSensor, DistanceSensor
    from lichen_gpio.adc import AnalogConfig
    from lichen_gpio.distance import DistanceConfig
    from lichen_gpio.inputs import ButtonConfig
    from lichen_i2c import BME280Sensor
    from lichen_mqtt import MqttUplink
    from lichen_mqtt.config import MqttConfig
    from lichen_serial import SerialSensor
    from lichen_serial.sensor import SerialConfig

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    gpio, ble = {"gpiozero": "lichen[gpio]"}, {"bleak": "lichen[ble]", "bluezero": "lichen[ble]"}
    cases: list[tuple[Any, Any, dict[str, str]]] = [
        (BME280Sensor, BME280Sensor.Config(name="w"), {"smbus2": "lichen[i2c]"}),
        (ButtonSensor, ButtonConfig(name="b", pin=17), gpio),
        (AnalogSensor, AnalogConfig(name="a"), gpio),
        (DistanceSensor, DistanceConfig(name="d", echo=24, trigger=23), gpio),
        (SerialSensor, SerialConfig(name="s", port="loop://"), {"serial": "lichen[serial]"}),
        (MqttUplink, MqttConfig(name="c", broker="mqtt://h"), {"paho.mqtt.client": "lichen[mqtt]"}),
        (BleTransport, BleConfig(name="b", backend="bluez"), ble),
        (
            BleTransport,
            BleConfig(name="b", backend="bumble", hci="usb:0"),
            {"bumble": "lichen[ble-hci]"},
        ),
    ]
    for cls, config, expected in cases:
        assert dict(cls.requires(config)) == expected, cls
        for requirement in expected.values():
            assert requirement.removeprefix("lichen[").removesuffix("]") in extras

"""Make the repository's ``tests`` package (the Mosquitto helper) importable when
only the plugin's tests are collected, and give them a broker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.append(ROOT)

from tests.helpers.broker import Broker, start_broker  # noqa: E402


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, stopped by PID afterwards."""
    with start_broker(tmp_path / "broker") as broker:
        yield broker

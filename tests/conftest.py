"""Shared fixtures: temporary homes, identities, stores, and the real `lichen` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agent.clock import HybridClock
from agent.identity import Identity
from agent.store.log_store import LogStore

from .helpers.broker import Broker, start_broker

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=60,
    derandomize=True,
    print_blob=True,
)
settings.register_profile(  # make check: the inner loop, fewer examples
    "check", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=20
)
settings.register_profile(
    "soak", deadline=None, suppress_health_check=list(HealthCheck), max_examples=2000
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)

LICHEN = Path(sys.executable).with_name("lichen")


def seeded_identity(n: int) -> Identity:
    """A deterministic identity: seed = n repeated (for vectors and reproducible tests)."""
    return Identity(bytes([n]) * 32)


@pytest.fixture
def identity() -> Identity:
    return seeded_identity(1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore(tmp_path / "log.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> HybridClock:
    return HybridClock()


def run_lichen(
    *args: str, home: Path | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `lichen` console script as a real process."""
    env = dict(os.environ)
    env.pop("LICHEN_HOME", None)
    if home is not None:
        env["LICHEN_HOME"] = str(home)
    result = subprocess.run(
        [str(LICHEN), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lichen {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised node home (real `lichen init`)."""
    path = tmp_path / "node"
    run_lichen("init", "--board", "generic", "--name", "test-node", home=path)
    return path


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto broker on a free loopback port, stopped by PID afterwards."""
    with start_broker(tmp_path / "broker") as broker:
        yield broker

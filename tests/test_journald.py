"""Logs for journald: when stdout is the journal (``$JOURNAL_STREAM`` names its
device and inode) each line of a real `lichen run` carries its syslog priority
and no time of its own; a command's failure line on stderr is priority err;
anywhere else the lines keep their UTC time."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from agent.logs import JournalFormatter, LogfmtFormatter, is_journal, journal_priority

from .conftest import LICHEN, run_lichen

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=")


def _record(level: int, msg: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("lichen.test", level, __file__, 1, msg, None, None)
    record.fields = fields
    return record


def test_priorities_follow_sd_daemon():
    assert [journal_priority(lv) for lv in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
    line = JournalFormatter().format(_record(logging.ERROR, "sensor failed", sensor="probe"))
    assert line == '<3>level=error logger=lichen.test msg="sensor failed" sensor=probe'
    plain = LogfmtFormatter().format(_record(logging.WARNING, "slow"))
    assert STAMP.match(plain) and plain.endswith("level=warning logger=lichen.test msg=slow")


def test_is_journal_compares_device_and_inode(tmp_path: Path, monkeypatch):
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert is_journal(a) and not is_journal(b)
        assert not is_journal(io.StringIO())
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not is_journal(a)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not is_journal(a)


def _run(home: Path, out: Path, *, journal: Path | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LICHEN_HOME=str(home))
    env.pop("JOURNAL_STREAM", None)
    handle = out.open("wb")
    if journal is not None:
        st = os.stat(journal)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    return subprocess.Popen([str(LICHEN), "run"], env=env, stdout=handle, stderr=subprocess.STDOUT)


def _wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    import time

    deadline = time.monotonic() + 30
    while text not in (content := path.read_text()):
        assert process.poll() is None, content
        assert time.monotonic() < deadline, content
        time.sleep(0.05)
    return content


@pytest.mark.slow
def test_lichen_run_writes_priorities_and_no_times_to_the_journal(tmp_path: Path):
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "journal", home=home)
    out = tmp_path / "stdout"
    out.touch()
    process = _run(home, out, journal=out)
    try:
        _wait_for_line(out, "msg=started", process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    lines = [ln for ln in out.read_text().splitlines() if ln]
    assert lines and all(re.match(r"^<[2-7]>level=", ln) for ln in lines), lines
    started = next(ln for ln in lines if "msg=started" in ln)
    assert started.startswith("<6>level=info logger=lichen.agent msg=started")
    assert not any(STAMP.match(ln[3:]) for ln in lines)  # journald's time, not ours


@pytest.mark.slow
def test_elsewhere_lines_keep_their_time(tmp_path: Path):
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "plain", home=home)
    out, other = tmp_path / "stdout", tmp_path / "other"
    other.touch()
    process = _run(home, out, journal=other)  # JOURNAL_STREAM names another file
    try:
        _wait_for_line(out, "msg=started", process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    lines = [ln for ln in out.read_text().splitlines() if ln]
    assert lines and all(STAMP.match(ln) for ln in lines), lines


@pytest.mark.slow
def test_a_failed_start_says_why_at_priority_err(tmp_path: Path):
    home = tmp_path / "home"
    run_lichen("init", "--board", "sim", "--name", "bad", home=home)
    config = home / "lichen.toml"
    config.write_text(config.read_text().replace('durability = "normal"', 'durability = "x"'))
    out = tmp_path / "stdout"
    out.touch()
    process = _run(home, out, journal=out)
    assert process.wait(30) == 2
    text = out.read_text()
    assert text.startswith("<3>lichen: configuration error: "), text
    assert "durability" in text

"""Serial bridge benchmark: frames read and decoded per second, against raw reads.

A socat pty pair stands in for the cable (started and stopped here). A
writer thread pushes N READINGS frames — three channels each, as a weather
station sends them — into one end; the other end is read with pyserial,
exactly as ``lichen_serial.link.SerialLink`` reads it:

* raw: pyserial reads until every byte has arrived (the limit of the
  transport, measured in the same run);
* decoded: the same reads, each chunk fed to ``FrameDecoder`` and every
  event drained, until all N readings are out.

Both are wall-clock rates from the first byte written to the last frame
out, best of a few interleaved rounds, so the ratio is what decoding costs
on top of reading. A pty moves tens of MB/s — no serial line does — so that
ratio is small and has no target: it shows where the time goes (pure-Python
decoding, ~10 µs a frame, against a memcpy). The target is on the second
line: the decoder alone, on bytes in memory, against everything a
115200-baud line can carry. "≥ 10" means a saturated line costs at most a
tenth of one core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lichen_serial.frames import NEED_DATA, FrameDecoder, Readings
from lichen_serial.payloads import FrameEncoder, RawValue, Status

from .common import Result, best_rate

ROUNDS = 3
LINE_BAUD = 115_200  # 8N1: ten bits on the line per byte


def _stream(count: int) -> bytes:
    """``count`` READINGS frames of a climate device, values drifting like real ones."""
    encoder = FrameEncoder(boot_id=0x2024)
    frames = []
    for i in range(count):
        values = [
            RawValue(0, 2000 + (i * 7) % 500),  # temperature, 0.01 °C
            RawValue(1, 450 + (i * 3) % 300),  # humidity, 0.1 %
            RawValue(2, (i // 50) % 2, Status.OK),  # door
        ]
        frames.append(encoder.readings(values))
    return b"".join(frames)


class _Pty:
    """socat joining pty ``writer`` to pty ``reader``; stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("the serial benchmark needs socat (apt-get install socat)")
        self.writer, self.reader = directory / "writer", directory / "reader"
        self.process = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.writer}", f"pty,raw,echo=0,link={self.reader}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (self.writer.exists() and self.reader.exists()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("socat did not create its ptys")
            time.sleep(0.01)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _write_all(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:65536]) :]
    finally:
        os.close(fd)


def _timed_transfer(pty: _Pty, port: Any, data: bytes, consume: Callable[[bytes], bool]) -> float:
    """Seconds from the first byte written until ``consume`` says it has everything."""
    port.reset_input_buffer()
    writer = threading.Thread(target=_write_all, args=(pty.writer, data))
    started = time.perf_counter()
    writer.start()
    done = False
    deadline = started + 120
    while not done:
        chunk = port.read(port.in_waiting or 1)
        done = consume(chunk)
        if time.perf_counter() > deadline:
            raise RuntimeError("the pty stopped delivering")
    elapsed = time.perf_counter() - started
    writer.join()
    return elapsed


def _raw_seconds(pty: _Pty, port: Any, data: bytes) -> float:
    received = 0

    def consume(chunk: bytes) -> bool:
        nonlocal received
        received += len(chunk)
        return received >= len(data)

    return _timed_transfer(pty, port, data, consume)


def _decoded_seconds(pty: _Pty, port: Any, data: bytes, frames: int) -> float:
    decoder = FrameDecoder()
    readings = 0

    def consume(chunk: bytes) -> bool:
        nonlocal readings
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, Readings):
                readings += 1
        return readings >= frames

    seconds = _timed_transfer(pty, port, data, consume)
    if decoder.stats.crc_errors or decoder.stats.malformed or decoder.stats.lost:
        raise RuntimeError(f"the pty corrupted frames: {decoder.stats}")
    return seconds


def _in_memory_rate(data: bytes, frames: int) -> float:
    """Frames/s of the decoder alone, fed 4 KiB pieces as a busy port delivers them."""
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]

    def decode(_n: int) -> None:
        decoder = FrameDecoder()
        for piece in pieces:
            decoder.receive_data(piece)
            while decoder.next_event() is not NEED_DATA:
                pass

    return best_rate(decode, frames, repeats=ROUNDS)


def bench_serial(quick: bool) -> list[Result]:
    import serial  # the serial extra; the benchmark needs it like the plugin does

    frames = 20_000 if quick else 200_000
    data = _stream(frames)
    frame_bytes = len(data) / frames
    raw_best = decoded_best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        pty = _Pty(Path(tmp))
        try:
            port = serial.Serial(str(pty.reader), 115200, timeout=0.5)
            try:
                for _ in range(ROUNDS):  # interleaved: both see the same machine
                    raw_best = min(raw_best, _raw_seconds(pty, port, data))
                    decoded_best = min(decoded_best, _decoded_seconds(pty, port, data, frames))
            finally:
                port.close()
        finally:
            pty.stop()
    raw_rate, decoded_rate = frames / raw_best, frames / decoded_best
    memory_rate = _in_memory_rate(data, frames)
    line_rate = LINE_BAUD / 10 / frame_bytes
    return [
        Result(
            "serial",
            "frames/s read+decoded over a pty",
            decoded_rate,
            "/s",
            "raw pyserial read",
            raw_rate,
            "",
        ),
        Result(
            "serial",
            f"frames/s decoder alone ({frame_bytes:.0f} B)",
            memory_rate,
            "/s",
            "115200-baud line",
            line_rate,
            "≥ 10",
        ),
        Result(
            "serial",
            "µs per frame decoded",
            1e6 / memory_rate,
            "µs",
            "raw read µs/frame",
            1e6 / raw_rate,
            "",
        ),
    ]

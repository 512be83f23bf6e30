"""The Sensirion SHT3x's words, checksums and conversions: bytes in, values out, no I/O.

From the SHT3x-DIS datasheet: a single-shot measurement is a 16-bit command
(section 4.3, table 9), answered with two 16-bit words — temperature, then
humidity — each followed by its CRC-8 (section 4.12: polynomial 0x31,
initialisation 0xFF, no reflection, no final XOR; 0xBEEF gives 0x92), and
converted by section 4.13: T = -45 + 175·S/65535 °C, RH = 100·S/65535 %.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "MEASURE",
    "MEASURE_S",
    "SOFT_RESET",
    "Repeatability",
    "crc8",
    "parse_measurement",
]

Repeatability = Literal["high", "medium", "low"]

#: single shot, clock stretching disabled (table 9): the chip NACKs reads until done
MEASURE: dict[Repeatability, bytes] = {
    "high": b"\x24\x00",
    "medium": b"\x24\x0b",
    "low": b"\x24\x16",
}
#: the longest a measurement takes (table 4: 15, 6 and 4 ms), with a millisecond spare
MEASURE_S: dict[Repeatability, float] = {"high": 0.016, "medium": 0.007, "low": 0.005}
#: soft reset (section 4.9); the chip is ready again within 1.5 ms
SOFT_RESET = b"\x30\xa2"


def crc8(data: bytes) -> int:
    """The SHT3x's CRC-8 of ``data``: polynomial x⁸ + x⁵ + x⁴ + 1 (0x31), initial
    value 0xFF, MSB first, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def parse_measurement(data: bytes) -> tuple[float, float]:
    """``(°C, %RH)`` from the 6 bytes of a measurement; ValueError naming the word
    whose checksum does not match."""
    if len(data) != 6:
        raise ValueError(f"a measurement is 6 bytes, got {len(data)}")
    for offset, word in ((0, "temperature"), (3, "humidity")):
        expected = crc8(data[offset : offset + 2])
        if data[offset + 2] != expected:
            raise ValueError(
                f"CRC mismatch in the {word} word 0x{data[offset]:02X}{data[offset + 1]:02X}: "
                f"got 0x{data[offset + 2]:02X}, expected 0x{expected:02X} (noise on the bus? "
                "check the pull-ups and the cable length)"
            )
    raw_t = (data[0] << 8) | data[1]
    raw_rh = (data[3] << 8) | data[4]
    return -45 + 175 * raw_t / 65535, 100 * raw_rh / 65535

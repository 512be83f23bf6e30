"""The chip side of an MCP3xxx ADC on gpiozero's mock SPI, for tests.

gpiozero's ``MockFactory`` serves every SPI interface — hardware port/device
too — as software SPI over mock pins (SCLK 11, MOSI 10, MISO 9, CE0 8, CE1 7).
:class:`MockMCP3xxx` hangs on those pins as gpiozero's ``MockSPIDevice`` and
answers conversions the way the datasheets describe, from raw codes a test
sets per channel:

* MCP3004/3008, 3204/3208, 3302/3304: after the start bit come the mode bit
  (1 single-ended, 0 differential) and three channel bits; the chip answers
  with a sample bit, a null bit and the result, MSB first (a sign bit first on
  the 33xx, whose differential result is 13-bit two's complement);
* MCP3002/3202: the same with one channel bit (and an MSB-first bit the chip
  clocks in while it samples);
* MCP3001/3201/3301: no command; the result follows two sample bits and a
  null bit from the moment the chip is selected.
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockSPIDevice

from lichen_gpio.adc import CHIPS

__all__ = ["MockMCP3xxx", "expected_value"]

SCLK, MOSI, MISO = 11, 10, 9
CE = {0: 8, 1: 7}


class MockMCP3xxx(MockSPIDevice):  # type: ignore[misc]
    """An MCP3xxx answering with ``codes[channel]`` (raw counts)."""

    def __init__(
        self,
        factory: Any,
        chip: str,
        *,
        device: int = 0,
        pins: tuple[int, int, int, int] | None = None,
    ) -> None:
        """On hardware SPI's pins with chip select ``device``, or on software SPI's
        ``pins`` (clock, mosi, miso, select)."""
        clock, mosi, miso, select = pins or (SCLK, MOSI, MISO, CE[device])
        super().__init__(clock, mosi, miso, select, pin_factory=factory)
        count, self.bits, self.one_channel = CHIPS[chip]
        self.signed = chip.startswith("MCP33")
        self.channel_bits = 1 if count == 2 else 3
        self.codes = [0] * max(count, 2)
        self.conversions = 0
        self._stage = "idle"
        self._single = True
        self._channel = 0
        self._got = 0

    def _result(self, single: bool, channel: int) -> int:
        if single:
            return self.codes[channel]
        difference = self.codes[channel] - self.codes[channel ^ 1]
        low = -(1 << self.bits) if self.signed else 0
        return max(low, min((1 << self.bits) - 1, difference))

    def _answer(self, code: int, leading: int) -> None:
        width = self.bits + (1 if self.signed else 0)
        self.tx_word(code & ((1 << width) - 1), width + leading)
        self.conversions += 1

    def on_start(self) -> None:
        super().on_start()
        self._stage = "idle"
        if self.one_channel:  # answers at once: 2 sample bits and a null bit first
            self._answer(self._result(False, 0), 3)

    def on_bit(self) -> None:
        if self.one_channel:
            return
        bit = self.rx_buf[-1]
        if self._stage == "idle":
            if bit:
                self._stage = "mode"
        elif self._stage == "mode":
            self._single, self._channel, self._got = bool(bit), 0, 0
            self._stage = "channel"
        elif self._stage == "channel":
            self._channel = self._channel << 1 | bit
            self._got += 1
            if self._got == self.channel_bits:
                self._stage = "answer"
                self._answer(self._result(self._single, self._channel), 2)


def expected_value(code: int, bits: int) -> float:
    """gpiozero's ``value`` for a raw code of a ``bits``-bit converter."""
    low, span = -(1 << bits), (1 << (bits + 1)) - 1
    return 2 * (code - low) / span - 1

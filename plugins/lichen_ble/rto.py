"""The link's retransmission timeout: TCP's estimator (RFC 6298), without I/O.

>>> timer = RetransmitTimer(initial=1.0, minimum=0.2, maximum=8.0)
>>> timer.progress(0.1); round(timer.rto, 3)    # srtt 0.1, rttvar 0.05
0.3
>>> round(timer.back_off(), 3), round(timer.back_off(), 3)  # doubled on each expiry
(0.6, 1.2)
>>> timer.progress(None); round(timer.rto, 3)   # progress ends the backoff (5.7)
0.3
"""

from __future__ import annotations

__all__ = ["RetransmitTimer"]


class RetransmitTimer:
    """Smoothed round-trip time plus four deviations, within ``minimum`` …
    ``maximum`` seconds; doubled by :meth:`back_off`. Samples come only from
    segments sent once (Karn's rule is the caller's: it passes None otherwise)."""

    def __init__(self, initial: float, minimum: float, maximum: float) -> None:
        self.rto, self.minimum, self.maximum = initial, minimum, maximum
        self._srtt: float | None = None
        self._rttvar = 0.0

    def progress(self, sample: float | None) -> None:
        """New data was acknowledged; ``sample`` is its round trip, if it counts."""
        if sample is not None:
            if self._srtt is None:
                self._srtt, self._rttvar = sample, sample / 2
            else:
                self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
                self._srtt = 0.875 * self._srtt + 0.125 * sample
        if self._srtt is not None:
            self.rto = min(self.maximum, max(self.minimum, self._srtt + 4 * self._rttvar))

    def back_off(self) -> float:
        """The timer expired: double the timeout (up to ``maximum``); the new one."""
        self.rto = min(self.rto * 2, self.maximum)
        return self.rto

    def opened(self) -> None:
        """The link opened: forget the backoff of the OPEN exchange (1 s at most)."""
        self.rto = max(self.minimum, min(self.rto, 1.0))

"""A clock tests move by hand."""

from __future__ import annotations

import threading


class FakeClock:
    """Implements :class:`kansoku.clock.Clock`. ``sleep`` advances time instead of waiting.

    >>> clock = FakeClock(start=100.0)
    >>> clock.sleep(2.5); clock.monotonic()
    102.5
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now_ns(self) -> int:
        with self._lock:
            return int(self._now * 1e9)

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

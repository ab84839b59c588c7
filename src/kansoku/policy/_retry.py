"""Retry limits: a server's ``Retry-After``, a retry budget, and a deadline over all attempts.

Backoff says how long to wait; these say whether to retry at all. A budget keeps retries a
fraction of traffic so that a failing upstream does not get its load multiplied, and a deadline
covers every attempt so that a caller's timeout is never stretched by retries.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_tz

from kansoku.clock import Clock

MAX_RETRY_AFTER_S = 300.0
"""A server asking for more than this is treated as asking for this: a caller's deadline is
shorter anyway, and a bogus or hostile header must not park a request for hours."""

# Delta-seconds is 1*DIGIT in RFC 9110; a fraction is accepted because OpenAI-style servers send
# one, and the -ms variant is fractional by nature. No sign, exponent, "inf" or "nan".
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now_s: float, *, max_s: float = MAX_RETRY_AFTER_S) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when it gives no usable advice.

    ``value`` is delta-seconds (``"120"``) or an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``,
    also the obsolete RFC 850 and asctime forms). ``now_s`` is wall-clock epoch seconds, since a
    date is wall time. A date in the past gives ``0.0``, not None: the header is valid and says
    "now" (a server clock slightly behind ours is the usual cause). Garbage or a negative number
    gives None; anything longer than ``max_s`` gives ``max_s``.
    """
    if value is None:
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return min(float(text), max_s)
    moment = _http_date(text)
    if moment is None:
        return None
    return min(max(0.0, moment - now_s), max_s)


def parse_retry_after_ms(value: str | None, *, max_s: float = MAX_RETRY_AFTER_S) -> float | None:
    """Seconds from a ``retry-after-ms`` value (milliseconds, as OpenAI and Azure send it)."""
    if value is None or not _NUMBER.fullmatch(text := value.strip()):
        return None
    return min(float(text) / 1000.0, max_s)


def retry_after_from_headers(
    headers: Mapping[str, str], now_s: float, *, max_s: float = MAX_RETRY_AFTER_S
) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` when usable (finer), else ``retry-after``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = parse_retry_after_ms(lowered.get("retry-after-ms"), max_s=max_s)
    if millis is not None:
        return millis
    return parse_retry_after(lowered.get("retry-after"), now_s, max_s=max_s)


def _http_date(text: str) -> float | None:
    try:
        parts = parsedate_tz(text)
        if parts is None:
            return None
        # HTTP-dates are always GMT; a missing zone is GMT, not local time.
        offset = parts[9] or 0
        # datetime() refuses what parsedate_tz lets through, such as 32 October or hour 25.
        moment = datetime(*parts[:6], tzinfo=UTC)
        return moment.timestamp() - offset
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class BudgetStats:
    in_flight: int
    acquired: int
    rejected: int


class RetryBudget:
    """Concurrent retries stay at or under ``max(minimum, ratio * active)`` (Envoy's rule).

    ``active`` is the caller's count of requests in flight to the same upstream. The minimum
    keeps retries possible at low traffic, where a ratio alone would round to none.
    """

    def __init__(self, ratio: float = 0.2, minimum: int = 3) -> None:
        if not (math.isfinite(ratio) and ratio >= 0.0):
            raise ValueError(f"ratio must be a finite number >= 0, got {ratio}")
        if minimum < 0:
            raise ValueError(f"minimum must be >= 0, got {minimum}")
        self.ratio = ratio
        self.minimum = minimum
        self._lock = threading.Lock()
        self._in_flight = 0
        self._acquired = 0
        self._rejected = 0

    def limit(self, active: int) -> int:
        # Floor, so that float error can only refuse a retry, never admit one over the bound.
        return max(self.minimum, math.floor(self.ratio * max(0, active)))

    def try_acquire(self, active: int) -> bool:
        """Take a retry slot if the budget allows; every True must be paired with ``release()``."""
        with self._lock:
            if self._in_flight >= self.limit(active):
                self._rejected += 1
                return False
            self._in_flight += 1
            self._acquired += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._in_flight == 0:
                raise RuntimeError("RetryBudget.release() without a matching try_acquire()")
            self._in_flight -= 1

    def stats(self) -> BudgetStats:
        with self._lock:
            return BudgetStats(self._in_flight, self._acquired, self._rejected)


class Deadline:
    """A time budget for a whole request, every attempt and wait included (monotonic time)."""

    def __init__(self, total_s: float, clock: Clock) -> None:
        if not total_s >= 0.0:
            raise ValueError(f"total_s must be >= 0, got {total_s}")
        self._clock = clock
        self.total_s = total_s
        self.ends_at = clock.monotonic() + total_s

    def remaining(self) -> float:
        return max(0.0, self.ends_at - self._clock.monotonic())

    def expired(self) -> bool:
        return self._clock.monotonic() >= self.ends_at

    def attempt_timeout(self, per_attempt_s: float) -> float:
        """The timeout for the next attempt: its own limit, cut to what the deadline leaves."""
        return min(per_attempt_s, self.remaining())


def should_retry(
    attempt: int,
    max_attempts: int,
    retryable: bool,
    deadline: Deadline | None,
    next_delay_s: float,
) -> bool:
    """Whether to make another attempt after ``attempt`` attempts (1-based) have failed.

    Refused when the failure is not retryable, the attempts are used up, or the retry would start
    (after ``next_delay_s``) at or past the deadline, where it could only time out at once.
    """
    if not retryable or attempt >= max_attempts:
        return False
    return deadline is None or next_delay_s < deadline.remaining()

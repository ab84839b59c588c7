"""Retry delays: full-jitter exponential backoff, pure functions of the attempt number."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FullJitter:
    """Delay for retry ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]``.

    Full jitter spreads retries of many clients evenly, which avoids synchronized retry storms
    against a recovering destination.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        # Cap the exponent so huge attempt numbers cannot overflow.
        return min(self.cap, self.base * float(2 ** min(attempt, 62)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before retry ``attempt``; a server's ``Retry-After`` wins when it is longer."""
        wait: float = self.rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait

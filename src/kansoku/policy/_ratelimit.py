"""Rate limits as values: a token bucket and an exact sliding window (the registry is ``_limiter``).

Each limit is a frozen config plus pure functions ``(state, amount, now) -> (Decision, state)``
over a small serialisable state, so they are tested with explicit times and the same state can
later live in Redis (updated by atomic scripts) to hold exactly across gateway replicas.
Missing state (``None``) means "fresh": a full bucket, an empty window.

Costs above what a limit can ever hold are refused with ``retry_after_s=None`` ("never"), not
``inf``: a gateway answers those with an error of its own and no ``Retry-After`` header.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


def check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_amount(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _earliest(now: float, guess: float, ok: Callable[[float], bool]) -> float:
    """The smallest delay near ``guess`` with ``ok(now + delay)``, as the caller will compute it.

    The closed-form delay can miss by an ulp once ``now + delay`` is rounded; stepping up until
    the very expression that ``take`` evaluates holds makes "retry at now + retry_after" succeed.
    """
    delay = max(0.0, guess)
    step = math.ulp(max(abs(now), delay, 1.0))
    while not ok(now + delay):
        delay += step
        step *= 2  # a few ulps at most in practice; doubling bounds the loop regardless
    return delay


@dataclass(frozen=True, slots=True)
class Decision:
    """One limit's answer. ``remaining`` is what is left after this take (never below 0: a debt
    from :meth:`charge` shows as 0); ``retry_after_s`` is 0 when allowed, the exact wait until
    the same cost would be allowed when refused, or ``None`` when it never will be."""

    allowed: bool
    remaining: float
    retry_after_s: float | None


class BucketState(NamedTuple):
    tokens: float  # may be negative after a charge: the debt delays later takes
    updated_s: float


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled continuously at ``refill_per_s``.

    Over any interval of length T it admits at most ``capacity + refill_per_s * T``.
    """

    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        check_positive("capacity", self.capacity)
        check_positive("refill_per_s", self.refill_per_s)

    def _level(self, state: BucketState, now: float) -> float:
        # A clock that steps back (another replica, NTP) must not add or remove tokens.
        elapsed = max(0.0, now - state.updated_s)
        return min(self.capacity, state.tokens + elapsed * self.refill_per_s)

    def _settled(self, state: BucketState | None, now: float, tokens: float) -> BucketState:
        updated = now if state is None else max(state.updated_s, now)
        return BucketState(tokens, updated)

    def take(self, state: BucketState | None, cost: float, now: float) -> tuple[Decision, BucketState]:
        """Take ``cost`` tokens if available. A refused take returns the state unchanged."""
        check_amount("cost", cost)
        state = BucketState(self.capacity, now) if state is None else state
        level = self._level(state, now)
        if level >= cost:
            return Decision(True, max(0.0, level - cost), 0.0), self._settled(state, now, level - cost)
        if cost > self.capacity:
            return Decision(False, max(0.0, level), None), state
        guess = state.updated_s + (cost - state.tokens) / self.refill_per_s - now
        wait = _earliest(now, guess, lambda t: self._level(state, t) >= cost)
        return Decision(False, max(0.0, level), wait), state

    def refund(self, state: BucketState | None, amount: float, now: float) -> BucketState:
        """Give back tokens taken on an over-estimate (never above ``capacity``)."""
        check_amount("amount", amount)
        if state is None:
            return BucketState(self.capacity, now)
        return self._settled(state, now, min(self.capacity, self._level(state, now) + amount))

    def charge(self, state: BucketState | None, amount: float, now: float) -> BucketState:
        """Take tokens used beyond an estimate, unconditionally: the balance may go negative."""
        check_amount("amount", amount)
        level = self.capacity if state is None else self._level(state, now)
        return self._settled(state, now, level - amount)

    def idle(self, state: BucketState, now: float) -> bool:
        """Full again: dropping the state loses nothing, since missing state means full."""
        return self._level(state, now) >= self.capacity

    def used(self, state: BucketState | None, now: float) -> float:
        """Tokens missing at ``now`` (``capacity`` minus the level after refill): a reading, no take.

        Above ``capacity`` while a :meth:`charge` left a debt.
        """
        return 0.0 if state is None else self.capacity - self._level(state, now)


WindowState = tuple[tuple[float, float], ...]
"""``(timestamp_s, weight)`` pairs, oldest first; an entry counts while ``now - ts < window_s``."""


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """At most ``limit`` (requests, or tokens when weighted) in every interval of ``window_s``.

    A log of weighted timestamps rather than a two-bucket counter: the counter assumes the
    previous bucket's traffic was spread evenly and so over-admits by up to its share, while the
    log is exact, including a burst at the end of one window followed by one at the start of the
    next. ``resolution_s`` > 0 bounds the log to ``window_s / resolution_s`` entries by folding a
    take into the newest entry when it is that close; folding moves weight later, which only
    ever refuses more, never admits more.
    """

    limit: float
    window_s: float
    resolution_s: float = 0.0

    def __post_init__(self) -> None:
        check_positive("limit", self.limit)
        check_positive("window_s", self.window_s)
        check_amount("resolution_s", self.resolution_s)

    def _live(self, state: WindowState, now: float) -> WindowState:
        return tuple(e for e in state if now - e[0] < self.window_s)

    def _used(self, state: WindowState, now: float) -> float:
        return sum(w for ts, w in state if now - ts < self.window_s)

    def _append(self, live: WindowState, weight: float, now: float) -> WindowState:
        if weight <= 0:
            return live
        if live:
            last_ts, last_w = live[-1]
            if now - last_ts <= self.resolution_s:
                return (*live[:-1], (max(now, last_ts), last_w + weight))
            # Keep the log sorted even when the clock steps back: an entry living longer is safe.
            now = max(now, last_ts)
        return (*live, (now, weight))

    def take(self, state: WindowState | None, cost: float, now: float) -> tuple[Decision, WindowState]:
        """Record ``cost`` if the window has room. A refused take returns the state unchanged."""
        check_amount("cost", cost)
        state = () if state is None else state
        live = self._live(state, now)
        used = sum(w for _, w in live)
        if used + cost <= self.limit:
            return Decision(True, max(0.0, self.limit - used - cost), 0.0), self._append(live, cost, now)
        if cost > self.limit:
            return Decision(False, max(0.0, self.limit - used), None), state
        # Entries leave oldest first; find the one whose expiry frees enough room.
        excess = used + cost - self.limit
        freed, expiry = 0.0, live[-1][0]  # cost <= limit: once every entry left, it fits
        for ts, w in live:
            freed += w
            if freed >= excess:
                expiry = ts
                break
        guess = expiry + self.window_s - now
        wait = _earliest(now, guess, lambda t: self._used(state, t) + cost <= self.limit)
        return Decision(False, max(0.0, self.limit - used), wait), state

    def refund(self, state: WindowState | None, amount: float, now: float) -> WindowState:
        """Remove weight of an over-estimate, from the oldest live entries.

        The estimate's own entry is unknown here; taking from older ones (which expire sooner)
        can only keep weight counted longer than exact accounting would, never shorter.
        """
        check_amount("amount", amount)
        kept: list[tuple[float, float]] = []
        for ts, w in self._live(state or (), now):
            take = min(w, amount)
            amount -= take
            if w - take > 0:
                kept.append((ts, w - take))
        return tuple(kept)

    def charge(self, state: WindowState | None, amount: float, now: float) -> WindowState:
        """Record use beyond an estimate, unconditionally: the window may go over its limit."""
        check_amount("amount", amount)
        return self._append(self._live(state or (), now), amount, now)

    def idle(self, state: WindowState, now: float) -> bool:
        """Every entry has left the window: the state equals a fresh one."""
        return not self._live(state, now)

    def used(self, state: WindowState | None, now: float) -> float:
        """What counts in the window at ``now``, the sum :meth:`take` compares with ``limit``."""
        return 0.0 if state is None else float(self._used(state, now))  # weights may be ints


RateLimit = TokenBucket | SlidingWindow

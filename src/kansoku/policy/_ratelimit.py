"""Rate limits as values: a token bucket, an exact sliding window, and a registry over them.

Each limit is a frozen config plus pure functions ``(state, amount, now) -> (Decision, state)``
over a small serialisable state, so they are tested with explicit times and the same state can
later live in Redis (updated by atomic scripts) to hold exactly across gateway replicas.
Missing state (``None``) means "fresh": a full bucket, an empty window.

Costs above what a limit can ever hold are refused with ``retry_after_s=None`` ("never"), not
``inf``: a gateway answers those with an error of its own and no ``Retry-After`` header.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from kansoku.clock import SYSTEM_CLOCK, Clock


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _amount(name: str, value: float) -> None:
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
        _positive("capacity", self.capacity)
        _positive("refill_per_s", self.refill_per_s)

    def _level(self, state: BucketState, now: float) -> float:
        # A clock that steps back (another replica, NTP) must not add or remove tokens.
        elapsed = max(0.0, now - state.updated_s)
        return min(self.capacity, state.tokens + elapsed * self.refill_per_s)

    def _settled(self, state: BucketState | None, now: float, tokens: float) -> BucketState:
        updated = now if state is None else max(state.updated_s, now)
        return BucketState(tokens, updated)

    def take(self, state: BucketState | None, cost: float, now: float) -> tuple[Decision, BucketState]:
        """Take ``cost`` tokens if available. A refused take returns the state unchanged."""
        _amount("cost", cost)
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
        _amount("amount", amount)
        if state is None:
            return BucketState(self.capacity, now)
        return self._settled(state, now, min(self.capacity, self._level(state, now) + amount))

    def charge(self, state: BucketState | None, amount: float, now: float) -> BucketState:
        """Take tokens used beyond an estimate, unconditionally: the balance may go negative."""
        _amount("amount", amount)
        level = self.capacity if state is None else self._level(state, now)
        return self._settled(state, now, level - amount)

    def idle(self, state: BucketState, now: float) -> bool:
        """Full again: dropping the state loses nothing, since missing state means full."""
        return self._level(state, now) >= self.capacity


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
        _positive("limit", self.limit)
        _positive("window_s", self.window_s)
        _amount("resolution_s", self.resolution_s)

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
        _amount("cost", cost)
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
        _amount("amount", amount)
        kept: list[tuple[float, float]] = []
        for ts, w in self._live(state or (), now):
            take = min(w, amount)
            amount -= take
            if w - take > 0:
                kept.append((ts, w - take))
        return tuple(kept)

    def charge(self, state: WindowState | None, amount: float, now: float) -> WindowState:
        """Record use beyond an estimate, unconditionally: the window may go over its limit."""
        _amount("amount", amount)
        return self._append(self._live(state or (), now), amount, now)

    def idle(self, state: WindowState, now: float) -> bool:
        """Every entry has left the window: the state equals a fresh one."""
        return not self._live(state, now)


RateLimit = TokenBucket | SlidingWindow


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit applied to one subject, e.g. ``Rule("user", "u-42", TokenBucket(60, 1))``.

    ``cost`` fixes what a check takes from this rule (1 for a requests limit checked together
    with a tokens limit); ``None`` takes the check's own cost and makes the rule reconcilable.
    """

    scope: str
    key: str
    limit: RateLimit
    cost: float | None = None

    @property
    def state_key(self) -> tuple[str, str, RateLimit]:
        # The limit is part of the key, so a requests and a tokens limit on one subject do not
        # collide, and a changed configuration starts from fresh state.
        return (self.scope, self.key, self.limit)


@dataclass(frozen=True, slots=True)
class Verdict:
    """All rules' answer: allowed only if every rule allowed. ``retry_after_s`` is the largest
    wait among refusing rules (``None`` if one never admits); ``decisions`` follow the rules."""

    allowed: bool
    retry_after_s: float | None
    decisions: tuple[Decision, ...]


class Limiter:
    """In-process, thread-safe states of many rules, checked all-or-nothing.

    States equal to fresh ones (bucket full, window empty) are swept out, amortised over calls,
    so memory follows the subjects active within the last window or refill time.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, sweep_every: int = 1024) -> None:
        _positive("sweep_every", sweep_every)
        self._clock = clock
        self._sweep_every = sweep_every
        self._states: dict[tuple[str, str, RateLimit], Any] = {}
        self._touches = 0
        self._kept = 0  # states left by the last sweep
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def check(self, rules: Sequence[Rule], cost: float = 1.0, now: float | None = None) -> Verdict:
        """Take from every rule, or from none if any refuses."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            staged: dict[tuple[str, str, RateLimit], Any] = {}
            decisions: list[Decision] = []
            for rule in rules:
                k = rule.state_key
                state = staged[k] if k in staged else self._states.get(k)
                decision, new = rule.limit.take(state, cost if rule.cost is None else rule.cost, now)
                decisions.append(decision)
                if decision.allowed:
                    staged[k] = new  # a later rule on the same state sees this take
            refused = [d.retry_after_s for d in decisions if not d.allowed]
            if not refused:
                self._states.update(staged)
            self._tick(len(rules), now)
        if not refused:
            return Verdict(True, 0.0, tuple(decisions))
        retry = None if None in refused else max(r for r in refused if r is not None)
        return Verdict(False, retry, tuple(decisions))

    def reconcile(
        self, rules: Sequence[Rule], estimate: float, actual: float, now: float | None = None
    ) -> None:
        """Settle an admitted check once the real cost is known (rules with a fixed cost skip)."""
        _amount("estimate", estimate)
        _amount("actual", actual)
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            for rule in rules:
                if rule.cost is not None or actual == estimate:
                    continue
                k = rule.state_key
                state = self._states.get(k)
                if actual < estimate:
                    self._states[k] = rule.limit.refund(state, estimate - actual, now)
                else:
                    self._states[k] = rule.limit.charge(state, actual - estimate, now)
            self._tick(len(rules), now)

    def sweep(self, now: float | None = None) -> int:
        """Drop every state equal to a fresh one; returns how many were dropped."""
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            return self._sweep(now)

    def _tick(self, touched: int, now: float) -> None:
        # Sweep once the states touched since the last sweep outnumber those it kept: memory
        # stays within twice the active states, and each sweep is paid for by as many touches.
        self._touches += touched
        if self._touches >= max(self._sweep_every, self._kept):
            self._sweep(now)

    def _sweep(self, now: float) -> int:
        idle = [k for k, s in self._states.items() if k[2].idle(s, now)]
        for k in idle:
            del self._states[k]
        self._touches, self._kept = 0, len(self._states)
        return len(idle)

"""The limiter: many rules' states in one process, checked all-or-nothing, memory bounded."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kansoku.clock import SYSTEM_CLOCK, Clock
from kansoku.policy._ratelimit import Decision, RateLimit, check_amount, check_positive


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
        check_positive("sweep_every", sweep_every)
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
        check_amount("estimate", estimate)
        check_amount("actual", actual)
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

    def peek(self, rules: Sequence[Rule], now: float | None = None) -> list[float]:
        """What each rule has used at ``now`` (see ``used`` on the limits), taking nothing.

        Read-only: no state is written and no sweep runs, so a later check decides exactly as
        it would have without the peek.
        """
        now = self._clock.monotonic() if now is None else now
        with self._lock:
            return [rule.limit.used(self._states.get(rule.state_key), now) for rule in rules]

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

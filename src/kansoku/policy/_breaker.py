"""A three-state circuit breaker whose state is a plain value and whose transitions are pure.

``Breaker`` holds only the configuration; ``allow`` and ``record`` take a state and a time and
return the next state. Keeping the state a small frozen value (and ``state_to_dict`` /
``state_from_dict`` for its wire form) is what lets the gateway later keep it in Redis, shared by
replicas, with the same code. ``CircuitBreaker`` wraps one state behind a lock for in-process use.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import ClassVar, Literal

from kansoku.clock import Clock

StateName = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When to open, for how long, and how many trial calls decide whether to close again."""

    window: int = 100
    """The last ``window`` call outcomes are considered (a count window, not a time window)."""
    failure_rate: float = 0.5
    """Open when failures / outcomes in the window reaches this (0 < rate <= 1)."""
    min_calls: int = 10
    """No opening before the window holds this many outcomes, so two early errors do not trip it."""
    open_s: float = 30.0
    """How long the breaker stays open before it admits trial calls."""
    half_open_calls: int = 3
    """Trial calls admitted while half-open; all must succeed to close."""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        # 0 would open on a window of successes; NaN fails the comparison and is refused too.
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in (0, 1], got {self.failure_rate}")
        if not 1 <= self.min_calls <= self.window:
            # Above the window the breaker could never open, which is surely a mistake.
            raise ValueError(f"min_calls must be in [1, window={self.window}], got {self.min_calls}")
        if not (math.isfinite(self.open_s) and self.open_s > 0.0):
            raise ValueError(f"open_s must be a positive number of seconds, got {self.open_s}")
        if self.half_open_calls < 1:
            raise ValueError(f"half_open_calls must be >= 1, got {self.half_open_calls}")


@dataclass(frozen=True, slots=True)
class Closed:
    """Calls flow; ``outcomes`` holds the last outcomes, oldest first (True = success)."""

    outcomes: tuple[bool, ...] = ()
    name: ClassVar[StateName] = "closed"


@dataclass(frozen=True, slots=True)
class Open:
    """Calls are refused until ``opened_at + open_s``."""

    opened_at: float
    name: ClassVar[StateName] = "open"


@dataclass(frozen=True, slots=True)
class HalfOpen:
    """A fixed number of trial calls: ``admitted`` so far, ``succeeded`` of those reported."""

    admitted: int = 0
    succeeded: int = 0
    name: ClassVar[StateName] = "half_open"


BreakerState = Closed | Open | HalfOpen


@dataclass(frozen=True, slots=True)
class Breaker:
    """The transition functions. ``now`` is any seconds clock, the same one for every call.

    A shared (multi-host) state needs wall time; a single process should pass monotonic time.
    """

    config: BreakerConfig

    def allow(self, state: BreakerState, now: float) -> tuple[bool, BreakerState]:
        """May a call go upstream now? Returns the answer and the state to keep."""
        cfg = self.config
        if isinstance(state, Closed):
            return True, state
        if isinstance(state, Open):
            # Compared as a moment, not as elapsed time: now - opened_at can round just below open_s.
            if now < state.opened_at + cfg.open_s:
                return False, state
            # The call that finds the open period over is the first trial.
            return True, HalfOpen(admitted=1)
        if state.admitted < cfg.half_open_calls:
            return True, HalfOpen(admitted=state.admitted + 1, succeeded=state.succeeded)
        return False, state

    def record(self, state: BreakerState, ok: bool, now: float) -> BreakerState:
        """The state after a call's outcome is known."""
        cfg = self.config
        if isinstance(state, Open):
            # A late outcome of a call admitted before opening says nothing about recovery.
            return state
        if isinstance(state, HalfOpen):
            if not ok:
                return Open(opened_at=now)
            succeeded = state.succeeded + 1
            if succeeded >= cfg.half_open_calls:
                # A fresh window: the failures that opened it must not count against recovery.
                return Closed()
            return HalfOpen(admitted=state.admitted, succeeded=succeeded)
        outcomes = (*state.outcomes, ok)[-cfg.window :]
        if len(outcomes) >= cfg.min_calls and _tripped(outcomes, cfg.failure_rate):
            return Open(opened_at=now)
        return Closed(outcomes)


def _tripped(outcomes: tuple[bool, ...], failure_rate: float) -> bool:
    failures = outcomes.count(False)
    # Division rather than ``failures >= rate * n``: 0.3 * 10 is 3.0000000000000004 in floats,
    # which would need a 4th failure; a correctly rounded 3 / 10 equals the literal 0.3.
    return failures / len(outcomes) >= failure_rate


def state_to_dict(state: BreakerState) -> dict[str, object]:
    """A JSON-ready form of a state (for a shared store)."""
    if isinstance(state, Closed):
        return {"state": state.name, "outcomes": "".join("1" if ok else "0" for ok in state.outcomes)}
    if isinstance(state, Open):
        return {"state": state.name, "opened_at": state.opened_at}
    return {"state": state.name, "admitted": state.admitted, "succeeded": state.succeeded}


def state_from_dict(data: dict[str, object]) -> BreakerState:
    """The inverse of :func:`state_to_dict`; ValueError on anything it did not produce."""
    name = data.get("state")
    if name == "closed":
        outcomes = data.get("outcomes")
        if isinstance(outcomes, str) and set(outcomes) <= {"0", "1"}:
            return Closed(tuple(c == "1" for c in outcomes))
    elif name == "open":
        opened_at = data.get("opened_at")
        if isinstance(opened_at, int | float) and not isinstance(opened_at, bool):
            return Open(opened_at=float(opened_at))
    elif name == "half_open":
        admitted, succeeded = data.get("admitted"), data.get("succeeded")
        if isinstance(admitted, int) and isinstance(succeeded, int) and 0 <= succeeded <= admitted:
            return HalfOpen(admitted=admitted, succeeded=succeeded)
    raise ValueError(f"not a breaker state: {data!r}")


class CircuitBreaker:
    """One breaker state behind a lock, timed by an injected clock's monotonic seconds.

    Every call that ``allow()`` admits must be followed by ``record(ok)``, otherwise a half-open
    breaker waits for trial outcomes that never come.
    """

    def __init__(self, config: BreakerConfig, clock: Clock) -> None:
        self._breaker = Breaker(config)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = Closed()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    @property
    def state_name(self) -> StateName:
        """'closed', 'open' or 'half_open' (an expired open period shows only at the next allow)."""
        return self.state.name

    def allow(self) -> bool:
        with self._lock:
            admitted, self._state = self._breaker.allow(self._state, self._clock.monotonic())
            return admitted

    def record(self, ok: bool) -> None:
        with self._lock:
            self._state = self._breaker.record(self._state, ok, self._clock.monotonic())

"""Fail open when shared state is unreachable: a Redis outage must not become a gateway outage.

Wrapped around the Redis state. When a call to it fails, the request goes on as if the state
had said yes: limits and budgets admit, breakers allow and forget the outcome, and a dead
letter that cannot be stored is logged (its id is ``unavailable``). Reading limits' usage
(``peek``, for the status page) answers "unknown" (``None``). The admin API's dead-letter reads
are not guarded: they answer 500.

An outage costs clients a bounded, small delay, not a timeout per call. After a failure the
guard stops asking Redis for :data:`COOL_DOWN_S` and fails open at once; the first call after
the cool-down is the one probe (calls meanwhile still fail open without waiting for it). The
probe answering ends the outage (logged once); the probe failing starts another cool-down. So
during an outage at most one call per cool-down waits, and at most for the Redis client's
timeouts (``_state_redis``: 0.5 s to connect, 1 s to read). Time is the injected clock's
monotonic time.

Every call that fails open is counted (``errors``, exposed on ``/metrics``), whether Redis
failed or was not asked during a cool-down: the counter says how many decisions were not
enforced. Failures are logged at most once every 10 s, so an outage is visible without
flooding the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from kansoku.clock import SYSTEM_CLOCK, Clock
from kansoku.gateway._deadletter import Attempt, DeadLetter
from kansoku.gateway._state import BreakerStates, DeadLetters, GatewayState, LimitStates, SpendStates
from kansoku.policy import BreakerConfig, Rule, Verdict

__all__ = ["COOL_DOWN_S", "GuardedState"]

log = logging.getLogger("kansoku.gateway")
_LOG_EVERY_S = 10.0
# How long Redis is left alone after a failure. Long enough that a dead or hung Redis costs one
# waiting call per second instead of every call; short enough that limits are enforced again
# at most a second after Redis is back (a blip shorter than that goes unenforced that long).
COOL_DOWN_S = 1.0

T = TypeVar("T")


class _Guard:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.errors = 0
        self._logged: float | None = None  # when a failure was last logged
        self._outage_logged = False  # whether this outage's start was: then so is its end
        # None while Redis answers; during an outage, when the next probe may go.
        self._probe_at: float | None = None
        self._probing = False

    async def call(self, what: str, fn: Callable[[], Awaitable[T]], fallback: T) -> T:
        """``fn()``, or ``fallback`` when it fails or Redis is not to be asked right now."""
        probe = False
        if self._probe_at is not None:
            # One probe at a time: with Redis hung, concurrent calls would otherwise all wait for
            # the read timeout each time a cool-down ends.
            if self._probing or self.clock.monotonic() < self._probe_at:
                self.errors += 1
                return fallback
            probe = self._probing = True
        try:
            result = await fn()
        except Exception as exc:  # noqa: BLE001 - any failure of the backend: fail open
            self._failed(what, exc)
            return fallback
        finally:
            if probe:  # also when the request is cancelled mid-probe: the next call probes
                self._probing = False
        # Only the probe ends an outage: another call that succeeds meanwhile was sent before
        # the failure and says nothing about Redis now.
        if probe:
            self._probe_at = None
            if self._outage_logged:
                self._outage_logged = False
                # At the outage's level, so that whoever sees it start also sees it end.
                log.warning("kansoku gateway: shared state is back; no longer failing open")
        return result

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        now = self.clock.monotonic()
        self._probe_at = now + COOL_DOWN_S
        if self._logged is None or now - self._logged >= _LOG_EVERY_S:
            self._logged, self._outage_logged = now, True
            # The exception's text names the Redis address, never its password (redis-py).
            log.warning(
                "kansoku gateway: shared state unavailable (%s: %s); failing open", what, type(exc).__name__
            )


class _Limits:
    def __init__(self, inner: LimitStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        return await self.guard.call(
            "rate limits", lambda: self.inner.take(rules, cost), Verdict(True, 0.0, ())
        )

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        await self.guard.call("rate limits", lambda: self.inner.settle(rules, estimate, actual), None)

    async def peek(self, rules: Sequence[Rule]) -> Sequence[float | None]:
        # A status page shows "unknown" rather than fail.
        unknown: Sequence[float | None] = [None] * len(rules)
        return await self.guard.call("rate limits", lambda: self.inner.peek(rules), unknown)


class _Spend:
    def __init__(self, inner: SpendStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def spent(self, counters: Sequence[str]) -> list[float]:
        return await self.guard.call("budgets", lambda: self.inner.spent(counters), [0.0] * len(counters))

    async def add(self, counters: Sequence[str], amount: float, ttl_s: float) -> None:
        await self.guard.call("budgets", lambda: self.inner.add(counters, amount, ttl_s), None)


class _Breakers:
    def __init__(self, inner: BreakerStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def allow(self, name: str, config: BreakerConfig) -> bool:
        return await self.guard.call("circuit breakers", lambda: self.inner.allow(name, config), True)

    async def record(self, name: str, config: BreakerConfig, ok: bool) -> None:
        await self.guard.call("circuit breakers", lambda: self.inner.record(name, config, ok), None)

    async def abandon(self, name: str, config: BreakerConfig) -> None:
        await self.guard.call("circuit breakers", lambda: self.inner.abandon(name, config), None)

    async def states(self, names: Sequence[str]) -> dict[str, str]:
        unknown = dict.fromkeys(names, "unknown")
        return await self.guard.call("circuit breakers", lambda: self.inner.states(names), unknown)


class _Letters:
    def __init__(self, inner: DeadLetters, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str:
        add = self.inner.add
        return await self.guard.call(
            "dead letters", lambda: add(model, request, attempts, key_name), "unavailable"
        )

    async def get(self, letter_id: str) -> DeadLetter | None:
        return await self.inner.get(letter_id)

    async def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]:
        return await self.inner.list(limit=limit, model=model, before_ns=before_ns)

    async def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None:
        await self.inner.record_replay(letter_id, outcome)

    async def purge(self, now_ns: int) -> int:
        return await self.inner.purge(now_ns)


class GuardedState:
    """``inner`` with every policy call failing open; ``errors`` counts the calls that did.

    ``clock`` times the cool-down after a failure (its monotonic time): the gateway's clock.
    """

    def __init__(self, inner: GatewayState, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.inner = inner
        self._guard = _Guard(clock)
        self.limits = _Limits(inner.limits, self._guard)
        self.spend = _Spend(inner.spend, self._guard)
        self.breakers = _Breakers(inner.breakers, self._guard)
        self.dead_letters = _Letters(inner.dead_letters, self._guard)

    @property
    def errors(self) -> int:
        return self._guard.errors

    async def close(self) -> None:
        await self.inner.close()

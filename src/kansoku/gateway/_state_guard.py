"""Fail open when shared state is unreachable: a Redis outage must not become a gateway outage.

Wrapped around the Redis state. When a call to it fails, the request goes on as if the state
had said yes: limits and budgets admit, breakers allow and forget the outcome, and a dead
letter that cannot be stored is logged (its id is ``unavailable``). Every failure is counted
(``errors``, exposed on ``/metrics``) and logged at most once every 10 s, so an outage is
visible without flooding the log. Reading limits' usage (``peek``, for the status page) answers
"unknown" (``None``). The admin API's reads are not guarded: they answer 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kansoku.gateway._deadletter import Attempt, DeadLetter
from kansoku.gateway._state import BreakerStates, DeadLetters, GatewayState, LimitStates, SpendStates
from kansoku.policy import BreakerConfig, Rule, Verdict

__all__ = ["GuardedState"]

log = logging.getLogger("kansoku.gateway")
_LOG_EVERY_S = 10.0


class _Guard:
    def __init__(self) -> None:
        self.errors = 0
        self._logged = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._logged >= _LOG_EVERY_S:
            self._logged = now
            # The exception's text names the Redis address, never its password (redis-py).
            log.warning(
                "kansoku gateway: shared state unavailable (%s: %s); failing open", what, type(exc).__name__
            )


class _Limits:
    def __init__(self, inner: LimitStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        try:
            return await self.inner.take(rules, cost)
        except Exception as exc:  # noqa: BLE001 - any failure of the backend: fail open
            self.guard.failed("rate limits", exc)
            return Verdict(True, 0.0, ())

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        try:
            await self.inner.settle(rules, estimate, actual)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("rate limits", exc)

    async def peek(self, rules: Sequence[Rule]) -> Sequence[float | None]:
        try:
            return await self.inner.peek(rules)
        except Exception as exc:  # noqa: BLE001 - a status page shows "unknown" rather than fail
            self.guard.failed("rate limits", exc)
            return [None] * len(rules)


class _Spend:
    def __init__(self, inner: SpendStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def spent(self, counters: Sequence[str]) -> list[float]:
        try:
            return await self.inner.spent(counters)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("budgets", exc)
            return [0.0] * len(counters)

    async def add(self, counters: Sequence[str], amount: float, ttl_s: float) -> None:
        try:
            await self.inner.add(counters, amount, ttl_s)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("budgets", exc)


class _Breakers:
    def __init__(self, inner: BreakerStates, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def allow(self, name: str, config: BreakerConfig) -> bool:
        try:
            return await self.inner.allow(name, config)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("circuit breakers", exc)
            return True

    async def record(self, name: str, config: BreakerConfig, ok: bool) -> None:
        try:
            await self.inner.record(name, config, ok)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("circuit breakers", exc)

    async def abandon(self, name: str, config: BreakerConfig) -> None:
        try:
            await self.inner.abandon(name, config)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("circuit breakers", exc)

    async def states(self, names: Sequence[str]) -> dict[str, str]:
        try:
            return await self.inner.states(names)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("circuit breakers", exc)
            return dict.fromkeys(names, "unknown")


class _Letters:
    def __init__(self, inner: DeadLetters, guard: _Guard) -> None:
        self.inner, self.guard = inner, guard

    async def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str:
        try:
            return await self.inner.add(model, request, attempts, key_name)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("dead letters", exc)
            return "unavailable"

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
    """``inner`` with every policy call failing open; ``errors`` counts the failures."""

    def __init__(self, inner: GatewayState) -> None:
        self.inner = inner
        self._guard = _Guard()
        self.limits = _Limits(inner.limits, self._guard)
        self.spend = _Spend(inner.spend, self._guard)
        self.breakers = _Breakers(inner.breakers, self._guard)
        self.dead_letters = _Letters(inner.dead_letters, self._guard)

    @property
    def errors(self) -> int:
        return self._guard.errors

    async def close(self) -> None:
        await self.inner.close()

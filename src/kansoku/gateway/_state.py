"""Where the gateway keeps state that replicas may share: limits, spend, breakers, dead letters.

:class:`GatewayState` is the extension point: :class:`MemoryState` keeps everything in the
process (the default), the Redis state (``--state redis://...``) keeps it in Redis behind
atomic scripts so that a limit holds exactly across replicas. The router and the admission
checks talk only to these protocols, so both backends run the same policy code paths.

Every method is async: Redis answers over the network, and the in-process versions are cheap
enough that a coroutine frame costs nothing that matters. ``now`` comes from the injected
clock: monotonic seconds in one process; the Redis state uses wall-clock seconds, the only
time replicas share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from kansoku.clock import Clock
from kansoku.gateway._deadletter import Attempt, DeadLetter, DeadLetterStore, SQLiteDeadLetters
from kansoku.policy import BreakerConfig, CircuitBreaker, HalfOpen, Limiter, Rule, Verdict

__all__ = [
    "BreakerStates",
    "DeadLetters",
    "GatewayState",
    "LimitStates",
    "MemoryState",
    "SpendStates",
]


@runtime_checkable
class LimitStates(Protocol):
    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        """Take ``cost`` from every rule, or from none if any refuses (all-or-nothing)."""
        ...

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        """Correct an admitted take once the real cost is known (reconcilable rules only)."""
        ...

    async def peek(self, rules: Sequence[Rule]) -> Sequence[float | None]:
        """What each rule has used now, taking nothing (for the status page).

        A window: what counts in it; a bucket: its capacity minus the tokens left after refill.
        Read-only, so later takes decide as if there had been no peek. ``None``: unknown (the
        state backend could not be read).
        """
        ...


@runtime_checkable
class SpendStates(Protocol):
    async def spent(self, counters: Sequence[str]) -> list[float]:
        """Current totals (USD) of ``counters``, e.g. ``"key:support:day:2026-11-23"``; 0 if new."""
        ...

    async def add(self, counters: Sequence[str], amount: float, ttl_s: float) -> None:
        """Add ``amount`` to every counter; a counter may be forgotten ``ttl_s`` after its last add."""
        ...


@runtime_checkable
class BreakerStates(Protocol):
    async def allow(self, name: str, config: BreakerConfig) -> bool:
        """May a call go to ``name``? Admitting while half-open uses up one trial call."""
        ...

    async def record(self, name: str, config: BreakerConfig, ok: bool) -> None:
        """The outcome of a call ``allow`` admitted."""
        ...

    async def abandon(self, name: str, config: BreakerConfig) -> None:
        """An admitted call ended without an outcome (cancelled): close its books.

        A half-open trial counts as failed (else the breaker would wait for it forever);
        otherwise nothing is recorded, since a cancellation says nothing about the upstream.
        """
        ...

    async def states(self, names: Sequence[str]) -> dict[str, str]:
        """``closed`` / ``open`` / ``half_open`` for each name (``closed`` when never used)."""
        ...


@runtime_checkable
class DeadLetters(Protocol):
    async def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str: ...

    async def get(self, letter_id: str) -> DeadLetter | None: ...

    async def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]:
        """Newest first; ``before_ns`` pages backwards."""
        ...

    async def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None: ...

    async def purge(self, now_ns: int) -> int: ...


@runtime_checkable
class GatewayState(Protocol):
    # Read-only properties, so that implementations may declare their concrete types.
    @property
    def limits(self) -> LimitStates: ...

    @property
    def spend(self) -> SpendStates: ...

    @property
    def breakers(self) -> BreakerStates: ...

    @property
    def dead_letters(self) -> DeadLetters: ...

    async def close(self) -> None: ...


# -- in-process ------------------------------------------------------------------------------------


class MemoryLimits:
    def __init__(self, clock: Clock) -> None:
        self._limiter = Limiter(clock)

    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        return self._limiter.check(rules, cost)

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        self._limiter.reconcile(rules, estimate, actual)

    async def peek(self, rules: Sequence[Rule]) -> list[float]:
        return self._limiter.peek(rules)


class MemorySpend:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._totals: dict[str, tuple[float, float]] = {}  # counter -> (total, expires monotonic s)

    async def spent(self, counters: Sequence[str]) -> list[float]:
        now = self._clock.monotonic()
        out = []
        for c in counters:
            total, expires = self._totals.get(c, (0.0, 0.0))
            out.append(total if expires > now else 0.0)
        return out

    async def add(self, counters: Sequence[str], amount: float, ttl_s: float) -> None:
        now = self._clock.monotonic()
        for c in counters:
            total, expires = self._totals.get(c, (0.0, 0.0))
            self._totals[c] = ((total if expires > now else 0.0) + amount, now + ttl_s)
        if len(self._totals) > 4096:  # forget expired periods; amortised over the adds
            self._totals = {k: v for k, v in self._totals.items() if v[1] > now}


class MemoryBreakers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._breakers: dict[str, tuple[BreakerConfig, CircuitBreaker]] = {}

    def _get(self, name: str, config: BreakerConfig) -> CircuitBreaker:
        entry = self._breakers.get(name)
        if entry is None or entry[0] != config:  # a reloaded configuration starts a fresh breaker
            entry = self._breakers[name] = (config, CircuitBreaker(config, self._clock))
        return entry[1]

    async def allow(self, name: str, config: BreakerConfig) -> bool:
        return self._get(name, config).allow()

    async def record(self, name: str, config: BreakerConfig, ok: bool) -> None:
        self._get(name, config).record(ok)

    async def abandon(self, name: str, config: BreakerConfig) -> None:
        b = self._get(name, config)
        if isinstance(b.state, HalfOpen):
            b.record(False)

    async def states(self, names: Sequence[str]) -> dict[str, str]:
        return {n: (e[1].state_name if (e := self._breakers.get(n)) else "closed") for n in names}


class ThreadedDeadLetters:
    """A synchronous :class:`DeadLetterStore` (SQLite) run off the event loop."""

    def __init__(self, store: DeadLetterStore) -> None:
        self.store = store

    async def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str:
        return await asyncio.to_thread(self.store.add, model, request, attempts, key_name)

    async def get(self, letter_id: str) -> DeadLetter | None:
        return await asyncio.to_thread(self.store.get, letter_id)

    async def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]:
        return await asyncio.to_thread(lambda: self.store.list(limit=limit, model=model, before_ns=before_ns))

    async def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None:
        await asyncio.to_thread(self.store.record_replay, letter_id, outcome)

    async def purge(self, now_ns: int) -> int:
        return await asyncio.to_thread(self.store.purge, now_ns)

    def close(self) -> None:
        self.store.close()


class MemoryState:
    """Everything in this process; dead letters in SQLite at ``dead_letter_path`` (``:memory:``)."""

    def __init__(self, clock: Clock, dead_letter_path: str = ":memory:", retain_days: int = 7) -> None:
        self.limits = MemoryLimits(clock)
        self.spend = MemorySpend(clock)
        self.breakers = MemoryBreakers(clock)
        self._dl = ThreadedDeadLetters(SQLiteDeadLetters(dead_letter_path, retain_days))
        self.dead_letters: DeadLetters = self._dl

    async def close(self) -> None:
        self._dl.close()

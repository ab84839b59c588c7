"""Choosing a deployment for a model: load-balancing strategies, outlier ejection, region failover.

A :class:`Balancer` is a small state machine with the clock and the randomness injected, so the
gateway's routing is tested without real time. The gateway calls ``pick`` (excluding the
deployments it already tried for this request), then ``started`` and ``finished`` around the call.

Ejection: ``eject_after`` consecutive failures eject a deployment for ``eject_s``, doubling with
each ejection in a row up to ``max_eject_s``. When the time is up, exactly one trial request (a
probe) goes to it: success restores it, failure ejects it again for longer. Regions need no
extra rule: a region whose deployments are all ejected simply has no candidates, so traffic goes
to the healthy regions.

If every deployment is ejected (or excluded), ``pick`` **fails open**: it returns the one whose
ejection ends soonest rather than ``None``. An ejection is a guess from recent failures; refusing
is a certain failure, and shedding load is the job of the breaker and the retry budget, which
see the whole picture. ``pick`` returns ``None`` only when every deployment is excluded.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from kansoku.clock import SYSTEM_CLOCK, Clock

Strategy = Literal["round_robin", "weighted", "least_latency", "least_busy"]
_STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a model is served: a unique ``name``, its ``region`` and a relative ``weight``."""

    name: str
    region: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.region, str) or not self.region:
            raise ValueError(f"region must be a non-empty string, got {self.region!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise ValueError(f"weight must be a number > 0, got {self.weight!r}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r}")


@dataclass(slots=True)
class _State:
    deployment: Deployment
    index: int
    in_flight: int = 0
    ewma: float | None = None  # None: never measured, so tried first by least_latency
    streak: int = 0  # consecutive failures
    ejections: int = 0  # ejections in a row without a restore; grows the ejection time
    ejected_until: float | None = None  # None: in good standing
    probe_at: float | None = None  # when the single trial request was handed out
    current: float = 0.0  # smooth weighted round robin's running score


def _ejection_end(s: _State) -> tuple[float, int]:
    # Soonest ejection end first; configuration order breaks ties so picks are reproducible.
    return (math.inf if s.ejected_until is None else s.ejected_until, s.index)


class Balancer:
    """Picks deployments with one strategy and ejects the ones that keep failing.

    Strategies:

    * ``round_robin``: each deployment in turn, in the given order.
    * ``weighted``: *smooth weighted round robin* (as in nginx): deterministic, needs no rng, and
      spreads picks evenly: with integer weights and nothing excluded, each cycle of
      ``sum(weights)`` picks holds each deployment exactly ``weight`` times, interleaved.
    * ``least_latency``: lowest EWMA of observed latency, ``new = decay * old + (1 - decay) *
      sample``. Untried deployments go first (chosen by the rng). The score is ``ewma * (in
      flight + 1)`` so concurrent requests do not all pile onto the one fastest deployment. A
      failure never lowers the average (a fast 5xx must not look like a fast deployment).
    * ``least_busy``: fewest requests in flight; ties broken by the rng.

    Thread-safe: the gateway runs on one event loop, but the lock costs little and keeps callers
    on other threads correct. Every ``started`` must be followed by one ``finished``.
    """

    def __init__(
        self,
        deployments: Sequence[Deployment],
        strategy: Strategy = "round_robin",
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        *,
        decay: float = 0.7,
        eject_after: int = 5,
        eject_s: float = 30.0,
        max_eject_s: float = 300.0,
    ) -> None:
        if not deployments:
            raise ValueError("deployments must not be empty")
        names = [d.name for d in deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"deployments must have unique names, got {names}")
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(_STRATEGIES)}, got {strategy!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if eject_after < 1:
            raise ValueError(f"eject_after must be >= 1, got {eject_after!r}")
        if not (math.isfinite(eject_s) and eject_s > 0):
            raise ValueError(f"eject_s must be a finite number > 0, got {eject_s!r}")
        if not (math.isfinite(max_eject_s) and max_eject_s >= eject_s):
            raise ValueError(f"max_eject_s must be finite and >= eject_s, got {max_eject_s!r}")
        self._states = [_State(d, i) for i, d in enumerate(deployments)]
        self._by_name = {s.deployment.name: s for s in self._states}
        self._strategy = strategy
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._decay = decay
        self._eject_after = eject_after
        self._eject_s = eject_s
        self._max_eject_s = max_eject_s
        self._cursor = 0  # round robin: index of the next deployment to consider
        self._lock = threading.Lock()

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(s.deployment for s in self._states)

    def snapshot(self) -> list[dict[str, object]]:
        """Each deployment's standing, for status pages: in flight, latency average (s), failure
        streak, and seconds of ejection left (None when in good standing)."""
        now = self._clock.monotonic()
        with self._lock:
            return [
                {
                    "name": s.deployment.name,
                    "region": s.deployment.region,
                    "in_flight": s.in_flight,
                    "latency_ewma_s": s.ewma,
                    "failure_streak": s.streak,
                    "ejected_for_s": None if s.ejected_until is None else max(0.0, s.ejected_until - now),
                }
                for s in self._states
            ]

    def pick(self, exclude: Collection[Deployment] = ()) -> Deployment | None:
        """The deployment for the next attempt, skipping ejected ones and those in ``exclude``."""
        skip = {d.name for d in exclude}
        now = self._clock.monotonic()
        with self._lock:
            # A retry (something excluded) never gets a probe: an unproven deployment must not
            # cost a request its second chance. First attempts probe promptly, earliest first.
            if not skip:
                due = [s for s in self._states if self._probe_due(s, now)]
                if due:
                    probe = min(due, key=_ejection_end)
                    probe.probe_at = now
                    return probe.deployment
            allowed = [s for s in self._states if s.deployment.name not in skip]
            healthy = [s for s in allowed if s.ejected_until is None]
            if healthy:
                return self._choose(healthy).deployment
            if not allowed:
                return None
            # Fail open (see the module docstring).
            return min(allowed, key=_ejection_end).deployment

    def started(self, deployment: Deployment) -> None:
        with self._lock:
            self._state(deployment).in_flight += 1

    def finished(self, deployment: Deployment, ok: bool, latency_s: float) -> None:
        """Record an attempt's outcome: in-flight count, latency average, failure streak, ejection."""
        now = self._clock.monotonic()
        with self._lock:
            s = self._state(deployment)
            s.in_flight = max(0, s.in_flight - 1)
            self._observe(s, ok, latency_s)
            if s.ejected_until is not None:
                # While ejected only the probe's outcome counts; requests that were in flight
                # when it was ejected say nothing new. (The first result after the probe was
                # handed out is taken as the probe's: results carry no request identity.)
                if s.probe_at is not None and ok:
                    self._restore(s)
                elif s.probe_at is not None:
                    self._eject(s, now)
                return
            if ok:
                s.streak = 0
                return
            s.streak += 1
            if s.streak >= self._eject_after:
                self._eject(s, now)

    def is_ejected(self, deployment: Deployment) -> bool:
        """True from the ejection until a probe succeeds (also while a probe is in flight)."""
        with self._lock:
            return self._state(deployment).ejected_until is not None

    def _state(self, deployment: Deployment) -> _State:
        s = self._by_name.get(deployment.name)
        if s is None:
            raise ValueError(f"unknown deployment {deployment.name!r}")
        return s

    def _probe_due(self, s: _State, now: float) -> bool:
        if s.ejected_until is None or now < s.ejected_until:
            return False
        # A probe whose result never came back (the caller dropped it) is given up after
        # eject_s, so a deployment cannot stay ejected forever.
        return s.probe_at is None or now - s.probe_at >= self._eject_s

    def _eject(self, s: _State, now: float) -> None:
        s.ejections += 1
        duration = min(self._max_eject_s, self._eject_s * 2.0 ** min(s.ejections - 1, 62))
        s.ejected_until = now + duration
        s.probe_at = None
        s.streak = 0

    def _restore(self, s: _State) -> None:
        s.ejected_until = None
        s.probe_at = None
        s.ejections = 0
        s.streak = 0

    def _observe(self, s: _State, ok: bool, latency_s: float) -> None:
        if not (math.isfinite(latency_s) and latency_s >= 0):
            return  # a bad measurement must not poison the average
        sample = latency_s if ok or s.ewma is None else max(latency_s, s.ewma)
        s.ewma = sample if s.ewma is None else self._decay * s.ewma + (1.0 - self._decay) * sample

    def _choose(self, candidates: list[_State]) -> _State:
        if self._strategy == "round_robin":
            n = len(self._states)
            chosen = min(candidates, key=lambda s: (s.index - self._cursor) % n)
            self._cursor = (chosen.index + 1) % n
            return chosen
        if self._strategy == "weighted":
            total = 0.0
            for s in candidates:
                s.current += s.deployment.weight
                total += s.deployment.weight
            chosen = max(candidates, key=lambda s: s.current)  # first of equals: stable order
            chosen.current -= total
            return chosen
        if self._strategy == "least_latency":
            untried = [s for s in candidates if s.ewma is None]
            if untried:
                return self._rng.choice(untried)
            return min(candidates, key=lambda s: ((s.ewma or 0.0) * (s.in_flight + 1), s.index))
        fewest = min(s.in_flight for s in candidates)
        return self._rng.choice([s for s in candidates if s.in_flight == fewest])

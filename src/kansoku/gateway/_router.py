"""The attempt loop for one client request: pick, call, retry, fail over, fall back.

Independent of HTTP: the caller passes ``call(deployment, timeout_s)``, which makes one upstream
attempt and raises :class:`UpstreamError` on failure. The router composes the policies (balancer,
breakers, retry budget, backoff, deadline) and returns a :class:`Routed` saying what answered
and every try on the way, so the proxy can answer, record and dead-letter from one value.

Decisions worth knowing:

* One :class:`~kansoku.policy.Deadline` (the requested model's ``deadline_s``) covers the whole
  request, fallback models included; no attempt starts once it has passed.
* Every upstream call after the request's first one is a retry for the shared
  :class:`~kansoku.policy.RetryBudget`, failovers and fallback models too: each adds load to an
  upstream that is already struggling somewhere. A refusal stops upstream attempts (logged as
  ``retry_budget``); the template answer, which costs no upstream call, may still be given.
* ``retry.attempts`` counts calls per model. Untried deployments are preferred; once each was
  tried, the balancer may pick any again (a single deployment can then be retried). A
  deployment whose breaker refused is skipped for the rest of the request. A ``Retry-After``
  is honoured only before going back to a deployment already tried: failing over needs no wait.
* A non-retryable error (the request itself is bad) ends the request at once, with no fallback:
  ``error`` is set, ``exhausted`` is False — a client error, not a dead letter.
* Fallback models are the requested model's chain, depth first, each model once. Templates come
  after every upstream attempt: the requested model's own first, then the chain's in order. A
  template answer has ``template=True``, ``fallback_used=True`` and ``exhausted=False``.
* ``fallback_used`` means another model or a template answered; failover between deployments
  of the same model shows in ``attempts`` only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from kansoku import policy
from kansoku.clock import Clock
from kansoku.gateway._config import Deployment, GatewayConfig, ModelRoute
from kansoku.gateway._deadletter import Attempt
from kansoku.gateway._state import BreakerStates, MemoryBreakers
from kansoku.gateway._upstream import UpstreamError
from kansoku.model._errors import ErrorType

__all__ = ["Routed", "Router", "deployment_name", "template_completion"]

T = TypeVar("T")
BREAKER_OPEN = "breaker_open"
RETRY_BUDGET = "retry_budget"
OK = "ok"


def deployment_name(d: Deployment, index: int) -> str:
    # The index keeps two entries for the same provider model and region apart.
    return f"{d.provider}/{d.model}@{d.region}#{index}"


def template_completion(model: str, text: str, created_s: int, ident: str) -> dict[str, Any]:
    """A synthetic OpenAI ``chat.completion`` carrying the configured fallback text."""
    return {
        "id": f"chatcmpl-kansoku-{ident}",
        "object": "chat.completion",
        "created": created_s,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        # No tokens were spent: zeros rather than absent, so cost records add up to nothing.
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


@dataclass(slots=True)
class Routed(Generic[T]):
    """The outcome of one client request.

    Answered: ``result`` (a deployment's) or ``template_body`` (``template=True``). Not answered:
    ``error`` is the final error — ``exhausted`` True means retryable failures used everything up
    (dead-letter it), False means the request itself was refused (a client error). ``error`` also
    stays set under a template answer, for the record. ``attempts`` lists every try in order:
    failures, breaker skips (``breaker_open``), a budget refusal (``retry_budget``) and the
    success (``ok``). ``breaker_states`` maps model -> deployment -> state after the request.
    """

    result: T | None = None
    error: UpstreamError | None = None
    deployment: Deployment | None = None
    deployment_name: str | None = None
    model: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    fallback_used: bool = False
    template: bool = False
    template_body: dict[str, Any] | None = None
    breaker_states: dict[str, dict[str, str]] = field(default_factory=dict)
    exhausted: bool = False
    defer: bool = False  # see Router.run(defer_success=)
    pending: tuple[str, str, float] | None = None  # deferred outcome: model, deployment, started

    @property
    def tries(self) -> int:
        """Upstream calls made (breaker skips and budget refusals excluded)."""
        return sum(a.error_type not in (BREAKER_OPEN, RETRY_BUDGET) for a in self.attempts)


@dataclass(slots=True)
class _Model:
    route: ModelRoute
    balancer: policy.Balancer | None  # None: a model made only of fallbacks or a template
    deployments: dict[str, Deployment]
    breaker: policy.BreakerConfig
    jitter: policy.FullJitter

    def breaker_key(self, deployment: str) -> str:
        # Per model route: two routes may send the same deployment different configurations.
        return f"{self.route.name}/{deployment}"


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    """Ends upstream attempts for the whole request (deadline passed or budget refused)."""


class Router:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        breakers: BreakerStates | None = None,
    ) -> None:
        self._clock = clock
        # Breaker states live outside the router (in Redis with several replicas), so that a
        # reloaded configuration keeps them and every replica sees the same breaker.
        self.breakers = breakers if breakers is not None else MemoryBreakers(clock)
        self._sleep = sleep
        self._rng = rng
        self._config = config
        self._models = {m.name: self._build(m) for m in config.models}
        # One pool for the process, so the largest configured ratio: a single budget cannot honour
        # several, and the smallest would starve the models that asked for more.
        self.budget = policy.RetryBudget(ratio=max(m.retry.budget for m in config.models))

    def _build(self, route: ModelRoute) -> _Model:
        names = [deployment_name(d, i) for i, d in enumerate(route.deployments)]
        cfg = route.circuit_breaker
        breaker = policy.BreakerConfig(
            cfg.window, cfg.failure_rate, cfg.min_calls, cfg.open_s, cfg.half_open_calls
        )
        balancer = None
        if route.deployments:
            targets = [
                policy.Deployment(n, d.region, d.weight)
                for n, d in zip(names, route.deployments, strict=True)
            ]
            strategy = cast(policy.Strategy, route.routing)
            balancer = policy.Balancer(targets, strategy, self._clock, self._rng)
        return _Model(
            route=route,
            balancer=balancer,
            deployments=dict(zip(names, route.deployments, strict=True)),
            breaker=breaker,
            jitter=policy.FullJitter(route.retry.base_ms / 1000, route.retry.cap_ms / 1000, self._rng),
        )

    def chain(self, model: str) -> list[str]:
        """``model`` and its fallbacks, depth first, each once (config rejects cycles anyway)."""
        order: list[str] = []
        todo = [model]
        while todo:
            name = todo.pop(0)
            if name in order or name not in self._models:
                continue
            order.append(name)
            todo[:0] = self._models[name].route.fallbacks
        return order

    async def run(
        self,
        model: str,
        call: Callable[[Deployment, float], Awaitable[T]],
        *,
        active: int,
        defer_success: bool = False,
    ) -> Routed[T]:
        """Route one request for ``model``; ``active`` is the requests in flight (for the budget).

        ``defer_success`` (streams): a call that returned is not yet a success for the balancer
        and the breaker — the stream may still break. ``Routed.pending`` is then set, and the
        caller must end it with :meth:`finish` once the stream is over.
        """
        if model not in self._models:
            raise KeyError(f"unknown model {model!r}")
        chain = self.chain(model)
        deadline = policy.Deadline(self._models[model].route.deadline_s, self._clock)
        out: Routed[T] = Routed(defer=defer_success)
        try:
            for name in chain:
                if await self._try_model(self._models[name], call, deadline, active, out):
                    out.fallback_used = name != model
                    break
        except _Stop:
            pass
        if out.result is None and (out.error is None or out.error.retryable):
            self._template(chain, out)
        if out.exhausted and out.error is None:  # nothing was called: every breaker open, say
            out.error = _unavailable(model)
        for n in chain:
            m = self._models[n]
            states = await self.breakers.states([m.breaker_key(d) for d in m.deployments])
            out.breaker_states[n] = {d: states[m.breaker_key(d)] for d in m.deployments}
        return out

    def balancer_snapshot(self, model: str) -> list[dict[str, object]]:
        """The balancer's view of ``model``'s deployments (empty for a model without any)."""
        m = self._models.get(model)
        return [] if m is None or m.balancer is None else m.balancer.snapshot()

    def breaker_key(self, model: str, deployment: str) -> str:
        return self._models[model].breaker_key(deployment)

    async def finish(self, routed: Routed[T], ok: bool | None) -> None:
        """End a deferred call (see :meth:`run`): ``ok`` True/False is the stream's outcome for
        the balancer and the breaker; None (the client left) says nothing about the upstream."""
        if routed.pending is None:
            return
        model, name, started = routed.pending
        routed.pending = None
        m = self._models.get(model)
        if m is None or m.balancer is None or name not in m.deployments:
            return
        target = next(d for d in m.balancer.deployments if d.name == name)
        key = m.breaker_key(name)
        if ok is None:
            m.balancer.finished(target, True, float("nan"))
            await self.breakers.abandon(key, m.breaker)
            return
        m.balancer.finished(target, ok, self._clock.monotonic() - started)
        await self.breakers.record(key, m.breaker, ok)

    def _template(self, chain: list[str], out: Routed[T]) -> None:
        for name in chain:
            text = self._models[name].route.fallback_response
            if text is not None:
                ident = f"{self._rng.getrandbits(64):016x}"
                created = self._clock.now_ns() // 1_000_000_000
                out.template_body = template_completion(name, text, created, ident)
                out.model, out.template, out.fallback_used = name, True, True
                out.deployment = out.deployment_name = None
                return
        out.exhausted = True

    async def _try_model(
        self,
        m: _Model,
        call: Callable[[Deployment, float], Awaitable[T]],
        deadline: policy.Deadline,
        active: int,
        out: Routed[T],
    ) -> bool:
        """Attempts on one model; True when it answered or the request must end (a client error)."""
        if m.balancer is None:
            return False
        tried: set[policy.Deployment] = set()
        refused: set[policy.Deployment] = set()
        delay, calls = 0.0, 0
        while calls < m.route.retry.attempts:
            if deadline.expired():
                raise _Stop
            retry = out.tries > 0
            if retry and not self.budget.try_acquire(active):
                out.attempts.append(Attempt(m.route.name, None, RETRY_BUDGET, "retry budget exhausted"))
                raise _Stop
            try:
                if delay > 0:
                    await self._sleep(delay)
                target = await self._pick(m.balancer, m, tried, refused, out)
                if target is None:
                    return False
                err = await self._attempt(m.balancer, m, target, call, deadline=deadline, out=out)
            finally:
                if retry:
                    self.budget.release()
            if err is None or not err.retryable:
                return True
            tried.add(target)
            calls += 1
            if calls >= m.route.retry.attempts:
                return False
            # Retry-After speaks for the deployment that sent it: while another is untried, the
            # next attempt goes there and need not wait (nor give up because the wait is long).
            untried = len(tried | refused) < len(m.deployments)
            delay = m.jitter.delay(calls - 1, None if untried else err.retry_after_s)
            if not policy.should_retry(calls, m.route.retry.attempts, True, deadline, delay):
                return False  # a fallback model needs no wait and may still fit the deadline
        return False

    async def _pick(
        self,
        balancer: policy.Balancer,
        m: _Model,
        tried: set[policy.Deployment],
        refused: set[policy.Deployment],
        out: Routed[T],
    ) -> policy.Deployment | None:
        while True:
            target = balancer.pick(tried | refused) or balancer.pick(refused)
            if target is None:
                return None
            if await self.breakers.allow(m.breaker_key(target.name), m.breaker):
                return target
            refused.add(target)
            out.attempts.append(Attempt(target.name, None, BREAKER_OPEN, f"{m.route.name}: circuit open"))

    async def _attempt(
        self,
        balancer: policy.Balancer,
        m: _Model,
        target: policy.Deployment,
        call: Callable[[Deployment, float], Awaitable[T]],
        *,
        deadline: policy.Deadline,
        out: Routed[T],
    ) -> UpstreamError | None:
        """One upstream call, recorded everywhere; returns its error, None on success."""
        dep, key = m.deployments[target.name], m.breaker_key(target.name)
        balancer.started(target)
        started = self._clock.monotonic()
        try:
            result = await call(dep, deadline.attempt_timeout(dep.timeout_s))
        except UpstreamError as exc:
            # A non-retryable (400-class) error is the request's fault, not the deployment's:
            # it must neither eject the deployment nor open its breaker.
            healthy = not exc.retryable
            balancer.finished(target, healthy, self._clock.monotonic() - started)
            await self.breakers.record(key, m.breaker, healthy)
            out.error = exc
            out.attempts.append(Attempt(target.name, exc.status, exc.error_type.value, exc.message))
            return exc
        except BaseException:
            # Cancelled (the client left) or a bug: the outcome says nothing about the upstream.
            # Still close the books: the in-flight count (NaN latency is ignored by the average),
            # and a half-open trial, which would otherwise hold the breaker half-open forever.
            balancer.finished(target, True, float("nan"))
            await asyncio.shield(self.breakers.abandon(key, m.breaker))
            raise
        if out.defer:
            out.pending = (m.route.name, target.name, started)
        else:
            balancer.finished(target, True, self._clock.monotonic() - started)
            await self.breakers.record(key, m.breaker, True)
        out.result = result
        out.deployment, out.deployment_name, out.model = dep, target.name, m.route.name
        out.attempts.append(Attempt(target.name, None, OK, ""))
        return None


def _unavailable(model: str) -> UpstreamError:
    message = f"{model}: no deployment could be tried (circuit breakers open or deadline passed)"
    return UpstreamError(
        message,
        status=503,
        error_type=ErrorType.CIRCUIT_OPEN,
        retryable=True,
        body={"error": {"message": message, "type": "server_error", "code": "no_deployment_available"}},
    )

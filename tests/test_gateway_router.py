"""The gateway's attempt loop with a fake clock, a recording sleep and scripted upstreams."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from kansoku.gateway._config import Breaker, Deployment, GatewayConfig, ModelRoute, Retry
from kansoku.gateway._router import BREAKER_OPEN, OK, RETRY_BUDGET, Routed, Router
from kansoku.gateway._upstream import UpstreamError, error_from_body, timeout_error
from kansoku.testing import FakeClock

START = 1000.0
_T = TypeVar("_T")
Outcome = str | UpstreamError


def dep(model: str, region: str = "us-east", *, weight: float = 1.0, timeout_s: float = 30.0) -> Deployment:
    return Deployment("openai", model, region=region, weight=weight, timeout_s=timeout_s)


def name(model: str, region: str = "us-east", index: int = 0) -> str:
    return f"openai/{model}@{region}#{index}"


def route(
    model: str, *deployments: Deployment, attempts: int = 3, base_ms: int = 100, **kw: Any
) -> ModelRoute:
    return ModelRoute(model, deployments, retry=Retry(attempts=attempts, base_ms=base_ms, cap_ms=1000), **kw)


def http(status: int, retry_after_s: float | None = None) -> UpstreamError:
    body: dict[str, Any] = {"error": {"message": f"status {status}", "type": "error", "code": None}}
    return error_from_body(dep("x"), status, body, retry_after_s)


@dataclass
class Harness:
    clock: FakeClock = field(default_factory=lambda: FakeClock(start=START))
    sleeps: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)  # a real suspension point, as asyncio.sleep would be

    def router(self, *models: ModelRoute) -> Router:
        return Router(GatewayConfig(models), clock=self.clock, sleep=self.sleep, rng=random.Random(7))


@dataclass
class Script:
    """Outcomes per upstream model name, consumed in order; the last one repeats."""

    outcomes: dict[str, list[Outcome]]
    calls: list[tuple[str, float]] = field(default_factory=list)

    async def __call__(self, d: Deployment, timeout_s: float) -> str:
        self.calls.append((d.model, timeout_s))
        queue = self.outcomes[d.model]
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, UpstreamError):
            raise outcome
        return outcome

    def called(self) -> list[str]:
        return [m for m, _ in self.calls]


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def route_once(
    router: Router, model: str, call: Callable[[Deployment, float], Awaitable[str]]
) -> Routed[str]:
    return run(router.run(model, call, active=1))


def test_success_first_try() -> None:
    h = Harness()
    script = Script({"a": ["hello"]})
    out = route_once(h.router(route("chat", dep("a"))), "chat", script)
    assert out.result == "hello"
    assert (out.model, out.deployment_name, out.deployment) == ("chat", name("a"), dep("a"))
    assert [a.error_type for a in out.attempts] == [OK]
    assert out.tries == 1
    assert (out.fallback_used, out.template, out.exhausted) == (False, False, False)
    assert out.error is None
    assert out.breaker_states == {"chat": {name("a"): "closed"}}
    assert h.sleeps == []
    assert script.calls == [("a", 30.0)]


def test_retry_on_429_waits_at_least_retry_after() -> None:
    h = Harness()
    script = Script({"a": [http(429, retry_after_s=2.5), "hello"]})
    out = route_once(h.router(route("chat", dep("a"))), "chat", script)
    assert out.result == "hello"
    assert script.called() == ["a", "a"]
    assert len(h.sleeps) == 1
    assert h.sleeps[0] >= 2.5  # the jitter (at most 0.1 s here) is shorter, so Retry-After wins
    assert [(a.status, a.error_type) for a in out.attempts] == [(429, "rate_limit"), (None, OK)]


def test_429_fails_over_to_an_untried_deployment_without_its_retry_after() -> None:
    # Retry-After speaks for the deployment that sent it; a long one must not delay (or, past the
    # deadline, prevent) the failover to a deployment that has not been tried.
    h = Harness()
    script = Script({"a": [http(429, retry_after_s=120.0)], "b": ["hello"]})
    out = route_once(h.router(route("chat", dep("a"), dep("b"), deadline_s=60.0)), "chat", script)
    assert out.result == "hello"
    assert script.called() == ["a", "b"]
    assert all(s <= 0.1 for s in h.sleeps)  # the jitter only


def test_no_retry_no_fallback_on_400() -> None:
    h = Harness()
    router = h.router(
        route("chat", dep("a"), dep("b"), fallbacks=("backup",), fallback_response="busy"),
        route("backup", dep("c")),
    )
    script = Script({"a": [http(400)], "b": ["no"], "c": ["no"]})
    out = route_once(router, "chat", script)
    assert script.called() == ["a"]
    assert out.error is not None
    assert out.error.client_status == 400
    assert out.result is None
    assert (out.fallback_used, out.template, out.exhausted) == (False, False, False)
    assert h.sleeps == []
    # The request's fault is not the deployment's: the breaker saw a success.
    assert out.breaker_states["chat"][name("a")] == "closed"


def test_breaker_opens_then_requests_skip_the_deployment() -> None:
    h = Harness()
    breaker = Breaker(window=2, failure_rate=0.5, min_calls=2, open_s=30.0, half_open_calls=1)
    router = h.router(
        route("chat", dep("a"), dep("b"), routing="round_robin", attempts=2, circuit_breaker=breaker)
    )
    script = Script({"a": [http(500)], "b": ["from b"]})
    for _ in range(2):  # round robin starts each request on a, which fails twice: the breaker opens
        assert route_once(router, "chat", script).result == "from b"
    assert script.called() == ["a", "b", "a", "b"]

    script.calls.clear()
    out = route_once(router, "chat", script)
    assert out.result == "from b"
    assert script.called() == ["b"]  # a was not called at all
    assert [(a.deployment, a.error_type) for a in out.attempts] == [
        (name("a"), BREAKER_OPEN),
        (name("b", index=1), OK),
    ]
    assert out.tries == 1
    assert out.breaker_states["chat"] == {name("a"): "open", name("b", index=1): "closed"}

    # After open_s, a trial call goes to a again; its success closes the breaker.
    h.clock.advance(30.0)
    script.outcomes["a"] = ["a is back"]
    script.calls.clear()
    outs = [route_once(router, "chat", script) for _ in range(2)]
    assert "a" in script.called()
    assert outs[-1].breaker_states["chat"][name("a")] == "closed"


def test_every_breaker_open_is_exhausted_without_calls() -> None:
    h = Harness()
    breaker = Breaker(window=1, failure_rate=1.0, min_calls=1, open_s=30.0, half_open_calls=1)
    router = h.router(route("chat", dep("a"), attempts=1, circuit_breaker=breaker))
    script = Script({"a": [http(503)]})
    route_once(router, "chat", script)
    script.calls.clear()
    out = route_once(router, "chat", script)
    assert script.calls == []
    assert out.exhausted
    assert out.error is not None
    assert out.error.client_status == 503
    assert [a.error_type for a in out.attempts] == [BREAKER_OPEN]


def test_failover_to_another_region() -> None:
    h = Harness()
    router = h.router(route("chat", dep("a", "us-east", weight=3), dep("b", "eu-west"), attempts=2))
    script = Script({"a": [http(503)], "b": ["from eu"]})
    out = route_once(router, "chat", script)
    assert out.result == "from eu"
    assert out.deployment is not None
    assert out.deployment.region == "eu-west"
    assert script.called() == ["a", "b"]
    assert [a.deployment for a in out.attempts] == [name("a", "us-east", 0), name("b", "eu-west", 1)]
    assert not out.fallback_used  # failover within a model shows in attempts only


def test_fallback_to_another_model() -> None:
    h = Harness()
    router = h.router(route("chat", dep("a"), attempts=2, fallbacks=("backup",)), route("backup", dep("c")))
    script = Script({"a": [http(500)], "c": ["from backup"]})
    out = route_once(router, "chat", script)
    assert out.result == "from backup"
    assert (out.model, out.fallback_used, out.exhausted) == ("backup", True, False)
    assert script.called() == ["a", "a", "c"]
    assert set(out.breaker_states) == {"chat", "backup"}


def test_template_answer_when_everything_fails() -> None:
    h = Harness()
    router = h.router(
        route("chat", dep("a"), attempts=2, fallbacks=("backup",), fallback_response="We are busy."),
        route("backup", dep("c"), attempts=1),
    )
    script = Script({"a": [http(500)], "c": [http(502)]})
    out = route_once(router, "chat", script)
    assert (out.template, out.fallback_used, out.exhausted) == (True, True, False)
    assert out.result is None
    assert out.template_body is not None
    assert out.template_body["object"] == "chat.completion"
    assert out.template_body["model"] == "chat"
    assert out.template_body["choices"][0]["message"] == {"role": "assistant", "content": "We are busy."}
    assert out.model == "chat"
    assert out.deployment is None
    assert out.error is not None  # kept for the record
    assert out.error.status == 502


def test_exhausted_with_the_error_chain() -> None:
    h = Harness()
    router = h.router(
        route("chat", dep("a"), dep("b"), attempts=3, fallbacks=("backup",)), route("backup", dep("c"))
    )
    script = Script({"a": [http(500)], "b": [http(503)], "c": [http(429)]})
    out = route_once(router, "chat", script)
    assert out.exhausted
    assert not out.template
    assert out.error is not None
    assert out.error.status == 429
    # Both deployments first; the third try of chat may go to either (the balancer's choice).
    assert [a.status for a in out.attempts][:2] == [500, 503]
    assert [a.status for a in out.attempts][2:] in ([500, 429, 429, 429], [503, 429, 429, 429])
    assert script.called()[3:] == ["c", "c", "c"]


def test_no_retry_starts_after_the_deadline() -> None:
    h = Harness()
    router = h.router(route("chat", dep("a", timeout_s=6.0), attempts=5, base_ms=1000, deadline_s=10.0))
    starts: list[float] = []
    timeouts: list[float] = []

    async def hang(d: Deployment, timeout_s: float) -> str:
        starts.append(h.clock.monotonic())
        timeouts.append(timeout_s)
        h.clock.advance(timeout_s)  # the upstream hangs until the attempt's timeout
        raise timeout_error(d, "response headers", timeout_s)

    out = route_once(router, "chat", hang)
    assert out.exhausted
    assert out.error is not None
    assert out.error.client_status == 504
    assert all(t < START + 10.0 for t in starts)
    assert timeouts[0] == 6.0
    assert len(starts) == 2  # 6 s, a backoff of at most 1 s, then the rest of the 10 s
    assert timeouts[1] == pytest.approx(10.0 - 6.0 - h.sleeps[0])
    assert h.clock.monotonic() == pytest.approx(START + 10.0)


def test_retry_budget_bounds_concurrent_retries() -> None:
    h = Harness()
    router = h.router(route("chat", dep("a"), attempts=2))
    gate = asyncio.Event()
    in_retry = 0
    peak = 0

    def make_call() -> Callable[[Deployment, float], Awaitable[str]]:
        tries = 0

        async def call(d: Deployment, timeout_s: float) -> str:
            nonlocal tries, in_retry, peak
            tries += 1
            if tries == 1:
                raise http(503, retry_after_s=1.0)
            in_retry += 1
            peak = max(peak, in_retry)
            await gate.wait()
            in_retry -= 1
            return "retried"

        return call

    async def main() -> list[Routed[str]]:
        async def opener() -> None:
            for _ in range(100):  # let every request reach its retry (or its refusal)
                await asyncio.sleep(0)
            gate.set()

        opening = asyncio.create_task(opener())
        outs = await asyncio.gather(*(router.run("chat", make_call(), active=1) for _ in range(6)))
        await opening
        return outs

    outs = run(main())
    assert peak == 3  # max(3, 0.2 * 1)
    assert sum(o.result == "retried" for o in outs) == 3
    refused = [o for o in outs if o.exhausted]
    assert len(refused) == 3
    assert all(o.attempts[-1].error_type == RETRY_BUDGET for o in refused)
    assert router.budget.stats().in_flight == 0


def test_unknown_model_is_a_key_error() -> None:
    h = Harness()
    router = h.router(route("chat", dep("a")))
    with pytest.raises(KeyError):
        route_once(router, "nope", Script({"a": ["x"]}))

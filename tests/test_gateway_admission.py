"""Admission on a fake clock: model allow-lists, rate limits on requests and tokens, budgets."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from helpers.services import redis_url
from kansoku.gateway import (
    DEFAULT_COMPLETION_TOKENS,
    Admission,
    GatewayConfig,
    Ticket,
    estimate_tokens,
    parse_config,
)
from kansoku.gateway._errors import BudgetExceeded, GatewayError, PermissionDenied, RateLimited
from kansoku.gateway._state import GatewayState, MemoryState
from kansoku.gateway._state_open import open_state
from kansoku.testing import FakeClock

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
TO_MIDNIGHT_S = 6400.0  # 1 h 46 min 40 s
TO_DECEMBER_S = 16 * 86_400 + TO_MIDNIGHT_S
KEY = "vk-canary-0123456789abcdef"
ENV = {"BOT_KEY": KEY, "OPS_KEY": "vk-canary-ops-0123456789", "WEB_KEY": "vk-canary-web-0123456789"}
MODELS = "models:\n  - {name: chat, fallback_response: hi}\n  - {name: big, fallback_response: hi}\n"
KEYS = """\
keys:
  - {name: bot, key: "${BOT_KEY}", tags: {department: support}}
  - {name: ops, key: "${OPS_KEY}", tags: {department: support}, models: [chat]}
  - {name: web, key: "${WEB_KEY}"}
"""
CHAT: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every admission test runs on both states: a limit must hold the same in Redis."""
    if request.param == "redis":
        redis_url()
    return str(request.param)


@contextlib.asynccontextmanager
async def opened(backend: str, clock: FakeClock) -> AsyncIterator[GatewayState]:
    if backend == "memory":
        state = await open_state("memory", clock=clock, dead_letter_path=":memory:", retain_days=1)
        try:
            yield state
        finally:
            await state.close()
        return
    from kansoku.gateway._state_redis import RedisState

    prefix = f"kansoku-test:{uuid.uuid4().hex}:"
    redis = await RedisState.connect(redis_url(), clock=clock, prefix=prefix, retain_days=1)
    try:
        yield redis
    finally:
        keys = [k async for k in redis.client.scan_iter(match=prefix + "*")]
        if keys:
            await redis.client.delete(*keys)
        await redis.close()


@dataclass
class Gate:
    config: GatewayConfig
    backend: str
    clock: FakeClock = field(default_factory=lambda: FakeClock(START))
    _state: GatewayState | None = None

    @property
    def state(self) -> GatewayState:
        assert self._state is not None, "only inside run()"
        return self._state

    @property
    def admission(self) -> Admission:
        return Admission(self.config, self.state, self.clock)  # stateless itself: all is in the state

    def run(self, body: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            async with opened(self.backend, self.clock) as state:
                self._state = state
                await body()

        asyncio.run(main())

    async def admit(
        self,
        key: str | None = "bot",
        user: str | None = None,
        model: str = "chat",
        body: dict[str, Any] | None = None,
    ) -> Ticket:
        keys = {k.name: k for k in self.config.keys}
        return await self.admission.admit(keys[key] if key else None, user, model, body or CHAT)

    async def refused(
        self,
        key: str | None = "bot",
        user: str | None = None,
        model: str = "chat",
        body: dict[str, Any] | None = None,
    ) -> GatewayError:
        with pytest.raises(GatewayError) as info:
            await self.admit(key, user, model, body)
        assert "canary" not in info.value.message  # no key in any refusal
        return info.value


def gate(backend: str, access: str, keys: str = KEYS) -> Gate:
    return Gate(parse_config(MODELS + keys + textwrap.dedent(access), "gateway.yaml", ENV), backend)


def test_nothing_configured_means_nothing_to_check() -> None:
    state = MemoryState(FakeClock(START))
    assert not Admission(parse_config(MODELS, "gateway.yaml", ENV), state, FakeClock()).active
    keyed = parse_config(MODELS + KEYS, "gateway.yaml", ENV)
    assert Admission(keyed, state, FakeClock()).active  # keys alone: the model allow-list applies
    asyncio.run(state.close())


def test_a_key_may_only_use_its_models(backend: str) -> None:
    g = gate(backend, "")

    async def go() -> None:
        await g.admit("ops", model="chat")
        err = await g.refused("ops", model="big")
        assert isinstance(err, PermissionDenied)
        assert (err.status, err.param) == (403, "model")
        assert "key 'ops' may not use model 'big'; it may use: chat" in err.message
        await g.admit("bot", model="big")  # no models: list, every model

    g.run(go)


def test_a_token_bucket_admits_its_capacity_then_says_when_to_retry(backend: str) -> None:
    g = gate(
        backend, "limits:\n  - {per: key, on: requests, algorithm: token_bucket, limit: 3, per_s: 0.5}\n"
    )

    async def go() -> None:
        for _ in range(3):
            await g.admit()
        err = await g.refused()
        assert isinstance(err, RateLimited)
        assert (err.status, err.retry_after_s) == (429, 2.0)
        assert err.body()["error"]["type"] == "rate_limit_error"
        assert (
            "rate limit reached for key 'bot': 3 requests at once, refilled at 0.5 per second" in err.message
        )
        await g.admit("web")  # another key has its own bucket
        g.clock.advance(1.9)
        await g.refused()
        g.clock.advance(0.1)
        await g.admit()
        await g.refused()

    g.run(go)


def test_a_sliding_window_has_no_double_burst_at_its_boundary(backend: str) -> None:
    g = gate(
        backend,
        "limits:\n  - {per: model, on: requests, algorithm: sliding_window, limit: 2, window_s: 10}\n",
    )

    async def go() -> None:
        g.clock.advance(9)  # late in a window, as a fixed-window counter would see it
        await g.admit()
        await g.admit("web")  # per model: every key counts
        g.clock.advance(2)  # a fixed window would have reset here
        err = await g.refused()
        assert err.retry_after_s == pytest.approx(8.0)
        await g.admit(model="big")  # another model, another window
        g.clock.advance(8)
        await g.admit()

    g.run(go)


def test_token_limits_take_the_estimate_and_give_back_what_was_not_used(backend: str) -> None:
    g = gate(
        backend,
        "limits:\n  - {per: user, on: tokens, algorithm: sliding_window, limit: 1000, window_s: 60}\n",
    )
    body = {**CHAT, "max_tokens": 400}
    estimate = estimate_tokens(body)
    assert 400 < estimate < 420

    async def go() -> None:
        first = await g.admit(user="u1", body=body)
        second = await g.admit(user="u1", body=body)
        assert await g.refused(user="u1", body=body)
        await g.admit(user="u2", body=body)  # each user has their own window
        await g.admit(user=None, body=body)  # no user: the per-user limit does not apply
        await g.admission.settle(first, 10, 40, 0.0)
        await g.admission.settle(second, 10, 40, 0.0)
        await g.admit(user="u1", body=body)  # the 2 x ~360 tokens not used are room again

    g.run(go)


def test_a_released_request_gives_its_tokens_back_and_settling_twice_does_nothing(backend: str) -> None:
    g = gate(backend, "limits:\n  - {per: key, on: tokens, algorithm: token_bucket, limit: 500, per_s: 1}\n")
    body = {**CHAT, "max_tokens": 400}

    async def go() -> None:
        ticket = await g.admit(body=body)
        await g.refused(body=body)
        await g.admission.release(ticket)
        again = await g.admit(body=body)
        await g.admission.settle(again, 10, 20, 0.0)
        await g.admission.release(again)  # a `finally: release` after settle: no second refund
        await g.admission.settle(again, 0, 0, 0.0)
        await g.admit(body={**CHAT, "max_tokens": 400})  # 500 - 30 left
        await g.refused(body={**CHAT, "max_tokens": 100})  # had the 30 been refunded, this would fit

    g.run(go)


def test_tokens_used_beyond_the_estimate_are_charged(backend: str) -> None:
    g = gate(
        backend, "limits:\n  - {per: key, on: tokens, algorithm: token_bucket, limit: 1000, per_s: 10}\n"
    )

    async def go() -> None:
        ticket = await g.admit()  # about 15 tokens estimated
        await g.admission.settle(ticket, 100, 1400, 0.0)  # the upstream ignored max_tokens
        err = await g.refused()  # the bucket is in debt: ~500 below empty
        assert err.retry_after_s is not None
        assert err.retry_after_s > 50

    g.run(go)


def test_a_request_larger_than_a_token_limit_is_refused_for_good(backend: str) -> None:
    g = gate(
        backend,
        "limits:\n  - {per: global, on: tokens, algorithm: sliding_window, limit: 1000, window_s: 60}\n",
    )

    async def go() -> None:
        err = await g.refused(body={**CHAT, "max_tokens": 5000})
        assert isinstance(err, RateLimited)
        assert err.retry_after_s is None  # no Retry-After: waiting would not help
        assert "needs about 5005 tokens, more than the gateway may use (1000 tokens per 60 s)" in err.message
        assert "lower max_tokens" in err.message

    g.run(go)


def test_limits_take_all_or_nothing(backend: str) -> None:
    g = gate(backend, """\
        limits:
          - {per: key, on: requests, algorithm: token_bucket, limit: 2, per_s: 0.001}
          - {per: user, on: tokens, algorithm: token_bucket, limit: 100, per_s: 0.001}
        """)  # fmt: skip

    async def go() -> None:
        for _ in range(5):  # refused by the user's tokens: the key's requests are not taken
            await g.refused(user="u1", body={**CHAT, "max_tokens": 200})
        await g.admit(user="u2")
        await g.admit(user="u3")
        await g.refused(user="u4")

    g.run(go)


def test_a_key_limit_equal_to_a_global_one_is_counted_once(backend: str) -> None:
    limit = "{on: requests, algorithm: token_bucket, limit: 3, per_s: 0.001}"
    keys = KEYS.replace("{department: support}}", "{department: support}, limits: [" + limit + "]}", 1)
    g = gate(backend, f"limits:\n  - {{per: key, {limit[1:]}\n", keys)

    async def go() -> None:
        for _ in range(3):
            await g.admit()
        await g.refused()

    g.run(go)


def test_a_requests_and_a_tokens_limit_with_equal_numbers_do_not_share_a_count(backend: str) -> None:
    g = gate(backend, """\
        limits:
          - {per: key, on: requests, algorithm: sliding_window, limit: 100, window_s: 60}
          - {per: key, on: tokens, algorithm: sliding_window, limit: 100, window_s: 60}
        """)  # fmt: skip

    async def go() -> None:
        await g.admit(body={**CHAT, "max_tokens": 80})  # 1 request, ~85 tokens
        await g.admit()  # 1 request, ~15 tokens: would not fit if both limits counted 86 + 16

    g.run(go)


def test_a_key_budget_refuses_once_spent_until_the_next_utc_day(backend: str) -> None:
    keys = KEYS.replace("{department: support}}", "{department: support}, budget: {daily_usd: 1}}", 1)
    g = gate(backend, "", keys)

    async def go() -> None:
        await g.admission.settle(await g.admit(), 5, 5, 0.6)
        await g.admission.settle(await g.admit(), 5, 5, 0.6)  # admitted at $0.60: under the budget
        err = await g.refused()
        assert isinstance(err, BudgetExceeded)
        assert (err.status, err.retry_after_s) == (429, TO_MIDNIGHT_S)
        assert err.body()["error"]["code"] == "budget_exceeded"
        assert "key 'bot' has spent $1.20 of its daily budget of $1.00" in err.message
        await g.admit("web")  # other keys are not affected
        g.clock.advance(TO_MIDNIGHT_S)
        await g.admit()

    g.run(go)


def test_a_department_budget_is_shared_by_its_keys_and_resets_monthly(backend: str) -> None:
    g = gate(backend, "budgets:\n  - {per: department, monthly_usd: 10}\n")

    async def go() -> None:
        await g.admission.settle(await g.admit("bot"), 1, 1, 6.0)
        g.clock.advance(86_400)
        await g.admission.settle(await g.admit("ops"), 1, 1, 4.0)
        err = await g.refused("bot")
        assert err.retry_after_s == TO_DECEMBER_S - 86_400
        assert "department 'support' has spent $10.00 of its monthly budget of $10.00" in err.message
        await g.admit("web")  # no department tag: the budget does not apply
        g.clock.advance(TO_DECEMBER_S - 86_400)
        await g.admit("ops")

    g.run(go)


def test_a_user_budget_counts_per_user_and_a_released_request_spends_nothing(backend: str) -> None:
    g = gate(backend, "budgets:\n  - {per: user, daily_usd: 0.5}\n")

    async def go() -> None:
        await g.admission.settle(await g.admit(user="u1"), 1, 1, 0.5)
        await g.admission.release(await g.admit(user="u2"))
        assert isinstance(await g.refused(user="u1"), BudgetExceeded)
        await g.admit(user="u2")
        await g.admit(user=None)
        assert await g.state.spend.spent(["user:u1:day:2023-11-14", "user:u2:day:2023-11-14"]) == [0.5, 0.0]

    g.run(go)


def test_spend_is_counted_per_utc_day_and_month(backend: str) -> None:
    keys = KEYS.replace("{department: support}}", "{department: support}, budget: {daily_usd: 9}}", 1)
    g = gate(backend, "budgets:\n  - {per: department, monthly_usd: 100}\n", keys)

    async def go() -> None:
        await g.admission.settle(await g.admit(), 1, 1, 0.25)
        counters = ["key:bot:day:2023-11-14", "department:support:month:2023-11", "key:bot:month:2023-11"]
        assert await g.state.spend.spent(counters) == [0.25, 0.25, 0.0]  # only what a budget reads

    g.run(go)


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        pytest.param({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}, 100 + 4 + 50,
                     id="chars-over-4"),
        pytest.param({"messages": [{"role": "user", "content": "x" * 40}]},
                     10 + 4 + DEFAULT_COMPLETION_TOKENS, id="default-completion"),
        pytest.param({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 40},
                      {"type": "image_url", "image_url": {"url": "data:"}}]}], "max_completion_tokens": 1},
                     10 + 4 + 85 + 1, id="parts"),
        pytest.param({"messages": [{"role": "assistant", "content": None, "tool_calls": [
                      {"function": {"name": "f", "arguments": "y" * 80}}]}], "max_tokens": 5, "n": 3},
                     20 + 4 + 15, id="tool-calls-and-n"),
        pytest.param({"input": ["a" * 40, "b" * 40]}, 20, id="embeddings"),
        pytest.param({"input": [[1, 2, 3], [4, 5]]}, 5, id="embeddings-token-ids"),
        pytest.param({"messages": "not a list", "max_tokens": True}, DEFAULT_COMPLETION_TOKENS,
                     id="malformed"),
    ],
)  # fmt: skip
def test_the_token_estimate_is_cheap_and_roughly_right(body: dict[str, Any], tokens: int) -> None:
    assert estimate_tokens(body) == tokens

"""Rate limits and budgets end to end over HTTP: what a client of a limited key sees.

A per-key token bucket lets exactly its capacity through (also under concurrency), then answers
429 with ``Retry-After`` and an OpenAI-style ``rate_limit_error`` that the SDK understands; a
budget refuses with ``budget_exceeded`` once the recorded spend (mock usage x price catalog)
reaches it. Refused requests never reach the upstream and are recorded as ``rejected``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from helpers.gateway import RunningGateway, start_gateway, write_config
from kansoku.testing import MockUpstream

KEYS = {name: f"vk-{name}-0123456789abcdef" for name in ("a", "b", "crowd", "spender", "streamer", "tokens")}
BUCKET = "{on: requests, algorithm: token_bucket, limit: %d, per_s: 0.0001}"


@pytest.fixture
def gw(tmp_path: Path, upstream: MockUpstream) -> Iterator[RunningGateway]:
    text = f"""
models:
  - name: chat
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {upstream.openai_base_url}
keys:
  - {{name: a, key: "{KEYS["a"]}", limits: [{BUCKET % 3}]}}
  - {{name: b, key: "{KEYS["b"]}", limits: [{BUCKET % 3}]}}
  - {{name: crowd, key: "{KEYS["crowd"]}", limits: [{BUCKET % 5}]}}
  - {{name: spender, key: "{KEYS["spender"]}", budget: {{daily_usd: 0.000001}}}}
  - {{name: streamer, key: "{KEYS["streamer"]}", budget: {{daily_usd: 0.000001}}}}
  - name: tokens
    key: "{KEYS["tokens"]}"
    limits: [{{on: tokens, algorithm: token_bucket, limit: 300, per_s: 0.0001}}]
"""
    running = start_gateway(write_config(tmp_path, text), tmp_path / "data")
    yield running
    running.stop()


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def test_a_token_bucket_passes_its_capacity_then_429s(gw: RunningGateway, upstream: MockUpstream) -> None:
    statuses = [gw.chat(headers=auth("a")).status for _ in range(3)]
    refused = gw.chat(headers=auth("a"))

    assert statuses == [200, 200, 200]
    assert refused.status == 429
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 10_001
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "key 'a'" in error["message"]
    assert upstream.request_count == 3
    # Per key: another key's bucket is untouched.
    assert gw.chat(headers=auth("b")).status == 200
    records = gw.records()
    [rejected] = [r for r in records if r.status_code == 429]
    assert rejected.attributes["kansoku.gateway.outcome"] == "rejected"
    assert rejected.attributes["kansoku.gateway.key"] == "a"
    assert rejected.error_type == "rate_limit_exceeded"
    assert rejected.llm is not None
    assert rejected.llm.input_tokens is None
    assert len(records) == 5


def test_exactly_the_capacity_passes_under_concurrency(gw: RunningGateway, upstream: MockUpstream) -> None:
    upstream.delay_ms = 50  # keep the admitted ones in flight while the others arrive
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: gw.chat(headers=auth("crowd")).status, range(12)))
    assert sorted(statuses) == [200] * 5 + [429] * 7
    assert upstream.request_count == 5


def test_the_sdk_sees_a_rate_limit_error(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.base_url, api_key=KEYS["a"], max_retries=0) as sdk:
        for _ in range(3):
            sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"]


def test_a_request_larger_than_a_token_limit_is_refused_without_retry_after(
    gw: RunningGateway, upstream: MockUpstream
) -> None:
    refused = gw.chat(headers=auth("tokens"), max_tokens=1000)
    assert refused.status == 429
    assert "retry-after" not in refused.headers  # waiting would not help
    assert "smaller request" in refused.json()["error"]["message"]
    assert upstream.request_count == 0
    assert gw.chat(headers=auth("tokens"), max_tokens=50).status == 200


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_budget_refuses_once_spent(gw: RunningGateway, upstream: MockUpstream, stream: bool) -> None:
    name = "streamer" if stream else "spender"
    first = gw.chat(headers=auth(name), stream=stream)
    assert first.status == 200
    deadline = time.monotonic() + 5  # a stream is charged after its last byte
    while gw.gateway.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    [record] = gw.records()
    assert record.llm is not None
    assert record.llm.cost_usd is not None
    assert record.llm.cost_usd > 0.000001  # the call crossed the budget; it still completed

    refused = gw.chat(headers=auth(name), stream=stream)
    assert refused.status == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "daily budget" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 86_400
    assert upstream.request_count == 1
    rejected = [r for r in gw.records() if r.status_code == 429]
    assert [r.attributes["kansoku.gateway.outcome"] for r in rejected] == ["rejected"]
    # Budgets are per key: another key still gets answers.
    assert gw.chat(headers=auth("b")).status == 200

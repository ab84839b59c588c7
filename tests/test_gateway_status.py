"""``GET /admin/status``: the gateway's state at a glance, behind the admin key.

After some traffic the status reports each deployment's calls, errors and breaker state, the
request outcome counts, a key's budget with what it spent, the configured limits with their use
right now and their refusals, and the dead letters — what the web UI's gateway page shows
(through the collector's ``/api/v1/gateway/status``). Limits' use is checked on a fake clock;
with Redis down the status still answers, with the use unknown.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.gateway import RunningGateway, start_gateway, write_config
from kansoku.gateway import parse_config
from kansoku.gateway._proxy import Gateway
from kansoku.gateway._serve import build_live
from kansoku.gateway._state_guard import GuardedState
from kansoku.gateway._status import status as read_status
from kansoku.pricing import PriceCatalog
from kansoku.testing import FakeClock, MockUpstream

ADMIN_KEY = "ak-status-admin-0123456789abcdef"
SPENDER_KEY = "vk-status-spender-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SPENDER = {"Authorization": f"Bearer {SPENDER_KEY}"}
DEPLOYMENT = "openai_compatible/gpt-4o-mini@default#0"


def config(up: MockUpstream) -> str:
    return f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    retry: {{attempts: 1}}
    circuit_breaker: {{window: 6, failure_rate: 0.5, min_calls: 6, open_s: 600, half_open_calls: 1}}
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {up.openai_base_url}
keys:
  - name: spender
    key: "{SPENDER_KEY}"
    budget: {{daily_usd: 5, monthly_usd: 50}}
    limits: [{{on: requests, algorithm: token_bucket, limit: 100, per_s: 10}}]
"""


@pytest.fixture
def gw(tmp_path: Path, upstream: MockUpstream) -> Iterator[RunningGateway]:
    running = start_gateway(write_config(tmp_path, config(upstream)), tmp_path / "data")
    yield running
    running.stop()


def status(gw: RunningGateway) -> dict[str, Any]:
    reply = gw.request("GET", "/admin/status", headers=ADMIN)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def test_the_status_needs_the_admin_key(gw: RunningGateway) -> None:
    assert gw.request("GET", "/admin/status").status == 401
    assert gw.request("GET", "/admin/status", headers=SPENDER).status == 401  # a virtual key is no admin
    wrong = {"Authorization": "Bearer ak-not-the-admin-key-0123456789abcdef"}
    assert gw.request("GET", "/admin/status", headers=wrong).status == 401
    assert status(gw)["inflight"] == 0


def test_the_status_reports_deployments_breakers_budgets_and_dead_letters(
    gw: RunningGateway, upstream: MockUpstream
) -> None:
    before = status(gw)
    [route] = before["models"]
    [fresh] = route["deployments"]
    assert (fresh["name"], fresh["calls"], fresh["breaker"]) == (DEPLOYMENT, 0, "closed")
    assert fresh["error_rate"] is None
    assert fresh["mean_latency_ms"] is None

    assert [gw.chat(headers=SPENDER).status for _ in range(2)] == [200, 200]
    upstream.set_fault("server_error", count=4)
    failed = [gw.chat(headers=SPENDER) for _ in range(4)]
    assert all(r.status >= 500 for r in failed), [r.status for r in failed]
    letter_ids = [r.headers["x-kansoku-dead-letter"] for r in failed]

    # Spend is charged once the record is priced: wait for it.
    deadline = time.monotonic() + 10
    while True:
        now = status(gw)
        [budget] = now["budgets"]
        if budget["spent_today_usd"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    [route] = now["models"]
    assert (route["name"], route["routing"], route["fallbacks"], route["template"]) == (
        "chat", "weighted", [], False,
    )  # fmt: skip
    [dep] = route["deployments"]
    assert dep["name"] == DEPLOYMENT
    assert (dep["calls"], dep["errors"]) == (6, 4)
    assert dep["error_rate"] == pytest.approx(4 / 6)
    assert dep["mean_latency_ms"] > 0
    assert dep["failure_streak"] == 4
    assert dep["breaker"] == "open"  # 4 failures of the last 6 calls, over the 50 % threshold
    assert now["requests"].get("ok") == 2
    assert now["requests"].get("dead_letter") == 4

    assert budget["per"] == "key"
    assert budget["subject"] == "spender"
    assert (budget["daily_usd"], budget["monthly_usd"]) == (5, 50)
    assert 0 < budget["spent_today_usd"] < 5
    assert budget["spent_this_month_usd"] >= budget["spent_today_usd"]

    [limit] = now["limits"]
    assert {k: v for k, v in limit.items() if k not in ("usage", "refused")} == {
        "per": "key", "on": "requests", "key": "spender", "algorithm": "token_bucket", "limit": 100,
        "per_s": 10,
    }  # fmt: skip
    [usage] = limit["usage"]  # the real clock refills meanwhile: at most the 6 requests are used
    assert (usage["subject"], usage["limit"], limit["refused"]) == ("spender", 100, 0)
    assert 0 <= usage["used"] <= 6
    letters = now["dead_letters"]
    assert [d["id"] for d in letters] == letter_ids[::-1]  # newest first
    assert {(d["model"], d["key_name"], d["attempts"], d["last_error"], d["replays"]) for d in letters} == {
        ("chat", "spender", 1, "server_error", 0)
    }
    # The open breaker refuses without calling the upstream.
    sent = upstream.request_count
    assert gw.chat(headers=SPENDER).status >= 500
    assert upstream.request_count == sent


# -- limits: use now and refusals, on a fake clock -----------------------------------------------

OTHER_KEY = "vk-status-other-0123456789abcdef"
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


def limits_config(up: MockUpstream) -> str:
    return f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    retry: {{attempts: 1}}
    deployments:
      - {{provider: openai_compatible, model: gpt-4o-mini, api_base: "{up.openai_base_url}"}}
limits:
  - {{per: global, on: requests, algorithm: sliding_window, limit: 4, window_s: 60}}
  - {{per: user, on: requests, algorithm: sliding_window, limit: 100, window_s: 60}}
  - {{per: model, on: tokens, algorithm: token_bucket, limit: 100000, per_s: 10}}
  - {{per: key, on: requests, algorithm: sliding_window, limit: 50, window_s: 60}}
keys:
  - name: spender
    key: "{SPENDER_KEY}"
    limits: [{{on: requests, algorithm: token_bucket, limit: 3, per_s: 1}}]
  - name: other
    key: "{OTHER_KEY}"
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limited(tmp_path: Path, upstream: MockUpstream, clock: FakeClock) -> Iterator[RunningGateway]:
    running = start_gateway(write_config(tmp_path, limits_config(upstream)), tmp_path / "data", clock=clock)
    yield running
    running.stop()


def limits_by(body: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    return {(lim["per"], lim["on"], lim["key"]): lim for lim in body["limits"]}


def used(lim: dict[str, Any]) -> dict[str | None, float | None]:
    assert all(u["limit"] == lim["limit"] for u in lim["usage"])
    return {u["subject"]: u["used"] for u in lim["usage"]}


def test_a_sliding_window_shows_the_requests_in_it_and_empties_after_the_window(
    limited: RunningGateway, clock: FakeClock
) -> None:
    fresh = limits_by(status(limited))
    assert used(fresh["global", "requests", None]) == {None: 0.0}  # one subject: the whole gateway
    assert used(fresh["key", "requests", None]) == {"spender": 0.0, "other": 0.0}  # each key
    assert fresh["global", "requests", None]["refused"] == 0

    for n in range(1, 5):
        assert limited.chat(headers=OTHER).status == 200
        clock.advance(1)
        now = limits_by(status(limited))
        assert used(now["global", "requests", None]) == {None: float(n)}
        assert used(now["key", "requests", None]) == {"spender": 0.0, "other": float(n)}

    assert limited.chat(headers=OTHER).status == 429  # the fifth in 60 s
    now = limits_by(status(limited))
    assert now["global", "requests", None]["refused"] == 1
    assert now["key", "requests", None]["refused"] == 0  # only the limit that refused counts
    assert used(now["global", "requests", None]) == {None: 4.0}  # a refusal takes nothing

    clock.advance(56)  # requests went at 0, 1, 2, 3 s; now 60 s: the first is out of the window
    assert used(limits_by(status(limited))["global", "requests", None]) == {None: 3.0}
    clock.advance(3)
    after = limits_by(status(limited))
    assert used(after["global", "requests", None]) == {None: 0.0}
    assert after["global", "requests", None]["refused"] == 1  # refusals count since start
    assert limited.chat(headers=OTHER).status == 200


def test_a_token_bucket_shows_what_was_taken_and_refills(limited: RunningGateway, clock: FakeClock) -> None:
    tokens = 0
    for _ in range(3):
        reply = limited.chat(headers=SPENDER)
        assert reply.status == 200
        usage = reply.json()["usage"]
        tokens += usage["prompt_tokens"] + usage["completion_tokens"]
    now = limits_by(status(limited))
    bucket = now["key", "requests", "spender"]  # the key's own limit: that key alone
    assert (bucket["algorithm"], bucket["limit"], used(bucket)) == ("token_bucket", 3, {"spender": 3.0})
    # A tokens limit shows the real usage once the estimate is settled.
    assert used(now["model", "tokens", None]) == {"chat": float(tokens)}

    assert limited.chat(headers=SPENDER).status == 429
    refused = limits_by(status(limited))["key", "requests", "spender"]
    assert (refused["refused"], used(refused)) == (1, {"spender": 3.0})

    clock.advance(2)  # refilled at 1 per second
    assert used(limits_by(status(limited))["key", "requests", "spender"]) == {"spender": 1.0}
    clock.advance(10)
    assert used(limits_by(status(limited))["key", "requests", "spender"]) == {"spender": 0.0}


def test_per_user_limits_are_not_enumerated(limited: RunningGateway) -> None:
    assert limited.chat(headers=OTHER, user="u-1").status == 200
    per_user = limits_by(status(limited))["user", "requests", None]
    assert per_user["usage"] == []
    assert "not enumerated" in per_user["subjects"]
    assert per_user["refused"] == 0


def test_the_subjects_of_one_limit_are_capped_at_50(tmp_path: Path, upstream: MockUpstream) -> None:
    keys = "".join(
        f'  - {{name: k{i:02d}, key: "vk-status-many-{i:02d}-0123456789abcdef"}}\n' for i in range(60)
    )
    text = f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - {{name: chat, fallback_response: hi}}
limits:
  - {{per: key, on: requests, algorithm: sliding_window, limit: 5, window_s: 60}}
keys:
{keys}"""
    running = start_gateway(write_config(tmp_path, text), tmp_path / "data", clock=FakeClock())
    try:
        [lim] = status(running)["limits"]
    finally:
        running.stop()
    assert [u["subject"] for u in lim["usage"]] == [f"k{i:02d}" for i in range(50)]
    assert lim["subjects"] == "the first 50 of 60 keys"


def test_with_redis_down_the_status_answers_with_the_use_unknown(upstream: MockUpstream) -> None:
    from kansoku.gateway._state_redis import RedisState, redis_client

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    config = parse_config(limits_config(upstream))

    async def main() -> dict[str, Any]:
        # The production client; RedisState.connect would refuse to start without a server.
        client = redis_client(f"redis://127.0.0.1:{port}/0")
        state = GuardedState(
            RedisState(client, f"127.0.0.1:{port}", clock=clock, prefix="t:", retain_days=1), clock=clock
        )
        live = build_live(config, state, clock, PriceCatalog.default())
        gw = Gateway(live, state, None, clock, None)  # type: ignore[arg-type] # no upstream calls here
        try:
            return await read_status(gw)
        finally:
            await state.close()

    body = asyncio.run(main())
    lims = limits_by(body)
    assert used(lims["global", "requests", None]) == {None: None}
    assert used(lims["key", "requests", None]) == {"spender": None, "other": None}
    assert lims["global", "requests", None]["refused"] == 0
    assert body["models"][0]["deployments"][0]["breaker"] == "unknown"
    assert body["dead_letters"] == []
    assert "could not be read" in body["dead_letters_error"]

"""``GET /admin/status``: the gateway's state at a glance, behind the admin key.

After some traffic the status reports each deployment's calls, errors and breaker state, the
request outcome counts, a key's budget with what it spent, the configured limits and the dead
letters — what the web UI's gateway page shows (through the collector's
``/api/v1/gateway/status``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.gateway import RunningGateway, start_gateway, write_config
from kansoku.testing import MockUpstream

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

    assert now["limits"] == [
        {"per": "key", "on": "requests", "key": "spender", "algorithm": "token_bucket", "limit": 100,
         "per_s": 10},
    ]  # fmt: skip
    letters = now["dead_letters"]
    assert [d["id"] for d in letters] == letter_ids[::-1]  # newest first
    assert {(d["model"], d["key_name"], d["attempts"], d["last_error"], d["replays"]) for d in letters} == {
        ("chat", "spender", 1, "server_error", 0)
    }
    # The open breaker refuses without calling the upstream.
    sent = upstream.request_count
    assert gw.chat(headers=SPENDER).status >= 500
    assert upstream.request_count == sent

"""Every client request is accounted for: reliability test 4 over HTTP.

10,000 requests at a concurrency of 32 through a real gateway whose upstreams fail 30 % of the
time (5xx, and 429 on one deployment). Each request ends as a success, a dead letter or a client
error — counted by the client from what it received, by the gateway (``counts``), by the exported
records (one request-level record each) and by the dead-letter store (through the admin API) —
and the four views agree exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers.gateway import RunningGateway, start_gateway, write_config
from kansoku.testing import MockUpstream

ADMIN_KEY = "admin-key-for-accounting-0123456789abcdef"
TOTAL = 10_000
CONCURRENCY = 32


def _dep(up: MockUpstream) -> str:
    return f"{{provider: openai_compatible, model: gpt-mock, api_base: '{up.openai_base_url}'}}"


def _model_for(i: int) -> str:
    if i % 50 == 0:
        return "strict"  # its upstream refuses every prompt as too long: a 400, no retry
    if i % 97 == 0:
        return "no-such-model"  # refused by the gateway itself: a 404
    return "chat"


@pytest.fixture
def accounting_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    with (
        MockUpstream(fault="server_error", fault_rate=0.3, seed=1) as a,
        MockUpstream(fault="server_error", fault_rate=0.3, seed=2) as b,
        MockUpstream(fault="rate_limit", fault_rate=0.3, seed=3, retry_after=1) as c,
        MockUpstream(fault="context_length") as strict,
    ):
        config = f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    routing: round_robin
    deployments: [{_dep(a)}, {_dep(b)}, {_dep(c)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 5}}
  - name: strict
    deployments: [{_dep(strict)}]
"""
        running = start_gateway(write_config(tmp_path, config), tmp_path / "data")
        try:
            yield running
        finally:
            running.stop()


async def _load(url: str) -> list[tuple[int, str | None]]:
    """(status, dead-letter id) per request, in request order."""
    results: list[tuple[int, str | None]] = [(0, None)] * TOTAL
    todo = iter(range(TOTAL))
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for i in todo:
                body = {"model": _model_for(i), "messages": [{"role": "user", "content": f"request {i}"}]}
                async with session.post("/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    results[i] = (resp.status, resp.headers.get("x-kansoku-dead-letter"))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


async def _all_letter_ids(url: str) -> list[str]:
    """Every dead letter, paged through the admin API (newest first)."""
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 1000}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with aiohttp.ClientSession(url) as session:
        while True:
            async with session.get("/admin/dead-letters", params=params, headers=headers) as resp:
                assert resp.status == 200
                page = await resp.json()
            ids += [letter["id"] for letter in page["data"]]
            if len(page["data"]) < params["limit"]:
                return ids
            params["before"] = page["next_before"]


def test_every_request_is_a_success_a_dead_letter_or_a_client_error(
    accounting_gateway: RunningGateway,
) -> None:
    gw = accounting_gateway
    started = time.monotonic()
    results = asyncio.run(_load(gw.url))
    elapsed = time.monotonic() - started

    # The client's view: what each request got back.
    success = [i for i, (status, _) in enumerate(results) if status == 200]
    dead = [i for i, (status, letter) in enumerate(results) if letter is not None]
    client = [i for i, (status, letter) in enumerate(results) if 400 <= status < 500 and letter is None]
    unaccounted = set(range(TOTAL)) - set(success) - set(dead) - set(client)
    print(
        f"accounting: {TOTAL} requests in {elapsed:.1f} s: {len(success)} ok, {len(dead)} dead-lettered, "
        f"{len(client)} client errors, {len(unaccounted)} unaccounted"
    )
    assert not unaccounted, Counter(results[i][0] for i in unaccounted)
    assert len(success) + len(dead) + len(client) == TOTAL
    # The mix is what the faults make it: no class is empty, failures stay a minority.
    assert len(client) == sum(1 for i in range(TOTAL) if _model_for(i) != "chat")
    assert 0 < len(dead) < len(success)
    assert all(results[i][0] in (429, 500, 502, 503, 504) for i in dead)

    # The gateway's counters.
    counts = dict(gw.gateway.counts)
    assert sum(counts.values()) == TOTAL, counts
    assert counts.get("ok", 0) + counts.get("template", 0) == len(success)
    assert counts.get("dead_letter", 0) == len(dead)
    assert counts.get("client_error", 0) + counts.get("rejected", 0) == len(client)

    # The exported records: one request-level record per request, none dropped.
    records = gw.records()
    assert gw.gateway.recorder is not None
    assert gw.gateway.recorder.stats()["dropped_total"] == 0
    assert len(records) == TOTAL
    assert len({r.trace_id for r in records}) == TOTAL
    assert Counter(r.attributes["kansoku.gateway.outcome"] for r in records) == Counter(counts)

    # The dead-letter queue holds exactly the letters the clients were told about.
    told = {letter for _, letter in results if letter is not None}
    assert len(told) == len(dead)
    recorded = {
        r.attributes["kansoku.gateway.dead_letter_id"]
        for r in records
        if "kansoku.gateway.dead_letter_id" in r.attributes
    }
    stored = asyncio.run(_all_letter_ids(gw.url))
    assert len(stored) == len(set(stored)) == len(dead)
    assert set(stored) == told == recorded


def test_requests_refused_before_routing_are_still_accounted(tmp_path: Path) -> None:
    with MockUpstream() as up:
        config = f"models:\n  - name: chat\n    deployments: [{_dep(up)}]\n"
        running = start_gateway(write_config(tmp_path, config), tmp_path / "data")
        try:
            statuses = [
                running.request("POST", "/v1/chat/completions", b"{not json").status,
                running.request("POST", "/v1/chat/completions", {"messages": []}).status,
                running.chat("no-such-model").status,
            ]
            assert statuses == [400, 400, 404]
            assert up.request_count == 0
            assert sum(running.gateway.counts.values()) == 3, running.gateway.counts
            assert len(running.records()) == 3
        finally:
            running.stop()

"""The gateway end to end over HTTP against failing mock upstreams: what a client notices.

Every test runs a real gateway (``helpers.gateway``) in front of real :class:`MockUpstream`
servers on loopback and asserts on the client's view (status, body, ``x-kansoku-*`` headers,
timing), on what the upstream received, and on the exported records. Faults are queued on the
mock (``set_fault(mode, count=n)``) or server-wide: the ``x-mock-fault`` header is not forwarded
by the gateway, as no caller header outside the allow-list is.

Policy arithmetic with a fake clock lives in ``test_policy_*.py`` and ``test_gateway_router.py``;
here the same policies are checked through the whole stack, with real time kept short.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers.gateway import Reply, RunningGateway, start_gateway, write_config
from kansoku.clock import SystemClock
from kansoku.model import Span
from kansoku.testing import MockUpstream
from kansoku.testing._mock_http import Action, HttpRequest, StreamReply
from kansoku.testing._mock_http import Reply as MockReply

ADMIN_KEY = "admin-key-for-fault-tests-0123456789abcdef"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


# -- helpers ---------------------------------------------------------------------------------------


class TimedMock(MockUpstream):
    """A mock upstream that also notes when each API request arrived (monotonic seconds)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, str | None]] = []  # (monotonic s, traceparent)

    def _handle(self, req: HttpRequest) -> MockReply | StreamReply | Action:
        if not req.path.startswith("/_mock/"):
            self.arrivals.append((time.monotonic(), req.header("traceparent")))
        return super()._handle(req)


def dep(up: MockUpstream, region: str = "default", timeout_s: float | None = None) -> str:
    """One YAML flow-mapping deployment pointing at ``up``."""
    extra = f", timeout_s: {timeout_s}" if timeout_s is not None else ""
    return (
        f"{{provider: openai_compatible, model: gpt-mock, api_base: '{up.openai_base_url}', "
        f"region: {region}{extra}}}"
    )


def dep_name(index: int, region: str = "default") -> str:
    return f"openai_compatible/gpt-mock@{region}#{index}"


@contextlib.contextmanager
def gateway(tmp_path: Path, text: str) -> Iterator[RunningGateway]:
    running = start_gateway(write_config(tmp_path, text), tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


def record_of(running: RunningGateway, reply: Reply) -> Span:
    """The request-level record of the request that got ``reply``."""
    trace = reply.headers["x-kansoku-trace-id"]
    found = [r for r in running.records() if r.trace_id == trace]
    assert len(found) == 1, f"expected one record for trace {trace}, got {len(found)}"
    return found[0]


def attempt_spans(running: RunningGateway, record: Span) -> list[Span]:
    spans = [s for s in running.flush() if s.kind == "client" and s.parent_span_id == record.span_id]
    return sorted(spans, key=lambda s: s.attributes["kansoku.gateway.attempt"])


def sse_events(body: bytes) -> list[str]:
    return [line.removeprefix("data: ") for line in body.decode().split("\n\n") if line.startswith("data: ")]


def content_of(reply: Reply) -> str:
    text: str = reply.json()["choices"][0]["message"]["content"]
    return text


def in_parallel(n: int, work: Callable[[int], Reply]) -> list[Reply]:
    """Run ``work(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Reply:
        barrier.wait(10)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def admin_letter(running: RunningGateway, letter_id: str) -> dict[str, Any]:
    reply = running.request(
        "GET", f"/admin/dead-letters/{letter_id}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert reply.status == 200, reply.body
    data: dict[str, Any] = reply.json()
    return data


# -- 429, 5xx, fallbacks, template, dead letter -------------------------------------------------------


def test_429_with_retry_after_is_retried_after_the_wait(tmp_path: Path) -> None:
    with MockUpstream(retry_after=1) as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 3, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            up.set_fault("rate_limit", count=1)
            started = time.monotonic()
            reply = gw.chat()
            elapsed = time.monotonic() - started
            assert reply.status == 200, reply.body
            assert reply.headers["x-kansoku-attempts"] == "2"
            # Backoff alone is at most 2 ms: only the upstream's Retry-After: 1 explains a 1 s wait.
            assert 1.0 <= elapsed < 2.5
            assert up.request_count == 2
            record = record_of(gw, reply)
            assert record.attributes["kansoku.gateway.outcome"] == "ok"
            assert record.attributes["kansoku.gateway.attempts"] == 2
            first, second = attempt_spans(gw, record)
            assert (first.status_code, first.error_type) == (429, "rate_limit")
            assert (second.status, second.error_type) == ("ok", None)


def test_429_storm_on_one_deployment_fails_over_and_ejects_it(tmp_path: Path) -> None:
    with MockUpstream(retry_after=0) as storm, MockUpstream() as calm:
        storm.set_fault("rate_limit")
        config = f"""
models:
  - name: chat
    routing: round_robin
    deployments: [{dep(storm)}, {dep(calm)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            replies = [gw.chat(content=f"q{i}") for i in range(20)]
            assert [r.status for r in replies] == [200] * 20
            assert {r.headers["x-kansoku-deployment"] for r in replies} == {dep_name(1)}
            # Round robin sends each request to the storm first until 5 failures in a row eject it.
            assert [r.headers["x-kansoku-attempts"] for r in replies] == ["2"] * 5 + ["1"] * 15
            assert storm.request_count == 5
            assert calm.request_count == 20
            records = gw.records()
            assert len(records) == 20
            assert all(r.attributes["kansoku.gateway.outcome"] == "ok" for r in records)
            failed = [s for s in gw.flush() if s.kind == "client" and s.status_code == 429]
            assert len(failed) == 5


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, MockUpstream]]:
    """Models over two always-5xx deployments (500, then 503: round robin starts with the first
    and every model is asked once per test), each with a different last resort."""
    tmp = tmp_path_factory.mktemp("ladder")
    with MockUpstream() as bad1, MockUpstream() as bad2, MockUpstream(reply="from backup") as good:
        bad1.set_fault("server_error")
        bad2.set_fault("overloaded")
        bad = f"[{dep(bad1)}, {dep(bad2)}]"
        config = f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: with-fallback
    routing: round_robin
    deployments: {bad}
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
    fallbacks: [backup]
  - name: with-template
    routing: round_robin
    deployments: {bad}
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
    fallback_response: "Sorry, try again later."
  - name: bare
    routing: round_robin
    deployments: {bad}
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
  - name: backup
    deployments: [{dep(good)}]
"""
        with gateway(tmp, config) as gw:
            yield gw, good


def test_5xx_is_retried_then_succeeds(tmp_path: Path) -> None:
    with MockUpstream() as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 3, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            up.set_fault("server_error", count=2)
            reply = gw.chat()
            assert reply.status == 200, reply.body
            assert reply.headers["x-kansoku-attempts"] == "3"
            assert "x-kansoku-fallback" not in reply.headers
            assert up.request_count == 3
            record = record_of(gw, reply)
            assert record.attributes["kansoku.gateway.outcome"] == "ok"
            assert [s.status_code for s in attempt_spans(gw, record)] == [500, 500, 200]


def test_all_deployments_5xx_the_fallback_model_answers(
    ladder: tuple[RunningGateway, MockUpstream],
) -> None:
    gw, good = ladder
    before = good.request_count
    reply = gw.chat("with-fallback")
    assert reply.status == 200, reply.body
    assert reply.headers["x-kansoku-fallback"] == "model:backup"
    assert reply.headers["x-kansoku-attempts"] == "3"  # both failing deployments, then backup
    assert content_of(reply) == "from backup"
    assert good.request_count == before + 1
    record = record_of(gw, reply)
    assert record.attributes["kansoku.gateway.outcome"] == "ok"
    assert record.attributes["kansoku.gateway.fallback_used"] is True
    assert record.attributes["kansoku.gateway.answered_model"] == "backup"
    assert [s.status_code for s in attempt_spans(gw, record)] == [500, 503, 200]


def test_all_deployments_5xx_without_fallback_model_the_template_answers(
    ladder: tuple[RunningGateway, MockUpstream],
) -> None:
    gw, good = ladder
    before = good.request_count
    reply = gw.chat("with-template")
    assert reply.status == 200, reply.body
    assert reply.headers["x-kansoku-fallback"] == "template"
    assert content_of(reply) == "Sorry, try again later."
    assert good.request_count == before
    record = record_of(gw, reply)
    assert record.attributes["kansoku.gateway.outcome"] == "template"
    assert record.attributes["kansoku.gateway.template"] is True
    assert len(attempt_spans(gw, record)) == 2


def test_all_deployments_5xx_with_no_fallback_is_a_clear_error_and_a_dead_letter(
    ladder: tuple[RunningGateway, MockUpstream],
) -> None:
    gw, _ = ladder
    reply = gw.chat("bare", content="keep me for replay")
    assert reply.status in (502, 503), reply.body
    error = reply.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == "server_error"
    letter_id = reply.headers["x-kansoku-dead-letter"]
    assert reply.headers["x-kansoku-attempts"] == "2"
    letter = admin_letter(gw, letter_id)
    assert letter["model"] == "bare"
    assert letter["request"]["messages"][0]["content"] == "keep me for replay"
    assert [a["status"] for a in letter["attempts"]] == [500, 503]
    record = record_of(gw, reply)
    assert record.attributes["kansoku.gateway.outcome"] == "dead_letter"
    assert record.attributes["kansoku.gateway.dead_letter_id"] == letter_id
    assert record.status_code == reply.status


# -- hangs, slow answers, deadline ------------------------------------------------------------------


def test_hanging_upstreams_get_the_client_an_error_at_the_deadline(tmp_path: Path) -> None:
    deadline_s = 1.0
    with TimedMock(fault="hang") as a, TimedMock(fault="hang") as b:
        config = f"""
models:
  - name: chat
    deployments: [{dep(a, timeout_s=0.3)}, {dep(b, timeout_s=0.3)}]
    retry: {{attempts: 10, base_ms: 1, cap_ms: 2}}
    deadline_s: {deadline_s}
"""
        with gateway(tmp_path, config) as gw:
            started = time.monotonic()
            reply = gw.chat()
            elapsed = time.monotonic() - started
            after = time.monotonic()
            time.sleep(0.3)  # a retry scheduled past the deadline would show up now
            assert reply.status == 504, reply.body
            assert reply.json()["error"]["code"] == "upstream_timeout"
            assert "x-kansoku-dead-letter" in reply.headers
            # Retries used the whole deadline (0.3 s timeouts, 4 attempts) but not a moment more.
            assert deadline_s - 0.1 <= elapsed <= deadline_s + 0.35, elapsed
            arrivals = sorted(t for t, _ in a.arrivals + b.arrivals)
            assert 3 <= len(arrivals) <= 4
            assert all(t < started + deadline_s for t in arrivals), [t - started for t in arrivals]
            assert not [t for t in arrivals if t > after]
            print(f"deadline overshoot: {(elapsed - deadline_s) * 1000:.0f} ms")


def test_hanging_upstream_with_a_template_answers_by_the_deadline(tmp_path: Path) -> None:
    with TimedMock(fault="hang") as a:
        config = f"""
models:
  - name: chat
    deployments: [{dep(a, timeout_s=0.3)}]
    retry: {{attempts: 10, base_ms: 1, cap_ms: 2}}
    deadline_s: 0.5
    fallback_response: "busy"
"""
        with gateway(tmp_path, config) as gw:
            started = time.monotonic()
            reply = gw.chat()
            elapsed = time.monotonic() - started
            assert reply.status == 200
            assert content_of(reply) == "busy"
            assert 0.4 <= elapsed <= 0.5 + 0.35, elapsed
            assert len(a.arrivals) == 2
            assert all(t < started + 0.5 for t, _ in a.arrivals)


def test_slow_deployment_beyond_its_timeout_fails_over(tmp_path: Path) -> None:
    with MockUpstream(delay_ms=3000) as slow, MockUpstream() as fast:
        config = f"""
models:
  - name: chat
    routing: round_robin
    deployments: [{dep(slow, timeout_s=0.3)}, {dep(fast, timeout_s=0.3)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            started = time.monotonic()
            reply = gw.chat()
            elapsed = time.monotonic() - started
            assert reply.status == 200, reply.body
            assert reply.headers["x-kansoku-deployment"] == dep_name(1)
            assert reply.headers["x-kansoku-attempts"] == "2"
            assert 0.3 <= elapsed < 1.0, elapsed
            first, _ = attempt_spans(gw, record_of(gw, reply))
            assert first.error_type == "timeout"
            assert first.status_code is None


def test_malformed_json_is_retried_as_a_server_error(tmp_path: Path) -> None:
    with MockUpstream() as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            up.set_fault("malformed_json", count=1)
            reply = gw.chat()
            assert reply.status == 200, reply.body
            assert reply.headers["x-kansoku-attempts"] == "2"
            first, second = attempt_spans(gw, record_of(gw, reply))
            assert first.error_type == "server_error"
            assert first.error_message is not None
            assert "malformed" in first.error_message
            assert second.status == "ok"

            up.set_fault("malformed_json", count=2)
            reply = gw.chat()
            assert reply.status == 502, reply.body  # a broken 200 is a bad gateway, never a 200
            assert reply.json()["error"]["code"] == "upstream_malformed_response"
            assert "x-kansoku-dead-letter" in reply.headers


# -- streams ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["disconnect", "hang", "server_error"])
def test_stream_failing_before_its_first_chunk_fails_over(tmp_path: Path, fault: str) -> None:
    with MockUpstream() as broken, MockUpstream(reply="all of it") as good:
        broken.set_fault(fault)
        config = f"""
models:
  - name: chat
    routing: round_robin
    deployments: [{dep(broken, timeout_s=0.3)}, {dep(good, timeout_s=0.3)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            reply = gw.chat(stream=True)
            assert reply.status == 200, reply.body
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert reply.headers["x-kansoku-attempts"] == "2"
            events = sse_events(reply.body)
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert not [c for c in chunks if "error" in c]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            assert text == "all of it"
            assert broken.request_count == 1
            record = record_of(gw, reply)
            assert record.attributes["kansoku.gateway.outcome"] == "ok"


def test_stream_broken_after_chunks_ends_with_an_error_event_and_a_dead_letter(tmp_path: Path) -> None:
    with MockUpstream(reply="one two three four five six seven eight nine ten") as up:
        up.set_fault("truncated_stream", count=1)
        config = f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            reply = gw.chat(stream=True)
            assert reply.status == 200  # the 200 went out with the first chunk
            events = sse_events(reply.body)
            assert "[DONE]" not in events, "a broken stream must not look complete"
            chunks = [json.loads(e) for e in events]
            assert "choices" in chunks[0]  # the client did get the start of the answer
            last = chunks[-1]
            assert set(last) == {"error"}
            assert last["error"]["code"] == "upstream_connection_error"
            assert up.request_count == 1  # no retry once bytes reached the client
            record = record_of(gw, reply)
            assert record.attributes["kansoku.gateway.outcome"] == "dead_letter"
            assert record.status == "error"
            letter = admin_letter(gw, record.attributes["kansoku.gateway.dead_letter_id"])
            assert letter["attempts"][-1]["error_type"] == "connection"
            assert gw.gateway.counts == {"dead_letter": 1}


# -- a dead region ------------------------------------------------------------------------------------


class JumpClock(SystemClock):
    """Real time plus an offset the test moves forward (to end a 30 s ejection at once)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:  # the gateway's backoff: advance rather than wait
        self.offset += max(0.0, seconds)


@pytest.mark.parametrize("routing", ["round_robin", "weighted"])
def test_dead_region_is_ejected_after_5_failures_and_probed_back(tmp_path: Path, routing: str) -> None:
    dead = MockUpstream().start()
    port = dead.port
    dead.stop()  # the whole region is gone: connections are refused
    us, eu = dep_name(0, "us-east"), dep_name(1, "eu-west")
    clock = JumpClock()
    with MockUpstream() as healthy:
        config = f"""
models:
  - name: chat
    routing: {routing}
    deployments: [{dep(dead, "us-east")}, {dep(healthy, "eu-west")}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
"""
        gw = start_gateway(write_config(tmp_path, config), tmp_path / "data", clock=clock)
        back: MockUpstream | None = None
        try:
            replies = [gw.chat(content=f"q{i}") for i in range(300)]
            failed = [r for r in replies if r.status != 200]
            print(f"dead region: {len(failed)}/300 client requests failed")
            assert len(failed) < 3  # < 1 %
            tries_us = [
                s
                for s in gw.flush()
                if s.kind == "client" and s.attributes["kansoku.gateway.deployment"] == us
            ]
            assert len(tries_us) == 5, "ejected after exactly 5 consecutive failures"
            assert all(s.error_type == "connection" for s in tries_us)
            assert {r.headers["x-kansoku-deployment"] for r in replies} == {eu}

            # Ejection ends (30 s): one probe; the region is still down, so it is ejected again.
            clock.offset += 31
            reply = gw.chat()
            assert reply.status == 200
            assert reply.headers["x-kansoku-attempts"] == "2"
            assert [gw.chat().headers["x-kansoku-attempts"] for _ in range(10)] == ["1"] * 10

            # The region returns; after the (doubled, 60 s) ejection the probe restores it.
            back = MockUpstream(port=port).start()
            clock.offset += 61
            reply = gw.chat()
            assert (reply.status, reply.headers["x-kansoku-deployment"]) == (200, us)
            assert reply.headers["x-kansoku-attempts"] == "1"
            after = [gw.chat().headers["x-kansoku-deployment"] for _ in range(10)]
            assert after.count(us) == 5
            assert after.count(eu) == 5
            assert back.request_count == 6
        finally:
            gw.stop()
            if back is not None:
                back.stop()


# -- circuit breaker ------------------------------------------------------------------------------------


def test_breaker_opens_at_the_rate_admits_exactly_the_trials_and_closes_or_reopens(tmp_path: Path) -> None:
    with MockUpstream() as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 1}}
    circuit_breaker: {{window: 10, failure_rate: 0.5, min_calls: 10, open_s: 0.5, half_open_calls: 2}}
    fallback_response: "breaker template"
"""
        with gateway(tmp_path, config) as gw:

            def call(fail: bool) -> Reply:
                if fail:
                    up.set_fault("server_error", count=1)
                return gw.chat()

            # 4 failures in 10: below the rate, closed; the 11th call's failure makes it 5 in the
            # last 10 (the first call, which drops out of the window, was a success).
            pattern = [False, True, False, False, True, False, True, False, True, False, True]
            for fail in pattern:
                reply = call(fail)
                assert reply.status == 200
                assert reply.headers["x-kansoku-attempts"] == "1"
            assert up.request_count == 11
            opened = time.monotonic()

            # Open: nothing reaches the upstream, the client gets the template at once.
            for _ in range(5):
                reply = gw.chat()
                assert (reply.status, reply.headers["x-kansoku-fallback"]) == (200, "template")
                assert reply.headers["x-kansoku-attempts"] == "0"
            assert time.monotonic() - opened < 0.5, "too slow to observe the open period"
            assert up.request_count == 11

            # Half-open: of 5 concurrent requests exactly 2 trials go upstream.
            time.sleep(max(0.0, opened + 0.6 - time.monotonic()))
            up.delay_ms = 800
            replies = in_parallel(5, lambda i: gw.chat())
            up.delay_ms = 0
            assert up.request_count == 13
            assert sorted(r.headers["x-kansoku-attempts"] for r in replies) == ["0", "0", "0", "1", "1"]
            assert all(r.status == 200 for r in replies)

            # Both trials succeeded: closed, traffic flows.
            for _ in range(5):
                reply = gw.chat()
                assert reply.headers["x-kansoku-attempts"] == "1"
                assert "x-kansoku-fallback" not in reply.headers
            assert up.request_count == 18

            # Closing started a fresh window: 5 successes, then 5 failures make 5 in 10 again.
            up.set_fault("server_error")
            for _ in range(5):
                assert gw.chat().headers["x-kansoku-attempts"] == "1"
            assert up.request_count == 23
            reopened = time.monotonic()
            assert gw.chat().headers["x-kansoku-attempts"] == "0"
            assert up.request_count == 23
            # A failed trial re-opens it.
            time.sleep(max(0.0, reopened + 0.6 - time.monotonic()))
            reply = gw.chat()
            assert reply.headers["x-kansoku-attempts"] == "1"  # the trial, failed
            assert up.request_count == 24
            for _ in range(3):
                assert gw.chat().headers["x-kansoku-attempts"] == "0"
            assert up.request_count == 24
            up.set_fault(None)


# -- retry budget ----------------------------------------------------------------------------------------


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        best = max(best, current)
    return best


def test_retry_budget_caps_concurrent_retries(tmp_path: Path) -> None:
    clients, ratio = 40, 0.2
    with MockUpstream(fault="server_error", delay_ms=300) as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 3, base_ms: 1, cap_ms: 2, budget: {ratio}}}
    circuit_breaker: {{window: 1000, min_calls: 1000}}
"""
        with gateway(tmp_path, config) as gw:
            replies = in_parallel(clients, lambda i: gw.chat(content=f"q{i}"))
            assert all(r.status == 500 for r in replies)
            spans = [s for s in gw.flush() if s.kind == "client"]
            retries = [(s.start_ns, s.end_ns) for s in spans if s.attributes["kansoku.gateway.attempt"] > 1]
            limit = max(3, int(ratio * clients))
            peak = max_overlap(retries)
            print(f"retry budget: peak {peak} concurrent retries (limit {limit}), {len(retries)} in all")
            assert 1 <= peak <= limit
            # Without a budget all 40 would retry twice; with it, some were refused.
            tries = sorted(r.attributes["kansoku.gateway.attempts"] for r in gw.records())
            assert len(tries) == clients
            assert tries[0] == 1
            assert tries[-1] >= 2
            assert up.request_count == clients + len(retries)


# -- tracing, limits ---------------------------------------------------------------------------------------


def test_traceparent_is_forwarded_per_attempt(tmp_path: Path) -> None:
    with TimedMock() as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
    retry: {{attempts: 3, base_ms: 1, cap_ms: 2}}
"""
        with gateway(tmp_path, config) as gw:
            up.set_fault("server_error", count=2)
            reply = gw.chat(headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
            assert reply.status == 200
            assert reply.headers["x-kansoku-trace-id"] == TRACE_ID
            sent = [tp for _, tp in up.arrivals]
            assert len(sent) == 3
            assert all(tp is not None for tp in sent)
            parts = [str(tp).split("-") for tp in sent]
            assert {p[1] for p in parts} == {TRACE_ID}
            span_ids = [p[2] for p in parts]
            assert len(set(span_ids)) == 3
            assert CLIENT_SPAN not in span_ids
            assert {p[3] for p in parts} == {"01"}
            record = record_of(gw, reply)
            assert record.parent_span_id == CLIENT_SPAN
            assert [s.span_id for s in attempt_spans(gw, record)] == span_ids


def test_request_limit_admits_exactly_the_configured_burst(tmp_path: Path) -> None:
    with MockUpstream() as up:
        config = f"""
models:
  - name: chat
    deployments: [{dep(up)}]
limits:
  - {{per: global, on: requests, algorithm: token_bucket, limit: 3, per_s: 0.01}}
"""
        with gateway(tmp_path, config) as gw:
            replies = [gw.chat() for _ in range(5)]
            assert [r.status for r in replies] == [200, 200, 200, 429, 429]
            assert up.request_count == 3
            refused = replies[3]
            assert int(refused.headers["retry-after"]) >= 1
            assert isinstance(refused.json()["error"]["message"], str)
            outcomes = sorted(r.attributes["kansoku.gateway.outcome"] for r in gw.records())
            assert outcomes == ["ok", "ok", "ok", "rejected", "rejected"]
            assert gw.gateway.counts == {"ok": 3, "rejected": 2}


def test_429_with_a_long_retry_after_fails_over_without_waiting(tmp_path: Path) -> None:
    # Retry-After speaks for the deployment that sent it: a healthy second deployment must not
    # wait for it (nor be skipped because the wait would not fit the deadline).
    with MockUpstream(retry_after=5) as limited, MockUpstream() as free:
        limited.set_fault("rate_limit")
        config = f"""
models:
  - name: chat
    routing: round_robin
    deployments: [{dep(limited)}, {dep(free)}]
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
    deadline_s: 4
"""
        with gateway(tmp_path, config) as gw:
            started = time.monotonic()
            reply = gw.chat()
            elapsed = time.monotonic() - started
            assert reply.status == 200, reply.body
            assert reply.headers["x-kansoku-deployment"] == dep_name(1)
            assert reply.headers["x-kansoku-attempts"] == "2"
            assert elapsed < 1.0, elapsed


def test_deployment_breaking_every_stream_midway_is_ejected(tmp_path: Path) -> None:
    with MockUpstream() as breaking, MockUpstream() as good:
        breaking.set_fault("truncated_stream")
        config = f"""
models:
  - name: chat
    routing: round_robin
    deployments: [{dep(breaking)}, {dep(good)}]
"""
        with gateway(tmp_path, config) as gw:
            broken = 0
            for _ in range(20):
                reply = gw.chat(stream=True)
                assert reply.status == 200
                broken += "[DONE]" not in sse_events(reply.body)
            assert broken == breaking.request_count  # each one reached the client broken
            assert broken <= 5, f"{broken} of 20 streams broke: the deployment was never ejected"

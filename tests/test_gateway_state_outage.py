"""A Redis outage after start-up does not take the gateway down: it fails open, visibly, fast.

The guard's cool-down is checked on a fake clock against a fake state that fails on demand;
then a real redis-server (started here) is killed and started again, and stopped with SIGSTOP
(a hung Redis: connections are accepted, nothing answers) and continued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers.gateway import Reply, RunningGateway, start_gateway, write_config
from helpers.sdk import free_port
from helpers.services import redis_server
from kansoku.gateway._state import BreakerStates, DeadLetters, MemoryState, SpendStates
from kansoku.gateway._state_guard import COOL_DOWN_S, GuardedState
from kansoku.gateway._state_redis import READ_TIMEOUT_S
from kansoku.policy import BreakerConfig, Rule, SlidingWindow, Verdict
from kansoku.testing import FakeClock, MockUpstream

# -- the cool-down, on a fake clock ----------------------------------------------------------------

RULES = [Rule("key", "k", SlidingWindow(5, 60))]
BREAKER = BreakerConfig()


class FlakyLimits:
    """Limits that raise while ``down``; ``calls`` counts the calls that reached them.

    Up, ``take`` refuses: a refusal can only come from here, an admission from the guard.
    """

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.hold: asyncio.Event | None = None  # set: calls wait for it (a hung Redis)

    async def _reach(self) -> None:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        await self._reach()
        return Verdict(False, 1.0, ())

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        await self._reach()

    async def peek(self, rules: Sequence[Rule]) -> Sequence[float | None]:
        await self._reach()
        return [1.0] * len(rules)


class FlakyState:
    def __init__(self, clock: FakeClock) -> None:
        self._memory = MemoryState(clock)
        self.limits = FlakyLimits()
        self.spend: SpendStates = self._memory.spend
        self.breakers: BreakerStates = self._memory.breakers
        self.dead_letters: DeadLetters = self._memory.dead_letters

    async def close(self) -> None:
        await self._memory.close()


def guarded() -> tuple[GuardedState, FlakyLimits, FakeClock]:
    clock = FakeClock()
    inner = FlakyState(clock)
    return GuardedState(inner, clock=clock), inner.limits, clock


async def enforced(state: GuardedState) -> bool:
    """Whether a take reached the limits (they refuse) rather than failed open (admitted)."""
    return not (await state.limits.take(RULES, 1)).allowed


def test_after_a_failure_redis_is_left_alone_for_the_cool_down_then_probed_once() -> None:
    async def main() -> None:
        state, limits, clock = guarded()
        assert await enforced(state)
        limits.down = True
        assert not await enforced(state)  # failed open
        assert (limits.calls, state.errors) == (2, 1)
        clock.advance(COOL_DOWN_S * 0.99)
        for _ in range(10):  # admitted at once, without asking Redis; counted
            assert not await enforced(state)
        assert list(await state.limits.peek(RULES)) == [None]  # unknown, as when Redis fails
        await state.limits.settle(RULES, 2, 1)
        assert (limits.calls, state.errors) == (2, 13)
        clock.advance(COOL_DOWN_S * 0.02)
        assert not await enforced(state)  # the probe: still down
        assert not await enforced(state)  # a new cool-down from the probe's failure
        assert (limits.calls, state.errors) == (3, 15)
        clock.advance(COOL_DOWN_S)
        limits.down = False
        assert await enforced(state)  # the probe answers: the outage is over
        assert await enforced(state)
        assert list(await state.limits.peek(RULES)) == [1.0]
        assert (limits.calls, state.errors) == (6, 15)
        limits.down = True
        assert not await enforced(state)  # a failure again starts a cool-down again
        assert not await enforced(state)
        assert (limits.calls, state.errors) == (7, 17)
        await state.close()

    asyncio.run(main())


def test_every_kind_of_state_shares_one_cool_down() -> None:
    async def main() -> None:
        state, limits, clock = guarded()
        limits.down = True
        await state.limits.settle(RULES, 2, 1)
        # Redis is one server: breakers and budgets are not asked either (they would fail alike).
        assert await state.breakers.allow("d", BREAKER)
        assert await state.spend.spent(["a", "b"]) == [0.0, 0.0]
        assert await state.breakers.states(["d"]) == {"d": "unknown"}
        assert await state.dead_letters.add("chat", {}, [], None) == "unavailable"
        assert state.errors == 5
        clock.advance(COOL_DOWN_S)
        assert await state.breakers.allow("d", BREAKER)  # the probe, here the in-memory breaker
        assert await state.breakers.states(["d"]) == {"d": "closed"}
        assert state.errors == 5
        await state.close()

    asyncio.run(main())


def test_while_the_probe_waits_other_calls_do_not_and_a_cancelled_probe_is_no_outage_forever() -> None:
    async def main() -> None:
        state, limits, clock = guarded()
        limits.down = True
        assert not await enforced(state)
        clock.advance(COOL_DOWN_S)
        limits.hold = asyncio.Event()  # Redis hangs: the probe waits
        probe = asyncio.create_task(state.limits.take(RULES, 1))
        await asyncio.sleep(0)
        assert limits.calls == 2
        for _ in range(5):  # not queued behind the probe
            assert not await asyncio.wait_for(enforced(state), 1)
        assert limits.calls == 2
        probe.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await probe
        limits.hold, limits.down = None, False
        assert await enforced(state)  # the next call probes, and Redis answers
        assert limits.calls == 3
        await state.close()

    asyncio.run(main())


def test_the_outage_and_its_end_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        state, limits, clock = guarded()
        limits.down = True
        for _ in range(5):
            await enforced(state)
            clock.advance(COOL_DOWN_S)
        limits.down = False
        for _ in range(3):
            await enforced(state)
        await state.close()

    caplog.set_level(logging.WARNING, logger="kansoku.gateway")
    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "kansoku.gateway"]
    assert len(messages) == 2, messages
    assert "shared state unavailable (rate limits: ConnectionError); failing open" in messages[0]
    assert "shared state is back" in messages[1]


# -- a real Redis, killed, restarted, hung -----------------------------------------------------------

ADMIN_KEY = "ak-outage-admin-0123456789abcdef"
LIMIT = 3  # a minute's requests, gateway-wide: what Redis enforces when it answers
SLOW_S = 0.5  # what a user would accept as the extra delay of a request during an outage


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    cmd = [redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            assert redis.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        else:
            return redis


def _stop_redis(redis: subprocess.Popen[bytes]) -> None:
    if redis.poll() is None:
        redis.kill()  # SIGKILL also ends a SIGSTOP'd server
        redis.wait(10)


@pytest.fixture
def redis_port() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A free port with a redis-server on it; the list holds every server started (restarts too)."""
    port = free_port()
    servers = [_start_redis(port)]
    try:
        yield port, servers
    finally:
        for redis in servers:
            _stop_redis(redis)


@pytest.fixture
def gateway(
    tmp_path: Path, upstream: MockUpstream, redis_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> Iterator[RunningGateway]:
    config = f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    deployments:
      - {{provider: openai_compatible, model: gpt-4o-mini, api_base: "{upstream.openai_base_url}"}}
limits:
  - {{per: global, on: requests, algorithm: sliding_window, limit: {LIMIT}, window_s: 60}}
"""
    gw = start_gateway(
        write_config(tmp_path, config), tmp_path / "data", state=f"redis://127.0.0.1:{redis_port[0]}/0"
    )
    yield gw
    gw.stop()


def timed_chats(gw: RunningGateway, n: int) -> tuple[list[int], list[float]]:
    statuses, took = [], []
    for _ in range(n):
        start = time.monotonic()
        statuses.append(gw.chat().status)
        took.append(time.monotonic() - start)
    return statuses, took


def state_errors(gw: RunningGateway) -> int:
    metrics = gw.request("GET", "/metrics").body.decode()
    line = next(x for x in metrics.splitlines() if x.startswith("kansoku_gateway_state_errors_total"))
    return int(line.split()[1])


def timed_status(gw: RunningGateway) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    reply: Reply = gw.request("GET", "/admin/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    took = time.monotonic() - start
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body, took


def used(body: dict[str, Any]) -> float | None:
    [limit] = body["limits"]
    [usage] = limit["usage"]
    value: float | None = usage["used"]
    return value


def test_a_dead_redis_costs_requests_no_time_and_a_restarted_one_is_used_again(
    gateway: RunningGateway, upstream: MockUpstream, redis_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, servers = redis_port
    assert [gateway.chat().status for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]  # Redis enforces
    servers[0].terminate()
    servers[0].wait(10)

    statuses, took = timed_chats(gateway, 20)
    print(f"Redis dead: 20 requests, slowest {max(took) * 1000:.1f} ms, all {sum(took) * 1000:.1f} ms")
    assert statuses == [200] * 20  # failing open: the limit is not enforced
    assert max(took) < SLOW_S
    assert state_errors(gateway) >= 20
    body, status_took = timed_status(gateway)
    print(f"Redis dead: /admin/status in {status_took * 1000:.1f} ms")
    assert status_took < 2.0
    assert used(body) is None  # unknown
    assert upstream.request_count == LIMIT + 20

    servers.append(_start_redis(port))  # a fresh, empty Redis on the same address
    time.sleep(COOL_DOWN_S + 0.1)
    statuses, took = timed_chats(gateway, LIMIT + 1)
    # The first request probes; pooled connections gone stale are replaced at once.
    assert statuses == [200] * LIMIT + [429]  # counting again, from zero
    assert max(took) < SLOW_S
    errors = state_errors(gateway)
    assert used(timed_status(gateway)[0]) == LIMIT
    assert gateway.chat().status == 429
    assert state_errors(gateway) == errors


def test_a_hung_redis_costs_one_request_per_cool_down_at_most_the_read_timeout(
    gateway: RunningGateway, redis_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    redis = redis_port[1][0]
    assert gateway.chat().status == 200
    os.kill(redis.pid, signal.SIGSTOP)  # the kernel still accepts connections; nothing answers
    try:
        statuses, took = timed_chats(gateway, 20)
        body, status_took = timed_status(gateway)
    finally:
        os.kill(redis.pid, signal.SIGCONT)
    slow = [t for t in took if t >= SLOW_S]
    print(
        f"Redis hung: 20 requests, slowest {max(took) * 1000:.0f} ms, {len(slow)} slower than "
        f"{SLOW_S} s, all {sum(took) * 1000:.0f} ms; /admin/status in {status_took * 1000:.0f} ms"
    )
    assert statuses == [200] * 20
    assert max(took) < READ_TIMEOUT_S + 0.5
    assert len(slow) <= 2  # the first and at most one probe: the requests take well under a second
    # The status page's dead-letter read is not guarded: it may wait the read timeout once.
    assert status_took < 2 * READ_TIMEOUT_S
    assert used(body) is None

    time.sleep(COOL_DOWN_S + 0.1)
    assert gateway.chat().status in (200, 429)  # the probe; the hung commands may have run since
    errors = state_errors(gateway)
    assert used(timed_status(gateway)[0]) is not None  # Redis is read again
    gateway.chat()
    assert state_errors(gateway) == errors


def test_a_redis_restart_between_requests_costs_no_failure(
    gateway: RunningGateway, redis_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, servers = redis_port
    assert [gateway.chat().status for _ in range(LIMIT)] == [200] * LIMIT
    servers[0].terminate()
    servers[0].wait(10)
    servers.append(_start_redis(port))
    # The pooled connection is stale: its one immediate retry on a new connection answers.
    assert [gateway.chat().status for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]
    assert state_errors(gateway) == 0

"""Rate limits: reliability.md test 7 (in-process part), with explicit times and a fake clock."""

from __future__ import annotations

import json
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansoku.policy import BucketState, Limiter, Rule, SlidingWindow, TokenBucket
from kansoku.testing import FakeClock

# ---- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: TokenBucket(0, 1), "capacity"),
        (lambda: TokenBucket(float("inf"), 1), "capacity"),
        (lambda: TokenBucket(10, float("nan")), "refill_per_s"),
        (lambda: TokenBucket(10, -1), "refill_per_s"),
        (lambda: SlidingWindow(0, 60), "limit"),
        (lambda: SlidingWindow(10, 0), "window_s"),
        (lambda: SlidingWindow(10, 60, resolution_s=-1), "resolution_s"),
        (lambda: TokenBucket(10, 1).take(None, -1, 0.0), "cost"),
        (lambda: SlidingWindow(10, 60).take(None, float("nan"), 0.0), "cost"),
        (lambda: TokenBucket(10, 1).refund(None, -5, 0.0), "amount"),
        (lambda: SlidingWindow(10, 60).charge(None, float("inf"), 0.0), "amount"),
        (lambda: Limiter().reconcile([], -1, 0), "estimate"),
    ],
)
def test_invalid_values_raise_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_states_survive_a_json_round_trip():
    bucket, window = TokenBucket(10, 1), SlidingWindow(10, 60)
    _, b = bucket.take(None, 3, 5.0)
    _, w = window.take(None, 3, 5.0)
    b2 = BucketState(*json.loads(json.dumps(b)))
    w2 = tuple((ts, wt) for ts, wt in json.loads(json.dumps(w)))
    assert bucket.take(b2, 7, 5.0) == bucket.take(b, 7, 5.0)
    assert window.take(w2, 7, 5.0) == window.take(w, 7, 5.0)


# ---- token bucket -------------------------------------------------------------------------------


def test_bucket_admits_capacity_then_the_refill_rate():
    bucket = TokenBucket(capacity=5, refill_per_s=2)
    state = None
    admitted = 0
    for _ in range(10):
        decision, state = bucket.take(state, 1, 100.0)
        admitted += decision.allowed
    assert admitted == 5
    decision, state = bucket.take(state, 1, 100.0)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(0.5)
    decision, state = bucket.take(state, 1, 100.5)
    assert decision.allowed
    assert decision.remaining == pytest.approx(0)


def test_bucket_cost_above_capacity_is_never_allowed():
    decision, state = TokenBucket(10, 1).take(None, 11, 0.0)
    assert not decision.allowed
    assert decision.retry_after_s is None
    assert state == BucketState(10, 0.0)


def test_bucket_retry_after_is_exact_with_a_fake_clock():
    clock = FakeClock()
    bucket = TokenBucket(capacity=100, refill_per_s=7)
    _, state = bucket.take(None, 95, clock.monotonic())
    decision, _ = bucket.take(state, 40, clock.monotonic())
    assert not decision.allowed
    assert decision.retry_after_s is not None
    assert decision.retry_after_s == pytest.approx(35 / 7)
    clock.advance(decision.retry_after_s - 1e-6)
    assert not bucket.take(state, 40, clock.monotonic())[0].allowed
    clock.advance(1e-6)
    assert bucket.take(state, 40, clock.monotonic())[0].allowed


def test_bucket_does_not_refill_when_the_clock_steps_back():
    bucket = TokenBucket(10, 1)
    _, state = bucket.take(None, 10, 50.0)
    decision, state = bucket.take(state, 1, 40.0)
    assert not decision.allowed
    assert bucket.take(state, 1, 50.5)[0].allowed is False
    assert bucket.take(state, 1, 51.0)[0].allowed


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 1000),
    rate=st.floats(0.01, 1000),
    now=st.floats(0, 2e9),
    first=st.floats(0, 1),
    cost=st.floats(0, 1),
)
def test_bucket_retry_after_is_exact(capacity, rate, now, first, cost):
    bucket = TokenBucket(capacity, rate)
    _, state = bucket.take(None, capacity * first, now)
    decision, _ = bucket.take(state, capacity * cost, now)
    if decision.allowed:
        return
    wait = decision.retry_after_s
    assert wait is not None
    assert wait > 0
    assert bucket.take(state, capacity * cost, now + wait)[0].allowed
    just_before = now + wait - max(1e-6, 1e-9 * wait, 16 * math.ulp(now + wait))
    assert not bucket.take(state, capacity * cost, just_before)[0].allowed


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 50),
    rate=st.floats(0.1, 20),
    arrivals=st.lists(st.tuples(st.floats(0, 3), st.integers(0, 60)), min_size=1, max_size=80),
)
def test_bucket_admits_at_most_capacity_plus_rate_times_t(capacity, rate, arrivals):
    bucket = TokenBucket(capacity, rate)
    state = None
    now = 1000.0
    admitted: list[tuple[float, int]] = []
    for gap, cost in arrivals:
        now += gap
        decision, state = bucket.take(state, cost, now)
        if decision.allowed:
            admitted.append((now, cost))
        elif cost <= capacity:
            assert decision.retry_after_s is not None
            assert decision.retry_after_s > 0
        else:
            assert decision.retry_after_s is None
    # The most admitted in any interval [a, b] is reached with a and b at admission times.
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= capacity + rate * (end - start) + 1e-9 * capacity


# ---- sliding window -----------------------------------------------------------------------------


def test_window_has_no_double_burst_at_a_boundary():
    window = SlidingWindow(limit=10, window_s=60)
    state = None
    # A fixed-window counter resets at t=60 and would admit 20 within (59.9, 60.1].
    for _ in range(10):
        decision, state = window.take(state, 1, 59.9)
        assert decision.allowed
    decision, state = window.take(state, 1, 60.0)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(59.9)
    assert not window.take(state, 1, 119.8)[0].allowed
    assert window.take(state, 10, 119.9)[0].allowed


def test_window_retry_after_waits_for_enough_weight_to_leave():
    window = SlidingWindow(limit=100, window_s=10)
    state = None
    for t, cost in [(0.0, 30), (2.0, 30), (4.0, 40)]:
        _, state = window.take(state, cost, t)
    decision, _ = window.take(state, 50, 5.0)  # needs the 30s at t=0 and t=2 to leave
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(7.0)
    assert decision.remaining == 0
    assert window.take(state, 60, 12.0)[0].allowed  # only the 40 at t=4 is still in the window
    assert window.take(state, 101, 5.0)[0].retry_after_s is None


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 20),
    window_s=st.sampled_from([0.5, 1.0, 3.0, 10.0, 60.0]),
    arrivals=st.lists(
        st.tuples(st.one_of(st.floats(0, 3), st.sampled_from([0.0, 0.5, 1.0, 3.0])), st.integers(0, 22)),
        min_size=1,
        max_size=80,
    ),
)
def test_window_is_exact_in_every_window(limit, window_s, arrivals):
    window = SlidingWindow(limit, window_s)
    state = None
    now = 1000.0
    admitted: list[tuple[float, int]] = []
    for gap, cost in arrivals:
        now += gap
        # Reference: what an exact log of admitted takes says about the window (now - W, now].
        used = sum(c for t, c in admitted if now - t < window_s)
        decision, state = window.take(state, cost, now)
        assert decision.allowed == (used + cost <= limit)
        if decision.allowed:
            admitted.append((now, cost))
        elif cost <= limit:
            wait = decision.retry_after_s
            assert wait is not None
            assert window.take(state, cost, now + wait)[0].allowed
            assert not window.take(state, cost, now + wait - 1e-6)[0].allowed
    # Any interval of length W holds at most `limit`; it is enough to check those ending at takes.
    for end, _ in admitted:
        assert sum(c for t, c in admitted if t <= end and end - t < window_s) <= limit


@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.floats(0, 0.3), st.integers(0, 5)), min_size=1, max_size=200),
)
def test_window_resolution_bounds_the_log_and_only_refuses_more(arrivals):
    window = SlidingWindow(limit=20, window_s=2.0, resolution_s=0.25)
    state = None
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for gap, cost in arrivals:
        now += gap
        decision, state = window.take(state, cost, now)
        if decision.allowed:
            admitted.append((now, cost))
        assert len(state) <= 2.0 / 0.25 + 1
    for end, _ in admitted:
        assert sum(c for t, c in admitted if t <= end and end - t < 2.0) <= 20


# ---- reconciliation -----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [TokenBucket(100, 1), SlidingWindow(100, 60)])
def test_refund_of_an_over_estimate_admits_a_later_call(limit):
    decision, state = limit.take(None, 100, 0.0)  # estimated 100 tokens
    assert decision.allowed
    assert not limit.take(state, 50, 1.0)[0].allowed
    state = limit.refund(state, 60, 1.0)  # actually used 40
    decision, _ = limit.take(state, 50, 1.0)
    assert decision.allowed


def test_bucket_charge_can_go_negative_and_delays_later_calls():
    bucket = TokenBucket(capacity=100, refill_per_s=10)
    _, state = bucket.take(None, 50, 0.0)  # estimated 50, actually 200
    state = bucket.charge(state, 150, 0.0)
    assert state.tokens == -100
    decision, _ = bucket.take(state, 10, 0.0)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(11.0)
    assert decision.remaining == 0
    assert bucket.refund(state, 1000, 0.0).tokens == 100  # never above capacity


def test_window_charge_goes_over_the_limit_until_it_leaves():
    window = SlidingWindow(limit=100, window_s=60)
    _, state = window.take(None, 50, 0.0)
    state = window.charge(state, 150, 10.0)
    decision, _ = window.take(state, 1, 20.0)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(50.0)  # both entries must leave, the last at 70
    assert window.refund(state, 500, 20.0) == ()


def test_limiter_reconcile_refunds_and_charges_only_weighted_rules():
    requests = Rule("key", "vk_1", TokenBucket(2, 0.001), cost=1)
    tokens = Rule("key", "vk_1", SlidingWindow(1000, 60))
    limiter = Limiter()
    assert limiter.check([requests, tokens], cost=1000, now=0.0).allowed
    assert not limiter.check([requests, tokens], cost=500, now=0.0).allowed
    limiter.reconcile([requests, tokens], estimate=1000, actual=400, now=0.0)
    verdict = limiter.check([requests, tokens], cost=500, now=0.0)
    assert verdict.allowed
    assert [d.remaining for d in verdict.decisions] == [0, 100]
    limiter.reconcile([requests, tokens], estimate=500, actual=700, now=0.0)
    assert limiter.check([tokens], cost=1, now=59.0).retry_after_s == pytest.approx(1.0)


# ---- the limiter --------------------------------------------------------------------------------


def test_limiter_is_all_or_nothing_across_rules():
    per_key = Rule("key", "vk_1", TokenBucket(10, 0.01))
    per_user = Rule("user", "u-42", TokenBucket(3, 0.5))
    per_model = Rule("model", "chat", SlidingWindow(100, 60))
    limiter = Limiter()
    rules = [per_key, per_user, per_model]
    for _ in range(3):
        assert limiter.check(rules, now=0.0).allowed
    verdict = limiter.check(rules, now=0.0)
    assert not verdict.allowed
    assert [d.allowed for d in verdict.decisions] == [True, False, True]
    assert verdict.retry_after_s == pytest.approx(2.0)
    # The refused check charged neither the key nor the model.
    assert limiter.check([per_key], now=0.0).decisions[0].remaining == pytest.approx(6)
    assert limiter.check([per_model], now=0.0).decisions[0].remaining == 96


def test_limiter_returns_the_largest_retry_after_or_never():
    a = Rule("key", "a", TokenBucket(1, 1))
    b = Rule("user", "b", TokenBucket(1, 0.25))
    limiter = Limiter()
    assert limiter.check([a, b], now=0.0).allowed
    assert limiter.check([a, b], now=0.0).retry_after_s == pytest.approx(4.0)
    verdict = limiter.check([a, b, Rule("model", "m", SlidingWindow(5, 1))], cost=6, now=100.0)
    assert not verdict.allowed
    assert verdict.retry_after_s is None


def test_limiter_same_state_twice_in_one_check_takes_twice():
    rule = Rule("key", "a", TokenBucket(3, 0.001))
    limiter = Limiter()
    assert limiter.check([rule, rule], cost=1, now=0.0).allowed
    assert not limiter.check([rule, rule], cost=1, now=0.0).allowed
    assert limiter.check([rule], cost=1, now=0.0).allowed


def test_limiter_uses_its_clock():
    clock = FakeClock()
    limiter = Limiter(clock=clock)
    rule = Rule("key", "a", SlidingWindow(1, 10))
    assert limiter.check([rule]).allowed
    verdict = limiter.check([rule])
    assert not verdict.allowed
    assert verdict.retry_after_s is not None
    clock.advance(verdict.retry_after_s)
    assert limiter.check([rule]).allowed


def test_used_reads_a_window_and_a_bucket_and_a_peek_takes_nothing():
    window, bucket = SlidingWindow(3, 10), TokenBucket(4, 2)
    assert window.used(None, 0.0) == bucket.used(None, 0.0) == 0.0  # missing state: fresh
    ws = window.take(window.take(None, 1, 0.0)[1], 2, 4.0)[1]
    assert [window.used(ws, t) for t in (4.0, 9.9, 10.0, 14.0)] == [3.0, 3.0, 2.0, 0.0]
    bs = bucket.charge(bucket.take(None, 3, 0.0)[1], 4, 0.0)  # a debt: more used than the capacity
    assert [bucket.used(bs, t) for t in (0.0, 1.0, 5.0)] == [7.0, 5.0, 0.0]

    clock = FakeClock()
    limiter, rules = Limiter(clock=clock, sweep_every=1), [Rule("k", "a", window), Rule("k", "a", bucket)]
    assert limiter.check(rules, 2).allowed
    for _ in range(10):
        assert limiter.peek(rules) == [2.0, 2.0]
    assert limiter.check(rules, 1).allowed  # room for exactly one more in the window
    assert not limiter.check(rules, 1).allowed
    clock.advance(20)
    assert limiter.peek(rules) == [0.0, 0.0]
    assert len(limiter) == 2  # idle now, yet a peek does not sweep: it writes nothing
    assert limiter.sweep() == 2


def test_limiter_is_thread_safe():
    rule = Rule("key", "shared", TokenBucket(100, 1e-9))
    limiter = Limiter()
    admitted = [0] * 8

    def worker(i):
        admitted[i] = sum(limiter.check([rule], now=5.0).allowed for _ in range(50))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 100


def test_eviction_keeps_memory_bounded_and_loses_no_limit():
    limiter = Limiter(sweep_every=16)
    hot = Rule("key", "hot", TokenBucket(1, 1e-6))
    assert limiter.check([hot], now=0.0).allowed
    peak = 0
    now = 0.0
    for i in range(5000):
        now += 0.01
        # One request per new user: its states are fresh again 0.5 s (bucket) and 1 s (window) later.
        rules = [Rule("user", f"u-{i}", TokenBucket(2, 2)), Rule("model", f"m-{i}", SlidingWindow(5, 1))]
        assert limiter.check(rules, now=now).allowed
        peak = max(peak, len(limiter))
    # About 100 users are active per second, two states each; sweeps add bounded slack.
    assert peak <= 2 * (2 * 100 + 16)
    assert not limiter.check([hot], now=now).allowed  # the exhausted key was kept
    before = len(limiter)
    assert limiter.sweep(now + 1.0) == before - 1
    assert len(limiter) == 1
    assert limiter.sweep(now + 1e7) == 1
    assert len(limiter) == 0

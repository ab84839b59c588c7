"""Balancer: strategies, exclusion, outlier ejection with probing, and failover in a region outage."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from kansoku.policy._balance import Balancer, Deployment, Strategy
from kansoku.testing import FakeClock

A = Deployment("a", "region-a")
B = Deployment("b", "region-b")
C = Deployment("c", "region-b")
STRATEGIES: tuple[Strategy, ...] = ("round_robin", "weighted", "least_latency", "least_busy")


def make(
    deployments: Sequence[Deployment] = (A, B), strategy: Strategy = "round_robin", **kwargs: Any
) -> tuple[Balancer, FakeClock]:
    clock = FakeClock(start=1000.0)
    return Balancer(list(deployments), strategy, clock, random.Random(7), **kwargs), clock


def fail(balancer: Balancer, d: Deployment, times: int = 1, latency: float = 0.01) -> None:
    for _ in range(times):
        balancer.started(d)
        balancer.finished(d, ok=False, latency_s=latency)


def succeed(balancer: Balancer, d: Deployment, latency: float = 0.1) -> None:
    balancer.started(d)
    balancer.finished(d, ok=True, latency_s=latency)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "region": "r"}, "name"),
        ({"name": "x", "region": ""}, "region"),
        ({"name": "x", "region": "r", "weight": 0}, "weight"),
        ({"name": "x", "region": "r", "weight": -1.0}, "weight"),
        ({"name": "x", "region": "r", "weight": float("nan")}, "weight"),
        ({"name": "x", "region": "r", "weight": float("inf")}, "weight"),
        ({"name": "x", "region": "r", "weight": True}, "weight"),
    ],
)
def test_deployment_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Deployment(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((), {}, "deployments"),
        ((A, A), {}, "deployments"),
        ((A,), {"strategy": "fastest"}, "strategy"),
        ((A,), {"decay": 1.0}, "decay"),
        ((A,), {"eject_after": 0}, "eject_after"),
        ((A,), {"eject_s": 0.0}, "eject_s"),
        ((A,), {"eject_s": 10.0, "max_eject_s": 5.0}, "max_eject_s"),
    ],
)
def test_balancer_validation_names_the_field(args, kwargs, field):
    with pytest.raises(ValueError, match=field):
        Balancer(list(args), **kwargs)


def test_round_robin_cycles_evenly():
    balancer, _ = make((A, B, C))
    picks = [balancer.pick() for _ in range(300)]
    assert picks[:6] == [A, B, C, A, B, C]
    assert Counter(picks) == {A: 100, B: 100, C: 100}


def test_weighted_three_to_one_converges():
    heavy, light = Deployment("heavy", "r", weight=3), Deployment("light", "r", weight=1)
    balancer, _ = make((heavy, light), "weighted")
    picks = [balancer.pick() for _ in range(4000)]
    counts = Counter(picks)
    assert counts[heavy] / counts[light] == pytest.approx(3.0, rel=0.02)
    # Smooth: the light deployment comes once in every window of sum(weights) picks, not in bursts.
    assert all(picks[i : i + 4].count(light) == 1 for i in range(0, 4000, 4))


def test_weighted_skips_excluded_and_keeps_the_ratio_among_the_rest():
    ds = (Deployment("x", "r", 2), Deployment("y", "r", 1), Deployment("z", "r", 1))
    balancer, _ = make(ds, "weighted")
    counts = Counter(balancer.pick(exclude=[ds[2]]) for _ in range(3000))
    assert ds[2] not in counts
    assert counts[ds[0]] == 2000
    assert counts[ds[1]] == 1000


def test_least_latency_tries_untried_first_then_prefers_the_faster():
    balancer, _ = make((A, B), "least_latency")
    first = balancer.pick()
    assert first is not None
    succeed(balancer, first, latency=0.5)
    second = balancer.pick()
    assert second is not None
    assert second != first  # untried goes first even though `first` is measured
    succeed(balancer, second, latency=0.5)
    for _ in range(5):
        succeed(balancer, A, latency=0.1)
        succeed(balancer, B, latency=0.5)
    assert [balancer.pick() for _ in range(10)] == [A] * 10


def test_least_latency_adapts_when_the_fast_one_slows():
    balancer, _ = make((A, B), "least_latency", decay=0.5)
    succeed(balancer, A, latency=0.1)
    succeed(balancer, B, latency=0.5)
    picks = []
    for _ in range(10):
        d = balancer.pick()
        assert d is not None
        picks.append(d)
        succeed(balancer, d, latency=2.0 if d == A else 0.5)
    # A's average crosses B's after a few slow answers (0.1 -> 1.05 -> ...); then B wins.
    assert picks[0] == A
    assert picks[-5:] == [B] * 5
    assert picks.index(B) <= 2


def test_least_latency_fast_failures_do_not_look_fast():
    balancer, _ = make((A, B), "least_latency")
    succeed(balancer, A, latency=0.3)
    succeed(balancer, B, latency=0.2)
    fail(balancer, B, times=3, latency=0.001)  # quick 5xx answers
    assert balancer.pick() == B  # its average did not drop below A's
    fail(balancer, B, times=1, latency=5.0)  # a timeout does count
    assert balancer.pick() == A


def test_least_latency_spreads_concurrent_requests():
    balancer, _ = make((A, B), "least_latency")
    succeed(balancer, A, latency=0.1)
    succeed(balancer, B, latency=0.15)
    balancer.started(A)  # A is busy: 0.1 * 2 > 0.15 * 1
    assert balancer.pick() == B


def test_least_busy_picks_the_idle_one():
    balancer, _ = make((A, B, C), "least_busy")
    balancer.started(A)
    balancer.started(B)
    balancer.started(B)
    assert balancer.pick() == C
    balancer.started(C)
    balancer.started(C)
    assert balancer.pick() == A
    balancer.finished(B, ok=True, latency_s=0.1)
    balancer.finished(B, ok=True, latency_s=0.1)
    assert balancer.pick() == B


def test_least_busy_breaks_ties_with_the_rng():
    balancer, _ = make((A, B, C), "least_busy")
    counts = Counter(balancer.pick() for _ in range(300))
    assert set(counts) == {A, B, C}
    assert min(counts.values()) > 60


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exclude_is_honoured(strategy):
    balancer, _ = make((A, B, C), strategy)
    for _ in range(50):
        d = balancer.pick(exclude=[A, C])
        assert d == B
        succeed(balancer, d)
    assert balancer.pick(exclude=[A, B, C]) is None


def test_ejected_after_exactly_five_consecutive_failures():
    balancer, _ = make()
    fail(balancer, A, times=4)
    succeed(balancer, A)  # the streak resets
    fail(balancer, A, times=4)
    assert not balancer.is_ejected(A)
    assert A in {balancer.pick() for _ in range(4)}
    fail(balancer, A)
    assert balancer.is_ejected(A)
    assert [balancer.pick() for _ in range(20)] == [B] * 20


def test_single_probe_after_eject_s_and_restore_on_success():
    balancer, clock = make(eject_s=30.0)
    fail(balancer, A, times=5)
    clock.advance(29.9)
    assert A not in {balancer.pick() for _ in range(10)}
    clock.advance(0.1)
    assert balancer.pick() == A  # the probe
    assert [balancer.pick() for _ in range(10)] == [B] * 10  # only one while it is in flight
    balancer.started(A)
    balancer.finished(A, ok=True, latency_s=0.1)
    assert not balancer.is_ejected(A)
    assert Counter(balancer.pick() for _ in range(10)) == {A: 5, B: 5}


def test_failed_probe_re_ejects_for_longer_up_to_the_cap():
    balancer, clock = make(eject_s=30.0, max_eject_s=100.0)
    fail(balancer, A, times=5)
    waits = []
    for _ in range(4):
        waited = 0.0
        while balancer.pick() != A:
            clock.advance(1.0)
            waited += 1.0
        waits.append(waited)
        fail(balancer, A)  # the probe fails
        assert balancer.is_ejected(A)
    assert waits == [30.0, 60.0, 100.0, 100.0]


def test_restore_resets_the_growth():
    balancer, clock = make(eject_s=30.0)
    fail(balancer, A, times=5)
    clock.advance(30.0)
    assert balancer.pick() == A
    fail(balancer, A)  # re-ejected for 60 s
    clock.advance(60.0)
    assert balancer.pick() == A
    succeed(balancer, A)
    fail(balancer, A, times=5)
    clock.advance(30.0)
    assert balancer.pick() == A  # back to 30 s


def test_results_in_flight_from_before_the_ejection_do_not_restore():
    balancer, _ = make()
    balancer.started(A)  # a slow request, still running when A gets ejected
    fail(balancer, A, times=5)
    balancer.finished(A, ok=True, latency_s=3.0)
    assert balancer.is_ejected(A)


def test_a_lost_probe_is_given_up_after_eject_s():
    balancer, clock = make(eject_s=30.0)
    fail(balancer, A, times=5)
    clock.advance(30.0)
    assert balancer.pick() == A  # its result never comes back
    clock.advance(29.0)
    assert balancer.pick() == B
    clock.advance(1.0)
    assert balancer.pick() == A


def test_retries_are_not_given_probes():
    balancer, clock = make((A, B, C), eject_s=30.0)
    fail(balancer, A, times=5)
    clock.advance(30.0)
    assert {balancer.pick(exclude=[B]) for _ in range(5)} == {C}
    assert balancer.pick() == A  # the probe still goes to the next first attempt


def test_fails_open_to_the_ejection_ending_soonest():
    balancer, clock = make((A, B, C))
    fail(balancer, B, times=5)
    clock.advance(5.0)
    fail(balancer, A, times=5)
    clock.advance(5.0)
    fail(balancer, C, times=5)
    assert balancer.pick() == B
    assert balancer.pick(exclude=[B]) == A
    assert balancer.pick(exclude=[A, B, C]) is None


def test_unknown_deployment_is_an_error():
    balancer, _ = make()
    with pytest.raises(ValueError, match="unknown deployment"):
        balancer.started(C)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_region_outage_fails_over_with_under_one_percent_failed(strategy):
    a1, a2 = Deployment("a1", "region-a"), Deployment("a2", "region-a")
    b1, b2 = Deployment("b1", "region-b"), Deployment("b2", "region-b")
    balancer, clock = make((a1, a2, b1, b2), strategy, eject_s=10.0, max_eject_s=60.0)
    warmup, requests = 20, 1000
    failed_after_warmup, probes_of_a = 0, 0

    def attempt(d: Deployment) -> bool:
        balancer.started(d)
        ok = d.region == "region-b"
        # Region A answers with quick errors: the least_latency case must not be fooled.
        balancer.finished(d, ok=ok, latency_s=0.2 if ok else 0.02)
        return ok

    for i in range(requests):
        clock.advance(0.5)  # 500 s in all: many probe rounds of region A
        first = balancer.pick()
        assert first is not None
        ok = attempt(first)
        if not ok:
            second = balancer.pick(exclude=[first])
            ok = second is not None and attempt(second)
        if i >= warmup:
            failed_after_warmup += not ok
            probes_of_a += first.region == "region-a"

    assert failed_after_warmup < 0.01 * (requests - warmup)
    assert probes_of_a >= 5  # region A kept being probed back, not forgotten
    assert balancer.is_ejected(a1)
    assert balancer.is_ejected(a2)

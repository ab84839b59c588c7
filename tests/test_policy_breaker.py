"""The circuit breaker: reliability.md test 6, with a fake clock and against a reference model."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kansoku.policy._breaker import (
    Breaker,
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Closed,
    HalfOpen,
    Open,
    state_from_dict,
    state_to_dict,
)
from kansoku.testing import FakeClock


def _breaker(**overrides: float) -> tuple[CircuitBreaker, FakeClock]:
    values: dict[str, float] = {
        "window": 10,
        "failure_rate": 0.5,
        "min_calls": 4,
        "open_s": 30.0,
        "half_open_calls": 3,
    }
    values.update(overrides)
    config = BreakerConfig(
        window=int(values["window"]),
        failure_rate=values["failure_rate"],
        min_calls=int(values["min_calls"]),
        open_s=values["open_s"],
        half_open_calls=int(values["half_open_calls"]),
    )
    clock = FakeClock()
    return CircuitBreaker(config, clock), clock


def _call(cb: CircuitBreaker, ok: bool) -> bool:
    """One call through the breaker; True when it reached the upstream."""
    if not cb.allow():
        return False
    cb.record(ok)
    return True


def _name(cb: CircuitBreaker) -> str:
    # A plain str, so that mypy does not narrow the Literal across calls that change it.
    return cb.state_name


def _open(cb: CircuitBreaker) -> None:
    while _name(cb) == "closed":
        _call(cb, ok=False)
    assert _name(cb) == "open"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", 0),
        ("failure_rate", 0.0),
        ("failure_rate", 1.5),
        ("failure_rate", float("nan")),
        ("min_calls", 0),
        ("min_calls", 11),
        ("open_s", 0.0),
        ("open_s", float("inf")),
        ("half_open_calls", 0),
    ],
)
def test_config_names_the_bad_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        _breaker(**{field: value})


@pytest.mark.parametrize(("rate", "failures"), [(0.5, 5), (0.3, 3), (0.7, 7), (0.1, 1), (1.0, 10)])
def test_opens_at_exactly_the_failure_rate_over_a_full_window(rate: float, failures: int) -> None:
    cb, _ = _breaker(failure_rate=rate, min_calls=10)
    for _ in range(10 - failures):
        _call(cb, ok=True)
    for _ in range(failures - 1):
        _call(cb, ok=False)
    assert _name(cb) == "closed", "one failure short of the rate must not open"
    _call(cb, ok=False)
    assert _name(cb) == "open"


def test_never_opens_before_min_calls() -> None:
    cb, _ = _breaker(min_calls=4)
    for _ in range(3):
        _call(cb, ok=False)
    assert _name(cb) == "closed"
    _call(cb, ok=False)
    assert _name(cb) == "open"


def test_old_outcomes_leave_the_count_window() -> None:
    cb, _ = _breaker(window=4, min_calls=4, failure_rate=0.75)
    for ok in (False, False, True, True, True, True, False, False):
        _call(cb, ok)
    # The window now holds T, T, F, F: 50 % < 75 %, though 4 of the 8 calls failed.
    assert _name(cb) == "closed"
    _call(cb, ok=False)
    assert _name(cb) == "open"


def test_no_call_passes_while_open() -> None:
    cb, clock = _breaker(open_s=30.0)
    _open(cb)
    upstream = 0
    # Steps of 1/8 s add up exactly in floats, so the last one lands on opened_at + open_s.
    for _ in range(239):
        clock.advance(0.125)
        upstream += cb.allow()
    assert upstream == 0
    assert _name(cb) == "open"
    clock.advance(0.125)
    assert cb.allow()
    assert _name(cb) == "half_open"


def test_exactly_n_half_open_trials_then_closes_on_n_successes() -> None:
    cb, clock = _breaker(half_open_calls=3)
    _open(cb)
    clock.advance(30.0)
    assert [cb.allow() for _ in range(5)] == [True, True, True, False, False]
    cb.record(ok=True)
    cb.record(ok=True)
    assert _name(cb) == "half_open"
    assert not cb.allow(), "reported successes do not free trial slots"
    cb.record(ok=True)
    assert _name(cb) == "closed"
    assert cb.state == Closed(), "closing clears the window"
    assert cb.allow()


def test_a_half_open_failure_reopens_for_a_new_period() -> None:
    cb, clock = _breaker(half_open_calls=3, open_s=30.0)
    _open(cb)
    clock.advance(30.0)
    assert cb.allow()
    assert cb.allow()
    cb.record(ok=True)
    clock.advance(5.0)
    cb.record(ok=False)
    assert cb.state == Open(opened_at=clock.monotonic())
    clock.advance(29.9)
    assert not cb.allow(), "the new open period starts at the failure"
    clock.advance(0.1)
    assert cb.allow()


def test_late_outcomes_while_open_change_nothing() -> None:
    cb, clock = _breaker()
    _open(cb)
    before = cb.state
    clock.advance(1.0)
    cb.record(ok=True)
    cb.record(ok=False)
    assert cb.state == before


def test_half_open_admits_exactly_n_under_contention() -> None:
    cb, clock = _breaker(half_open_calls=5)
    _open(cb)
    clock.advance(30.0)
    admitted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(200):
            ok = cb.allow()
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 5
    assert len(admitted) == 16 * 200


@given(
    st.one_of(
        st.lists(st.booleans(), max_size=20).map(lambda o: Closed(tuple(o))),
        st.floats(-1e12, 1e12).map(lambda t: Open(opened_at=t)),
        st.tuples(st.integers(0, 50), st.integers(0, 50)).map(
            lambda p: HalfOpen(admitted=max(p), succeeded=min(p))
        ),
    )
)
def test_states_round_trip_through_json(state: BreakerState) -> None:
    assert state_from_dict(json.loads(json.dumps(state_to_dict(state)))) == state


@pytest.mark.parametrize(
    "data",
    [{}, {"state": "closed", "outcomes": "012"}, {"state": "open", "opened_at": True},
     {"state": "half_open", "admitted": 1, "succeeded": 2}, {"state": "shut"}],
)  # fmt: skip
def test_bad_wire_states_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a breaker state"):
        state_from_dict(data)


class _Model:
    """The breaker spelled out the obvious way, to hold the real one to."""

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.mode = "closed"
        self.outcomes: list[bool] = []
        self.opened_at = 0.0
        self.trials = 0
        self.passed = 0

    def allow(self, now: float) -> bool:
        if self.mode == "open" and now >= self.opened_at + self.cfg.open_s:
            self.mode, self.trials, self.passed = "half_open", 0, 0
        if self.mode == "closed":
            return True
        if self.mode == "half_open" and self.trials < self.cfg.half_open_calls:
            self.trials += 1
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        if self.mode == "closed":
            self.outcomes.append(ok)
            if len(self.outcomes) > self.cfg.window:
                del self.outcomes[0]
            n = len(self.outcomes)
            if n >= self.cfg.min_calls and self.outcomes.count(False) / n >= self.cfg.failure_rate:
                self.mode, self.opened_at = "open", now
        elif self.mode == "half_open":
            if not ok:
                self.mode, self.opened_at = "open", now
            else:
                self.passed += 1
                if self.passed == self.cfg.half_open_calls:
                    self.mode, self.outcomes = "closed", []


class BreakerMachine(RuleBasedStateMachine):
    """Random interleavings of admissions, outcomes and time against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.pending = 0
        self.breaker: Breaker | None = None
        self.model: _Model | None = None
        self.state: BreakerState = Closed()

    @precondition(lambda self: self.breaker is None)
    @rule(
        window=st.integers(1, 8),
        rate=st.sampled_from([0.1, 0.25, 0.3, 0.5, 2 / 3, 0.75, 1.0]),
        min_frac=st.floats(0.0, 1.0),
        half=st.integers(1, 4),
    )
    def configure(self, window: int, rate: float, min_frac: float, half: int) -> None:
        cfg = BreakerConfig(
            window=window,
            failure_rate=rate,
            min_calls=max(1, round(min_frac * window)),
            open_s=10.0,
            half_open_calls=half,
        )
        self.breaker, self.model = Breaker(cfg), _Model(cfg)

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def start_call(self) -> None:
        assert self.breaker is not None
        assert self.model is not None
        admitted, self.state = self.breaker.allow(self.state, self.now)
        assert admitted == self.model.allow(self.now)
        self.pending += admitted

    @precondition(lambda self: self.breaker is not None and self.pending > 0)
    @rule(ok=st.booleans())
    def finish_call(self, ok: bool) -> None:
        assert self.breaker is not None
        assert self.model is not None
        self.pending -= 1
        self.state = self.breaker.record(self.state, ok, self.now)
        self.model.record(ok, self.now)

    @rule(dt=st.sampled_from([0.0, 0.5, 3.0, 9.999, 10.0, 25.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @invariant()
    def agrees_with_model(self) -> None:
        if self.model is None:
            return
        cfg = self.model.cfg
        if isinstance(self.state, Closed):
            assert self.model.mode == "closed"
            assert list(self.state.outcomes) == self.model.outcomes
            assert len(self.state.outcomes) <= cfg.window
        elif isinstance(self.state, Open):
            # The model turns half-open lazily too, so both stay open until the next admission.
            assert self.model.mode == "open"
            assert self.state.opened_at == self.model.opened_at
        else:
            assert self.model.mode == "half_open"
            assert self.state.admitted == self.model.trials <= cfg.half_open_calls
            assert self.state.succeeded == self.model.passed


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase

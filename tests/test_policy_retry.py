"""Retry-After, the retry budget and deadlines: reliability.md tests 8 and 9 (the pure parts)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kansoku.policy import FullJitter
from kansoku.policy._retry import (
    MAX_RETRY_AFTER_S,
    Deadline,
    RetryBudget,
    parse_retry_after,
    parse_retry_after_ms,
    retry_after_from_headers,
    should_retry,
)
from kansoku.testing import FakeClock

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # obsolete RFC 850
        ("Wed Oct 21 07:28:10 2015", 10.0),  # asctime, no zone: GMT, not local time
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # past: "now", not None
        ("Tue, 20 Oct 2015 00:00:00 GMT", 0.0),
        ("999999", MAX_RETRY_AFTER_S),
        ("9" * 400, MAX_RETRY_AFTER_S),
        ("Wed, 21 Oct 2099 07:28:00 GMT", MAX_RETRY_AFTER_S),
    ],
)
def test_parses_delta_seconds_and_http_dates(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [None, "", " ", "-1", "-0.5", "+3", "1e3", "inf", "nan", "0x10", "soon", "1.", ".5",
     "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 25:00:00 GMT", "Mon 1 2", "1 Jan 99999"],
)  # fmt: skip
def test_garbage_and_negatives_give_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_the_cap_is_configurable() -> None:
    assert parse_retry_after("90", NOW, max_s=60.0) == 60.0
    assert parse_retry_after_ms("90000", max_s=60.0) == 60.0


@given(st.integers(0, 10**6))
def test_dates_and_deltas_agree(seconds: int) -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + seconds, UTC), usegmt=True)
    expected = min(float(seconds), MAX_RETRY_AFTER_S)
    assert parse_retry_after(date, NOW) == expected
    assert parse_retry_after(str(seconds), NOW) == expected


@given(st.text(max_size=60))
def test_any_text_gives_none_or_a_bounded_wait(value: str) -> None:
    wait = parse_retry_after(value, NOW)
    assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER_S
    wait_ms = parse_retry_after_ms(value)
    assert wait_ms is None or 0.0 <= wait_ms <= MAX_RETRY_AFTER_S


def test_headers_prefer_milliseconds_and_ignore_case() -> None:
    assert retry_after_from_headers({"Retry-After": "2", "Retry-After-Ms": "1500"}, NOW) == 1.5
    assert retry_after_from_headers({"retry-after": "2", "retry-after-ms": "junk"}, NOW) == 2.0
    assert retry_after_from_headers({"content-type": "application/json"}, NOW) is None


def test_retry_after_wins_over_a_shorter_backoff() -> None:
    backoff = FullJitter(base=0.1, cap=1.0, rng=random.Random(7))
    assert backoff.delay(0, retry_after=parse_retry_after("20", NOW)) == 20.0


def test_budget_minimum_and_ratio() -> None:
    budget = RetryBudget(ratio=0.2, minimum=3)
    assert [budget.try_acquire(active=1) for _ in range(4)] == [True, True, True, False]
    assert budget.try_acquire(active=20) is True  # 0.2 * 20 = 4
    assert budget.try_acquire(active=20) is False
    budget.release()
    assert budget.try_acquire(active=20) is True
    assert budget.stats().in_flight == 4
    assert budget.stats().acquired == 5
    assert budget.stats().rejected == 2


def test_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="release"):
        RetryBudget().release()


@pytest.mark.parametrize(("kwargs", "field"), [({"ratio": -0.1}, "ratio"), ({"minimum": -1}, "minimum")])
def test_budget_config_names_the_bad_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 1.0]),
    minimum=st.integers(0, 5),
    ops=st.lists(st.one_of(st.integers(0, 200), st.none()), max_size=300),
)
def test_budget_never_exceeds_its_bound(ratio: float, minimum: int, ops: list[int | None]) -> None:
    budget = RetryBudget(ratio=ratio, minimum=minimum)
    in_flight = 0
    for op in ops:
        if op is None:
            if in_flight:
                budget.release()
                in_flight -= 1
            continue
        if budget.try_acquire(active=op):
            in_flight += 1
            assert in_flight <= max(minimum, ratio * op)
        else:
            # A refusal only happens at the bound, never below it.
            assert in_flight + 1 > max(minimum, ratio * op) - 1e-9
    assert budget.stats().in_flight == in_flight


def test_budget_holds_under_contention() -> None:
    budget = RetryBudget(ratio=0.2, minimum=3)
    active = 40  # bound: 8
    lock = threading.Lock()
    current = peak = 0
    start = threading.Barrier(32)

    def worker() -> None:
        nonlocal current, peak
        start.wait()
        for _ in range(300):
            if budget.try_acquire(active):
                with lock:
                    current += 1
                    peak = max(peak, current)
                with lock:
                    current -= 1
                budget.release()

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 8
    stats = budget.stats()
    assert stats.in_flight == 0
    assert stats.acquired + stats.rejected == 32 * 300


def test_deadline_counts_down_with_the_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    assert deadline.remaining() == 10.0
    assert deadline.attempt_timeout(4.0) == 4.0
    clock.advance(8.0)
    assert deadline.attempt_timeout(4.0) == 2.0
    assert not deadline.expired()
    clock.advance(2.0)
    assert deadline.expired()
    assert deadline.remaining() == 0.0
    assert deadline.attempt_timeout(4.0) == 0.0


@pytest.mark.parametrize("total", [-1.0, float("nan")])
def test_deadline_refuses_bad_totals(total: float) -> None:
    with pytest.raises(ValueError, match="total_s"):
        Deadline(total, FakeClock())


def test_should_retry_rules() -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    assert should_retry(1, 3, True, deadline, 1.0)
    assert not should_retry(1, 3, False, deadline, 1.0), "not retryable"
    assert not should_retry(3, 3, True, deadline, 1.0), "attempts used up"
    assert not should_retry(1, 3, True, deadline, 10.0), "would start at the deadline"
    assert should_retry(1, 3, True, None, 1e6)
    clock.advance(9.5)
    assert should_retry(1, 3, True, deadline, 0.4)
    assert not should_retry(1, 3, True, deadline, 0.5)


@given(
    total=st.floats(0.0, 60.0),
    per_attempt=st.floats(0.01, 20.0),
    max_attempts=st.integers(1, 10),
    seed=st.integers(0, 2**32),
)
def test_no_attempt_starts_after_the_deadline(
    total: float, per_attempt: float, max_attempts: int, seed: int
) -> None:
    """An upstream that always hangs: every attempt times out, and retries follow backoff."""
    clock = FakeClock()
    deadline = Deadline(total, clock)
    backoff = FullJitter(base=0.5, cap=8.0, rng=random.Random(seed))
    starts: list[float] = []
    attempt = 0
    while True:
        timeout = deadline.attempt_timeout(per_attempt)
        starts.append(clock.monotonic())
        attempt += 1
        clock.advance(timeout)  # the attempt hangs until its timeout
        delay = backoff.delay(attempt - 1)
        if not should_retry(attempt, max_attempts, True, deadline, delay):
            break
        clock.sleep(delay)
    assert attempt <= max_attempts
    assert all(start <= deadline.ends_at for start in starts[1:])
    # The caller hears back no later than the deadline (the first attempt's timeout is cut to it).
    assert clock.monotonic() <= deadline.ends_at

"""Reliability policies as small values, pure functions of state with the clock injected.

Backoff, circuit breaker, retry budget and deadlines, rate limits (token bucket, exact sliding
window, a multi-rule limiter) and load balancing with outlier ejection. The gateway composes
them; their states are plain values so a shared (Redis) backing can store the same thing.
"""

from kansoku.policy._backoff import FullJitter
from kansoku.policy._balance import Balancer, Deployment, Strategy
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
from kansoku.policy._limiter import Limiter, Rule, Verdict
from kansoku.policy._ratelimit import (
    BucketState,
    Decision,
    RateLimit,
    SlidingWindow,
    TokenBucket,
    WindowState,
)
from kansoku.policy._retry import (
    MAX_RETRY_AFTER_S,
    BudgetStats,
    Deadline,
    RetryBudget,
    parse_retry_after,
    parse_retry_after_ms,
    retry_after_from_headers,
    should_retry,
)

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Balancer",
    "Breaker",
    "BreakerConfig",
    "BreakerState",
    "BucketState",
    "BudgetStats",
    "CircuitBreaker",
    "Closed",
    "Deadline",
    "Decision",
    "Deployment",
    "FullJitter",
    "HalfOpen",
    "Limiter",
    "Open",
    "RateLimit",
    "RetryBudget",
    "Rule",
    "SlidingWindow",
    "Strategy",
    "TokenBucket",
    "Verdict",
    "WindowState",
    "parse_retry_after",
    "parse_retry_after_ms",
    "retry_after_from_headers",
    "should_retry",
    "state_from_dict",
    "state_to_dict",
]

"""Admission: may this request go upstream now? Model allow-list, budgets, then rate limits.

The proxy calls :meth:`Admission.admit` before routing and :meth:`Admission.settle` (or
:meth:`Admission.release`) once the call is over; when nothing is configured,
:attr:`Admission.active` is False and the proxy skips both, so an open gateway pays nothing.

Decisions worth knowing:

* Rate limits are checked in one all-or-nothing ``state.limits.take``: a refused request takes
  from no limit, so a client retrying against one exhausted limit does not drain the others.
  The state backend (in-process or Redis) does the check atomically, which is what makes a
  limit hold exactly across replicas.
* A ``requests`` limit takes 1; a ``tokens`` limit takes an estimate (:func:`estimate_tokens`)
  before the call and is corrected to the real count after it: an over-estimate gives room
  back, an under-estimate is charged (a bucket may go into debt, delaying later requests).
* Budgets are checked before the call against the spend recorded so far this UTC day/month;
  the call that crosses a budget completes, the next one is refused until the period ends.
* A refusal names the configured limits that refused (``RateLimited.limits``); the gateway
  counts them per limit for its status page.
* A rule whose subject is missing does not apply: ``per: user`` needs the body's ``user``
  field, ``per: department`` a key with a ``department`` tag.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kansoku.clock import Clock
from kansoku.gateway._config import GatewayConfig
from kansoku.gateway._errors import BudgetExceeded, PermissionDenied, RateLimited
from kansoku.gateway._keys import Budget, Limit, VirtualKey
from kansoku.gateway._state import GatewayState
from kansoku.policy import Decision, Rule, TokenBucket

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "Admission",
    "LimitId",
    "Ticket",
    "estimate_tokens",
    "limit_rule",
    "subject_key",
]

#: Completion tokens assumed when a request sets no ``max_tokens``; corrected after the call.
DEFAULT_COMPLETION_TOKENS = 256
_MESSAGE_TOKENS = 4  # role and separators around each message
_IMAGE_TOKENS = 85  # an image part at low detail; a larger one is charged after the call

LimitId = tuple[str | None, Limit]
"""A configured limit: the key it belongs to (None for the top-level ``limits:``), the limit."""

_MAX_SUBJECT = 128  # longer user ids (or model names) are hashed: state and Redis keys stay bounded
_TTL_SLACK_S = 86_400.0  # keep a period's counter a day past its end, for replicas' clock skew


def _chars(content: Any) -> tuple[int, int]:
    """Characters of text and the count of non-text parts (images, audio) in a content value."""
    if isinstance(content, str):
        return len(content), 0
    chars = others = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                chars += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                else:
                    others += 1
    return chars, others


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """About how many tokens a request will use: prompt characters / 4 plus the completion cap.

    No tokenizer (this runs on every request); the estimate is reconciled with the real usage
    after the call, so it only has to be roughly right. Tool definitions are not counted.
    """
    chars = extra = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        extra += _MESSAGE_TOKENS * len(messages)
        for m in messages:
            if not isinstance(m, dict):
                continue
            c, others = _chars(m.get("content"))
            chars += c
            extra += _IMAGE_TOKENS * others
            calls = m.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(args := fn.get("arguments"), str):
                    chars += len(args)
    elif "input" in body:  # embeddings: text or token ids, and no completion
        value = body["input"]
        if isinstance(value, list) and value and not isinstance(value[0], str | dict):
            return max(1, sum(len(v) if isinstance(v, list) else 1 for v in value))
        return max(1, (_chars(value)[0] + 3) // 4)
    completion = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(completion, bool) or not isinstance(completion, int) or completion <= 0:
        completion = DEFAULT_COMPLETION_TOKENS
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        completion *= n
    return max(1, (chars + 3) // 4 + extra + completion)


@dataclass(slots=True)
class Ticket:
    """An admitted request: what it took, to settle once the call is over.

    Settling or releasing twice does nothing the second time, so a ``finally: release`` after
    a ``settle`` is safe.
    """

    key: VirtualKey | None
    user: str | None
    model: str
    estimate: int = 0
    token_rules: tuple[Rule, ...] = ()
    spend_day: tuple[str, ...] = ()  # counter prefixes such as "key:support-bot"
    spend_month: tuple[str, ...] = ()
    done: bool = field(default=False, repr=False)


@dataclass(frozen=True, slots=True)
class Period:
    day: str
    day_left_s: float
    month: str
    month_left_s: float


def period(now_ns: int) -> Period:
    now = datetime.fromtimestamp(now_ns / 1e9, UTC)
    next_day = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return Period(
        f"{now:%Y-%m-%d}",
        (next_day - now).total_seconds(),
        f"{now:%Y-%m}",
        (next_month - now).total_seconds(),
    )


def subject_key(user: str | None) -> str | None:
    """The state's subject for a user id or model name: bounded in length, None when missing."""
    if not user:
        return None
    if len(user) <= _MAX_SUBJECT:
        return user
    return "sha256:" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()


def limit_rule(lim: Limit, subject: str) -> Rule:
    """The rule ``lim`` puts on ``subject``; the status page peeks at the state it names."""
    return Rule(f"{lim.per}.{lim.on}", subject, lim.rate, 1 if lim.on == "requests" else None)


def _who(per: str, subject: str) -> str:
    return "the gateway" if per == "global" else f"{per} {subject!r}"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{math.ceil(s)} s"


def _describe(rule: Rule) -> str:
    unit = rule.scope.partition(".")[2]
    rate = rule.limit
    if isinstance(rate, TokenBucket):
        return f"{rate.capacity:g} {unit} at once, refilled at {rate.refill_per_s:g} per second"
    return f"{rate.limit:g} {unit} per {rate.window_s:g} s"


class Admission:
    """Model allow-lists, budgets and rate limits for every request, over a :class:`GatewayState`.

    >>> admission = Admission(config, state, clock)            # doctest: +SKIP
    >>> ticket = await admission.admit(key, body.get("user"), "chat", body)
    >>> ...  # the upstream call
    >>> await admission.settle(ticket, usage.prompt_tokens, usage.completion_tokens, cost_usd)
    """

    def __init__(self, config: GatewayConfig, state: GatewayState, clock: Clock) -> None:
        self._config = config
        self._state = state
        self._clock = clock
        self._limits = config.limits
        self._budgets = config.budgets

    @property
    def active(self) -> bool:
        """Anything to check? False with no keys, limits and budgets: skip admission entirely."""
        return bool(self._config.keys or self._limits or self._budgets)

    def rules(self, key: VirtualKey | None, user: str | None, model: str) -> list[Rule]:
        """The rate-limit rules applying to a request (each distinct rule once)."""
        return list(self._origins(key, user, model))

    def _origins(self, key: VirtualKey | None, user: str | None, model: str) -> dict[Rule, list[LimitId]]:
        """Each applying rule with the configured limits that make it (one, unless identical)."""
        subjects = {
            "key": key.name if key else None,
            "user": subject_key(user),
            "model": subject_key(model),
            "global": "",
        }
        limits: list[LimitId] = [(None, lim) for lim in self._limits]
        if key is not None:
            limits += [(key.name, lim) for lim in key.limits]
        rules: dict[Rule, list[LimitId]] = {}  # an identical rule twice would take twice from one state
        for origin in limits:
            lim = origin[1]
            subject = subjects[lim.per]
            if subject is not None:
                rules.setdefault(limit_rule(lim, subject), []).append(origin)
        return rules

    async def admit(
        self, key: VirtualKey | None, user: str | None, model: str, body: Mapping[str, Any]
    ) -> Ticket:
        """Admit the request or raise :class:`PermissionDenied`, :class:`BudgetExceeded` or
        :class:`RateLimited` (``retry_after_s`` None: the request is larger than a limit allows)."""
        if key is not None and not key.allows(model):
            allowed = ", ".join(sorted(key.models or ()))
            raise PermissionDenied(
                f"key {key.name!r} may not use model {model!r}; it may use: {allowed}", param="model"
            )
        ticket = Ticket(key, user, model)
        await self._check_budgets(ticket)
        origins = self._origins(key, user, model)
        if not origins:
            return ticket
        rules = list(origins)
        token_rules = tuple(r for r in rules if r.cost is None)
        estimate = estimate_tokens(body) if token_rules else 1
        verdict = await self._state.limits.take(rules, estimate)
        if not verdict.allowed:
            refusal = self._refusal(rules, verdict.decisions, verdict.retry_after_s, estimate)
            refused = (
                o for r, d in zip(rules, verdict.decisions, strict=True) if not d.allowed for o in origins[r]
            )
            refusal.limits = tuple(dict.fromkeys(refused))  # the gateway counts them for its status
            raise refusal
        ticket.estimate, ticket.token_rules = estimate, token_rules
        return ticket

    async def settle(
        self, ticket: Ticket, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None:
        """Correct token limits to the real count and add the call's cost to its budgets' spend."""
        if ticket.done:
            return
        ticket.done = True
        if ticket.token_rules:
            actual = max(0, prompt_tokens) + max(0, completion_tokens)
            if actual != ticket.estimate:
                await self._state.limits.settle(ticket.token_rules, ticket.estimate, actual)
        if not (math.isfinite(cost_usd) and cost_usd > 0):
            return
        p = period(self._clock.now_ns())  # spend counts in the period it happened, not admitted
        if ticket.spend_day:
            day = [f"{s}:day:{p.day}" for s in ticket.spend_day]
            await self._state.spend.add(day, cost_usd, p.day_left_s + _TTL_SLACK_S)
        if ticket.spend_month:
            month = [f"{s}:month:{p.month}" for s in ticket.spend_month]
            await self._state.spend.add(month, cost_usd, p.month_left_s + _TTL_SLACK_S)

    async def release(self, ticket: Ticket) -> None:
        """The request failed before using tokens: give its token estimate back, spend nothing."""
        if ticket.done:
            return
        ticket.done = True
        if ticket.token_rules:
            await self._state.limits.settle(ticket.token_rules, ticket.estimate, 0)

    # -- internals ----------------------------------------------------------------------------------

    def _applicable(self, key: VirtualKey | None, user: str | None) -> list[tuple[Budget, str]]:
        subjects = {"key": key.name if key else None, "user": subject_key(user)}
        subjects["department"] = key.department if key else None
        out = [(key.budget, key.name)] if key is not None and key.budget is not None else []
        out += [(b, s) for b in self._budgets if (s := subjects[b.per]) is not None]
        return out

    async def _check_budgets(self, ticket: Ticket) -> None:
        budgets = self._applicable(ticket.key, ticket.user)
        if not budgets:
            return
        p = period(self._clock.now_ns())
        checks: list[tuple[str, str, float, float]] = []  # (who, period name, cap, seconds to reset)
        counters: list[str] = []
        day: dict[str, None] = {}
        month: dict[str, None] = {}
        for b, subject in budgets:
            prefix = f"{b.per}:{subject}"
            if b.daily_usd is not None:
                checks.append((_who(b.per, subject), "daily", b.daily_usd, p.day_left_s))
                counters.append(f"{prefix}:day:{p.day}")
                day[prefix] = None
            if b.monthly_usd is not None:
                checks.append((_who(b.per, subject), "monthly", b.monthly_usd, p.month_left_s))
                counters.append(f"{prefix}:month:{p.month}")
                month[prefix] = None
        spent = await self._state.spend.spent(counters)
        over = [(c, s) for c, s in zip(checks, spent, strict=True) if s >= c[2]]
        if over:
            (who, span, cap, reset_s), total = max(over, key=lambda o: o[0][3])  # the last to reset
            raise BudgetExceeded(
                f"budget exceeded: {who} has spent ${total:.2f} of its {span} budget of ${cap:.2f}; "
                f"it resets at the start of the next UTC {'day' if span == 'daily' else 'month'}",
                retry_after_s=reset_s,
            )
        ticket.spend_day, ticket.spend_month = tuple(day), tuple(month)

    def _refusal(
        self, rules: Sequence[Rule], decisions: Sequence[Decision], retry_after_s: float | None, estimate: int
    ) -> RateLimited:
        refused = [(r, d) for r, d in zip(rules, decisions, strict=True) if not d.allowed]
        if retry_after_s is None:  # one rule can never admit a request this large
            rule = next(r for r, d in refused if d.retry_after_s is None)
            per = rule.scope.partition(".")[0]
            return RateLimited(
                f"this request needs about {estimate} tokens, more than {_who(per, rule.key)} may use "
                f"({_describe(rule)}); send a smaller request (shorter messages or a lower max_tokens)",
                retry_after_s=None,
            )
        rule = max(refused, key=lambda rd: rd[1].retry_after_s or 0.0)[0]
        per = rule.scope.partition(".")[0]
        return RateLimited(
            f"rate limit reached for {_who(per, rule.key)}: {_describe(rule)}; "
            f"retry after {_seconds(retry_after_s)}",
            retry_after_s=retry_after_s,
        )

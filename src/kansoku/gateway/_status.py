"""The gateway's state at a glance: deployments, breakers, budgets, limits, dead letters.

Served as ``GET /admin/status`` (admin key) and, inside ``kansoku up``, through the collector
as ``/api/v1/gateway/status`` for the web UI's gateway page. Budgets show today's and this
month's spend against their limits. Rate limits are listed as configured, each with ``usage``
(``used`` of ``limit`` right now, per subject, read without taking anything) and ``refused``
(requests it refused since this process started). Usage covers the subjects that can be listed
cheaply: the gateway for a global limit, configured keys and model routes (the first 50 each);
per-user limits have no list of users, so their ``usage`` is empty and ``subjects`` says why.
``used`` is None when the state backend cannot be read (Redis down); a dead-letter list that
cannot be read shows as empty, with ``dead_letters_error`` set, so the page still answers.
"""

from __future__ import annotations

import time
from typing import Any

from kansoku.gateway._admission import LimitId, limit_rule, period, subject_key
from kansoku.gateway._keys import Limit
from kansoku.gateway._proxy import Gateway
from kansoku.policy import TokenBucket

__all__ = ["status"]


async def _budgets(gw: Gateway) -> list[dict[str, Any]]:
    config = gw.live.config
    # Each entry: per, subject, budget.
    subjects: list[tuple[str, str, Any]] = [("key", k.name, k.budget) for k in config.keys if k.budget]
    for budget in config.budgets:
        if budget.per == "key":
            subjects += [("key", k.name, budget) for k in config.keys]
        elif budget.per == "department":
            departments = sorted({k.department for k in config.keys if k.department})
            subjects += [("department", d, budget) for d in departments]
        # per-user budgets are enforced per user; listing every user here would be unbounded
    p = period(gw.clock.now_ns())
    out = []
    for per, subject, budget in subjects:
        day, month = await gw.state.spend.spent(
            [f"{per}:{subject}:day:{p.day}", f"{per}:{subject}:month:{p.month}"]
        )
        out.append({
            "per": per, "subject": subject,
            "daily_usd": budget.daily_usd, "spent_today_usd": day,
            "monthly_usd": budget.monthly_usd, "spent_this_month_usd": month,
        })  # fmt: skip
    return out


_MAX_SUBJECTS = 50  # per limit: the status stays one cheap read however many keys there are


def _shape(lim: Limit) -> dict[str, Any]:
    rate = lim.rate
    if isinstance(rate, TokenBucket):
        return {"algorithm": "token_bucket", "limit": rate.capacity, "per_s": rate.refill_per_s}
    return {"algorithm": "sliding_window", "limit": rate.limit, "window_s": rate.window_s}


def _subjects(gw: Gateway, lim: Limit, owner: str | None) -> tuple[list[tuple[str | None, str]], str | None]:
    """(shown subject, the subject admission keys the state by) pairs, and a note when partial."""
    config = gw.live.config
    if owner is not None:  # a key's own limit applies to that key alone
        return [(owner, owner)], None
    if lim.per == "global":
        return [(None, "")], None
    if lim.per == "key":
        pairs = [(k.name, k.name) for k in config.keys]
    elif lim.per == "model":
        pairs = [(m.name, subject_key(m.name) or m.name) for m in config.models]
    else:  # per user: any id a request sends, so there is nothing to list
        return [], f"per {lim.per}: not enumerated"
    note = None
    if len(pairs) > _MAX_SUBJECTS:
        note = f"the first {_MAX_SUBJECTS} of {len(pairs)} {lim.per}s"
    return list(pairs[:_MAX_SUBJECTS]), note


async def _limits(gw: Gateway) -> list[dict[str, Any]]:
    config = gw.live.config
    owned: list[LimitId] = [(None, lim) for lim in config.limits]
    owned += [(k.name, lim) for k in config.keys for lim in k.limits]
    listed = [(owner, lim, *_subjects(gw, lim, owner)) for owner, lim in owned]
    # One read for every subject of every limit (one MGET on Redis).
    rules = [limit_rule(lim, subject) for _, lim, pairs, _ in listed for _, subject in pairs]
    used = iter(await gw.state.limits.peek(rules) if rules else [])
    out = []
    for owner, lim, pairs, note in listed:
        shape = _shape(lim)
        usage = [{"subject": shown, "used": next(used), "limit": shape["limit"]} for shown, _ in pairs]
        entry = {"per": lim.per, "on": lim.on, "key": owner, **shape, "usage": usage}
        if note is not None:
            entry["subjects"] = note
        entry["refused"] = gw.refusals.get((owner, lim), 0)
        out.append(entry)
    return out


async def status(gw: Gateway, dead_letters: int = 20) -> dict[str, Any]:
    live = gw.live
    models = []
    for route in live.config.models:
        standing = {str(s["name"]): s for s in live.router.balancer_snapshot(route.name)}
        keys = [live.router.breaker_key(route.name, name) for name in standing]
        breakers = await gw.state.breakers.states(keys)
        deployments = []
        for (name, s), key in zip(standing.items(), keys, strict=True):
            calls, errors, latency = gw.deployments.get(name, [0, 0, 0.0])
            deployments.append({
                **s, "breaker": breakers.get(key, "closed"), "calls": int(calls), "errors": int(errors),
                "error_rate": errors / calls if calls else None,
                "mean_latency_ms": latency / calls if calls else None,
            })  # fmt: skip
        models.append(
            {
                "name": route.name,
                "routing": route.routing,
                "fallbacks": list(route.fallbacks),
                "template": route.fallback_response is not None,
                "deployments": deployments,
            }
        )
    out: dict[str, Any] = {
        "at": time.time(),
        "inflight": gw.inflight,
        "requests": dict(gw.counts),
        "models": models,
        "budgets": await _budgets(gw),
        "limits": await _limits(gw),
    }
    try:
        letters = await gw.state.dead_letters.list(limit=dead_letters)
    except Exception as exc:  # noqa: BLE001 - Redis down: the rest of the page is still worth showing
        letters = []
        out["dead_letters_error"] = f"the dead letters could not be read ({type(exc).__name__})"
    out["dead_letters"] = [
        {
            "id": d.id,
            "created_ns": d.created_ns,
            "model": d.model,
            "key_name": d.key_name,
            "attempts": len(d.attempts),
            "last_error": d.attempts[-1].error_type if d.attempts else None,
            "replays": len(d.replays),
        }
        for d in letters
    ]
    return out

"""The gateway's state at a glance: deployments, breakers, budgets, limits, dead letters.

Served as ``GET /admin/status`` (admin key) and, inside ``kansoku up``, through the collector
as ``/api/v1/gateway/status`` for the web UI's gateway page. Budgets show today's and this
month's spend against their limits; rate limits are listed as configured (their live state is
spread over many subjects and kept in the state backend).
"""

from __future__ import annotations

import time
from typing import Any

from kansoku.gateway._admission import period
from kansoku.gateway._proxy import Gateway

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


def _limit(lim: Any, owner: str | None) -> dict[str, Any]:
    rate = lim.rate
    shape = (
        {"algorithm": "token_bucket", "limit": rate.capacity, "per_s": rate.refill_per_s}
        if hasattr(rate, "capacity")
        else {"algorithm": "sliding_window", "limit": rate.limit, "window_s": rate.window_s}
    )
    return {"per": lim.per, "on": lim.on, "key": owner, **shape}


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
    limits = [_limit(lim, None) for lim in live.config.limits]
    limits += [_limit(lim, k.name) for k in live.config.keys for lim in k.limits]
    letters = await gw.state.dead_letters.list(limit=dead_letters)
    return {
        "at": time.time(),
        "inflight": gw.inflight,
        "requests": dict(gw.counts),
        "models": models,
        "budgets": await _budgets(gw),
        "limits": limits,
        "dead_letters": [
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
        ],
    }

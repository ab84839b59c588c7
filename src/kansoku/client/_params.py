"""Keyword arguments of the client's query methods to the API's query-string parameters.

The keywords are the API's parameter names (``user_id``, ``q``, ``min_latency_ms``, ...) so the
HTTP reference and the Python one are the same table; the exception is ``tags``, which takes a
mapping or ``"key:value"`` strings and becomes one repeated ``tag`` parameter each. ``None``
means "not given", so callers can forward optional values without building dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

#: A point in time: RFC 3339 / relative duration text (``"15m"``, passed through so the server's
#: clock decides), unix seconds, an aware ``datetime``, or a ``timedelta`` back from now.
TimeArg = str | int | float | datetime | timedelta
#: Tags to match (all of them): ``{"department": "support"}`` or ``["department:support", ...]``.
TagsArg = Mapping[str, str] | Iterable[str]


class CallFilters(TypedDict, total=False):
    """Filters shared by ``calls``, ``stats`` and ``histogram``; each is optional, ``None`` ignored."""

    user_id: str | None
    context_id: str | None
    prompt_id: str | None
    prompt_version: str | None
    model: str | None
    provider: str | None
    error_type: str | None
    status: str | None
    tags: TagsArg | None
    since: TimeArg | None
    until: TimeArg | None
    q: str | None
    min_latency_ms: float | None
    min_tokens: int | None
    min_cost: float | None
    type: str | None


class CallsParams(CallFilters, total=False):
    """``calls`` / ``iter_calls``: the filters plus sorting and paging."""

    sort: str | None
    order: str | None
    limit: int | None
    cursor: str | None


class StatsParams(CallFilters, total=False):
    """``stats``: the filters plus grouping; ``bucket`` is seconds, ``"1h"``-style text or a timedelta."""

    group_by: str | None
    bucket: int | str | timedelta | None
    limit: int | None
    quantiles: bool | str | Iterable[str] | None
    """``True``/``False`` or the percentile families to compute (``["latency_ms", "ttft_ms"]``)."""


class HistogramParams(CallFilters, total=False):
    """``histogram``: the filters plus the ``field`` to bin (the server's default: ``latency_ms``)."""

    field: str | None


_FILTER_KEYS = frozenset(CallFilters.__annotations__)
CALLS_KEYS = _FILTER_KEYS | frozenset(CallsParams.__annotations__)
STATS_KEYS = _FILTER_KEYS | frozenset(StatsParams.__annotations__)
HISTOGRAM_KEYS = _FILTER_KEYS | frozenset(HistogramParams.__annotations__)
_TIME_KEYS = frozenset({"since", "until"})
# Largest unit first, so a timedelta reads like a person would write it (7d, not 604800s).
_UNITS = (("w", 7 * 86400 * 1000), ("d", 86400 * 1000), ("h", 3600 * 1000), ("m", 60 * 1000), ("s", 1000))


def to_query(method: str, allowed: frozenset[str], kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query-string pairs, in a stable order; :class:`TypeError` for an unknown keyword."""
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments: {', '.join(unknown)}")
    pairs: list[tuple[str, str]] = []
    for name, value in kwargs.items():
        if value is None:
            continue
        if name == "tags":
            pairs.extend(("tag", t) for t in tag_params(value))
        elif name in _TIME_KEYS:
            pairs.append((name, time_param(name, value)))
        elif name == "bucket":
            pairs.append((name, _bucket_param(value)))
        elif name == "quantiles":
            pairs.append((name, _quantiles_param(value)))
        else:
            pairs.append((name, _scalar(name, value)))
    return pairs


def tag_params(tags: Any) -> list[str]:
    """``key:value`` strings from a mapping or from strings; :class:`ValueError` names a bad one."""
    if isinstance(tags, Mapping):
        items = [f"{k}:{v}" for k, v in tags.items()]
    elif isinstance(tags, str):
        items = [tags]  # one "k:v" string, not its characters
    else:
        items = list(tags)
    for item in items:
        if not isinstance(item, str) or not item.partition(":")[0] or ":" not in item:
            raise ValueError(f"tags: each tag must be 'key:value' (e.g. department:support), got {item!r}")
    return items


def time_param(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: a datetime needs a time zone (e.g. datetime.now(UTC))")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return duration_text(name, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"{name}: expected text, unix seconds, datetime or timedelta, got {type(value).__name__}")


def duration_text(name: str, value: timedelta) -> str:
    ms, rest = divmod(value, timedelta(milliseconds=1))
    if ms < 0 or rest:
        raise ValueError(f"{name}: a timedelta must be a non-negative whole number of milliseconds")
    for unit, size in _UNITS:
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _bucket_param(value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds) or seconds <= 0:
            raise ValueError("bucket: a timedelta must be a positive whole number of seconds")
        return str(int(seconds))
    return _scalar("bucket", value)


def _quantiles_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    families = list(value)
    if not families or not all(isinstance(f, str) for f in families):
        raise ValueError("quantiles: True, False or names such as ['latency_ms', 'ttft_ms']")
    return ",".join(families)


def _scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected text or a number, got a bool")
    if isinstance(value, str | int | float):
        return value if isinstance(value, str) else repr(value)
    raise TypeError(f"{name}: expected text or a number, got {type(value).__name__}")

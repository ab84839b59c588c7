"""Query-string parameters of the query API to store queries, with errors naming the parameter.

Times are RFC 3339 (``2026-11-23T14:05:00Z``), unix seconds, or a duration back from now (``15m``,
``1h``, ``7d``). Unknown parameters are refused: a typo (``modle=``) must not silently return
everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from kansoku.server._errors import APIError
from kansoku.store import MAX_LIMIT, QUANTILE_FIELDS, CallQuery, HistogramQuery, StatsQuery

_DURATION = re.compile(r"^(\d{1,9})(ms|s|m|h|d|w)$")
_UNIT_NS = {
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}
_Q = TypeVar("_Q", CallQuery, StatsQuery, HistogramQuery)
_MAX_NS = 2**63 - 1
_MAX_NUMBER = 2**31 - 1  # fits every store's integer columns

_STR_PARAMS = (
    "user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type", "environment",
    "service",
)  # fmt: skip
FILTER_PARAMS: tuple[str, ...] = (
    *_STR_PARAMS, "status", "tag", "since", "until", "q", "min_latency_ms", "min_tokens", "min_cost", "type",
)  # fmt: skip
CALLS_PARAMS: tuple[str, ...] = (*FILTER_PARAMS, "sort", "order", "limit", "cursor")
STATS_PARAMS: tuple[str, ...] = (*FILTER_PARAMS, "group_by", "bucket", "limit", "quantiles")
HISTOGRAM_PARAMS: tuple[str, ...] = (*FILTER_PARAMS, "field")


def _bad(param: str, message: str) -> APIError:
    return APIError(400, f"{param} {message}", param=param, code="invalid_parameter")


def duration_ns(param: str, text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise _bad(param, f"must be a duration like 90s, 15m, 1h or 7d, got {text[:40]!r}")
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


def time_ns(param: str, text: str, now_ns: int) -> int:
    """A point in time: RFC 3339, unix seconds, or a duration before ``now_ns``."""
    t = text.strip()
    if _DURATION.match(t):
        return max(0, now_ns - duration_ns(param, t))
    try:
        secs = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(secs) or not 0 <= secs < 9.2e9:
            raise _bad(param, "must be unix seconds between 1970 and 2261")
        return int(secs * 1e9)
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise _bad(
            param, f"must be RFC 3339 (2026-11-23T14:05:00Z), unix seconds or 1h, got {t[:40]!r}"
        ) from None
    if dt.tzinfo is None:
        raise _bad(param, "needs a time zone (add Z for UTC)")
    ns = int(dt.timestamp() * 1e9)
    if not 0 <= ns <= _MAX_NS:
        raise _bad(param, "is out of range")
    return ns


def _number(param: str, text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise _bad(param, f"must be a non-negative number, got {text[:40]!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not 0 <= value <= _MAX_NUMBER:
        raise _bad(param, f"must be a number from 0 to {_MAX_NUMBER:g}")
    return value


def _single(query: Mapping[str, Any], name: str) -> str | None:
    values = query.getall(name, []) if hasattr(query, "getall") else [query[name]] if name in query else []
    if len(values) > 1:
        raise _bad(name, "is given more than once")
    return values[0] if values else None


def _check_known(query: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed:
            raise APIError(
                400,
                f"unknown query parameter {name[:60]!r}; known: {', '.join(allowed)}",
                param=name[:60],
                code="unknown_parameter",
            )


def _filters(query: Mapping[str, Any], project: str, now_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"project": project}
    for name in _STR_PARAMS:
        v = _single(query, name)
        if v is not None:
            out[name] = v
    status = _single(query, "status")
    if status is not None:
        out["status"] = status
    tags = []
    for raw in query.getall("tag", []) if hasattr(query, "getall") else []:
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise _bad("tag", f"must be key:value (e.g. department:support), got {raw[:40]!r}")
        tags.append((key, value))
    out["tags"] = tuple(tags)
    for name, key in (("since", "since_ns"), ("until", "until_ns")):
        v = _single(query, name)
        if v is not None:
            out[key] = time_ns(name, v, now_ns)
    text = _single(query, "q")
    if text is not None:
        out["text"] = text
    for name, kind in (("min_latency_ms", float), ("min_tokens", int), ("min_cost", float)):
        v = _single(query, name)
        if v is not None:
            out[name] = _number(name, v, kind)
    rtype = _single(query, "type")
    if rtype is not None:
        if rtype not in ("llm_call", "span", "all"):
            raise _bad("type", "must be llm_call, span or all")
        out["record_type"] = None if rtype == "all" else rtype
    return out


def _limit(query: Mapping[str, Any], default: int, high: int) -> int:
    v = _single(query, "limit")
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise _bad("limit", f"must be a whole number from 1 to {high}") from None
    if not 1 <= n <= high:
        raise _bad("limit", f"must be from 1 to {high}")
    return n


# Store-side field names (the start of a query value's ValueError) to the API's parameter names.
_API_NAMES = {
    "text": "q", "since_ns": "since", "until_ns": "until", "record_type": "type",
    "tags": "tag", "bucket_s": "bucket",
}  # fmt: skip


def _build(cls: type[_Q], kwargs: dict[str, Any]) -> _Q:
    try:
        return cls(**kwargs)
    except ValueError as exc:
        message = str(exc)
        param = message.split(" ", 1)[0]
        param = _API_NAMES.get(param, param)
        raise APIError(400, message, param=param, code="invalid_parameter") from None


def calls_query(query: Mapping[str, Any], project: str, now_ns: int) -> CallQuery:
    _check_known(query, CALLS_PARAMS)
    kw = _filters(query, project, now_ns)
    sort = _single(query, "sort")
    if sort is not None:
        kw["sort"] = sort
    order = _single(query, "order")
    if order is not None:
        if order not in ("asc", "desc"):
            raise _bad("order", "must be asc or desc")
        kw["descending"] = order == "desc"
    kw["limit"] = _limit(query, 50, MAX_LIMIT)
    cursor = _single(query, "cursor")
    if cursor is not None:
        kw["cursor"] = cursor
    return _build(CallQuery, kw)


def _bucket_s(text: str) -> int:
    """Bucket width in seconds: plain seconds (``3600``) or a duration (``1h``)."""
    # ASCII digits only: isdigit() also accepts "²", and int() refuses more than 4300 digits.
    if text.isascii() and text.isdigit():
        seconds = int(text) if len(text) <= 12 else 0
    else:
        seconds = duration_ns("bucket", text) // 10**9
    if not 1 <= seconds <= 366 * 86400:
        raise _bad("bucket", "must be from 1 second to 366 days")
    return seconds


def stats_query(query: Mapping[str, Any], project: str, now_ns: int) -> StatsQuery:
    _check_known(query, STATS_PARAMS)
    kw = _filters(query, project, now_ns)
    group = _single(query, "group_by")
    if group is not None:
        kw["group_by"] = group
    bucket = _single(query, "bucket")
    if bucket is not None:
        kw["bucket_s"] = _bucket_s(bucket)
        if "since_ns" not in kw:
            raise _bad("bucket", "needs since (e.g. since=24h)")
        kw.setdefault("until_ns", now_ns)
    kw["limit"] = _limit(query, 1000, 10_000)
    quantiles = _single(query, "quantiles")
    if quantiles is not None:
        kw["quantiles"] = _quantiles(quantiles)
    return _build(StatsQuery, kw)


def _quantiles(text: str) -> bool | tuple[str, ...]:
    """``true`` / ``false`` or the comma-separated percentile families to compute."""
    if text in ("true", "false"):
        return text == "true"
    names = tuple(text.split(","))
    if not all(name in QUANTILE_FIELDS for name in names):
        allowed = ", ".join(QUANTILE_FIELDS)
        raise _bad(
            "quantiles", f"must be true, false or a comma-separated list of {allowed}, got {text[:60]!r}"
        )
    return names


def histogram_query(query: Mapping[str, Any], project: str, now_ns: int) -> HistogramQuery:
    _check_known(query, HISTOGRAM_PARAMS)
    kw = _filters(query, project, now_ns)
    field = _single(query, "field")
    if field is not None:
        kw["field"] = field
    return _build(HistogramQuery, kw)

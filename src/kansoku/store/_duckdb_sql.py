"""SQL text for the DuckDB backend. Every value is a named, bound parameter; identifiers come
only from the closed maps below (a tag key is a bound map-lookup key, never SQL text)."""

from __future__ import annotations

from typing import Any

from kansoku.store._protocol import (
    BIN_EPSILON,
    BINS_PER_DECADE,
    QUANTILE_FIELDS,
    CallQuery,
    Filters,
    HistogramQuery,
    StatsQuery,
)
from kansoku.store._rows import READ_COLUMNS

SELECT_SPAN = ", ".join(READ_COLUMNS)

_GROUP_COLUMNS = {
    "model": "coalesce(model, request_model)", "provider": "provider", "prompt_id": "prompt_id",
    "prompt_version": "prompt_version", "user_id": "user_id", "error_type": "error_type",
    "environment": "environment", "service": "service",
}  # fmt: skip

# (descending, ascending) sort expressions: a missing value sorts last both ways. The sentinels
# stay inside (-2**62, 2**62), the range a cursor key may take (CallQuery.after).
_SORT_EXPR = {
    "timestamp": ("start_ns", "start_ns"),
    "latency_ms": ("latency_ms", "latency_ms"),
    "cost_usd": ("coalesce(cost_usd, -1.0)", "coalesce(cost_usd, 1e18)"),
    "total_tokens": (
        "coalesce(total_tokens::BIGINT, -1)",
        "coalesce(total_tokens::BIGINT, 4611686018427387903)",
    ),
}

# Histogram fields to columns (the closed HISTOGRAM_FIELDS: a field never becomes SQL text itself).
_HISTOGRAM_COLUMNS = {
    "latency_ms": "latency_ms", "ttft_ms": "ttft_ms", "total_tokens": "total_tokens",
    "input_tokens": "input_tokens", "output_tokens": "output_tokens", "cost_usd": "cost_usd",
}  # fmt: skip

# Percentile families (the closed QUANTILE_FIELDS, in that order) to their exact quantiles.
_QUANTILE_EXPR = {
    "latency_ms": "quantile_cont(latency_ms, [0.5, 0.95, 0.99])",
    "ttft_ms": "quantile_cont(ttft_ms, [0.5, 0.95, 0.99])",
    "total_tokens": "quantile_cont(total_tokens::DOUBLE, [0.5, 0.95])",
}

_EQ_FILTERS = (
    "user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type", "status",
    "environment", "service",
)  # fmt: skip


class Params:
    """Collects bound values and hands out their ``$name`` placeholders."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "$" + name


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where(q: Filters, p: Params) -> str:
    """The WHERE clause (without the keyword) for a query's project and filters."""
    conds = [f"project = {p(q.project)}"]
    if q.record_type is not None:
        conds.append(f"type = {p(q.record_type)}")
    for name in _EQ_FILTERS:
        value = getattr(q, name)
        if value is not None:
            conds.append(f"{_GROUP_COLUMNS.get(name, name)} = {p(value)}")
    for key, value in q.tags:
        conds.append(f"tags[{p(key)}] = {p(value)}")
    if q.since_ns is not None:
        conds.append(f"start_ns >= {p(q.since_ns)}")
    if q.until_ns is not None:
        conds.append(f"start_ns < {p(q.until_ns)}")
    if q.text is not None:
        pat = p(_like_pattern(q.text))
        conds.append(f"(input_text ILIKE {pat} ESCAPE '\\' OR output_text ILIKE {pat} ESCAPE '\\')")
    if q.min_latency_ms is not None:
        conds.append(f"latency_ms >= {p(float(q.min_latency_ms))}")
    if q.min_tokens is not None:
        conds.append(f"total_tokens >= {p(q.min_tokens)}")
    if q.min_cost is not None:
        conds.append(f"cost_usd >= {p(float(q.min_cost))}")
    return " AND ".join(conds)


def calls_sql(q: CallQuery) -> tuple[str, dict[str, Any]]:
    """A page query: the span columns, then the sort key (limit + 1 rows, to see if more follow)."""
    p = Params()
    cond = where(q, p)
    key = _SORT_EXPR[q.sort][0 if q.descending else 1]
    after = q.after()
    if after is not None:
        op = "<" if q.descending else ">"
        k = p(after[0])
        cond += f" AND ({key} {op} {k} OR ({key} = {k} AND span_id {op} {p(after[1])}))"
    order = "DESC" if q.descending else "ASC"
    # Two phases: find the page's row ids on the narrow sort columns, then read the wide rows
    # (measured ~15x faster than one top-N that carries the prompts through the sort).
    sql = (
        f"SELECT {SELECT_SPAN}, {key} AS sort_key FROM spans WHERE rowid IN ("  # noqa: S608
        f"SELECT rowid FROM spans WHERE {cond} ORDER BY {key} {order}, span_id {order} LIMIT {p(q.limit + 1)}"
        f") ORDER BY sort_key {order}, span_id {order}"
    )
    return sql, p.values


def stats_sql(q: StatsQuery) -> tuple[str, dict[str, Any]]:
    """Grouped aggregates: group, bucket, count, errors, error histogram, quantiles, sums."""
    p = Params()
    if q.group_by is None:
        group = "NULL::VARCHAR"
    elif q.tag_key is not None:
        group = f"tags[{p(q.tag_key)}]"
    else:
        group = _GROUP_COLUMNS[q.group_by]
    if q.bucket_s is None:
        bucket = "NULL::BIGINT"
    else:
        width = p(q.bucket_s * 1_000_000_000)
        bucket = f"(start_ns // {width}) * {width}"
    cond = where(q, p)
    # A family not asked for is a NULL list: no sort of its column at all (most of the cost).
    lat, ttft, tok = (
        _QUANTILE_EXPR[name] if name in q.quantile_fields else "NULL::DOUBLE[]" for name in QUANTILE_FIELDS
    )
    sql = (
        f"SELECT {group} AS g, {bucket} AS b, count(*) AS n, "  # noqa: S608
        "count(*) FILTER (WHERE status = 'error') AS errors, "
        "histogram(error_type) FILTER (WHERE error_type IS NOT NULL) AS by_type, "
        f"{lat} AS lat, {ttft} AS ttft, "
        "sum(input_tokens)::BIGINT AS tin, sum(output_tokens)::BIGINT AS tout, "
        f"{tok} AS tok, sum(cost_usd) AS cost "
        f"FROM spans WHERE {cond} GROUP BY g, b "
        f"ORDER BY b ASC NULLS FIRST, n DESC, g ASC NULLS LAST LIMIT {p(q.limit)}"
    )
    return sql, p.values


def histogram_sql(q: HistogramQuery) -> tuple[str, dict[str, Any]]:
    """(log-scale bin index, count) per non-empty bin; the index is NULL for values <= 0."""
    p = Params()
    v = _HISTOGRAM_COLUMNS[q.field]
    cond = where(q, p)
    # DuckDB's CASE evaluates a branch only for its own rows: log10 never sees a value <= 0.
    index = f"CASE WHEN {v} > 0 THEN floor(log10({v}) * {BINS_PER_DECADE} + {BIN_EPSILON!r})::BIGINT END"
    sql = (
        f"SELECT {index} AS i, count(*) AS n FROM spans "  # noqa: S608 (constants only)
        f"WHERE {cond} AND {v} IS NOT NULL GROUP BY i ORDER BY i ASC NULLS FIRST"
    )
    return sql, p.values

"""SQL text for the ClickHouse backend.

ClickHouse 18.16 has no bound query parameters (``{name:Type}`` came in 19.x), so every value
is written into the SQL by :func:`quote`, the one literal writer; identifiers come only from the
closed maps below and from names checked by :func:`identifier`.
"""

from __future__ import annotations

import math
import re

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

_SMALLEST_NORMAL = 2.2250738585072014e-308
_HALF_SUBNORMAL_EXP = 2.0**-537  # (2**-537)**2 == 2**-1074, the subnormal unit
_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", "\0": "\\0"}
_STRING_SPECIAL = re.compile(r"[\\'\0]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def quote(value: str | int | float | None) -> str:
    """``value`` as a ClickHouse literal.

    Strings: inside single quotes only the backslash and the quote are special; NUL is written
    as the ``\\0`` escape so no raw NUL reaches the parser. Text that is not valid Unicode
    (lone surrogates) is refused. Floats are written so that the server reads back the same
    double: 18.16 parses decimal literals exactly but rejects subnormal ones, which therefore
    become an exact product of two normal literals.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN cannot be used as a query value")
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and abs(value) < _SMALLEST_NORMAL:
            units = round(value / 5e-324)
            return f"({units} * {_HALF_SUBNORMAL_EXP!r} * {_HALF_SUBNORMAL_EXP!r})"
        return repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("query values must be valid Unicode text") from None
        return "'" + _STRING_SPECIAL.sub(lambda m: _STRING_ESCAPES[m.group()], value) + "'"
    raise TypeError(f"cannot write a {type(value).__name__} as a ClickHouse literal")


def identifier(name: str, what: str) -> str:
    """``name`` back-quoted, after checking it is a plain identifier (database, cluster)."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{what} must be a plain identifier (letters, digits, _), got {name!r}")
    return f"`{name}`"


# Stored JSON-ish columns are read as text; tags are a Nested column read as two arrays.
SELECT_SPAN = ", ".join("tags.key, tags.value" if c == "tags" else c for c in READ_COLUMNS)

_GROUP_COLUMNS = {
    "model": "ifNull(model, request_model)", "provider": "provider", "prompt_id": "prompt_id",
    "prompt_version": "prompt_version", "user_id": "user_id", "error_type": "error_type",
    "environment": "environment", "service": "service",
}  # fmt: skip

# Largest cursor key the protocol accepts (|key| < 2**62): the missing-value sentinels stay below.
_INT_LAST = 2**62 - 1
_FLOAT_LAST = 4.0e18

# (descending, ascending) sort expressions: a missing value sorts last both ways. Latency is
# sorted by the exact integer duration so that cursors compare exactly.
_SORT_EXPR = {
    "timestamp": ("start_ns", "start_ns"),
    "latency_ms": ("end_ns - start_ns", "end_ns - start_ns"),
    "cost_usd": ("ifNull(cost_usd, -1.0)", f"ifNull(cost_usd, {_FLOAT_LAST!r})"),
    "total_tokens": ("ifNull(total_tokens, -1)", f"ifNull(total_tokens, toInt64({_INT_LAST}))"),
}

# Histogram fields to columns (the closed HISTOGRAM_FIELDS: a field never becomes SQL text itself).
_HISTOGRAM_COLUMNS = {
    "latency_ms": "latency_ms", "ttft_ms": "ttft_ms", "total_tokens": "total_tokens",
    "input_tokens": "input_tokens", "output_tokens": "output_tokens", "cost_usd": "cost_usd",
}  # fmt: skip

_EQ_FILTERS = (
    "user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type", "status",
    "environment", "service",
)  # fmt: skip


def tag_value(key: str) -> str:
    """The value of tag ``key``, NULL when the span has no such tag."""
    k = quote(key)
    return f"if(has(tags.key, {k}), tags.value[indexOf(tags.key, {k})], NULL)"


def where(q: Filters) -> str:
    """The WHERE clause (without the keyword) for a query's project and filters."""
    conds = [f"project = {quote(q.project)}"]
    if q.record_type is not None:
        conds.append(f"type = {quote(q.record_type)}")
    for name in _EQ_FILTERS:
        value = getattr(q, name)
        if value is not None:
            conds.append(f"{_GROUP_COLUMNS.get(name, name)} = {quote(value)}")
    for key, value in q.tags:
        k = quote(key)
        conds.append(f"(has(tags.key, {k}) AND tags.value[indexOf(tags.key, {k})] = {quote(value)})")
    if q.since_ns is not None:
        conds.append(f"start_ns >= {quote(q.since_ns)}")
    if q.until_ns is not None:
        conds.append(f"start_ns < {quote(q.until_ns)}")
    if q.text is not None:
        t = quote(q.text)
        conds.append(
            f"(positionCaseInsensitiveUTF8(ifNull(input_text, ''), {t}) > 0 "
            f"OR positionCaseInsensitiveUTF8(ifNull(output_text, ''), {t}) > 0)"
        )
    if q.min_latency_ms is not None:
        conds.append(f"latency_ms >= {quote(float(q.min_latency_ms))}")
    if q.min_tokens is not None:
        conds.append(f"total_tokens >= {quote(q.min_tokens)}")
    if q.min_cost is not None:
        conds.append(f"cost_usd >= {quote(float(q.min_cost))}")
    return " AND ".join(conds)


# Percentile families (the closed QUANTILE_FIELDS) to the inner query's partial state and the
# outer query's merge of it; ttft and tokens skip their NULLs (the -If combinator).
_QUANTILE_STATE = {
    "latency_ms": "quantilesState(0.5, 0.95, 0.99)(latency_ms) AS lat",
    "ttft_ms": "quantilesIfState(0.5, 0.95, 0.99)(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS ttft",
    "total_tokens": (
        "quantilesIfState(0.5, 0.95)(toFloat64(assumeNotNull(total_tokens)), isNotNull(total_tokens)) AS tok"
    ),
}
_QUANTILE_MERGE = {
    "latency_ms": "quantilesMerge(0.5, 0.95, 0.99)(lat)",
    "ttft_ms": "quantilesIfMerge(0.5, 0.95, 0.99)(ttft)",
    "total_tokens": "quantilesIfMerge(0.5, 0.95)(tok)",
}


def calls_sql(q: CallQuery) -> str:
    """A page query: the span columns, then the sort key (limit + 1 rows, to see if more follow)."""
    cond = where(q)
    key = _SORT_EXPR[q.sort][0 if q.descending else 1]
    after = q.after()
    if after is not None:
        op = "<" if q.descending else ">"
        k = quote(after[0])
        cond += f" AND ({key} {op} {k} OR ({key} = {k} AND span_id {op} {quote(after[1])}))"
    order = "DESC" if q.descending else "ASC"
    return (
        f"SELECT {SELECT_SPAN}, {key} AS sort_key FROM spans WHERE {cond} "  # noqa: S608 (quoted)
        f"ORDER BY sort_key {order}, span_id {order} LIMIT {q.limit + 1}"
    )


def stats_sql(q: StatsQuery) -> str:
    """Grouped aggregates: group, bucket, count, errors, error histogram, quantiles, sums.

    18.16 has no ``histogram`` and its ``sumMap`` takes no string keys, so the rows are first
    grouped by error type as well, with partial aggregate states, and the outer query merges
    the states per group while collecting (error type, count) pairs: one scan.
    """
    if q.group_by is None:
        group = "CAST(NULL AS Nullable(String))"
    elif q.tag_key is not None:
        group = tag_value(q.tag_key)
    else:
        group = _GROUP_COLUMNS[q.group_by]
    if q.bucket_s is None:
        bucket = "CAST(NULL AS Nullable(Int64))"
    else:
        width = quote(q.bucket_s * 1_000_000_000)
        bucket = f"intDiv(start_ns, {width}) * {width}"
    # A family not asked for has no state in the inner query (no values gathered, nothing
    # sorted) and is a NULL in the outer one, so the columns keep their places.
    states = "".join(f"{_QUANTILE_STATE[n]}, " for n in QUANTILE_FIELDS if n in q.quantile_fields)
    lat, ttft, tok = (_QUANTILE_MERGE[n] if n in q.quantile_fields else "NULL" for n in QUANTILE_FIELDS)
    inner = (
        f"SELECT {group} AS g, {bucket} AS b, error_type AS et, count() AS c, "  # noqa: S608 (quoted)
        f"countIf(status = 'error') AS e, {states}"
        "sum(input_tokens) AS tin, sum(output_tokens) AS tout, sum(cost_usd) AS cost "
        f"FROM spans WHERE {where(q)} GROUP BY g, b, et"
    )
    return (
        "SELECT g, b, sum(c) AS n, sum(e), groupArrayIf((et, c), isNotNull(et)), "  # noqa: S608
        f"{lat}, {ttft}, sum(tin), sum(tout), {tok}, sum(cost) "
        f"FROM ({inner}) GROUP BY g, b "
        f"ORDER BY b ASC NULLS FIRST, n DESC, g ASC NULLS LAST LIMIT {q.limit}"
    )


def histogram_sql(q: HistogramQuery) -> str:
    """(log-scale bin index, count) per non-empty bin; the index is NULL for values <= 0.

    ``if`` computes both branches on every row: log10 of a value <= 0 gives -inf or nan there,
    which is thrown away, never an error. NULLs are gone after the WHERE, so ``assumeNotNull``
    lets the arithmetic run on the plain type.
    """
    v = f"assumeNotNull({_HISTOGRAM_COLUMNS[q.field]})"
    index = f"toInt64(floor(log10({v}) * {BINS_PER_DECADE} + {BIN_EPSILON!r}))"
    return (
        f"SELECT if({v} > 0, {index}, NULL) AS i, count() AS n FROM spans "  # noqa: S608 (quoted)
        f"WHERE {where(q)} AND isNotNull({_HISTOGRAM_COLUMNS[q.field]}) "
        "GROUP BY i ORDER BY i ASC NULLS FIRST"
    )

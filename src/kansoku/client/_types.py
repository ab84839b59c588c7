"""What the query API returns, as typed values.

Records stay plain dicts (``Span.to_record()``: the public record contract, documented in the
README), so a new record field reaches callers without a client release. The envelopes around
them are small frozen dataclasses; each keeps the decoded JSON in ``raw`` for ``--json`` output.
Parsers raise :class:`ValueError` naming the field when the server's answer has the wrong shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: One record, exactly as :meth:`kansoku.model.Span.to_record` gives it (trace spans add ``children``).
Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallsPage:
    """One page of ``GET /api/v1/calls``; pass ``next_cursor`` as ``cursor`` for the next one."""

    data: list[Record]
    next_cursor: str | None
    has_more: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Trace:
    """A whole trace: ``spans`` are the roots, each record with its ``children``, in start order."""

    trace_id: str
    span_count: int
    start_time: str | None
    duration_ms: float | None
    spans: list[Record]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def walk(self) -> Iterator[tuple[int, Record]]:
        """Every span depth-first in display order, with its depth (roots are 0)."""
        stack = [(0, s) for s in reversed(self.spans)]
        while stack:
            depth, span = stack.pop()
            yield depth, span
            children = span.get("children") or []
            stack.extend((depth + 1, c) for c in reversed(children) if isinstance(c, dict))


@dataclass(frozen=True, slots=True)
class Session:
    """One conversation (``context_id``): its LLM calls in order, with totals."""

    context_id: str
    call_count: int
    start_time: str | None
    end_time: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    calls: list[Record]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Nearest-rank percentiles; ``None`` when there was nothing to rank (``p99`` for tokens too)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class StatsRow:
    """Aggregates of one group (and one time bucket when bucketed). ``None`` means no data."""

    group: str | None
    bucket_start: str | None
    count: int
    errors: int
    error_rate: float | None
    errors_by_type: dict[str, int]
    latency_ms: Percentiles
    ttft_ms: Percentiles
    input_tokens: int | None
    output_tokens: int | None
    tokens: Percentiles
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Stats:
    """``GET /api/v1/stats``: rows grouped by ``group_by`` (and per ``bucket_s`` seconds)."""

    group_by: str | None
    bucket_s: int | None
    data: list[StatsRow]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class HistogramBin:
    """``count`` values in ``[lo, hi)``; values <= 0 share the bin with ``lo == hi == 0``."""

    lo: float
    hi: float
    count: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """``GET /api/v1/histogram``: the non-empty log-scale bins of ``field``, ascending."""

    field: str
    count: int
    data: list[HistogramBin]
    # dataclasses.field spelled out: the attribute above shadows the bare name in this class.
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)


def parse_page(doc: dict[str, Any]) -> CallsPage:
    _expect_object(doc, "list")
    return CallsPage(
        data=_records(doc, "data"),
        next_cursor=_opt_str(doc, "next_cursor"),
        has_more=bool(doc.get("has_more")),
        raw=doc,
    )


def parse_trace(doc: dict[str, Any]) -> Trace:
    _expect_object(doc, "trace")
    return Trace(
        trace_id=_opt_str(doc, "trace_id") or "",
        span_count=_opt_int(doc, "span_count") or 0,
        start_time=_opt_str(doc, "start_time"),
        duration_ms=_opt_num(doc, "duration_ms"),
        spans=_records(doc, "spans"),
        raw=doc,
    )


def parse_session(doc: dict[str, Any]) -> Session:
    _expect_object(doc, "session")
    return Session(
        context_id=_opt_str(doc, "context_id") or "",
        call_count=_opt_int(doc, "call_count") or 0,
        start_time=_opt_str(doc, "start_time"),
        end_time=_opt_str(doc, "end_time"),
        input_tokens=_opt_int(doc, "input_tokens"),
        output_tokens=_opt_int(doc, "output_tokens"),
        cost_usd=_opt_num(doc, "cost_usd"),
        calls=_records(doc, "calls"),
        raw=doc,
    )


def parse_stats(doc: dict[str, Any]) -> Stats:
    _expect_object(doc, "stats")
    rows = doc.get("data")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("'data' must be a list of objects")
    return Stats(
        group_by=_opt_str(doc, "group_by"),
        bucket_s=_opt_int(doc, "bucket_s"),
        data=[_stats_row(r) for r in rows],
        raw=doc,
    )


def parse_histogram(doc: dict[str, Any]) -> Histogram:
    _expect_object(doc, "histogram")
    bins = doc.get("data")
    if not isinstance(bins, list) or not all(isinstance(b, dict) for b in bins):
        raise ValueError("'data' must be a list of objects")
    data = []
    for b in bins:
        lo, hi = _opt_num(b, "lo", "data"), _opt_num(b, "hi", "data")
        if lo is None or hi is None:
            raise ValueError("'data.lo' and 'data.hi' must be numbers")
        data.append(HistogramBin(lo=lo, hi=hi, count=_opt_int(b, "count") or 0))
    return Histogram(
        field=_opt_str(doc, "field") or "",
        count=_opt_int(doc, "count") or 0,
        data=data,
        raw=doc,
    )


def _stats_row(doc: dict[str, Any]) -> StatsRow:
    by_type = doc.get("errors_by_type") or {}
    if not isinstance(by_type, dict):
        raise ValueError("'errors_by_type' must be an object")
    return StatsRow(
        group=_opt_str(doc, "group"),
        bucket_start=_opt_str(doc, "bucket_start"),
        count=_opt_int(doc, "count") or 0,
        errors=_opt_int(doc, "errors") or 0,
        error_rate=_opt_num(doc, "error_rate"),
        errors_by_type={str(k): int(v) for k, v in by_type.items() if _is_num(v)},
        latency_ms=_percentiles(doc, "latency_ms"),
        ttft_ms=_percentiles(doc, "ttft_ms"),
        input_tokens=_opt_int(doc, "input_tokens"),
        output_tokens=_opt_int(doc, "output_tokens"),
        tokens=_percentiles(doc, "tokens"),
        cost_usd=_opt_num(doc, "cost_usd"),
    )


def _percentiles(doc: dict[str, Any], name: str) -> Percentiles:
    value = doc.get(name)
    if value is None:
        return Percentiles()
    if not isinstance(value, dict):
        raise ValueError(f"'{name}' must be an object of percentiles")
    return Percentiles(
        p50=_opt_num(value, "p50", name), p95=_opt_num(value, "p95", name), p99=_opt_num(value, "p99", name)
    )


def _expect_object(doc: dict[str, Any], kind: str) -> None:
    # A different "object" means the URL reaches something else that happens to speak JSON.
    if doc.get("object") != kind:
        raise ValueError(f"expected an object of kind {kind!r}, got {doc.get('object')!r}")


def _records(doc: dict[str, Any], name: str) -> list[Record]:
    value = doc.get(name)
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ValueError(f"'{name}' must be a list of records")
    return value


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opt_num(doc: dict[str, Any], name: str, where: str = "") -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if not _is_num(value):
        raise ValueError(f"'{where + '.' if where else ''}{name}' must be a number or null")
    return float(value)


def _opt_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not _is_num(value):
        raise ValueError(f"'{name}' must be a number or null")
    return int(value)


def _opt_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string or null")
    return value

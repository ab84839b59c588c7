"""Store results to the query API's JSON bodies (documented in ``_openapi``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kansoku.model import Span
from kansoku.store import HistogramBin, HistogramQuery, Page, StatsQuery, StatsRow


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def calls_body(page: Page) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [s.to_record() for s in page.items],
        "next_cursor": page.next_cursor,
        "has_more": page.next_cursor is not None,
    }


def trace_body(trace_id: str, spans: list[Span]) -> dict[str, Any]:
    """Spans nested under their parents; a span whose parent is not stored becomes a root."""
    nodes = {s.span_id: {**s.to_record(), "children": []} for s in spans}
    parent_of = {s.span_id: s.parent_span_id for s in spans}
    roots: list[dict[str, Any]] = []
    for s in spans:  # spans arrive in start order, so every level stays in start order
        parent = s.parent_span_id if s.parent_span_id in nodes and not _cycles(s.span_id, parent_of) else None
        (nodes[parent]["children"] if parent is not None else roots).append(nodes[s.span_id])
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    return {
        "object": "trace",
        "trace_id": trace_id,
        "span_count": len(spans),
        "start_time": iso(start),
        "duration_ms": round((end - start) / 1e6, 3),
        "spans": roots,
    }


def _cycles(span_id: str, parent_of: dict[str, str | None]) -> bool:
    """Whether following parents from ``span_id`` comes back to it (bad data must not loop)."""
    seen = {span_id}
    cur = parent_of.get(span_id)
    while cur is not None and cur in parent_of:
        if cur in seen:
            return True
        seen.add(cur)
        cur = parent_of[cur]
    return False


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def session_body(context_id: str, spans: list[Span]) -> dict[str, Any]:
    calls = [s for s in spans if s.llm is not None] or spans
    return {
        "object": "session",
        "context_id": context_id,
        "call_count": len(calls),
        "start_time": iso(min(s.start_ns for s in calls)),
        "end_time": iso(max(s.end_ns for s in calls)),
        "input_tokens": _sum([s.llm.input_tokens for s in calls if s.llm is not None]),
        "output_tokens": _sum([s.llm.output_tokens for s in calls if s.llm is not None]),
        "cost_usd": _sum([s.llm.cost_usd for s in calls if s.llm is not None]),
        "calls": [s.to_record() for s in calls],
    }


def _q(*values: float | None) -> dict[str, float | None]:
    names = ("p50", "p95", "p99")
    return {n: None if v is None else round(float(v), 3) for n, v in zip(names, values, strict=False)}


def stats_body(q: StatsQuery, rows: list[StatsRow]) -> dict[str, Any]:
    return {
        "object": "stats",
        "group_by": q.group_by,
        "bucket_s": q.bucket_s,
        "data": [
            {
                "group": r.group,
                "bucket_start": iso(r.bucket_start_ns),
                "count": r.count,
                "errors": r.errors,
                "error_rate": round(r.errors / r.count, 6) if r.count else 0.0,
                "errors_by_type": r.errors_by_type,
                "latency_ms": _q(r.latency_p50, r.latency_p95, r.latency_p99),
                "ttft_ms": _q(r.ttft_p50, r.ttft_p95, r.ttft_p99),
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "tokens": _q(r.tokens_p50, r.tokens_p95),
                "cost_usd": r.cost_usd,
            }
            for r in rows
        ],
    }


def histogram_body(q: HistogramQuery, bins: list[HistogramBin]) -> dict[str, Any]:
    # Bounds are not rounded: the UI places bins by them, and adjacent bins share an edge exactly.
    return {
        "object": "histogram",
        "field": q.field,
        "count": sum(b.count for b in bins),
        "data": [{"lo": b.lo, "hi": b.hi, "count": b.count} for b in bins],
    }

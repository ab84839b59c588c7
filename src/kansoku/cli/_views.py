"""Text views of query results: calls, a trace tree, a conversation, stats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from kansoku.cli._tables import NULL, Column, cell_width, clean, clip, ms, num, pct, table, tokens, usd, when
from kansoku.client import Record, Session, Stats, Trace

_SHORT_TIME = "%m-%d %H:%M:%S"  # the year would cost the input column 5 cells; it is rarely news


def status_text(rec: Record) -> str:
    """``ok``, or the error type for a failed call (what one wants to see in a list)."""
    if rec.get("status") == "error":
        return str(rec.get("error_type") or "error")
    return str(rec.get("status") or NULL)


def user_text(rec: Record) -> str:
    """What the user asked in this call: the last user message, else the whole input text."""
    messages = rec.get("input_messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                text = _content_text(m.get("content"))
                if text:
                    return text
    return str(rec.get("input_text") or "")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI / Anthropic content parts
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def calls_view(records: Sequence[Record], width: int) -> list[str]:
    columns = [
        Column("time UTC"),
        Column("trace_id"),
        Column("model", max_width=22),
        Column("status", max_width=16),
        Column("ms", ">"),
        Column("tokens", ">"),
        Column("cost", ">"),
        Column("input", flex=True, min_width=12, optional=True),
    ]
    rows = [
        [
            when(r.get("timestamp"), _SHORT_TIME),
            str(r.get("trace_id") or NULL),
            clean(
                r.get("model")
                or r.get("request_model")
                or (NULL if r.get("type") == "llm_call" else r.get("name"))
            ),
            status_text(r),
            ms(r.get("latency_ms")),
            tokens(r.get("input_tokens"), r.get("output_tokens")),
            usd(r.get("cost_usd")),
            clean(user_text(r)) or NULL,
        ]
        for r in records
    ]
    return table(columns, rows, width)


def trace_view(trace: Trace, width: int, *, full: bool = False) -> list[str]:
    head = (
        f"trace {trace.trace_id}  ·  {num(trace.span_count)} spans  ·  "
        f"started {when(trace.start_time)} UTC  ·  {ms(trace.duration_ms)} ms"
    )
    prefixes: list[tuple[str, str]] = []  # (prefix of the row, prefix of its text lines)
    records: list[Record] = []
    _flatten(trace.spans, "", True, prefixes, records)
    columns = [
        Column("span", max_width=48),
        Column("model", max_width=24),
        Column("ms", ">"),
        Column("tokens", ">"),
        Column("cost", ">"),
        Column("status", max_width=16),
    ]
    rows = [
        [
            prefix + clean(r.get("name") or NULL),
            clean(r.get("model") or r.get("request_model")) or ("" if r.get("type") != "llm_call" else NULL),
            ms(r.get("latency_ms")),
            tokens(r.get("input_tokens"), r.get("output_tokens")) if r.get("type") == "llm_call" else "",
            usd(r.get("cost_usd")) if r.get("type") == "llm_call" else "",
            status_text(r),
        ]
        for (prefix, _), r in zip(prefixes, records, strict=True)
    ]
    lines = table(columns, rows, width)
    out = [head, "", *lines[:2]]
    for line, (_, below), r in zip(lines[2:], prefixes, records, strict=True):
        out.append(line)
        texts: list[tuple[str, Any]] = []
        if r.get("type") == "llm_call":
            texts += [("in", user_text(r)), ("out", r.get("output_text"))]
        if r.get("status") == "error":
            texts.append(("error", r.get("error_message")))
        out.extend(_texts(below, texts, width, full))
    return out


def _flatten(
    nodes: list[Any], above: str, root: bool, prefixes: list[tuple[str, str]], records: list[Record]
) -> None:
    nodes = [n for n in nodes if isinstance(n, dict)]
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        children = node.get("children") or []
        if root:
            branch, rest = "", ""
        else:
            branch, rest = above + ("└─ " if last else "├─ "), above + ("   " if last else "│  ")
        prefixes.append((branch, rest + ("│  " if children else "   ")))
        records.append(node)
        _flatten(children if isinstance(children, list) else [], rest, False, prefixes, records)


def _texts(prefix: str, items: list[tuple[str, Any]], width: int, full: bool, label_w: int = 0) -> list[str]:
    """``label: text`` lines under a row, one line each unless ``full``; labels padded to one width."""
    label_w = max([label_w, *(len(label) + 1 for label, _ in items)])
    lines = []
    for label, text in items:
        if text is None or text == "":
            continue
        lead = f"{prefix}{label + ':':<{label_w}} "
        if full:
            body = str(text).replace("\r", "").split("\n")
            lines.append(lead + clean(body[0]))
            lines.extend(" " * cell_width(lead) + clean(b) for b in body[1:])
        else:
            lines.append(lead + clip(clean(text), max(8, width - cell_width(lead))))
    return lines


def session_view(session: Session, width: int, *, full: bool = False) -> list[str]:
    head = (
        f"session {clean(session.context_id)}  ·  {num(session.call_count)} calls  ·  "
        f"{when(session.start_time)} → {when(session.end_time)} UTC"
    )
    columns = [
        Column("#", ">"),
        Column("time"),
        Column("model", max_width=24),
        Column("ms", ">"),
        Column("tokens", ">"),
        Column("cost", ">"),
        Column("status", max_width=24),
    ]
    rows = [
        [
            f"#{i}",
            when(r.get("timestamp"), "%H:%M:%S"),
            clean(r.get("model") or r.get("request_model")) or NULL,
            ms(r.get("latency_ms")),
            tokens(r.get("input_tokens"), r.get("output_tokens")),
            usd(r.get("cost_usd")),
            status_text(r),
        ]
        for i, r in enumerate(session.calls, 1)
    ]
    out = [head, ""]
    for line, r in zip(table(columns, rows, width, header=False), session.calls, strict=True):
        out.append(line)
        turn: list[tuple[str, Any]] = [("user", user_text(r))]
        if r.get("status") == "error":
            turn.append(("error", f"{r.get('error_type') or 'error'}: {r.get('error_message') or ''}"))
        else:
            turn.append(("assistant", r.get("output_text")))
        out.extend(_texts("    ", turn, width, full, label_w=len("assistant:")))
    latency = sum(float(r.get("latency_ms") or 0) for r in session.calls)
    total = (
        f"total: {num(session.call_count)} calls  ·  {num(session.input_tokens)} input + "
        f"{num(session.output_tokens)} output tokens  ·  cost {usd(session.cost_usd)} USD  ·  "
        f"{ms(latency)} ms in model calls"
    )
    return [*out, "", total]


def stats_view(stats: Stats, width: int) -> list[str]:
    columns = [Column(stats.group_by or "group", flex=True, max_width=40, min_width=8)]
    if stats.bucket_s is not None:
        columns.append(Column("bucket UTC"))
    columns += [
        Column("calls", ">"),
        Column("errors", ">"),
        Column("err %", ">"),
        Column("p50 ms", ">"),
        Column("p95 ms", ">"),
        Column("p99 ms", ">"),
        Column("in tok", ">"),
        Column("out tok", ">"),
        Column("cost", ">"),
    ]
    rows = []
    errors: Counter[str] = Counter()
    for s in stats.data:
        errors.update(s.errors_by_type)
        group = clean(s.group) if s.group is not None else ("all" if stats.group_by is None else NULL)
        row = [group]
        if stats.bucket_s is not None:
            row.append(when(s.bucket_start, "%Y-%m-%d %H:%M"))
        row += [
            num(s.count),
            num(s.errors),
            pct(s.error_rate),
            ms(s.latency_ms.p50),
            ms(s.latency_ms.p95),
            ms(s.latency_ms.p99),
            num(s.input_tokens),
            num(s.output_tokens),
            usd(s.cost_usd),
        ]
        rows.append(row)
    if not rows:
        return ["no calls match"]
    lines = table(columns, rows, width)
    if errors:
        listed = ", ".join(f"{clean(k)} {n:,}" for k, n in errors.most_common())
        lines += ["", clip(f"errors by type: {listed}", width)]
    return lines

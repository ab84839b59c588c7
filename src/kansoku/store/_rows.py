"""Spans to stored rows and back, shared by the backends.

A row has one column per record field (see :data:`COLUMNS`); ``input_text`` / ``output_text``
are stored rendered (they are what text search scans) beside the messages, and dropped again
on read when the messages render to the same text, so a span survives the round trip intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.model._text import render_input, render_output

#: Stored columns, in table order (``latency_ms`` is derived from start/end on insert).
COLUMNS: tuple[str, ...] = (
    "project", "trace_id", "span_id", "parent_span_id", "type", "name", "kind", "start_ns", "end_ns",
    "latency_ms", "status", "status_code", "error_type", "error_message", "service", "environment",
    "region", "user_id", "context_id", "prompt_id", "prompt_version", "tags", "attributes", "events",
    "provider", "operation", "model", "request_model", "temperature", "parameters", "input_text",
    "output_text", "input_messages", "output_messages", "input_tokens", "output_tokens",
    "cached_input_tokens", "reasoning_tokens", "total_tokens", "usage_estimated", "cost_usd", "ttft_ms",
    "finish_reasons", "response_id", "stream",
)  # fmt: skip

_NL = orjson.OPT_APPEND_NEWLINE


def _line(s: Span, project: str) -> bytes:
    d: dict[str, Any] = {
        "project": project,
        "trace_id": s.trace_id,
        "span_id": s.span_id,
        "parent_span_id": s.parent_span_id,
        "name": s.name,
        "kind": s.kind,
        "start_ns": s.start_ns,
        "end_ns": s.end_ns,
        "status": s.status,
        "status_code": s.status_code,
        "error_type": s.error_type,
        "error_message": s.error_message,
        "service": s.service,
        "environment": s.environment,
        "region": s.region,
        "user_id": s.user_id,
        "context_id": s.context_id,
        "prompt_id": s.prompt_id,
        "prompt_version": s.prompt_version,
        "tags": s.tags,
        "attributes": s.attributes,
        "events": [e.to_dict() for e in s.events],
    }
    llm = s.llm
    if llm is None:
        d["type"] = "span"
    else:
        d["type"] = "llm_call"
        d["provider"] = llm.provider
        d["operation"] = llm.operation
        d["model"] = llm.model
        d["request_model"] = llm.request_model
        d["temperature"] = llm.temperature
        d["parameters"] = llm.parameters
        d["input_text"] = llm.input_text if llm.input_text is not None else render_input(llm.input_messages)
        d["output_text"] = (
            llm.output_text if llm.output_text is not None else render_output(llm.output_messages)
        )
        d["input_messages"] = llm.input_messages
        d["output_messages"] = llm.output_messages
        d["input_tokens"] = llm.input_tokens
        d["output_tokens"] = llm.output_tokens
        d["cached_input_tokens"] = llm.cached_input_tokens
        d["reasoning_tokens"] = llm.reasoning_tokens
        d["total_tokens"] = llm.total_tokens
        d["usage_estimated"] = llm.usage_estimated
        d["cost_usd"] = llm.cost_usd
        d["ttft_ms"] = llm.ttft_ms
        d["finish_reasons"] = llm.finish_reasons
        d["response_id"] = llm.response_id
        d["stream"] = llm.stream
    return orjson.dumps(d, option=_NL)


def dedupe(spans: Sequence[Span]) -> list[Span]:
    """The batch without repeated span ids (the last one wins)."""
    by_id = {s.span_id: s for s in spans}
    return list(by_id.values()) if len(by_id) != len(spans) else list(spans)


def batch_rows(spans: Sequence[Span], project: str) -> tuple[bytes, int, int]:
    """``(rows, lo_ns, hi_ns)`` of a batch for ``Store.load``: deduplicated rows and their
    start-time range; ``(b"", 0, 0)`` when there is nothing to write."""
    batch = dedupe(spans)
    if not batch:
        return b"", 0, 0
    return to_ndjson(batch, project), min(s.start_ns for s in batch), max(s.start_ns for s in batch)


def to_ndjson(spans: Sequence[Span], project: str) -> bytes:
    """One JSON object per line, keyed by column name (``latency_ms`` left out)."""
    return b"".join([_line(s, project) for s in spans])


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _event(e: dict[str, Any]) -> SpanEvent:
    return SpanEvent(e["name"], e["time_unix_nano"], e.get("attributes") or {})


def from_row(r: Sequence[Any]) -> Span:
    """A span from a row selected as :data:`READ_COLUMNS` (JSON columns as text)."""
    (
        trace_id, span_id, parent, rtype, name, kind, start_ns, end_ns, status, status_code, error_type,
        error_message, service, environment, region, user_id, context_id, prompt_id, prompt_version,
        tags, attributes, events, provider, operation, model, request_model, temperature, parameters,
        input_text, output_text, input_messages, output_messages, input_tokens, output_tokens,
        cached_input_tokens, reasoning_tokens, total_tokens, usage_estimated, cost_usd, ttft_ms,
        finish_reasons, response_id, stream,
    ) = r  # fmt: skip
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        start_ns=start_ns,
        end_ns=end_ns,
        parent_span_id=parent,
        kind=kind,
        status=status,
        status_code=status_code,
        error_type=error_type,
        error_message=error_message,
        service=service,
        environment=environment,
        region=region,
        user_id=user_id,
        context_id=context_id,
        prompt_id=prompt_id,
        prompt_version=prompt_version,
        tags=dict(tags) if tags else {},
        attributes=_json(attributes) or {},
        events=[_event(e) for e in _json(events) or []],
    )
    if rtype == "llm_call":
        in_msgs = _json(input_messages)
        out_msgs = _json(output_messages)
        span.llm = LLMCall(
            provider=provider,
            operation=operation,
            model=model,
            request_model=request_model,
            temperature=temperature,
            parameters=_json(parameters) or {},
            input_text=None if in_msgs is not None and render_input(in_msgs) == input_text else input_text,
            output_text=(
                None if out_msgs is not None and render_output(out_msgs) == output_text else output_text
            ),
            input_messages=in_msgs,
            output_messages=out_msgs,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_input_tokens,
            reasoning_tokens=reasoning_tokens,
            total_tokens=total_tokens,
            usage_estimated=bool(usage_estimated),
            cost_usd=cost_usd,
            ttft_ms=ttft_ms,
            finish_reasons=None if finish_reasons is None else list(finish_reasons),
            response_id=response_id,
            stream=bool(stream),
        )
    return span


#: Columns a read selects, in :func:`from_row` order.
READ_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ("project", "latency_ms"))

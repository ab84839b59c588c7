"""Reading what kansoku recorded in an :class:`InMemoryExporter`, shared by the SDK instrumentation tests;
and native-format records for the collector's ingest and query API tests."""

from __future__ import annotations

import time
from typing import Any

import pytest

import kansoku
from kansoku.model import LLMCall, Span, new_span_id, new_trace_id
from kansoku.testing import InMemoryExporter

MODES = [pytest.param("sync", id="sync"), pytest.param("async", id="async")]


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def take_calls(memory: InMemoryExporter) -> list[Span]:
    """Flush, return the LLM-call records so far, and forget them."""
    assert kansoku.flush(5.0)
    calls = memory.calls
    memory.clear()
    return calls


def only_call(memory: InMemoryExporter) -> Span:
    calls = take_calls(memory)
    assert len(calls) == 1, [c.name for c in calls]
    return calls[0]


def llm_of(span: Span) -> LLMCall:
    assert span.llm is not None
    return span.llm


def text_in(span: Span) -> Any:
    """The exported record's ``input_text``."""
    return span.to_record()["input_text"]


def text_out(span: Span) -> Any:
    """The exported record's ``output_text``."""
    return span.to_record()["output_text"]


# -- records for the collector's ingest and query API ------------------------------------------------


def llm_record(
    *,
    start_ns: int | None = None,
    latency_ms: float = 120.0,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    user_id: str | None = "u-1",
    context_id: str | None = "conv-1",
    tags: dict[str, str] | None = None,
    input_tokens: int | None = 12,
    output_tokens: int | None = 5,
    prompt: str = "What is the refund policy?",
    answer: str = "Refunds within 30 days.",
    status: str = "ok",
    error_type: str | None = None,
) -> dict[str, Any]:
    """One native-format LLM-call record (``Span.to_record()``), valid for ``POST /api/v1/ingest``."""
    start = time.time_ns() if start_ns is None else start_ns
    total = None if input_tokens is None or output_tokens is None else input_tokens + output_tokens
    return Span(
        trace_id=trace_id or new_trace_id(),
        span_id=span_id or new_span_id(),
        parent_span_id=parent_span_id,
        name=f"chat {model}",
        kind="client",
        start_ns=start,
        end_ns=start + int(latency_ms * 1_000_000),
        status=status,
        error_type=error_type,
        service="acceptance",
        user_id=user_id,
        context_id=context_id,
        tags=dict(tags or {}),
        llm=LLMCall(
            provider=provider,
            model=model,
            request_model=model,
            input_messages=[{"role": "user", "content": prompt}],
            output_messages=[{"role": "assistant", "content": answer}],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total,
        ),
    ).to_record()


def span_record(
    name: str,
    *,
    trace_id: str,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    start_ns: int | None = None,
    latency_ms: float = 300.0,
) -> dict[str, Any]:
    """One native-format plain (non-LLM) span record."""
    start = time.time_ns() if start_ns is None else start_ns
    return Span(
        trace_id=trace_id,
        span_id=span_id or new_span_id(),
        parent_span_id=parent_span_id,
        name=name,
        start_ns=start,
        end_ns=start + int(latency_ms * 1_000_000),
        status="ok",
        service="acceptance",
    ).to_record()


def llm_records(
    n: int, *, t0_ns: int | None = None, step_ns: int = 1_000_000, **kw: Any
) -> list[dict[str, Any]]:
    """``n`` LLM-call records of distinct traces, ``step_ns`` apart from ``t0_ns`` (default: n steps ago)."""
    t0 = time.time_ns() - n * step_ns if t0_ns is None else t0_ns
    return [llm_record(start_ns=t0 + i * step_ns, **kw) for i in range(n)]

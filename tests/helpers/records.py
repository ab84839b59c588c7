"""Reading what kansoku recorded in an :class:`InMemoryExporter`, shared by the SDK instrumentation tests."""

from __future__ import annotations

from typing import Any

import pytest

import kansoku
from kansoku.model import LLMCall, Span
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

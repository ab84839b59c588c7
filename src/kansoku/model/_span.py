"""Spans and the LLM-call record: the one data model every kansoku part speaks.

A :class:`Span` is OpenTelemetry-compatible (ids, parent, timing, status, attributes, events).
An LLM call is a span that carries an :class:`LLMCall`. :meth:`Span.to_record` gives the flat
JSON object that files, log lines and the native batch format carry; its field names are a
public contract (see ``ARCHITECTURE.md``). A count the provider did not report is ``None``
(serialised as ``null``), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kansoku.model._errors import ERROR_TYPES
from kansoku.model._text import render_input, render_output

RECORD_SCHEMA = "kansoku.record/v1"

#: Fields every record has, LLM call or not.
SPAN_FIELDS: tuple[str, ...] = (
    "type", "timestamp", "trace_id", "span_id", "parent_span_id", "name", "kind",
    "start_time_unix_nano", "end_time_unix_nano", "latency_ms", "status", "status_code",
    "error_type", "error_message", "service", "environment", "region", "user_id", "context_id",
    "prompt_id", "prompt_version", "tags", "attributes", "events",
)  # fmt: skip

#: Fields only LLM-call records have.
LLM_FIELDS: tuple[str, ...] = (
    "provider", "operation", "model", "request_model", "temperature", "parameters",
    "input_text", "output_text", "input_messages", "output_messages", "input_tokens",
    "output_tokens", "cached_input_tokens", "reasoning_tokens", "total_tokens", "usage_estimated",
    "cost_usd", "ttft_ms", "finish_reasons", "response_id", "stream",
)  # fmt: skip

_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_KINDS = frozenset({"internal", "client", "server", "producer", "consumer"})
_STATUSES = frozenset({"ok", "error", "unset"})
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "total_tokens")


@dataclass(slots=True)
class SpanEvent:
    """A timestamped annotation on a span (an exception, a first token, a retry)."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "time_unix_nano": self.time_ns, "attributes": self.attributes}


@dataclass(slots=True)
class LLMCall:
    """What is specific to a call to a model.

    When messages are known, ``input_text`` / ``output_text`` stay ``None`` in memory and are
    rendered from the messages by :meth:`text_in` / :meth:`text_out` (and in :meth:`Span.to_record`).
    """

    provider: str
    operation: str = "chat"
    model: str | None = None
    request_model: str | None = None
    temperature: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    input_text: str | None = None
    output_text: str | None = None
    input_messages: list[dict[str, Any]] | None = None
    output_messages: list[dict[str, Any]] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None
    usage_estimated: bool = False
    cost_usd: float | None = None
    ttft_ms: float | None = None
    finish_reasons: list[str] | None = None
    response_id: str | None = None
    stream: bool = False

    def text_in(self) -> str | None:
        """``input_text``, or the text rendered from ``input_messages``."""
        return self.input_text if self.input_text is not None else render_input(self.input_messages)

    def text_out(self) -> str | None:
        """``output_text``, or the text rendered from ``output_messages``."""
        return self.output_text if self.output_text is not None else render_output(self.output_messages)

    def fill_total(self) -> None:
        """Derive ``total_tokens`` when the provider gave both parts but no total."""
        if self.total_tokens is None and self.input_tokens is not None and self.output_tokens is not None:
            self.total_tokens = self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Span:
    """One unit of work. ``llm`` is set when the span is a call to a model."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: str | None = None
    kind: str = "internal"
    status: str = "unset"
    status_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    service: str | None = None
    environment: str | None = None
    region: str | None = None
    user_id: str | None = None
    context_id: str | None = None
    prompt_id: str | None = None
    prompt_version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    llm: LLMCall | None = None

    @property
    def latency_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    def to_record(self) -> dict[str, Any]:
        """The flat, JSON-ready record (public field names)."""
        rec: dict[str, Any] = {
            "type": "llm_call" if self.llm is not None else "span",
            "timestamp": _iso(self.start_ns),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": self.end_ns,
            "latency_ms": round(self.latency_ms, 3),
            "status": self.status,
            "status_code": self.status_code,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "service": self.service,
            "environment": self.environment,
            "region": self.region,
            "user_id": self.user_id,
            "context_id": self.context_id,
            "prompt_id": self.prompt_id,
            "prompt_version": self.prompt_version,
            "tags": self.tags,
            "attributes": self.attributes,
            "events": [e.to_dict() for e in self.events],
        }
        llm = self.llm
        if llm is not None:
            for name in LLM_FIELDS:
                rec[name] = getattr(llm, name)
            rec["input_text"] = llm.text_in()
            rec["output_text"] = llm.text_out()
        return rec

    @classmethod
    def from_record(cls, rec: Any) -> Span:
        """Parse a record; raises :class:`ValueError` naming the field that is wrong."""
        if not isinstance(rec, dict):
            raise ValueError(f"a record must be a JSON object, got {type(rec).__name__}")
        trace_id = _hex(rec, "trace_id", 32)
        span_id = _hex(rec, "span_id", 16)
        parent = rec.get("parent_span_id")
        if parent is not None:
            parent = _hex(rec, "parent_span_id", 16)
        start_ns = _int(rec, "start_time_unix_nano")
        end_ns = _int(rec, "end_time_unix_nano")
        if end_ns < start_ns:
            raise ValueError("end_time_unix_nano is before start_time_unix_nano")
        kind = rec.get("kind") or "internal"
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
        status = rec.get("status") or "unset"
        if not isinstance(status, str) or status not in _STATUSES:
            raise ValueError(f"status must be one of {sorted(_STATUSES)}, got {status!r}")
        error_type = rec.get("error_type")
        if error_type is not None and (not isinstance(error_type, str) or error_type not in ERROR_TYPES):
            raise ValueError(f"error_type must be one of {sorted(ERROR_TYPES)}, got {error_type!r}")
        span = cls(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=_str(rec, "name") or "span",
            kind=kind,
            start_ns=start_ns,
            end_ns=end_ns,
            status=status,
            status_code=_opt_int(rec, "status_code"),
            error_type=error_type,
            error_message=_str(rec, "error_message"),
            service=_str(rec, "service"),
            environment=_str(rec, "environment"),
            region=_str(rec, "region"),
            user_id=_str(rec, "user_id"),
            context_id=_str(rec, "context_id"),
            prompt_id=_str(rec, "prompt_id"),
            prompt_version=_str(rec, "prompt_version"),
            tags={str(k): str(v) for k, v in _dict(rec, "tags").items()},
            attributes=_dict(rec, "attributes"),
            events=[_event(e) for e in _list(rec, "events")],
        )
        if rec.get("type") == "llm_call" or rec.get("provider") is not None:
            span.llm = _llm_from_record(rec)
        return span


def _llm_from_record(rec: dict[str, Any]) -> LLMCall:
    llm = LLMCall(provider=_str(rec, "provider") or "unknown")
    llm.operation = _str(rec, "operation") or "chat"
    llm.model = _str(rec, "model")
    llm.request_model = _str(rec, "request_model")
    temp = rec.get("temperature")
    if temp is not None and (isinstance(temp, bool) or not isinstance(temp, int | float)):
        raise ValueError("temperature must be a number or null")
    llm.temperature = None if temp is None else float(temp)
    llm.parameters = _dict(rec, "parameters")
    llm.input_text = _str(rec, "input_text")
    llm.output_text = _str(rec, "output_text")
    llm.input_messages = _messages(rec, "input_messages")
    llm.output_messages = _messages(rec, "output_messages")
    for name in _TOKEN_FIELDS:
        value = _opt_int(rec, name)
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative")
        setattr(llm, name, value)
    llm.usage_estimated = bool(rec.get("usage_estimated", False))
    cost = rec.get("cost_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
        raise ValueError("cost_usd must be a number or null")
    llm.cost_usd = None if cost is None else float(cost)
    ttft = rec.get("ttft_ms")
    if ttft is not None and (isinstance(ttft, bool) or not isinstance(ttft, int | float)):
        raise ValueError("ttft_ms must be a number or null")
    llm.ttft_ms = None if ttft is None else float(ttft)
    reasons = rec.get("finish_reasons")
    if reasons is not None and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        raise ValueError("finish_reasons must be a list of strings or null")
    llm.finish_reasons = reasons
    llm.response_id = _str(rec, "response_id")
    llm.stream = bool(rec.get("stream", False))
    return llm


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _hex(rec: dict[str, Any], name: str, length: int) -> str:
    value = rec.get(name)
    # A set check, not int(value, 16), which would also take "0x", "_", "+" and spaces.
    if not isinstance(value, str) or len(value) != length or not _HEX_CHARS.issuperset(value):
        raise ValueError(f"{name} must be {length} hex characters")
    return value.lower()


def _int(rec: dict[str, Any], name: str) -> int:
    value = rec.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _opt_int(rec: dict[str, Any], name: str) -> int | None:
    value = rec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer or null")
    return value


def _str(rec: dict[str, Any], name: str) -> str | None:
    value = rec.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null")
    return value


def _dict(rec: dict[str, Any], name: str) -> dict[str, Any]:
    value = rec.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object")
    return value


def _list(rec: dict[str, Any], name: str) -> list[Any]:
    value = rec.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list or null")
    return value


def _messages(rec: dict[str, Any], name: str) -> list[dict[str, Any]] | None:
    value = rec.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ValueError(f"{name} must be a list of objects or null")
    return value


def _event(value: Any) -> SpanEvent:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError("each event must be an object with a name")
    return SpanEvent(value["name"], _int(value, "time_unix_nano"), _dict(value, "attributes"))

"""Redaction of whole spans: every free-text field, never ids, numbers or the model name.

Containers are copied on write: a span with nothing to redact comes back as the same object,
and the message lists and attribute dicts of the application (which the instrumentation may
share with it) are never modified in place. A value that cannot be redacted for any reason is
replaced by ``[REDACTION_FAILED]``: losing a field is acceptable, leaking it is not.
"""

from __future__ import annotations

import dataclasses
import logging
from numbers import Number
from typing import Any, Protocol

from kansoku.model import LLMCall, Span, SpanEvent

#: What replaces a value that could not be redacted (losing it beats leaking it).
FAILED = "[REDACTION_FAILED]"
_MAX_DEPTH = 32
log = logging.getLogger("kansoku.redact")


class TextRedactor(Protocol):
    """Anything with ``redact(text) -> text``: :class:`Redactor` and :class:`PresidioRedactor`."""

    def redact(self, text: str) -> str: ...


def redact_value(value: Any, redactor: TextRedactor, depth: int = 0) -> Any:
    """Redact the strings inside a JSON-like value; the same object when nothing changed.

    Dict keys are structure and stay; numbers, booleans and ``None`` stay; anything else
    (bytes, custom objects, structures nested deeper than 32) becomes ``[REDACTION_FAILED]``
    because exporters would turn it into text we have not checked.
    """
    if isinstance(value, str):
        return redactor.redact(value)
    if value is None or isinstance(value, bool | Number):
        return value
    if depth >= _MAX_DEPTH:
        return FAILED
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            new = _guarded(item, redactor, depth + 1)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, list | tuple):
        items = [_guarded(item, redactor, depth + 1) for item in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return FAILED


def _guarded(value: Any, redactor: TextRedactor, depth: int = 0) -> Any:
    try:
        return redact_value(value, redactor, depth)
    except Exception:  # noqa: BLE001 -- any failure must turn into a placeholder, never a leak or a crash
        # Never the value itself in the log: it is exactly what must not leak.
        log.warning("redaction failed for a %s value; replaced", type(value).__name__, exc_info=False)
        return FAILED


def _strings(mapping: dict[str, str], redactor: TextRedactor) -> dict[str, str]:
    out = _guarded(mapping, redactor)
    return out if isinstance(out, dict) else dict.fromkeys(mapping, FAILED)


def _redact_llm(llm: LLMCall, redactor: TextRedactor) -> LLMCall:
    changes: dict[str, Any] = {}
    for name in ("input_text", "output_text", "input_messages", "output_messages", "parameters"):
        old = getattr(llm, name)
        new = _guarded(old, redactor)
        if new is not old:
            changes[name] = new
    return dataclasses.replace(llm, **changes) if changes else llm


def _redact_event(event: SpanEvent, redactor: TextRedactor) -> SpanEvent:
    attrs = _guarded(event.attributes, redactor)
    if attrs is event.attributes:
        return event
    return SpanEvent(event.name, event.time_ns, attrs if isinstance(attrs, dict) else {"value": FAILED})


def redact_span(span: Span, redactor: TextRedactor) -> Span:
    """A copy of ``span`` with PII and secrets replaced; ``span`` itself is not modified.

    Covers the LLM input/output text and messages (every string at any depth: content,
    content parts, tool-call arguments), the request parameters, ``error_message``, tag
    values, attribute and event-attribute values, and ``user_id`` (replaced only when a
    detector matches it, e.g. an e-mail used as a user id). Never raises.
    """
    try:
        return _redact_span(span, redactor)
    except Exception:  # noqa: BLE001 -- the processor contract is "never raises"
        log.warning("span redaction failed; free-text fields replaced", exc_info=False)
    try:
        return _scrubbed(span)
    except Exception:  # noqa: BLE001 -- last resort, see above
        # Even the copy failed: keep only what identifies the span.
        return Span(span.trace_id, span.span_id, FAILED, span.start_ns, span.end_ns)


def _redact_span(span: Span, redactor: TextRedactor) -> Span:
    changes: dict[str, Any] = {}
    for name in ("error_message", "user_id"):
        old = getattr(span, name)
        new = _guarded(old, redactor)
        if new is not old:
            changes[name] = new
    tags = _strings(span.tags, redactor)
    if tags is not span.tags:
        changes["tags"] = tags
    attributes = _guarded(span.attributes, redactor)
    if attributes is not span.attributes:
        changes["attributes"] = attributes if isinstance(attributes, dict) else {}
    events = [_redact_event(e, redactor) for e in span.events]
    if any(a is not b for a, b in zip(events, span.events, strict=True)):
        changes["events"] = events
    if span.llm is not None:
        llm = _redact_llm(span.llm, redactor)
        if llm is not span.llm:
            changes["llm"] = llm
    return dataclasses.replace(span, **changes) if changes else span


def _scrubbed(span: Span) -> Span:
    """The last resort: keep ids, timing and status; drop every field that may hold text."""
    llm = span.llm
    safe_llm = None
    if llm is not None:
        safe_llm = dataclasses.replace(
            llm, input_text=None, output_text=None, input_messages=None, output_messages=None, parameters={}
        )
    return dataclasses.replace(
        span,
        error_message=None if span.error_message is None else FAILED,
        user_id=None if span.user_id is None else FAILED,
        tags={},
        attributes={},
        events=[],
        llm=safe_llm,
    )


class RedactionProcessor:
    """The SDK processor ``(Span) -> Span`` that applies :func:`redact_span`.

    >>> processors = [RedactionProcessor(Redactor())]  # doctest: +SKIP
    """

    reason = "redaction"

    def __init__(self, redactor: TextRedactor) -> None:
        self.redactor = redactor

    def __call__(self, span: Span) -> Span:
        return redact_span(span, self.redactor)

    def __repr__(self) -> str:
        return f"RedactionProcessor({self.redactor!r})"

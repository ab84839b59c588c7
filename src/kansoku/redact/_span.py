"""Redaction of whole spans: every free-text field, never ids, numbers or the model name.

Containers are copied on write: a span with nothing to redact comes back as the same object,
and the message lists and attribute dicts of the application (which the instrumentation may
share with it) are never modified in place. A value that cannot be redacted for any reason is
replaced by ``[REDACTION_FAILED]``: losing a field is acceptable, leaking it is not.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from collections.abc import Callable
from numbers import Number
from typing import Any, Protocol

from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.redact._redactor import _SHORTEST, Redactor

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
    return _Walk(redactor).value(value, depth)


# Types that are never redacted, checked by identity before the slower isinstance tests.
_KEPT_TYPES = frozenset({int, float, bool, type(None)})


class _Walk:
    """One redaction pass over a span: equal strings are scanned once, containers copied on write.

    The memo lives as long as the pass (one span) and no longer, so no text, redacted or
    not, is kept from one span to the next.
    """

    __slots__ = ("memo", "plain", "redact")

    def __init__(self, redactor: TextRedactor) -> None:
        self.redact = redactor.redact
        # A string -> its redaction, or the string itself when there was nothing to replace.
        self.memo: dict[str, str] = {}
        # The built-in detectors alone: strings too short or too plain for any of them (roles,
        # names, ids) are passed over here without a call, as Redactor itself would.
        self.plain = type(redactor) is Redactor and not redactor.config.custom

    def text(self, text: str) -> str:
        done = self.memo.get(text)
        if done is None:
            done = self.memo[text] = self.redact(text)
            return done
        # An equal string seen before: hand back this object when nothing changed, so that
        # callers comparing identities see "unchanged".
        return text if done == text else done

    def value(self, value: Any, depth: int) -> Any:
        """Like :func:`redact_value`; may raise (callers turn that into :data:`FAILED`)."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict or kind is list:  # JSON's containers, without the isinstance tests
            if depth >= _MAX_DEPTH:
                return FAILED
            return self.mapping(value, depth) if kind is dict else self.sequence(value, depth)
        if kind in _KEPT_TYPES:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool | Number):
            return value
        if depth >= _MAX_DEPTH:
            return FAILED
        if isinstance(value, dict):
            return self.mapping(value, depth)
        if isinstance(value, list | tuple):
            return self.sequence(value, depth)
        return FAILED

    def mapping(self, value: dict[Any, Any], depth: int) -> dict[Any, Any]:
        changed: dict[Any, Any] | None = None
        memo, plain, redact = self.memo, self.plain, self.redact
        inner = depth + 1
        for key, item in value.items():
            new: Any
            # Strings (a message's role and content) inline: this loop is the hot path.
            if type(item) is str:
                if plain and len(item) < 20 and (len(item) < _SHORTEST or item.isalpha()):
                    continue
                try:
                    new = memo.get(item)
                    if new is None:
                        new = memo[item] = redact(item)
                    elif new == item:
                        continue
                except Exception:  # noqa: BLE001 -- see item()
                    new = _failed(item)
            else:
                new = self.item(item, inner)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed

    def sequence(self, value: list[Any] | tuple[Any, ...], depth: int) -> Any:
        items: list[Any] | None = None
        inner = depth + 1
        for i, item in enumerate(value):
            new: Any
            if type(item) is dict and inner < _MAX_DEPTH:  # a message: no item() call
                try:
                    new = self.mapping(item, inner)
                except Exception:  # noqa: BLE001 -- see item()
                    new = _failed(item)
            else:
                new = self.item(item, inner)
            if new is not item:
                if items is None:
                    items = list(value)
                items[i] = new
        if items is None:
            return value
        return items if isinstance(value, list) else tuple(items)

    def item(self, item: Any, depth: int) -> Any:
        """One member of a container, guarded; strings and JSON containers without more calls."""
        try:
            kind = type(item)
            if kind is str:
                if self.plain and len(item) < 20 and (len(item) < _SHORTEST or item.isalpha()):
                    return item
                done = self.memo.get(item)
                if done is None:
                    done = self.memo[item] = self.redact(item)
                    return done
                return item if done == item else done
            if kind is dict:
                return FAILED if depth >= _MAX_DEPTH else self.mapping(item, depth)
            if kind is list:
                return FAILED if depth >= _MAX_DEPTH else self.sequence(item, depth)
            if kind in _KEPT_TYPES:
                return item
            return self.value(item, depth)
        except Exception:  # noqa: BLE001 -- any failure must turn into a placeholder, never a leak or a crash
            return _failed(item)

    def guarded(self, value: Any, depth: int = 0) -> Any:
        """:meth:`value` that never raises: a value that fails becomes :data:`FAILED`."""
        return self.item(value, depth)


def _failed(value: Any) -> str:
    # Never the value itself in the log: it is exactly what must not leak.
    log.warning("redaction failed for a %s value; replaced", type(value).__name__, exc_info=False)
    return FAILED


def _strings(mapping: dict[str, str], walk: _Walk) -> dict[str, str]:
    out = walk.guarded(mapping)
    return out if isinstance(out, dict) else dict.fromkeys(mapping, FAILED)


def _redact_llm(llm: LLMCall, walk: _Walk) -> LLMCall:
    item = walk.item
    changes: dict[str, Any] = {}
    # Field by field (no getattr loop): this runs for every LLM span.
    old: Any = llm.input_text
    if old is not None and (new := item(old, 0)) is not old:
        changes["input_text"] = new
    old = llm.output_text
    if old is not None and (new := item(old, 0)) is not old:
        changes["output_text"] = new
    old = llm.input_messages
    if old is not None and (new := item(old, 0)) is not old:
        changes["input_messages"] = new
    old = llm.output_messages
    if old is not None and (new := item(old, 0)) is not old:
        changes["output_messages"] = new
    old = llm.parameters
    if (old or type(old) is not dict) and (new := item(old, 0)) is not old:
        changes["parameters"] = new
    return _replace(llm, changes) if changes else llm


def _redact_event(event: SpanEvent, walk: _Walk) -> SpanEvent:
    attrs = walk.guarded(event.attributes)
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
        return _redact_span(span, _Walk(redactor))
    except Exception:  # noqa: BLE001 -- the processor contract is "never raises"
        log.warning("span redaction failed; free-text fields replaced", exc_info=False)
    try:
        return _scrubbed(span)
    except Exception:  # noqa: BLE001 -- last resort, see above
        # Even the copy failed: keep only what identifies the span.
        return Span(span.trace_id, span.span_id, FAILED, span.start_ns, span.end_ns)


def _redact_span(span: Span, walk: _Walk) -> Span:
    item = walk.item
    changes: dict[str, Any] = {}
    old: Any = span.error_message
    if old is not None and (new := item(old, 0)) is not old:
        changes["error_message"] = new
    old = span.user_id
    if old is not None and (new := item(old, 0)) is not old:
        changes["user_id"] = new
    # Empty containers (the usual tags, attributes and events) are skipped without a call.
    if span.tags or type(span.tags) is not dict:
        tags = _strings(span.tags, walk)
        if tags is not span.tags:
            changes["tags"] = tags
    if span.attributes or type(span.attributes) is not dict:
        attributes = walk.guarded(span.attributes)
        if attributes is not span.attributes:
            changes["attributes"] = attributes if isinstance(attributes, dict) else {}
    if span.events or type(span.events) is not list:
        events = [_redact_event(e, walk) for e in span.events]
        if any(a is not b for a, b in zip(events, span.events, strict=True)):
            changes["events"] = events
    if span.llm is not None:
        llm = _redact_llm(span.llm, walk)
        if llm is not span.llm:
            changes["llm"] = llm
    return _replace(span, changes) if changes else span


# Per dataclass: a getter of every field in order and each field's position, for _replace.
_LAYOUTS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]] | None] = {}


def _layout(cls: type) -> tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]] | None:
    fields = dataclasses.fields(cls)
    positional = (
        len(fields) == len(getattr(cls, "__dataclass_fields__", ()))  # no InitVar pseudo-fields
        and all(f.init and not f.kw_only for f in fields)
        and not hasattr(cls, "__post_init__")
    )
    if not positional or len(fields) < 2:
        return None
    names = [f.name for f in fields]
    return operator.attrgetter(*names), {name: i for i, name in enumerate(names)}


def _replace(obj: Any, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace(obj, **changes)`` for the model's plain dataclasses, 4x faster:
    every field read by one C call and passed to the constructor positionally."""
    cls = type(obj)
    try:
        layout = _LAYOUTS[cls]
    except KeyError:
        layout = _LAYOUTS[cls] = _layout(cls)
    if layout is None:
        return dataclasses.replace(obj, **changes)
    getter, index = layout
    values = list(getter(obj))
    for name, value in changes.items():
        values[index[name]] = value
    return cls(*values)


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

"""Spans arriving from OpenTelemetry: detect the conventions present and build a :class:`Span`.

Users arrive with whatever their instrumentation emits (the official GenAI instrumentations,
OpenLLMetry, OpenInference, kansoku itself), sometimes several at once. Every mapping takes
the keys it understands, in a fixed order of precedence: ``kansoku.*``, then GenAI, then
OpenInference. What none of them claims stays in ``Span.attributes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kansoku.model._attrs import SpanFields
from kansoku.model._common import classify_error, take_common
from kansoku.model._genai import genai_span_name, is_genai_llm, take_genai
from kansoku.model._openinference import is_openinference_llm, take_openinference
from kansoku.model._span import LLMCall, Span, SpanEvent

_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_KIND_NAMES = frozenset(_KINDS.values())
_STATUSES = {0: "unset", 1: "ok", 2: "error"}
# Older GenAI instrumentations put message content on events instead of span attributes.
_CONTENT_EVENTS = frozenset(
    {"gen_ai.content.prompt", "gen_ai.content.completion", "gen_ai.client.inference.operation.details"}
)
_COMMON_ROOTS = frozenset({"kansoku", "user", "enduser", "http", "error"})  # see take_common
_GENAI_ROOTS = frozenset({"gen_ai", "llm"})  # "llm.*": OpenLLMetry's older keys
_OPENINFERENCE_ROOTS = frozenset({"openinference", "llm", "embedding", "input", "output", "session",
                                  "metadata", "tag"})  # fmt: skip
_CONTENT_KEYS = (
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)


def span_from_otel(  # noqa: PLR0917 -- the OTLP span fields, in their order
    name: str,
    trace_id: str | bytes,
    span_id: str | bytes,
    parent: str | bytes | None,
    kind: int | str,
    start_ns: int,
    end_ns: int,
    status_code: int | str,
    status_message: str | None,
    attributes: Mapping[str, Any],
    events: Sequence[SpanEvent] = (),
    resource_attributes: Mapping[str, Any] | None = None,
) -> Span:
    """Build a :class:`Span` (with an :class:`LLMCall` when it is a model call) from OTel data.

    ``kind`` and ``status_code`` take the OTLP numbers or names (``2``, ``"SPAN_KIND_CLIENT"``,
    ``"STATUS_CODE_ERROR"``, ``"error"``); ids take bytes or hex. Raises :class:`ValueError`
    only for invalid ids; attributes of unexpected types are kept, never fatal.
    """
    rest = dict(attributes)
    # Run a mapping only when one of its namespaces is present: most spans carry one convention,
    # and plain spans (databases, HTTP) none at all.
    roots = {key.partition(".")[0] for key in rest}
    genai = not roots.isdisjoint(_GENAI_ROOTS)
    openinference = not roots.isdisjoint(_OPENINFERENCE_ROOTS)
    is_llm = (genai and is_genai_llm(rest)) or (openinference and is_openinference_llm(rest))
    if is_llm:
        genai = _content_from_events(rest, events) or genai
    fields = SpanFields(llm={} if is_llm else None, attributes=rest)
    if not roots.isdisjoint(_COMMON_ROOTS):
        take_common(rest, fields)
    if genai:
        take_genai(rest, fields)
    if openinference:
        take_openinference(rest, fields)
    found = fields.span
    resource = resource_attributes or {}

    status = _status(status_code)
    error_type: str | None = found.get("error_type")
    if error_type is not None and status == "unset":
        status = "error"  # error.type without a status: the span still failed
    error_message = (status_message or None) if status == "error" else None
    if status == "error":
        exception = next((e.attributes for e in reversed(events) if e.name == "exception"), {})
        if error_message is None and isinstance(exception.get("exception.message"), str):
            error_message = exception["exception.message"]
        if error_type is None:
            raw = exception.get("exception.type")
            error_type = classify_error(raw if isinstance(raw, str) else None, found.get("status_code"))
    llm = _llm(fields.llm)
    return Span(
        trace_id=_hex_id(trace_id, 16, "trace_id"),
        span_id=_hex_id(span_id, 8, "span_id"),
        parent_span_id=_parent(parent),
        name=name or (genai_span_name(llm.operation, llm.model) if llm else "span"),
        kind=_kind(kind),
        start_ns=start_ns,
        end_ns=max(end_ns, start_ns),  # unfinished or clock-skewed spans: zero length, not negative
        status=status,
        status_code=found.get("status_code"),
        error_type=error_type,
        error_message=error_message,
        service=_res(resource, "service.name"),
        environment=_res(resource, "deployment.environment.name") or _res(resource, "deployment.environment"),
        region=found.get("region") or _res(resource, "cloud.region"),
        user_id=found.get("user_id"),
        context_id=found.get("context_id"),
        prompt_id=found.get("prompt_id"),
        prompt_version=found.get("prompt_version"),
        tags=found.get("tags") or {},
        attributes=rest,
        events=list(events),
        llm=llm,
    )


def _llm(found: dict[str, Any] | None) -> LLMCall | None:
    if found is None:
        return None
    llm = LLMCall(provider=found.pop("provider", None) or "unknown", **found)
    llm.fill_total()
    return llm


def _content_from_events(rest: dict[str, Any], events: Sequence[SpanEvent]) -> bool:
    """Copy message content from older-style events into ``rest``; whether any was found."""
    found = False
    for event in events:
        if event.name in _CONTENT_EVENTS:
            for key in _CONTENT_KEYS:
                if key in event.attributes and key not in rest:
                    rest[key] = event.attributes[key]
                    found = True
    return found


def _hex_id(value: str | bytes, size: int, what: str) -> str:
    if isinstance(value, bytes | bytearray):
        if len(value) != size:
            raise ValueError(f"{what} must be {size} bytes, got {len(value)}")
        text = value.hex()
    elif isinstance(value, str):
        text = value.strip().lower()
        if len(text) != size * 2 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"{what} must be {size * 2} hex characters, got {value[:40]!r}")
    else:
        raise ValueError(f"{what} must be bytes or a hex string")
    if text == "0" * (size * 2):
        raise ValueError(f"{what} must not be all zeros")
    return text


def _parent(value: str | bytes | None) -> str | None:
    if not value:
        return None
    try:
        return _hex_id(value, 8, "parent_span_id")
    except ValueError as exc:
        if "all zeros" in str(exc):
            return None  # some SDKs send a zero id for "no parent"
        raise


def _kind(value: int | str) -> str:
    if isinstance(value, int):
        return _KINDS.get(value, "internal")
    text = str(value).lower().removeprefix("span_kind_")
    return text if text in _KIND_NAMES else "internal"


def _status(value: int | str) -> str:
    if isinstance(value, int):
        return _STATUSES.get(value, "unset")
    text = str(value).lower().removeprefix("status_code_")
    return text if text in ("ok", "error") else "unset"


def _res(resource: Mapping[str, Any], key: str) -> str | None:
    value = resource.get(key)
    return value if isinstance(value, str) and value else None

"""The OpenTelemetry GenAI semantic conventions (``gen_ai.*``), both ways.

Attribute names follow the current conventions (``gen_ai.provider.name``,
``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.input.messages`` as structured JSON ...).
Reading also accepts the older forms still emitted in the wild: ``gen_ai.system``,
``gen_ai.usage.prompt_tokens``/``completion_tokens``, ``gen_ai.prompt``/``gen_ai.completion``
as JSON or text, and the OpenLLMetry flattening ``gen_ai.prompt.0.role``/``.content``.
What the conventions cannot carry travels under ``kansoku.*``.
"""

from __future__ import annotations

from typing import Any

import orjson

from kansoku.model._attrs import (
    AttrValue,
    SpanFields,
    as_number,
    dumps,
    pop_indexed,
    put,
    take_bool,
    take_count,
    take_json,
    take_number,
    take_str,
    take_str_list,
)
from kansoku.model._common import (
    attributes_to_span_fields,
    common_attributes,
    llm_extra_attributes,
    tag_attributes,
    take_provider,
)
from kansoku.model._messages import from_genai, to_genai
from kansoku.model._span import LLMCall, Span

# Request parameters with a standard attribute: (parameter name, attribute, value kind).
_PARAMS: tuple[tuple[str, str, str], ...] = (
    ("max_tokens", "gen_ai.request.max_tokens", "int"),
    ("top_p", "gen_ai.request.top_p", "float"),
    ("top_k", "gen_ai.request.top_k", "float"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", "float"),
    ("presence_penalty", "gen_ai.request.presence_penalty", "float"),
    ("seed", "gen_ai.request.seed", "int"),
    ("n", "gen_ai.request.choice.count", "int"),
    ("stop", "gen_ai.request.stop_sequences", "strs"),
)
# Provider spellings of the same parameter, so e.g. ``max_completion_tokens`` still shows up.
_ALIASES = {"max_tokens": ("max_completion_tokens", "max_output_tokens"), "stop": ("stop_sequences",)}

# Operations that are GenAI spans but not calls to a model (no tokens of their own to count).
_NOT_MODEL_CALLS = frozenset({"execute_tool", "invoke_agent", "create_agent", "invoke_workflow", "retrieval"})
_LEGACY_MARKERS = (
    "gen_ai.usage.",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.request.type",
)
# OpenLLMetry's ``llm.request.type`` values.
_LEGACY_OPERATIONS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}


def genai_span_name(operation: str, model: str | None) -> str:
    """The conventions' span name for a model call: ``"{operation} {model}"``."""
    return f"{operation} {model}" if model else operation


def span_to_genai_attributes(span: Span) -> dict[str, AttrValue]:
    """Span attributes in the GenAI conventions (plus ``kansoku.*``), written over the span's own."""
    attrs = common_attributes(span)
    put(attrs, "kansoku.user.id", span.user_id)
    put(attrs, "kansoku.prompt.version", span.prompt_version)
    put(attrs, "gen_ai.conversation.id", span.context_id)
    attrs.update(tag_attributes(span.tags))
    if span.llm is not None:
        attrs.update(_llm_attributes(span.llm))
        attrs.update(llm_extra_attributes(span.llm, with_text=True))
    return attrs


def _llm_attributes(llm: LLMCall) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {
        "gen_ai.operation.name": llm.operation,
        "gen_ai.provider.name": llm.provider,
    }
    # The conventions want the requested model; fall back to the served one when unknown.
    put(attrs, "gen_ai.request.model", llm.request_model or llm.model)
    put(attrs, "gen_ai.response.model", llm.model)
    put(attrs, "gen_ai.request.temperature", llm.temperature)
    attrs.update(_param_attributes(llm.parameters))
    if llm.stream:
        attrs["gen_ai.request.stream"] = True
    put(attrs, "gen_ai.response.id", llm.response_id)
    put(attrs, "gen_ai.response.finish_reasons", llm.finish_reasons)
    put(attrs, "gen_ai.usage.input_tokens", llm.input_tokens)
    put(attrs, "gen_ai.usage.output_tokens", llm.output_tokens)
    put(attrs, "gen_ai.usage.cache_read.input_tokens", llm.cached_input_tokens)
    put(attrs, "gen_ai.usage.reasoning.output_tokens", llm.reasoning_tokens)
    if llm.total_tokens is not None and (
        llm.input_tokens is None
        or llm.output_tokens is None
        or llm.total_tokens != llm.input_tokens + llm.output_tokens
    ):
        attrs["kansoku.usage.total_tokens"] = llm.total_tokens
    if llm.ttft_ms is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = llm.ttft_ms / 1000.0
    put(attrs, "kansoku.cost_usd", llm.cost_usd)
    if llm.input_messages is not None:
        attrs["gen_ai.input.messages"] = dumps(to_genai(llm.input_messages))
    if llm.output_messages is not None:
        out = to_genai(llm.output_messages)
        for message, reason in zip(out, llm.finish_reasons or [], strict=False):
            message["finish_reason"] = reason
        attrs["gen_ai.output.messages"] = dumps(out)
    return attrs


def _param_attributes(params: dict[str, Any]) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {}
    for name, attr, kind in _PARAMS:
        value = params.get(name)
        for alias in _ALIASES.get(name, ()):
            value = params.get(alias) if value is None else value
        coerced = _param_value(value, kind)
        put(attrs, attr, coerced)
    # Keep the exact dictionary too when the standard attributes cannot rebuild it.
    if params and _take_params(dict(attrs)) != params:
        attrs["kansoku.parameters"] = dumps(params)
    return attrs


def _param_value(value: Any, kind: str) -> AttrValue | None:
    if kind == "strs":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        return None
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return as_number(value)


def _take_params(rest: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, attr, kind in _PARAMS:
        value: Any
        if kind == "strs":
            value = take_str_list(rest, attr)
        elif kind == "int":
            raw = rest.get(attr)
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
            if value is not None:
                del rest[attr]
        else:
            value = take_number(rest, attr)
        if value is not None:
            params[name] = value
    return params


def is_genai_llm(attrs: dict[str, Any]) -> bool:
    """Whether GenAI (or older ``gen_ai.*``/OpenLLMetry) attributes describe a call to a model."""
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str):
        return operation not in _NOT_MODEL_CALLS
    return any(k.startswith(_LEGACY_MARKERS) and k != "gen_ai.prompt.name" for k in attrs)


def genai_attributes_to_span_fields(attrs: dict[str, Any]) -> SpanFields:
    """Read GenAI-convention (and ``kansoku.*``) attributes back into span and LLM-call fields."""
    return attributes_to_span_fields(attrs, is_genai_llm, take_genai)


def take_genai(rest: dict[str, Any], out: SpanFields) -> None:
    """Take the ``gen_ai.*`` keys out of ``rest`` into ``out`` (LLM keys only for LLM calls)."""
    out.set_span("context_id", take_str(rest, "gen_ai.conversation.id"))
    out.set_span("prompt_id", take_str(rest, "gen_ai.prompt.name"))
    if out.llm is None:
        return
    legacy_op = take_str(rest, "llm.request.type")
    out.set_llm("operation", take_str(rest, "gen_ai.operation.name"))
    out.set_llm("operation", _LEGACY_OPERATIONS.get(legacy_op or ""))
    take_provider(rest, out, "gen_ai.provider.name", "gen_ai.system")
    request_model = take_str(rest, "gen_ai.request.model")
    out.set_llm("request_model", request_model)
    out.set_llm("model", take_str(rest, "gen_ai.response.model") or request_model)
    out.set_llm("temperature", take_number(rest, "gen_ai.request.temperature"))
    out.set_llm("parameters", _take_params(rest) or None)  # None: leave the field to other mappings
    out.set_llm("stream", take_bool(rest, "gen_ai.request.stream"))
    out.set_llm("stream", take_bool(rest, "llm.is_streaming"))
    out.set_llm("response_id", take_str(rest, "gen_ai.response.id"))
    out.set_llm("finish_reasons", take_str_list(rest, "gen_ai.response.finish_reasons"))
    for name, keys in (
        ("input_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
        ("output_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
        (
            "cached_input_tokens",
            ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
        ),
        ("reasoning_tokens", ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")),
        ("total_tokens", ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")),
    ):
        for key in keys:
            out.set_llm(name, take_count(rest, key))
    ttft_s = take_number(rest, "gen_ai.response.time_to_first_chunk")
    out.set_llm("ttft_ms", None if ttft_s is None else ttft_s * 1000.0)
    out.set_llm("cost_usd", take_number(rest, "gen_ai.usage.cost"))
    _take_content(rest, out)


def _take_content(rest: dict[str, Any], out: SpanFields) -> None:
    inputs = take_json(rest, "gen_ai.input.messages", list)
    system = take_json(rest, "gen_ai.system_instructions", list)
    if system is not None:
        inputs = [{"role": "system", "parts": system}, *(inputs or [])]
    outputs = take_json(rest, "gen_ai.output.messages", list)
    if outputs is not None:
        reasons = [
            m["finish_reason"]
            for m in outputs
            if isinstance(m, dict) and isinstance(m.get("finish_reason"), str)
        ]
        out.set_llm("finish_reasons", reasons or None)
    for key, found, text_field, field_name in (
        ("gen_ai.prompt", inputs, "input_text", "input_messages"),
        ("gen_ai.completion", outputs, "output_text", "output_messages"),
    ):
        messages = found if found is not None else _take_legacy_text(rest, key, out, text_field)
        if messages is None:
            messages, reasons = _take_indexed(rest, key + ".")
            out.set_llm("finish_reasons", reasons or None)
        if messages is not None:
            out.set_llm(field_name, from_genai(messages))


def _take_legacy_text(rest: dict[str, Any], key: str, out: SpanFields, text_field: str) -> list[Any] | None:
    """``gen_ai.prompt``/``gen_ai.completion``: JSON messages, or plain text."""
    value = take_str(rest, key)
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(m, dict) for m in parsed):
        return parsed
    out.set_llm(text_field, value)
    return None


def _take_indexed(rest: dict[str, Any], prefix: str) -> tuple[list[Any] | None, list[str]]:
    """OpenLLMetry's ``gen_ai.prompt.{i}.role`` / ``.content`` / ``.tool_calls.{j}.*``."""
    indexed = pop_indexed(rest, prefix)
    if not indexed:
        return None, []
    default_role = "user" if prefix == "gen_ai.prompt." else "assistant"
    messages: list[Any] = []
    reasons: list[str] = []
    for _, sub in sorted(indexed.items()):
        role, content = sub.get("role"), sub.get("content")
        msg: dict[str, Any] = {
            "role": role if isinstance(role, str) else default_role,
            "content": content if isinstance(content, str) else None,
        }
        calls = pop_indexed(sub, "tool_calls.")
        if calls:
            msg["tool_calls"] = [
                {
                    "id": c.get("id"),
                    "type": "function",
                    "function": {"name": c.get("name"), "arguments": c.get("arguments")},
                }
                for _, c in sorted(calls.items())
            ]
        if isinstance(sub.get("tool_call_id"), str):
            msg["tool_call_id"] = sub["tool_call_id"]
        if isinstance(sub.get("finish_reason"), str):
            reasons.append(sub["finish_reason"])
        messages.append(msg)
    return messages, reasons

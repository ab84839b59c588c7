"""The OpenInference conventions (Arize Phoenix and friends), both ways.

OpenInference flattens lists into indexed keys (``llm.input_messages.0.message.role``), puts
request parameters in one JSON string (``llm.invocation_parameters``) and mirrors the
operation's input and output in ``input.value``/``output.value``. Tags travel as the
``metadata`` JSON object; fields OpenInference has no home for travel under ``kansoku.*``.
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
    take_provider,
)
from kansoku.model._messages import from_openinference, to_openinference
from kansoku.model._span import LLMCall, Span

_MODEL_KINDS = {"LLM": "chat", "EMBEDDING": "embeddings"}
_COUNTS = (
    ("input_tokens", "llm.token_count.prompt"),
    ("output_tokens", "llm.token_count.completion"),
    ("total_tokens", "llm.token_count.total"),
    ("cached_input_tokens", "llm.token_count.prompt_details.cache_read"),
    ("reasoning_tokens", "llm.token_count.completion_details.reasoning"),
)
_JSON = "application/json"


def span_to_openinference_attributes(span: Span) -> dict[str, AttrValue]:
    """Span attributes in the OpenInference conventions (plus ``kansoku.*``)."""
    attrs = common_attributes(span)
    put(attrs, "session.id", span.context_id)
    put(attrs, "llm.prompt_template.version", span.prompt_version)
    if span.tags:
        attrs["metadata"] = dumps(span.tags)
    if span.llm is None:
        # The kind is required on every OpenInference span; CHAIN is its generic step.
        if not isinstance(attrs.get("openinference.span.kind"), str):
            attrs["openinference.span.kind"] = "CHAIN"
        return attrs
    attrs.update(_llm_attributes(span.llm))
    attrs.update(llm_extra_attributes(span.llm, with_text=False))
    return attrs


def _llm_attributes(llm: LLMCall) -> dict[str, AttrValue]:
    kind = "EMBEDDING" if llm.operation == "embeddings" else "LLM"
    attrs: dict[str, AttrValue] = {
        "openinference.span.kind": kind,
        "llm.provider": llm.provider,
        "llm.system": llm.provider,
    }
    if llm.operation != _MODEL_KINDS[kind]:
        attrs["kansoku.operation"] = llm.operation
    put(attrs, "llm.model_name", llm.model or llm.request_model)
    put(attrs, "llm.request.model_name", llm.request_model)
    if kind == "EMBEDDING":
        put(attrs, "embedding.model_name", llm.model or llm.request_model)
    params = dict(llm.parameters)
    if llm.temperature is not None:
        params["temperature"] = llm.temperature
    if llm.stream:
        params["stream"] = True
    if params:
        attrs["llm.invocation_parameters"] = dumps(params)
    for name, key in _COUNTS:
        put(attrs, key, getattr(llm, name))
    put(attrs, "llm.cost.total", llm.cost_usd)
    put(attrs, "kansoku.response_id", llm.response_id)
    if llm.finish_reasons is not None:
        if len(llm.finish_reasons) == 1:
            attrs["llm.finish_reason"] = llm.finish_reasons[0]
        else:
            attrs["kansoku.finish_reasons"] = list(llm.finish_reasons)
    attrs.update(_content_attributes(llm))
    return attrs


def _content_attributes(llm: LLMCall) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {}
    for which, text, messages in (
        ("input", llm.input_text, llm.input_messages),
        ("output", llm.output_text, llm.output_messages),
    ):
        if messages is not None:
            attrs.update(to_openinference(f"llm.{which}_messages", messages))
        if text is not None:
            attrs[f"{which}.value"], attrs[f"{which}.mime_type"] = text, "text/plain"
        elif messages is not None:
            attrs[f"{which}.value"], attrs[f"{which}.mime_type"] = dumps(messages), _JSON
    return attrs


def is_openinference_llm(attrs: dict[str, Any]) -> bool:
    """Whether ``openinference.span.kind`` says the span is a call to a model."""
    kind = attrs.get("openinference.span.kind")
    return isinstance(kind, str) and kind.upper() in _MODEL_KINDS


def openinference_attributes_to_span_fields(attrs: dict[str, Any]) -> SpanFields:
    """Read OpenInference (and ``kansoku.*``) attributes back into span and LLM-call fields."""
    return attributes_to_span_fields(attrs, is_openinference_llm, take_openinference)


def take_openinference(rest: dict[str, Any], out: SpanFields) -> None:
    """Take the OpenInference keys out of ``rest`` into ``out`` (LLM keys only for LLM calls)."""
    out.set_span("context_id", take_str(rest, "session.id"))
    out.set_span("prompt_version", take_str(rest, "llm.prompt_template.version"))
    tags = out.span.setdefault("tags", {})
    metadata = take_json(rest, "metadata", dict)
    for key, value in (metadata or {}).items():
        tags.setdefault(str(key), value if isinstance(value, str) else dumps(value))
    for tag in take_str_list(rest, "tag.tags") or []:
        tags.setdefault(tag, "true")
    if out.llm is None:
        return
    if is_openinference_llm(rest):
        out.set_llm("operation", _MODEL_KINDS[str(rest.pop("openinference.span.kind")).upper()])
    take_provider(rest, out, "llm.provider", "llm.system")
    models = [
        take_str(rest, k) for k in ("llm.response.model_name", "llm.model_name", "embedding.model_name")
    ]
    request_model = take_str(rest, "llm.request.model_name")
    out.set_llm("request_model", request_model)
    out.set_llm("model", next((m for m in models if m is not None), request_model))
    params = take_json(rest, "llm.invocation_parameters", dict)
    if params is None:
        params = take_json(rest, "embedding.invocation_parameters", dict)
    if params is not None:
        temperature = as_number(params.get("temperature"))
        if temperature is not None:
            del params["temperature"]
        stream = params.pop("stream") if isinstance(params.get("stream"), bool) else None
        out.set_llm("temperature", temperature)
        out.set_llm("stream", stream)
        out.set_llm("parameters", params)
    for name, key in _COUNTS:
        out.set_llm(name, take_count(rest, key))
    out.set_llm("cost_usd", take_number(rest, "llm.cost.total"))
    reason = take_str(rest, "llm.finish_reason")
    out.set_llm("finish_reasons", None if reason is None else [reason])
    _take_content(rest, out)


def _take_content(rest: dict[str, Any], out: SpanFields) -> None:
    for which, legacy, legacy_key in (
        ("input", "llm.prompts.", "prompt.text"),
        ("output", "llm.choices.", "completion.text"),
    ):
        messages = from_openinference(rest, f"llm.{which}_messages")
        out.set_llm(f"{which}_messages", messages)
        value, mime = rest.get(f"{which}.value"), rest.get(f"{which}.mime_type")
        if isinstance(value, str):
            del rest[f"{which}.value"]
            rest.pop(f"{which}.mime_type", None)
            if mime != _JSON:
                out.set_llm(f"{which}_text", value)
            elif messages is None:
                parsed = _messages_in(value)
                if parsed is None:
                    out.set_llm(f"{which}_text", value)
                out.set_llm(f"{which}_messages", parsed)
            # else: the JSON mirrors the flattened messages already taken.
        texts = [t.get(legacy_key) for _, t in sorted(pop_indexed(rest, legacy).items())]
        if texts and all(isinstance(t, str) for t in texts):
            out.set_llm(f"{which}_text", "\n".join(str(t) for t in texts))


def _messages_in(value: str) -> list[dict[str, Any]] | None:
    """Messages inside a JSON ``input.value``/``output.value`` (a list, a request or a response)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        if isinstance(doc.get("messages"), list):
            doc = doc["messages"]
        elif isinstance(doc.get("choices"), list):
            doc = [c.get("message") for c in doc["choices"] if isinstance(c, dict)]
    if isinstance(doc, list) and doc and all(isinstance(m, dict) and "role" in m for m in doc):
        return doc
    return None

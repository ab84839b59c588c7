"""Attributes both conventions share: ``kansoku.*``, user, HTTP status, region, ``error.type``.

Both export mappings start from :func:`common_attributes`; every reverse mapping runs
:func:`take_common` first, so ``kansoku.*`` values (exact, written by kansoku itself) win over
what a convention can only approximate.
"""

from __future__ import annotations

import re
from typing import Any

from kansoku.model._attrs import (
    AttrValue,
    SpanFields,
    put,
    take_bool,
    take_count,
    take_json,
    take_number,
    take_str,
    take_str_list,
)
from kansoku.model._errors import ERROR_TYPES, ErrorType, error_type_for_status
from kansoku.model._span import LLMCall, Span

_TAG_PREFIX = "kansoku.tag."

# --- error types ----------------------------------------------------------------------------------

# Exception class names and codes other instrumentations put in ``error.type``.
_ERROR_HINTS: tuple[tuple[str, ErrorType], ...] = (
    ("ratelimit", ErrorType.RATE_LIMIT),
    ("toomanyrequests", ErrorType.RATE_LIMIT),
    ("timeout", ErrorType.TIMEOUT),
    ("contextlength", ErrorType.CONTEXT_LENGTH_EXCEEDED),
    ("contentfilter", ErrorType.CONTENT_POLICY),
    ("contentpolicy", ErrorType.CONTENT_POLICY),
    ("authentication", ErrorType.AUTH),
    ("permission", ErrorType.AUTH),
    ("unauthorized", ErrorType.AUTH),
    ("connect", ErrorType.CONNECTION),
    ("cancel", ErrorType.CANCELLED),
    ("badrequest", ErrorType.BAD_REQUEST),
    ("invalidrequest", ErrorType.BAD_REQUEST),
    ("unprocessable", ErrorType.BAD_REQUEST),
    ("notfound", ErrorType.BAD_REQUEST),
    ("internalserver", ErrorType.SERVER_ERROR),
    ("serviceunavailable", ErrorType.SERVER_ERROR),
    ("overloaded", ErrorType.SERVER_ERROR),
)


def classify_error(raw: str | None, http_status: int | None) -> str:
    """Map a foreign ``error.type`` (class name, code, HTTP status) onto the closed taxonomy."""
    if raw in ERROR_TYPES:
        return raw
    text = (raw or "").strip()
    if text.isdigit():
        return error_type_for_status(int(text)).value
    squashed = re.sub(r"[^a-z]", "", text.lower())
    for hint, error_type in _ERROR_HINTS:
        if hint in squashed:
            return error_type.value
    return error_type_for_status(http_status).value


# --- kansoku.* and convention-neutral attributes --------------------------------------------------


def common_attributes(span: Span) -> dict[str, AttrValue]:
    """Attributes both conventions carry the same way."""
    attrs: dict[str, AttrValue] = {}
    put(attrs, "user.id", span.user_id)
    put(attrs, "kansoku.prompt.id", span.prompt_id)
    put(attrs, "kansoku.status_code", span.status_code)
    put(attrs, "kansoku.region", span.region)
    put(attrs, "error.type", span.error_type)
    return attrs


def tag_attributes(tags: dict[str, str]) -> dict[str, AttrValue]:
    """Tags as ``kansoku.tag.<key>`` attributes."""
    return {_TAG_PREFIX + str(k): str(v) for k, v in tags.items()}


def take_common(rest: dict[str, Any], out: SpanFields) -> None:
    """Take ``kansoku.*`` and convention-neutral keys (user, status, region, error type)."""
    out.set_span("user_id", take_str(rest, "kansoku.user.id"))
    out.set_span("user_id", take_str(rest, "user.id"))
    out.set_span("user_id", take_str(rest, "enduser.id"))
    out.set_span("prompt_id", take_str(rest, "kansoku.prompt.id"))
    out.set_span("prompt_version", take_str(rest, "kansoku.prompt.version"))
    out.set_span("status_code", take_count(rest, "kansoku.status_code"))
    out.set_span("status_code", take_count(rest, "http.response.status_code"))
    out.set_span("region", take_str(rest, "kansoku.region"))
    tags = out.span.setdefault("tags", {})
    for key in [k for k in rest if k.startswith(_TAG_PREFIX)]:
        value = rest[key]
        if isinstance(value, str | int | float):
            tags.setdefault(key[len(_TAG_PREFIX) :], str(rest.pop(key)))
    raw_error = rest.get("error.type")
    if isinstance(raw_error, str):
        out.set_span("error_type", classify_error(raw_error, out.span.get("status_code")))
        if raw_error in ERROR_TYPES:
            # A foreign value stays in the attributes: the taxonomy would lose its detail.
            del rest["error.type"]
    if out.llm is not None:
        out.set_llm("cost_usd", take_number(rest, "kansoku.cost_usd"))
        out.set_llm("ttft_ms", take_number(rest, "kansoku.ttft_ms"))
        out.set_llm("usage_estimated", take_bool(rest, "kansoku.usage_estimated"))
        out.set_llm("input_text", take_str(rest, "kansoku.input_text"))
        out.set_llm("output_text", take_str(rest, "kansoku.output_text"))
        out.set_llm("total_tokens", take_count(rest, "kansoku.usage.total_tokens"))
        out.set_llm("operation", take_str(rest, "kansoku.operation"))
        out.set_llm("response_id", take_str(rest, "kansoku.response_id"))
        out.set_llm("finish_reasons", take_str_list(rest, "kansoku.finish_reasons"))
        out.set_llm("parameters", take_json(rest, "kansoku.parameters", dict))


def llm_extra_attributes(llm: LLMCall, with_text: bool) -> dict[str, AttrValue]:
    """``kansoku.*`` LLM attributes no convention has a standard home for."""
    attrs: dict[str, AttrValue] = {}
    if with_text and llm.input_messages is None:
        put(attrs, "kansoku.input_text", llm.input_text)
    if with_text and llm.output_messages is None:
        put(attrs, "kansoku.output_text", llm.output_text)
    if llm.usage_estimated:
        attrs["kansoku.usage_estimated"] = True
    put(attrs, "kansoku.ttft_ms", llm.ttft_ms)
    return attrs

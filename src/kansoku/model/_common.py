"""Attributes both conventions share: ``kansoku.*``, user, HTTP status, region, ``error.type``.

Both export mappings start from :func:`common_attributes`; every reverse mapping runs
:func:`take_common` first, so ``kansoku.*`` values (exact, written by kansoku itself) win over
what a convention can only approximate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    user_attributes,
)
from kansoku.model._errors import ERROR_TYPES, ErrorType, error_type_for_status
from kansoku.model._span import LLMCall, Span

_TAG_PREFIX = "kansoku.tag."

#: Takes one key out of ``rest``: its value if of the expected type, else ``None``.
Taker = Callable[[dict[str, Any], str], Any]


def _take_dict(rest: dict[str, Any], key: str) -> Any:
    return take_json(rest, key, dict)


# (field, taker, key) in the order they are taken: the first value found for a field wins.
_SPAN_KEYS: tuple[tuple[str, Taker, str], ...] = (
    ("user_id", take_str, "kansoku.user.id"),
    ("user_id", take_str, "user.id"),
    ("user_id", take_str, "enduser.id"),
    ("prompt_id", take_str, "kansoku.prompt.id"),
    ("prompt_version", take_str, "kansoku.prompt.version"),
    ("status_code", take_count, "kansoku.status_code"),
    ("status_code", take_count, "http.response.status_code"),
    ("region", take_str, "kansoku.region"),
)
_LLM_KEYS: tuple[tuple[str, Taker, str], ...] = (
    ("cost_usd", take_number, "kansoku.cost_usd"),
    ("ttft_ms", take_number, "kansoku.ttft_ms"),
    ("usage_estimated", take_bool, "kansoku.usage_estimated"),
    ("input_text", take_str, "kansoku.input_text"),
    ("output_text", take_str, "kansoku.output_text"),
    ("total_tokens", take_count, "kansoku.usage.total_tokens"),
    ("operation", take_str, "kansoku.operation"),
    ("response_id", take_str, "kansoku.response_id"),
    ("finish_reasons", take_str_list, "kansoku.finish_reasons"),
    ("parameters", _take_dict, "kansoku.parameters"),
)

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
    """Attributes both conventions carry the same way: the span's own (see
    :func:`~kansoku.model._attrs.user_attributes`), then user, prompt, status, region, error type."""
    attrs = user_attributes(span)
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
    for name, take, key in _SPAN_KEYS:
        out.set_span(name, take(rest, key))
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
        for name, take, key in _LLM_KEYS:
            out.set_llm(name, take(rest, key))


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


# --- pieces both reverse mappings share -----------------------------------------------------------


def attributes_to_span_fields(
    attrs: dict[str, Any],
    is_llm: Callable[[dict[str, Any]], bool],
    take_convention: Callable[[dict[str, Any], SpanFields], None],
) -> SpanFields:
    """Read ``attrs`` back into span and LLM-call fields: ``kansoku.*`` and convention-neutral keys
    first (:func:`take_common`), then the convention's own (``take_convention``)."""
    rest = dict(attrs)
    out = SpanFields(llm={} if is_llm(rest) else None, attributes=rest)
    take_common(rest, out)
    take_convention(rest, out)
    return out


def take_provider(rest: dict[str, Any], out: SpanFields, key: str, legacy_key: str) -> None:
    """The provider from ``key``; the older ``legacy_key`` is taken too when it is the only one
    set or agrees (a disagreeing ``legacy_key`` stays in the attributes)."""
    provider = take_str(rest, key)
    if provider is None or rest.get(legacy_key) == provider:
        provider = take_str(rest, legacy_key) or provider
    out.set_llm("provider", provider)

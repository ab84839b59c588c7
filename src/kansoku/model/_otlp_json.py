"""OTLP/JSON trace requests: the JSON mapping of the OTLP protobuf, read directly into spans.

The OTLP specification departs from the generic protobuf JSON mapping in ways this decoder
honours: trace and span ids are hex strings (not base64), enums may be numbers or names, and
64-bit integers may be strings or numbers. Field names are accepted in lowerCamelCase and
snake_case, and unknown fields are ignored, as the specification asks of receivers. Walking
the JSON ourselves (rather than through ``json_format``) keeps errors precise and avoids a
second in-memory copy of the request.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

import orjson

from kansoku.model._ingest import span_from_otel
from kansoku.model._span import Span, SpanEvent

# Malformed input raises ValueError, even for a JSON value of the wrong type: callers turn
# ValueError into an HTTP 400, and a wrong type is malformed input like any other.

#: How deep array/kvlist attribute values may nest (bounds recursion on hostile input).
MAX_DEPTH = 32
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_json(body: bytes) -> list[Span]:
    """Spans from an OTLP/JSON ``ExportTraceServiceRequest``; :class:`ValueError` if malformed."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed OTLP JSON: {exc}") from None
    request = _obj(doc, "request")
    spans: list[Span] = []
    for i, raw_rs in enumerate(_arr(request, "resourceSpans", "request")):
        where = f"resourceSpans[{i}]"
        resource_spans = _obj(raw_rs, where)
        resource = _obj(_get(resource_spans, "resource") or {}, where + ".resource")
        resource_attrs = _attributes(resource, where + ".resource")
        for j, raw_ss in enumerate(_arr(resource_spans, "scopeSpans", where)):
            scope_where = f"{where}.scopeSpans[{j}]"
            scope_spans = _obj(raw_ss, scope_where)
            for k, raw_span in enumerate(_arr(scope_spans, "spans", scope_where)):
                span_where = f"{scope_where}.spans[{k}]"
                spans.append(_span(_obj(raw_span, span_where), resource_attrs, span_where))
    return spans


def _span(doc: dict[str, Any], resource: dict[str, Any], where: str) -> Span:
    events = []
    for n, raw in enumerate(_arr(doc, "events", where)):
        event_where = f"{where}.events[{n}]"
        event = _obj(raw, event_where)
        name = _str(_get(event, "name"), event_where + ".name")
        events.append(
            SpanEvent(name, _u64(_get(event, "timeUnixNano"), event_where), _attributes(event, event_where))
        )
    status = _obj(_get(doc, "status") or {}, where + ".status")
    try:
        return span_from_otel(
            _str(_get(doc, "name"), where + ".name"),
            _str(_get(doc, "traceId"), where + ".traceId"),
            _str(_get(doc, "spanId"), where + ".spanId"),
            _str(_get(doc, "parentSpanId"), where + ".parentSpanId") or None,
            _enum(_get(doc, "kind"), where + ".kind"),
            _u64(_get(doc, "startTimeUnixNano"), where + ".startTimeUnixNano"),
            _u64(_get(doc, "endTimeUnixNano"), where + ".endTimeUnixNano"),
            _enum(_get(status, "code"), where + ".status.code"),
            _str(_get(status, "message"), where + ".status.message") or None,
            _attributes(doc, where),
            events,
            resource,
        )
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: {exc}") from None


@cache
def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", camel).lower()


def _get(doc: dict[str, Any], camel: str) -> Any:
    value = doc.get(camel)
    return doc.get(_snake(camel)) if value is None else value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _arr(doc: dict[str, Any], camel: str, where: str) -> list[Any]:
    value = _get(doc, camel)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}.{camel} must be a JSON array")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string")
    return value


def _u64(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) < 2**64:
        return int(value)
    raise ValueError(f"{where} must be an unsigned 64-bit integer (number or string)")


def _enum(value: Any, where: str) -> int | str:
    if value is None:
        return 0
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    raise ValueError(f"{where} must be an enum number or name")


def _attributes(doc: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, raw in enumerate(_arr(doc, "attributes", where)):
        kv_where = f"{where}.attributes[{n}]"
        kv = _obj(raw, kv_where)
        value = _any(_get(kv, "value"), 0, kv_where)
        if value is not None:
            out[_str(_get(kv, "key"), kv_where + ".key")] = value
    return out


def _any(value: Any, depth: int, where: str) -> Any:
    """An ``AnyValue`` as a Python value (``None`` when empty or of an unknown kind)."""
    if value is None:
        return None
    doc = _obj(value, where)
    if (text := _get(doc, "stringValue")) is not None:
        return _str(text, where + ".stringValue")
    if (flag := _get(doc, "boolValue")) is not None:
        if not isinstance(flag, bool):
            raise ValueError(f"{where}.boolValue must be true or false")
        return flag
    if (number := _get(doc, "intValue")) is not None:
        return _int(number, where + ".intValue")
    if (number := _get(doc, "doubleValue")) is not None:
        return _double(number, where + ".doubleValue")
    if (blob := _get(doc, "bytesValue")) is not None:
        return _str(blob, where + ".bytesValue")  # kept base64, as the protobuf path gives it
    array, kvlist = _get(doc, "arrayValue"), _get(doc, "kvlistValue")
    if array is None and kvlist is None:
        return None
    if depth >= MAX_DEPTH:
        raise ValueError(f"{where}: attribute values nest deeper than {MAX_DEPTH} levels")
    if array is not None:
        items = _arr(_obj(array, where + ".arrayValue"), "values", where + ".arrayValue")
        return [_any(v, depth + 1, f"{where}.arrayValue.values[{n}]") for n, v in enumerate(items)]
    out: dict[str, Any] = {}
    pairs = _arr(_obj(kvlist, where + ".kvlistValue"), "values", where + ".kvlistValue")
    for n, raw in enumerate(pairs):
        kv_where = f"{where}.kvlistValue.values[{n}]"
        kv = _obj(raw, kv_where)
        out[_str(_get(kv, "key"), kv_where + ".key")] = _any(_get(kv, "value"), depth + 1, kv_where)
    return out


def _int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise ValueError(f"{where} must be a 64-bit integer (number or string)")


def _double(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[value]
    raise ValueError(f"{where} must be a number")

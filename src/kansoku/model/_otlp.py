"""OTLP trace payloads: encode kansoku spans, decode what any OpenTelemetry SDK sends.

Encoding uses the official protobuf classes (``opentelemetry-proto``), so what the exporter
sends is exactly what collectors expect. Decoding accepts protobuf and OTLP/JSON (see
:mod:`kansoku.model._otlp_json`); anything malformed raises :class:`ValueError` with a
message that says where, which the collector turns into a 400.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from kansoku.model._attrs import AttrValue, attr_value
from kansoku.model._genai import span_to_genai_attributes
from kansoku.model._ingest import span_from_otel
from kansoku.model._openinference import span_to_openinference_attributes
from kansoku.model._otlp_json import MAX_DEPTH, decode_json
from kansoku.model._span import Span, SpanEvent

#: Attribute conventions :func:`encode_spans` can write.
CONVENTIONS: dict[str, Callable[[Span], dict[str, AttrValue]]] = {
    "genai": span_to_genai_attributes,
    "openinference": span_to_openinference_attributes,
}
PROTOBUF = "application/x-protobuf"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
_KIND_NUMBERS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_NUMBERS = {"unset": 0, "ok": 1, "error": 2}
_INT64 = range(-(2**63), 2**63)
_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})


def encode_spans(
    spans: Iterable[Span], convention: str = "genai", resource: Mapping[str, Any] | None = None
) -> bytes:
    """Serialise spans as an OTLP ``ExportTraceServiceRequest`` (protobuf bytes).

    One ``ResourceSpans`` per (service, environment) pair, scope ``kansoku``. ``resource``
    adds resource attributes (``host.name`` ...); the span's own service and environment win.
    Raises :class:`ValueError` for an unknown convention or a span with malformed ids.
    """
    mapping = CONVENTIONS.get(convention)
    if mapping is None:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    from kansoku import __version__  # at call time: the package may import this module

    groups: dict[tuple[str | None, str | None], list[Span]] = {}
    for span in spans:
        groups.setdefault((span.service, span.environment), []).append(span)
    request = ExportTraceServiceRequest()
    for (service, environment), group in groups.items():
        attrs: dict[str, Any] = {k: attr_value(v) for k, v in (resource or {}).items()}
        attrs.setdefault("service.name", "unknown_service")
        if service:
            attrs["service.name"] = service
        if environment:
            attrs["deployment.environment.name"] = environment
        attrs.update(
            {
                "telemetry.sdk.name": "kansoku",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.version": __version__,
            }
        )
        resource_spans = request.resource_spans.add()
        _fill(resource_spans.resource.attributes, attrs)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "kansoku"
        scope_spans.scope.version = __version__
        for span in group:
            _encode_span(scope_spans.spans.add(), span, mapping(span))
    return request.SerializeToString()


def _encode_span(pb: PbSpan, span: Span, attrs: Mapping[str, Any]) -> None:
    pb.trace_id = _id_bytes(span.trace_id, 16, "trace_id")
    pb.span_id = _id_bytes(span.span_id, 8, "span_id")
    if span.parent_span_id:
        pb.parent_span_id = _id_bytes(span.parent_span_id, 8, "parent_span_id")
    pb.name = span.name
    pb.kind = PbSpan.SpanKind.ValueType(_KIND_NUMBERS.get(span.kind, 1))
    pb.start_time_unix_nano = max(span.start_ns, 0)
    pb.end_time_unix_nano = max(span.end_ns, span.start_ns, 0)
    _fill(pb.attributes, attrs)
    for event in span.events:
        pb_event = pb.events.add()
        pb_event.name = event.name
        pb_event.time_unix_nano = max(event.time_ns, 0)
        _fill(pb_event.attributes, event.attributes)
    pb.status.code = Status.StatusCode.ValueType(_STATUS_NUMBERS.get(span.status, 0))
    if span.status == "error" and span.error_message:
        pb.status.message = span.error_message


def _id_bytes(value: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise ValueError(f"span {what} must be {size * 2} hex characters, got {value!r}")
    return raw


def _fill(target: Any, attrs: Mapping[str, Any]) -> None:
    """Append ``attrs`` to a repeated ``KeyValue`` field, skipping ``None`` values."""
    for key, value in attrs.items():
        if value is not None:
            kv: KeyValue = target.add()
            kv.key = str(key)
            _set_any(kv.value, value, 0)


def _set_any(av: AnyValue, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        av.string_value = str(value)
    elif isinstance(value, bool):
        av.bool_value = value
    elif isinstance(value, int):
        if value in _INT64:
            av.int_value = value
        else:
            av.string_value = str(value)
    elif isinstance(value, float):
        av.double_value = value
    elif isinstance(value, str):
        av.string_value = value
    elif isinstance(value, bytes):
        av.bytes_value = value
    elif isinstance(value, list | tuple):
        av.array_value.SetInParent()  # an empty list is still an array, not "no value"
        for item in value:
            _set_any(av.array_value.values.add(), item, depth + 1)
    elif isinstance(value, Mapping):
        av.kvlist_value.SetInParent()
        for key, item in value.items():
            kv = av.kvlist_value.values.add()
            kv.key = str(key)
            _set_any(kv.value, item, depth + 1)
    elif value is not None:
        av.string_value = str(value)


def decode_request(body: bytes, content_type: str) -> list[Span]:
    """Spans from an OTLP/HTTP trace request body (already un-gzipped by the caller).

    ``content_type`` selects protobuf (``application/x-protobuf``) or OTLP/JSON
    (``application/json``). Raises :class:`ValueError` for anything malformed or unsupported.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _PROTOBUF_TYPES:
        return _decode_protobuf(body)
    if media == "application/json":
        return decode_json(body)
    raise ValueError(f"unsupported content type {media!r}: send application/x-protobuf or application/json")


def _decode_protobuf(body: bytes) -> list[Span]:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"malformed OTLP protobuf: {exc}") from None
    spans: list[Span] = []
    for i, resource_spans in enumerate(request.resource_spans):
        where = f"resource_spans[{i}]"
        resource = _kv_dict(resource_spans.resource.attributes, where)
        for j, scope_spans in enumerate(resource_spans.scope_spans):
            for k, pb in enumerate(scope_spans.spans):
                where = f"resource_spans[{i}].scope_spans[{j}].spans[{k}]"
                spans.append(_decode_span(pb, resource, where))
    return spans


def _decode_span(pb: PbSpan, resource: dict[str, Any], where: str) -> Span:
    events = [
        SpanEvent(e.name, e.time_unix_nano, _kv_dict(e.attributes, f"{where}.events[{n}]"))
        for n, e in enumerate(pb.events)
    ]
    try:
        return span_from_otel(
            pb.name,
            pb.trace_id,
            pb.span_id,
            pb.parent_span_id or None,
            pb.kind,
            pb.start_time_unix_nano,
            pb.end_time_unix_nano,
            pb.status.code,
            pb.status.message,
            _kv_dict(pb.attributes, where),
            events,
            resource,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _kv_dict(kvs: Iterable[KeyValue], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        av = kv.value
        kind = av.WhichOneof("value")
        # Scalars inline: this loop runs for every attribute of every span (about 2x faster).
        value = getattr(av, kind) if kind in _SCALARS else _from_any(av, 0, where)
        if value is not None:
            out[kv.key] = value
    return out


def _from_any(av: AnyValue, depth: int, where: str) -> Any:
    kind = av.WhichOneof("value")
    if kind in _SCALARS:  # the common case first: this runs for every attribute
        return getattr(av, kind)
    if kind is None:
        return None
    if kind == "bytes_value":
        return base64.b64encode(av.bytes_value).decode()
    if depth >= MAX_DEPTH:
        raise ValueError(f"{where}: attribute values nest deeper than {MAX_DEPTH} levels")
    if kind == "array_value":
        return [_from_any(v, depth + 1, where) for v in av.array_value.values]
    return {kv.key: _from_any(kv.value, depth + 1, where) for kv in av.kvlist_value.values}

"""The kansoku data model: spans, LLM-call records, error types, trace context."""

from kansoku.model._attrs import AttrValue, SpanFields
from kansoku.model._errors import ERROR_TYPES, ErrorType, error_type_for_status
from kansoku.model._genai import genai_attributes_to_span_fields, genai_span_name, span_to_genai_attributes
from kansoku.model._ids import SpanContext, new_span_id, new_trace_id, parse_traceparent
from kansoku.model._ingest import span_from_otel
from kansoku.model._openinference import (
    openinference_attributes_to_span_fields,
    span_to_openinference_attributes,
)
from kansoku.model._otlp import decode_request, encode_spans
from kansoku.model._span import LLM_FIELDS, RECORD_SCHEMA, SPAN_FIELDS, LLMCall, Span, SpanEvent

__all__ = [
    "ERROR_TYPES",
    "LLM_FIELDS",
    "RECORD_SCHEMA",
    "SPAN_FIELDS",
    "AttrValue",
    "ErrorType",
    "LLMCall",
    "Span",
    "SpanContext",
    "SpanEvent",
    "SpanFields",
    "decode_request",
    "encode_spans",
    "error_type_for_status",
    "genai_attributes_to_span_fields",
    "genai_span_name",
    "new_span_id",
    "new_trace_id",
    "openinference_attributes_to_span_fields",
    "parse_traceparent",
    "span_from_otel",
    "span_to_genai_attributes",
    "span_to_openinference_attributes",
]

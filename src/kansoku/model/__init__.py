"""The kansoku data model: spans, LLM-call records, error types, trace context."""

from kansoku.model._errors import ERROR_TYPES, ErrorType, error_type_for_status
from kansoku.model._ids import SpanContext, new_span_id, new_trace_id, parse_traceparent
from kansoku.model._span import LLM_FIELDS, RECORD_SCHEMA, SPAN_FIELDS, LLMCall, Span, SpanEvent

__all__ = [
    "ERROR_TYPES",
    "LLM_FIELDS",
    "RECORD_SCHEMA",
    "SPAN_FIELDS",
    "ErrorType",
    "LLMCall",
    "Span",
    "SpanContext",
    "SpanEvent",
    "error_type_for_status",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
]

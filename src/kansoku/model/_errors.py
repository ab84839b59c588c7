"""The closed error-type taxonomy every kansoku part uses, and how status codes map onto it."""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """Why an LLM call failed. Closed on purpose: dashboards and alerts group by it."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    CONTENT_POLICY = "content_policy"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    INVALID_OUTPUT = "invalid_output"
    BUDGET_EXCEEDED = "budget_exceeded"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


ERROR_TYPES: frozenset[str] = frozenset(e.value for e in ErrorType)

# Substrings providers put in error codes/messages for the two 400s users care to tell apart.
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "string_above_max_length",
    "input is too long",
)
_CONTENT_MARKERS = (
    "content_filter",
    "content_policy",
    "content management policy",
    "safety system",
    "flagged",
)


def error_type_for_status(status: int | None, text: str | None = None) -> ErrorType:
    """Classify an HTTP status (and the provider's error code/message, when known)."""
    lowered = (text or "").lower()
    if status is None:
        return ErrorType.UNKNOWN
    if status == 429:
        return ErrorType.RATE_LIMIT
    if status in (401, 403):
        return ErrorType.AUTH
    if status in (408, 504):
        return ErrorType.TIMEOUT
    if status == 499:
        return ErrorType.CANCELLED
    if status == 529 or status >= 500:
        return ErrorType.SERVER_ERROR
    if 400 <= status < 500:
        if any(m in lowered for m in _CONTEXT_MARKERS):
            return ErrorType.CONTEXT_LENGTH_EXCEEDED
        if any(m in lowered for m in _CONTENT_MARKERS):
            return ErrorType.CONTENT_POLICY
        if status == 413:
            return ErrorType.CONTEXT_LENGTH_EXCEEDED
        return ErrorType.BAD_REQUEST
    return ErrorType.UNKNOWN

"""The mock upstream's fault modes."""

from __future__ import annotations

from enum import StrEnum


class FaultMode(StrEnum):
    """Ways the mock upstream can misbehave. Values are what headers and the admin API take."""

    NONE = "none"
    """Answer normally (useful to override a server-wide fault for one request)."""
    RATE_LIMIT = "rate_limit"
    """429 with a ``Retry-After: <retry_after>`` header."""
    SERVER_ERROR = "server_error"
    """500."""
    OVERLOADED = "overloaded"
    """503 on OpenAI routes, 529 ``overloaded_error`` on Anthropic routes."""
    HANG = "hang"
    """Read the request, never answer, until the client gives up or the server stops."""
    SLOW = "slow"
    """Answer normally after ``slow_ms`` more milliseconds."""
    MALFORMED_JSON = "malformed_json"
    """200 whose JSON body (or second streamed event) is cut in half."""
    TRUNCATED_STREAM = "truncated_stream"
    """Close the connection halfway: no ``[DONE]`` / ``message_stop``, body incomplete."""
    CONTEXT_LENGTH = "context_length"
    """400 ``context_length_exceeded`` (OpenAI) / ``prompt is too long`` (Anthropic)."""
    CONTENT_FILTER = "content_filter"
    """400 with OpenAI code ``content_filter`` / Anthropic ``invalid_request_error``."""
    CONTENT_FILTER_FINISH = "content_filter_finish"
    """200 ending with ``finish_reason: content_filter`` (Responses: ``incomplete``;
    Anthropic: ``stop_reason: refusal``)."""
    AUTH = "auth"
    """401."""
    DISCONNECT = "disconnect"
    """Close the connection without answering."""


_MODES = frozenset(m.value for m in FaultMode)


def _mode(value: str | FaultMode | None) -> FaultMode | None:
    if value is None:
        return None
    if value not in _MODES:
        raise ValueError(f"unknown fault mode {value!r}; use one of: {', '.join(sorted(_MODES))}")
    mode = FaultMode(value)
    return None if mode is FaultMode.NONE else mode

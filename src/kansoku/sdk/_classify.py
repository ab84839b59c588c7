"""Map exceptions raised by LLM clients (or anything else) onto the error taxonomy."""

from __future__ import annotations

import asyncio
from typing import Any

from kansoku.model import ErrorType, error_type_for_status

_MAX_MESSAGE = 2000
# HTTP-library failures some clients let escape unwrapped (e.g. a stream cut by the server).
_TRANSPORT_ERRORS = frozenset(
    {"TransportError", "NetworkError", "ProtocolError", "RemoteProtocolError", "ReadError"}
)


def classify_exception(exc: BaseException) -> tuple[str, int | None]:
    """``(error_type, http_status or None)`` for an exception from any client.

    Works on the official ``openai`` and ``anthropic`` exception classes by their shape
    (``status_code``, ``body``, class name) so neither package has to be imported.
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    name = type(exc).__name__
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return ErrorType.CANCELLED.value, status
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return ErrorType.TIMEOUT.value, status
    if status is not None:
        return error_type_for_status(status, _error_text(exc)).value, status
    if name == "LengthFinishReasonError":
        return ErrorType.CONTEXT_LENGTH_EXCEEDED.value, None
    if name == "ContentFilterFinishReasonError":
        return ErrorType.CONTENT_POLICY.value, None
    lineage = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ConnectionError) or "Connection" in name or lineage & _TRANSPORT_ERRORS:
        return ErrorType.CONNECTION.value, None
    if "Validation" in name or "JSONDecodeError" in lineage:
        return ErrorType.INVALID_OUTPUT.value, None
    return ErrorType.UNKNOWN.value, None


def _error_text(exc: BaseException) -> str:
    parts: list[str] = [str(exc)]
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            parts.extend(str(err.get(k, "")) for k in ("code", "type", "message"))
    code = getattr(exc, "code", None)
    if code:
        parts.append(str(code))
    return " ".join(parts)


def error_message(exc: BaseException) -> str:
    """A bounded one-line description; redaction runs on it before export."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

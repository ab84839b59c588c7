"""Anthropic Messages answers → OpenAI Chat Completions answers (pure, no networking).

Bodies (:func:`from_anthropic_response`), streams (:class:`SseParser` then
:class:`AnthropicStreamTranslator`) and errors (:func:`error_from_anthropic`).

**Usage arithmetic.** Anthropic reports cache reads and writes *beside* ``input_tokens``;
OpenAI counts cached tokens *inside* ``prompt_tokens``. So::

    prompt_tokens  = input_tokens + cache_read_input_tokens + cache_creation_input_tokens
    prompt_tokens_details.cached_tokens = cache_read_input_tokens   (writes are not cache hits)
    completion_tokens = output_tokens                                (thinking included, as both bill it)
    total_tokens = prompt_tokens + completion_tokens

**Errors.** The status is kept, except 529 ``overloaded_error`` → 503: OpenAI clients, HTTP
tooling and load balancers know 503 as "overloaded, retry", while 529 is Anthropic's own.
``type`` is ``server_error`` for 5xx and ``invalid_request_error`` otherwise; ``code`` is
OpenAI's code where clients test for one (``context_length_exceeded`` with ``param:
"messages"``, ``content_filter`` with ``param: "prompt"``, ``rate_limit_exceeded``), else
Anthropic's error type verbatim (``overloaded_error``, ``authentication_error``, …) so nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from kansoku.errors import KansokuError
from kansoku.model._errors import ErrorType, error_type_for_status

__all__ = [
    "AnthropicStreamError",
    "AnthropicStreamTranslator",
    "SseParser",
    "error_from_anthropic",
    "finish_reason",
    "from_anthropic_response",
    "openai_usage",
]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused the turn; the text so far is a complete answer
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Statuses of Anthropic's documented error types, for `error` events inside a 200 stream.
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any) -> str:
    """OpenAI ``finish_reason`` of an Anthropic ``stop_reason`` (unknown ones → ``stop``)."""
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI chat ``usage`` of an Anthropic ``usage`` (arithmetic in the module docstring)."""
    cached = _count(usage, "cache_read_input_tokens")
    prompt = _count(usage, "input_tokens") + cached + _count(usage, "cache_creation_input_tokens")
    completion = _count(usage, "output_tokens")
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, Mapping) and isinstance(details.get("thinking_tokens"), int):
        out["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return out


def _arguments(tool_input: Any) -> str:
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


def from_anthropic_response(
    body: Mapping[str, Any], request_model: str, *, created: int | None = None
) -> dict[str, Any]:
    """The ``chat.completion`` for an Anthropic ``message`` body.

    ``model`` is the name the client asked for; ``id`` is Anthropic's, so it can be found in
    the provider's logs. Text blocks are concatenated (they are consecutive pieces of one
    answer); thinking and server-tool blocks have no Chat Completions field and are left out.
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or []:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            fn = {"name": block.get("name"), "arguments": _arguments(block.get("input"))}
            calls.append({"id": block.get("id"), "type": "function", "function": fn})
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    usage = body.get("usage")
    return {
        "id": body.get("id"),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": request_model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(body.get("stop_reason")),
            }
        ],
        "usage": openai_usage(usage if isinstance(usage, Mapping) else {}),
        "system_fingerprint": None,
    }


# -- errors -----------------------------------------------------------------------------------


def _openai_error(status: int, err_type: str | None, message: str) -> tuple[int, dict[str, Any]]:
    kind = error_type_for_status(status, f"{err_type or ''} {message}")
    code, param = err_type, None
    if kind is ErrorType.CONTEXT_LENGTH_EXCEEDED:
        code, param = "context_length_exceeded", "messages"
    elif kind is ErrorType.CONTENT_POLICY:
        code, param = "content_filter", "prompt"  # OpenAI's own param for a filtered prompt
    elif kind is ErrorType.RATE_LIMIT:
        code = "rate_limit_exceeded"
    out_status = 503 if status == 529 else status
    openai_type = "server_error" if out_status >= 500 else "invalid_request_error"
    return out_status, {"error": {"message": message, "type": openai_type, "param": param, "code": code}}


def error_from_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """(status, OpenAI error body) for an Anthropic error answer (mapping in the module docstring).

    A body that is not Anthropic's error JSON (an HTML page from a proxy, say) gets a generic
    message; it is not echoed, as it may be large or carry markup.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        err_type = err.get("type")
        return _openai_error(status, err_type if isinstance(err_type, str) else None, err["message"])
    return _openai_error(status, None, f"the Anthropic upstream answered HTTP {status} without an error body")


class AnthropicStreamError(KansokuError):
    """An ``error`` event inside an Anthropic stream (the HTTP status was already 200).

    ``status`` and ``body`` are what :func:`error_from_anthropic` would give for that error.
    If no chunk was sent to the client yet, the gateway can still retry or fail over;
    otherwise it sends ``body`` as a last ``data:`` event, as OpenAI does mid-stream.
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body['error']['message']}")
        self.status = status
        self.body = body


# -- streams ----------------------------------------------------------------------------------


class SseParser:
    """Incremental server-sent-events parser: bytes in any cut → ``(event, data)`` pairs.

    Lines end in LF or CRLF; ``data`` lines of one event are joined with LF; comments,
    ``id`` and ``retry`` are skipped; an event without an ``event`` line is ``"message"``.
    A trailing event with no blank line after it is incomplete and never returned.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buffer += chunk
        events: list[tuple[str, str]] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            # LF never occurs inside a multi-byte UTF-8 sequence, so each line decodes alone.
            line = bytes(self._buffer[start:end]).removesuffix(b"\r").decode("utf-8", "replace")
            start = end + 1
            if not line:
                if self._data:
                    events.append((self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self._event = value
            elif field == "data":
                self._data.append(value)
        del self._buffer[:start]
        return events


class AnthropicStreamTranslator:
    """Turns Anthropic stream events, one at a time, into OpenAI ``chat.completion.chunk`` dicts.

    :meth:`feed` returns the chunks to send for one event (often none). The first is the role
    chunk; tool calls get OpenAI indexes in order of appearance; the finish chunk follows
    ``message_delta``; with ``include_usage`` (the client's ``stream_options.include_usage``)
    every chunk has ``"usage": null`` and ``message_stop`` adds a usage chunk with empty
    ``choices``, as OpenAI streams do. The gateway writes ``data: [DONE]`` itself.
    An ``error`` event raises :class:`AnthropicStreamError`; ``ping`` and unknown events
    give nothing.
    """

    def __init__(
        self, request_model: str, *, include_usage: bool = False, created: int | None = None
    ) -> None:
        self._model = request_model
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id: Any = None
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic content-block index → OpenAI tool_calls index
        self._finished = False
        self.done = False

    def feed(self, event: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event if event != "message" else data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self._id = message.get("id")
            self._take_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            self._take_usage(data.get("usage"))
            self._finished = True
            return [self._chunk({}, finish_reason((data.get("delta") or {}).get("stop_reason")))]
        if kind == "message_stop":
            self.done = True
            out = [] if self._finished else [self._chunk({}, "stop")]
            self._finished = True
            if self._include_usage:
                out.append(self._base(choices=[], usage=openai_usage(self._usage)))
            return out
        if kind == "error":
            err = data.get("error") or {}
            err_type = str(err.get("type") or "api_error")
            status, body = _openai_error(_STATUS.get(err_type, 500), err_type, str(err.get("message", "")))
            raise AnthropicStreamError(status, body)
        return []  # ping, and event types newer than this code

    def _take_usage(self, usage: Any) -> None:
        # message_delta's usage is cumulative and may repeat input counts: newest value wins.
        if isinstance(usage, Mapping):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        index = self._tools[data.get("index", -1)] = len(self._tools)
        fn = {"name": block.get("name"), "arguments": ""}
        call = {"index": index, "id": block.get("id"), "type": "function", "function": fn}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        tool = self._tools.get(data.get("index", -1))
        if delta.get("type") == "input_json_delta" and tool is not None and delta.get("partial_json"):
            call = {"index": tool, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking, signatures, citations: no Chat Completions field

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._base(choices=[choice])

    def _base(self, **fields: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }
        if self._include_usage:
            chunk["usage"] = None
        chunk.update(fields)
        return chunk

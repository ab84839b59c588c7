"""Response bodies and server-sent events of the mock upstream, in each provider's wire format.

Everything here is deterministic given the request and the server's settings, so tests can
compute what a call must report:

* **Reply text**: the configured reply, else :func:`default_reply` of the last user message.
* **Token rule** (:func:`count_tokens`): one token per run of word characters and one per
  punctuation character, whitespace ignored -- ``"Mock reply to: hi!"`` is 6 tokens.
* **Prompt tokens** ``P``: the rule summed over every text in the request (OpenAI chat:
  message contents; Responses: ``instructions`` and ``input``; Anthropic: ``system`` and
  message contents; content-part lists count their ``text`` fields).
* **Output tokens**: the rule on the reply text, plus the server's ``reasoning_tokens``,
  because both providers bill reasoning inside the output count.
* **Cache**: the server's ``cached_tokens`` and ``cache_creation_tokens``, each capped so
  the input adds up. OpenAI counts cached tokens *inside* ``prompt_tokens``
  (``prompt_tokens = P``); Anthropic reports them *beside* ``input_tokens``
  (``input_tokens = P - cache_read - cache_creation``), as the real APIs do.
"""

from __future__ import annotations

import base64
import functools
import itertools
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ERRORS",
    "Answer",
    "ErrorSpec",
    "Tokens",
    "anthropic_error",
    "anthropic_message",
    "anthropic_models",
    "anthropic_prompt",
    "anthropic_stream",
    "break_event",
    "chat_completion",
    "chat_prompt",
    "chat_stream",
    "count_tokens",
    "default_reply",
    "embeddings",
    "openai_error",
    "openai_models",
    "response_object",
    "response_stream",
    "responses_prompt",
    "split_deltas",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\S+")
_dumps = orjson.dumps

MOCK_MODELS = ("mock-model", "mock-model-mini", "mock-embedding")


@functools.lru_cache(maxsize=4096)  # load tests repeat the same prompts; the regex is the hot spot
def count_tokens(text: str) -> int:
    """Tokens of ``text`` by the mock's rule: word-character runs plus punctuation marks."""
    return len(_TOKEN_RE.findall(text))


def default_reply(last_user_text: str) -> str:
    """The reply used when none is configured: ``"Mock reply to: " + first 40 chars``, stripped."""
    return ("Mock reply to: " + last_user_text[:40]).strip()


@functools.lru_cache(maxsize=1024)
def split_deltas(text: str) -> tuple[str, ...]:
    """Cut ``text`` before each word after the first, so streams carry several deltas."""
    bounds = [0, *(m.start() for m in _WORD_RE.finditer(text)), len(text)]
    pieces = tuple(text[a:b] for a, b in itertools.pairwise(bounds) if b > a)
    return pieces or (text,)


@functools.lru_cache(maxsize=1024)
def _chat_deltas(text: str) -> tuple[bytes, ...]:
    return tuple(b'{"content":' + _dumps(piece) + b"}" for piece in split_deltas(text))


# Plain (not frozen) slots dataclasses: frozen ones cost ~4x more to build, per request.
@dataclass(slots=True)
class Tokens:
    """Token counts of one call, before each provider arranges them in its own fields."""

    prompt: int
    reply: int
    cached: int
    cache_creation: int
    reasoning: int

    @classmethod
    def build(cls, prompt: int, reply: str, cached: int, cache_creation: int, reasoning: int) -> Tokens:
        """Count ``reply`` and cap the cache figures so they never exceed the prompt."""
        cached = min(cached, prompt)
        return cls(prompt, count_tokens(reply), cached, min(cache_creation, prompt - cached), reasoning)

    @property
    def output(self) -> int:
        """Billed output tokens: visible reply plus reasoning."""
        return self.reply + self.reasoning

    def chat_usage(self) -> dict[str, Any]:
        """OpenAI Chat Completions ``usage``."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.output,
            "total_tokens": self.prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def responses_usage(self) -> dict[str, Any]:
        """OpenAI Responses ``usage``."""
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.output,
        }

    def anthropic_usage(self) -> dict[str, Any]:
        """Anthropic Messages ``usage`` (input excludes cache reads and writes)."""
        usage: dict[str, Any] = {
            "input_tokens": self.prompt - self.cached - self.cache_creation,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cached,
            "output_tokens": self.output,
        }
        if self.reasoning:
            usage["output_tokens_details"] = {"thinking_tokens": self.reasoning}
        return usage


# -- reading requests ----------------------------------------------------------------------


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def _messages(messages: Any, texts: list[str]) -> str:
    """Append every message text to ``texts``; return the last user message's text."""
    last_user = ""
    if isinstance(messages, list):
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            parts = _texts(msg.get("content"))
            texts.extend(parts)
            if msg.get("role") == "user":
                last_user = " ".join(parts)
    return last_user


def chat_prompt(body: dict[str, Any]) -> tuple[int, str]:
    """(prompt tokens, last user text) of an OpenAI chat request."""
    texts: list[str] = []
    last_user = _messages(body.get("messages"), texts)
    return sum(map(count_tokens, texts)), last_user


def responses_prompt(body: dict[str, Any]) -> tuple[int, str]:
    """(prompt tokens, last user text) of an OpenAI Responses request."""
    texts = _texts(body.get("instructions"))
    given = body.get("input")
    if isinstance(given, str):
        texts.append(given)
        last_user = given
    else:
        last_user = _messages(given, texts)
    return sum(map(count_tokens, texts)), last_user


def anthropic_prompt(body: dict[str, Any]) -> tuple[int, str]:
    """(prompt tokens, last user text) of an Anthropic Messages request."""
    texts = _texts(body.get("system"))
    last_user = _messages(body.get("messages"), texts)
    return sum(map(count_tokens, texts)), last_user


# -- successful answers ----------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """Everything a successful call answers with, before provider formatting.

    ``rid`` is a unique suffix each provider prefixes with its own id style; ``filtered``
    ends the answer the way a provider's output content filter does.
    """

    rid: str
    created: int
    model: str
    reply: str
    tokens: Tokens
    filtered: bool = False


def chat_completion(a: Answer) -> bytes:
    """A non-streaming ``chat.completion`` body."""
    return _dumps(
        {
            "id": "chatcmpl-" + a.rid,
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": a.reply, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "content_filter" if a.filtered else "stop",
                }
            ],
            "usage": a.tokens.chat_usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
    )


def chat_stream(a: Answer, include_usage: bool) -> list[bytes]:
    """``chat.completion.chunk`` events: role, one per delta, finish, [usage], ``[DONE]``."""
    # Chunks differ only in delta and finish_reason: serialise the shared part once
    # (streaming is the benchmark's hot path), splicing the rest in as bytes.
    base: dict[str, Any] = {
        "id": "chatcmpl-" + a.rid,
        "object": "chat.completion.chunk",
        "created": a.created,
        "model": a.model,
    }
    if include_usage:
        base["usage"] = None  # the real API marks every chunk but the last this way
    prefix = b"data: " + _dumps(base)[:-1] + b',"choices":[{"index":0,"delta":'
    middle = b',"logprobs":null,"finish_reason":'
    pending = middle + b"null}]}\n\n"
    finish = b'"content_filter"' if a.filtered else b'"stop"'

    events = [prefix + b'{"role":"assistant","content":"","refusal":null}' + pending]
    events.extend(prefix + delta + pending for delta in _chat_deltas(a.reply))
    events.append(prefix + b"{}" + middle + finish + b"}]}\n\n")
    if include_usage:
        events.append(b"data: " + _dumps({**base, "choices": [], "usage": a.tokens.chat_usage()}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _message_item(item_id: str, reply: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": reply, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def response_object(a: Answer, body: dict[str, Any], *, done: bool = True) -> dict[str, Any]:
    """A Responses ``response`` object; ``done=False`` gives the in-progress shape."""
    instructions = body.get("instructions")
    status = "incomplete" if a.filtered else "completed"
    return {
        "id": "resp_" + a.rid,
        "object": "response",
        "created_at": a.created,
        "status": status if done else "in_progress",
        "completed_at": a.created if done and not a.filtered else None,
        "error": None,
        "incomplete_details": {"reason": "content_filter"} if done and a.filtered else None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": body.get("max_output_tokens"),
        "model": a.model,
        "output": [_message_item("msg_" + a.rid, a.reply, "completed")] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": bool(body.get("store", True)),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": a.tokens.responses_usage() if done else None,
        "user": None,
        "metadata": {},
    }


def response_stream(a: Answer, body: dict[str, Any]) -> list[bytes]:
    """Responses streaming events, ``response.created`` to ``response.completed``."""
    item_id = "msg_" + a.rid
    events: list[bytes] = []

    def emit(kind: str, payload: dict[str, Any]) -> None:
        data = _dumps({"type": kind, "sequence_number": len(events), **payload})
        events.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    start = response_object(a, body, done=False)
    emit("response.created", {"response": start})
    emit("response.in_progress", {"response": start})
    emit("response.output_item.added", {"output_index": 0, "item": _message_item(item_id, "", "in_progress")})
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", {**where, "part": empty_part})
    for piece in split_deltas(a.reply):
        emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
    emit("response.output_text.done", {**where, "text": a.reply, "logprobs": []})
    emit("response.content_part.done", {**where, "part": {**empty_part, "text": a.reply}})
    emit(
        "response.output_item.done", {"output_index": 0, "item": _message_item(item_id, a.reply, "completed")}
    )
    final = "response.incomplete" if a.filtered else "response.completed"
    emit(final, {"response": response_object(a, body)})
    return events


# -- OpenAI embeddings and models ------------------------------------------------------------


def _vector(text: str, dim: int) -> list[float]:
    """Pseudo-random but deterministic components: a 32-bit LCG seeded by the text's CRC."""
    state = zlib.crc32(text.encode())
    out = []
    for _ in range(dim):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        # Multiples of 1/1024 in [-1, 1] survive the float32 base64 round trip exactly.
        out.append(((state >> 16) % 2049 - 1024) / 1024)
    return out


def embeddings(body: dict[str, Any], model: str, dim: int) -> bytes:
    """An embeddings list: one deterministic vector per input, base64 when asked."""
    given = body.get("input", "")
    items: list[Any] = [given] if isinstance(given, str) or not isinstance(given, list) else given
    if items and all(isinstance(x, int) for x in items):
        items = [items]  # a single pre-tokenised input
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and 0 < dimensions <= 4096:
        dim = dimensions
    as_b64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else repr(item)
        tokens += count_tokens(item) if isinstance(item, str) else len(item) if isinstance(item, list) else 0
        vec = _vector(text, dim)
        value: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_b64 else vec
        data.append({"object": "embedding", "index": index, "embedding": value})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _dumps({"object": "list", "data": data, "model": model, "usage": usage})


def openai_models() -> bytes:
    """``GET /v1/models`` in OpenAI's shape."""
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "kansoku-mock"}
        for m in MOCK_MODELS
    ]
    return _dumps({"object": "list", "data": data})


def anthropic_models() -> bytes:
    """``GET /v1/models`` in Anthropic's shape."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in MOCK_MODELS
    ]
    return _dumps({"data": data, "has_more": False, "first_id": MOCK_MODELS[0], "last_id": MOCK_MODELS[-1]})


# -- Anthropic Messages ----------------------------------------------------------------------


def anthropic_message(a: Answer) -> bytes:
    """A non-streaming ``message`` body."""
    return _dumps(
        {
            "id": "msg_" + a.rid,
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [{"type": "text", "text": a.reply}],
            "stop_reason": "refusal" if a.filtered else "end_turn",
            "stop_sequence": None,
            "usage": a.tokens.anthropic_usage(),
        }
    )


def anthropic_stream(a: Answer) -> list[bytes]:
    """Messages streaming events, ``message_start`` to ``message_stop``.

    As on the real API, ``message_start`` carries the input usage with a placeholder
    ``output_tokens: 1``; the final count arrives in ``message_delta``.
    """

    def event(kind: str, payload: dict[str, Any]) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + _dumps({"type": kind, **payload}) + b"\n\n"

    usage = a.tokens.anthropic_usage()
    start_usage = {**usage, "output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    message: dict[str, Any] = {
        "id": "msg_" + a.rid,
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    events.extend(
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in split_deltas(a.reply)
    )
    delta_usage: dict[str, Any] = {"output_tokens": usage["output_tokens"]}
    if "output_tokens_details" in usage:
        delta_usage["output_tokens_details"] = usage["output_tokens_details"]
    stop = {"stop_reason": "refusal" if a.filtered else "end_turn", "stop_sequence": None}
    events.append(event("content_block_stop", {"index": 0}))
    events.append(event("message_delta", {"delta": stop, "usage": delta_usage}))
    events.append(event("message_stop", {}))
    return events


# -- errors and damage -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one fault looks on each provider: status, error type/code and message."""

    openai_status: int
    openai_type: str
    openai_code: str | None
    openai_param: str | None
    openai_message: str
    anthropic_status: int
    anthropic_type: str
    anthropic_message: str


# ``{tokens}`` in a message is filled with the request's prompt tokens.
ERRORS: dict[str, ErrorSpec] = {
    "rate_limit": ErrorSpec(
        429, "requests", "rate_limit_exceeded", None,
        "Rate limit reached for requests (mock upstream). Please try again later.",
        429, "rate_limit_error", "Number of requests has exceeded your rate limit (mock upstream).",
    ),
    "server_error": ErrorSpec(
        500, "server_error", None, None,
        "The server had an error while processing your request (mock upstream).",
        500, "api_error", "Internal server error (mock upstream).",
    ),
    "overloaded": ErrorSpec(
        503, "server_error", None, None,
        "The engine is currently overloaded, please try again later (mock upstream).",
        529, "overloaded_error", "Overloaded (mock upstream).",
    ),
    "context_length": ErrorSpec(
        400, "invalid_request_error", "context_length_exceeded", "messages",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "{tokens} tokens. Please reduce the length of the messages.",
        400, "invalid_request_error", "prompt is too long: {tokens} tokens > 200000 maximum",
    ),
    "content_filter": ErrorSpec(
        400, "invalid_request_error", "content_filter", "prompt",
        "The prompt was filtered due to triggering the content management policy (mock upstream).",
        400, "invalid_request_error", "Request blocked by the content_filter safety system (mock upstream).",
    ),
    "auth": ErrorSpec(
        401, "invalid_request_error", "invalid_api_key", None,
        "Incorrect API key provided (mock upstream).",
        401, "authentication_error", "invalid x-api-key (mock upstream)",
    ),
}  # fmt: skip


def openai_error(message: str, err_type: str, code: str | None = None, param: str | None = None) -> bytes:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return _dumps({"error": {"message": message, "type": err_type, "param": param, "code": code}})


def anthropic_error(err_type: str, message: str, request_id: str) -> bytes:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    return _dumps(
        {"type": "error", "error": {"type": err_type, "message": message}, "request_id": request_id}
    )


def break_event(event: bytes) -> bytes:
    """Cut an SSE event's JSON in half, keeping it a well-formed SSE event."""
    cut = event.index(b"data: ") + 6
    return event[: cut + (len(event) - cut) // 2] + b"\n\n"

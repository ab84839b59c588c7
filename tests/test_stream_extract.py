"""Stream extraction gives the same record from the SDKs' typed chunks as from raw JSON dicts.

The extractors have fast paths for typed objects and a generic path for dicts (raw responses,
other clients); both must agree field by field.
"""

from __future__ import annotations

from typing import Any

import pytest
from anthropic import types as at
from openai.types.chat import ChatCompletionChunk

from kansoku.instrument._anthropic import MessagesExtractor
from kansoku.instrument._openai_extract import ChatExtractor
from kansoku.model import LLMCall


def _chunk(
    choices: list[dict[str, Any]], usage: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    body.update(extra)
    return body


def _text(
    i: int, text: str | None = None, finish: str | None = None, role: str | None = None
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if text is not None:
        delta["content"] = text
    return {"index": i, "delta": delta, "finish_reason": finish}


def _tool(i: int, idx: int, name: str | None, args: str, call_id: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": idx, "function": {"arguments": args}}
    if name:
        call["function"]["name"] = name
        call["type"] = "function"
    if call_id:
        call["id"] = call_id
    return {"index": i, "delta": {"tool_calls": [call]}, "finish_reason": None}


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "total_tokens": 19,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}

OPENAI_STREAMS = [
    pytest.param(
        [
            _chunk([_text(0, "", role="assistant")]),
            *[_chunk([_text(0, w)]) for w in ("Hello", " there", "!")],
            _chunk([_text(0, finish="stop")]),
            _chunk([], USAGE),
        ],
        id="one-choice-with-usage",
    ),
    pytest.param(
        [
            _chunk([_text(0, "a", role="assistant"), _text(1, "b", role="assistant")]),
            _chunk([_text(1, "B"), _text(0, "A")]),
            _chunk([_text(0, finish="stop"), _text(1, finish="length")]),
        ],
        id="two-choices-no-usage",
    ),
    pytest.param(
        [
            _chunk([_text(0, None, role="assistant")]),
            _chunk([_tool(0, 0, "lookup", '{"q":', "call_1")]),
            _chunk([_tool(0, 0, None, ' "x"}')]),
            _chunk([_tool(0, 1, "other", "{}", "call_2")]),
            _chunk([_text(0, finish="tool_calls")], USAGE),
        ],
        id="tool-calls-usage-on-last-choice-chunk",
    ),
    pytest.param(
        [_chunk([_text(0, "only")], model="m-2"), _chunk([], None, model="m-3")],
        id="model-changes-and-empty-chunk",
    ),
]


def _llm_dict(llm: LLMCall) -> dict[str, Any]:
    return {name: getattr(llm, name) for name in LLMCall.__dataclass_fields__}


@pytest.mark.parametrize("chunks", OPENAI_STREAMS)
def test_openai_typed_and_dict_chunks_give_the_same_record(chunks: list[dict[str, Any]]) -> None:
    typed = [(1_000 + i * 1_000_000, ChatCompletionChunk.model_validate(c)) for i, c in enumerate(chunks)]
    raw = [(1_000 + i * 1_000_000, c) for i, c in enumerate(chunks)]
    a, b = LLMCall("openai"), LLMCall("openai")
    ChatExtractor("openai").stream(typed, 0, a)
    ChatExtractor("openai").stream(raw, 0, b)
    assert _llm_dict(a) == _llm_dict(b)
    assert a.text_out() is not None or a.output_messages is None


ANTHROPIC_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-haiku-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 3},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
]

_EVENT_TYPES: dict[str, Any] = {
    "message_start": at.RawMessageStartEvent,
    "content_block_start": at.RawContentBlockStartEvent,
    "content_block_delta": at.RawContentBlockDeltaEvent,
    "content_block_stop": at.RawContentBlockStopEvent,
    "message_delta": at.RawMessageDeltaEvent,
    "message_stop": at.RawMessageStopEvent,
}


def test_anthropic_typed_and_dict_events_give_the_same_record() -> None:
    typed = [
        (i * 1_000_000, _EVENT_TYPES[e["type"]].model_validate(e)) for i, e in enumerate(ANTHROPIC_EVENTS)
    ]
    raw = [(i * 1_000_000, e) for i, e in enumerate(ANTHROPIC_EVENTS)]
    a, b = LLMCall("anthropic"), LLMCall("anthropic")
    MessagesExtractor().stream(typed, 0, a)
    MessagesExtractor().stream(raw, 0, b)
    assert _llm_dict(a) == _llm_dict(b)
    assert a.text_out() == "Hi there"
    assert (a.input_tokens, a.cached_input_tokens, a.output_tokens) == (8, 3, 9)

"""OpenAI ⇄ Anthropic translation: requests, bodies, streams and errors, checked on the mock's
real wire formats (its payload functions, and a running MockUpstream over HTTP)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from kansoku.errors import KansokuError
from kansoku.gateway._anthropic import DEFAULT_MAX_TOKENS, TranslationError, to_anthropic_request
from kansoku.gateway._anthropic_stream import (
    AnthropicStreamError,
    AnthropicStreamTranslator,
    SseParser,
    error_from_anthropic,
    from_anthropic_response,
)
from kansoku.testing import MockUpstream
from kansoku.testing import _mock_payloads as p

PNG = "iVBORw0KGgo="


def req(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return to_anthropic_request(body, "claude-x")


def msgs(*messages: dict[str, Any]) -> dict[str, Any]:
    return req(messages=list(messages))


# -- requests ---------------------------------------------------------------------------------


def test_minimal_request_gets_the_deployment_model_and_the_default_max_tokens() -> None:
    assert req() == {
        "model": "claude-x",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_system_and_developer_messages_become_the_top_level_system() -> None:
    out = msgs(
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "bye"},
    )
    assert out["system"] == "Be brief.\n\nAnswer in French."
    assert out["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]


def test_system_cache_control_keeps_blocks() -> None:
    part = {"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}
    out = msgs({"role": "system", "content": [part]}, {"role": "user", "content": "hi"})
    assert out["system"] == [part]


def test_consecutive_same_role_turns_are_merged_and_empty_text_dropped() -> None:
    out = msgs(
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "three"},
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "three"},
    ]


def test_images_from_data_urls_and_http_urls() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    out = msgs({"role": "user", "content": content})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url", ["data:image/bmp;base64,Qk0=", "data:image/png,rawbytes", "ftp://example.com/a.png"]
)
def test_unusable_images_name_the_part(url: str) -> None:
    content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(TranslationError) as caught:
        msgs({"role": "user", "content": content})
    assert caught.value.param == "messages[0].content[1]"


def test_tool_calls_and_tool_results_round_a_conversation() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    call2 = {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}
    out = msgs(
        {"role": "user", "content": "weather and time in Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call, call2]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "10:00"}]},
        {"role": "user", "content": "thanks"},
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "12C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "10:00"}],
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_tool_results_come_first_in_their_user_turn() -> None:
    out = msgs(
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "c", "content": "done"},
    )
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(TranslationError) as caught:
        msgs({"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]})
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "weather"}}, None, {"type": "tool", "name": "weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tools_and_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    out = req(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert out["tools"] == [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert out.get("tool_choice") == expected


def test_a_tool_without_parameters_gets_an_empty_object_schema() -> None:
    out = req(tools=[{"type": "function", "function": {"name": "now"}}])
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice"),
    ],
)
def test_bad_tool_settings(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        req(**fields)
    assert caught.value.param == param


def test_sampling_stop_stream_and_user() -> None:
    out = req(temperature=0.2, top_p=0.9, stop="END", stream=True, user="u-42", seed=7, store=False)
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["stream"] is True
    assert out["metadata"] == {"user_id": "u-42"}
    assert "seed" not in out
    assert req(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in req(stop=[])


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert req(max_tokens=10)["max_tokens"] == 10
    assert req(max_tokens=10, max_completion_tokens=20)["max_tokens"] == 20


def test_neutral_and_null_values_of_unsupported_parameters_are_accepted() -> None:
    out = req(
        n=1, logprobs=False, presence_penalty=0, frequency_penalty=0.0, logit_bias={}, top_logprobs=None
    )
    assert out == req()
    assert req(response_format={"type": "text"}, temperature=None, functions=None) == req()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"no_such_parameter": 1}, "no_such_parameter"),
        ({"temperature": 1.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "9"}, "max_completion_tokens"),
        ({"stop": 5}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0]"),
    ],
)
def test_untranslatable_requests_raise_naming_the_param(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        req(**fields)
    assert caught.value.param == param
    assert isinstance(caught.value, KansokuError)
    assert str(caught.value).startswith(param + ": ")


# -- responses (from the mock's payload functions) -------------------------------------------


def answer(reply: str = "Mock reply to: hi there", *, filtered: bool = False) -> p.Answer:
    tokens = p.Tokens.build(prompt=20, reply=reply, cached=5, cache_creation=3, reasoning=4)
    return p.Answer("abc", 1_700_000_000, "claude-x", reply, tokens, filtered)


def usage_core(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """The usage figures both providers can express."""
    reasoning = usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0)
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"], cached, reasoning


def test_message_body_becomes_the_chat_completion_the_openai_side_would_send() -> None:
    a = answer()
    out = from_anthropic_response(orjson.loads(p.anthropic_message(a)), "chat", created=123)
    reference = orjson.loads(p.chat_completion(a))
    assert out["id"] == "msg_abc"
    assert (out["object"], out["created"], out["model"]) == ("chat.completion", 123, "chat")
    assert out["choices"][0]["message"]["content"] == reference["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop"
    # input 12 + cache read 5 + cache write 3 = 20 prompt tokens, 5 of them cached.
    assert usage_core(out["usage"]) == usage_core(reference["usage"]) == (20, 10, 30, 5, 4)


def test_refusal_maps_to_content_filter() -> None:
    out = from_anthropic_response(orjson.loads(p.anthropic_message(answer(filtered=True))), "chat")
    assert out["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    body = {"id": "m", "content": [], "stop_reason": stop_reason, "usage": {}}
    assert from_anthropic_response(body, "chat")["choices"][0]["finish_reason"] == finish


def test_tool_use_blocks_become_tool_calls_with_json_string_arguments() -> None:
    body: dict[str, Any] = {
        "id": "msg_1",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo", "days": 2}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 7, "output_tokens": 9},
    }
    out = from_anthropic_response(body, "chat")
    message = out["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo","days":2}'},
        }
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 7
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    tool_only = {"id": "m", "content": [body["content"][2]], "stop_reason": "tool_use", "usage": {}}
    assert from_anthropic_response(tool_only, "chat")["choices"][0]["message"]["content"] is None


# -- streams ----------------------------------------------------------------------------------


def parse_sse(raw: bytes, step: int) -> list[tuple[str, dict[str, Any]]]:
    """Feed ``raw`` to an SseParser ``step`` bytes at a time (cuts land mid-line and mid-UTF-8)."""
    parser = SseParser()
    events: list[tuple[str, str]] = []
    for start in range(0, len(raw), step):
        events.extend(parser.feed(raw[start : start + step]))
    return [(name, orjson.loads(data)) for name, data in events]


def translate(events: list[tuple[str, dict[str, Any]]], *, include_usage: bool) -> list[dict[str, Any]]:
    translator = AnthropicStreamTranslator("chat", include_usage=include_usage, created=123)
    chunks = [chunk for name, data in events for chunk in translator.feed(name, data)]
    assert translator.done
    return chunks


def reassemble(chunks: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None, list[str | None]]:
    """(text, usage, finish reasons) of an OpenAI chunk stream, as a client would collect them."""
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    usage = next((c["usage"] for c in chunks if c.get("usage")), None)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    return text, usage, finishes


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_mock_stream_reassembles_into_the_non_streamed_answer(step: int) -> None:
    a = answer("Mock reply to: hé, naïve “quotes” — done!")
    chunks = translate(parse_sse(b"".join(p.anthropic_stream(a)), step), include_usage=True)
    whole = from_anthropic_response(orjson.loads(p.anthropic_message(a)), "chat")
    text, usage, finishes = reassemble(chunks)
    assert text == whole["choices"][0]["message"]["content"] == a.reply
    assert usage == whole["usage"]
    assert finishes == [None] * (len(finishes) - 1) + ["stop"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == []
    assert all(c["usage"] is None for c in chunks[:-1])  # OpenAI marks every other chunk so
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("msg_abc", "chat.completion.chunk", 123, "chat")
    }


def test_without_include_usage_there_is_no_usage_chunk() -> None:
    a = answer(filtered=True)
    chunks = translate(parse_sse(b"".join(p.anthropic_stream(a)), 64), include_usage=False)
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert reassemble(chunks)[2][-1] == "content_filter"


def ev(kind: str, **payload: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **payload}


def tool_stream() -> list[tuple[str, dict[str, Any]]]:
    """A two-tool answer in Anthropic's documented event shapes (the mock streams text only)."""
    usage = {"input_tokens": 30, "cache_read_input_tokens": 0, "output_tokens": 1}
    start = {"id": "msg_t", "type": "message", "role": "assistant", "content": [], "usage": usage}
    weather = {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {}}
    clock = {"type": "tool_use", "id": "tu_2", "name": "time", "input": {}}

    def args(index: int, piece: str) -> tuple[str, dict[str, Any]]:
        return ev(
            "content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece}
        )

    return [
        ev("message_start", message=start),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Checking."}),
        ev("content_block_stop", index=0),
        ev("ping"),
        ev("content_block_start", index=1, content_block=weather),
        args(1, ""),  # Anthropic opens tool input with an empty fragment
        args(1, '{"city": "Os'),
        args(1, 'lo"}'),
        ev("content_block_stop", index=1),
        ev("content_block_start", index=2, content_block=clock),
        args(2, "{}"),
        ev("content_block_stop", index=2),
        ev("some_future_event", data=1),
        ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 25}),
        ev("message_stop"),
    ]


def test_tool_use_stream_gives_indexed_tool_call_deltas() -> None:
    chunks = translate(tool_stream(), include_usage=True)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            got = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            got["id"] += call.get("id") or ""
            got["name"] += call["function"].get("name") or ""
            got["arguments"] += call["function"].get("arguments") or ""
    assert calls == {
        0: {"id": "tu_1", "name": "weather", "arguments": '{"city": "Oslo"}'},
        1: {"id": "tu_2", "name": "time", "arguments": "{}"},
    }
    text, usage, finishes = reassemble(chunks)
    assert text == "Checking."
    assert finishes[-1] == "tool_calls"
    assert usage is not None
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (30, 25, 55)


def test_ping_and_unknown_events_give_nothing_and_a_missing_message_delta_still_finishes() -> None:
    translator = AnthropicStreamTranslator("chat")
    assert translator.feed("ping", {"type": "ping"}) == []
    assert translator.feed("brand_new", {"type": "brand_new"}) == []
    last = translator.feed("message_stop", {"type": "message_stop"})
    assert [c["choices"][0]["finish_reason"] for c in last] == ["stop"]


@pytest.mark.parametrize(
    ("err_type", "status", "code"),
    [
        ("overloaded_error", 503, "overloaded_error"),
        ("api_error", 500, "api_error"),
        ("rate_limit_error", 429, "rate_limit_exceeded"),
    ],
)
def test_error_event_raises_with_the_openai_error(err_type: str, status: int, code: str) -> None:
    translator = AnthropicStreamTranslator("chat")
    translator.feed(*tool_stream()[0])
    with pytest.raises(AnthropicStreamError) as caught:
        translator.feed(*ev("error", error={"type": err_type, "message": "Overloaded"}))
    assert caught.value.status == status
    assert caught.value.body["error"]["code"] == code
    assert caught.value.body["error"]["message"] == "Overloaded"


def test_sse_parser_handles_crlf_comments_multiline_data_and_unfinished_events() -> None:
    parser = SseParser()
    raw = b": keep-alive\r\nevent: a\r\ndata: 1\r\ndata:2\r\nid: 9\r\n\r\ndata: x\n\nevent: b\ndata: {"
    assert parser.feed(raw) == [("a", "1\n2"), ("message", "x")]
    assert parser.feed(b"}\n") == []
    assert parser.feed(b"\n") == [("b", "{}")]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "err_type", "code", "param"),
    [
        ("context_length", 400, "invalid_request_error", "context_length_exceeded", "messages"),
        ("content_filter", 400, "invalid_request_error", "content_filter", "prompt"),
        ("auth", 401, "invalid_request_error", "authentication_error", None),
        ("rate_limit", 429, "invalid_request_error", "rate_limit_exceeded", None),
        ("server_error", 500, "server_error", "api_error", None),
        ("overloaded", 503, "server_error", "overloaded_error", None),
    ],
)
def test_mock_error_bodies_map_to_openai_errors(
    fault: str, status: int, err_type: str, code: str, param: str | None
) -> None:
    spec = p.ERRORS[fault]
    message = spec.anthropic_message.format(tokens=250_000)
    got_status, body = error_from_anthropic(
        spec.anthropic_status, p.anthropic_error(spec.anthropic_type, message, "req_1")
    )
    assert got_status == status == spec.openai_status  # the same status the OpenAI side gives
    assert body == {"error": {"message": message, "type": err_type, "param": param, "code": code}}


@pytest.mark.parametrize("raw", [b"<html>Bad gateway</html>", b"", b'{"error": "flat"}', b"[1]"])
def test_bodies_that_are_not_anthropic_errors_get_a_generic_message(raw: bytes) -> None:
    status, body = error_from_anthropic(502, raw)
    assert status == 502
    assert body["error"]["type"] == "server_error"
    assert body["error"]["code"] is None
    assert "502" in body["error"]["message"]


# -- end to end against a running MockUpstream ------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with MockUpstream(cached_tokens=4, cache_creation_tokens=2, reasoning_tokens=3) as up:
        yield up


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 -- loopback mock, http by construction
        url,
        data=orjson.dumps(body),
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


CHAT = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of Norway, please?"},
    ],
    "max_tokens": 50,
}


@pytest.mark.parametrize("stream", [False, True])
def test_live_anthropic_answers_match_the_openai_route_of_the_same_mock(
    upstream: MockUpstream, stream: bool
) -> None:
    openai_status, openai_raw = post(upstream.openai_base_url + "/chat/completions", CHAT)
    anthropic_body = to_anthropic_request({**CHAT, "stream": stream}, "mock-model")
    status, raw = post(upstream.anthropic_base_url + "/v1/messages", anthropic_body)
    assert status == openai_status == 200
    reference = orjson.loads(openai_raw)
    if stream:
        text, usage, _ = reassemble(translate(parse_sse(raw, 13), include_usage=True))
    else:
        out = from_anthropic_response(orjson.loads(raw), "chat")
        text, usage = out["choices"][0]["message"]["content"], out["usage"]
    assert text == reference["choices"][0]["message"]["content"]
    assert usage is not None
    assert usage_core(usage) == usage_core(reference["usage"])


@pytest.mark.parametrize(
    "fault", ["rate_limit", "auth", "context_length", "content_filter", "server_error", "overloaded"]
)
def test_live_anthropic_errors_match_the_openai_route(upstream: MockUpstream, fault: str) -> None:
    headers = {"x-mock-fault": fault}
    openai_status, openai_raw = post(upstream.openai_base_url + "/chat/completions", CHAT, headers)
    raw_status, raw = post(
        upstream.anthropic_base_url + "/v1/messages", to_anthropic_request(CHAT, "m"), headers
    )
    status, body = error_from_anthropic(raw_status, raw)
    reference = orjson.loads(openai_raw)["error"]
    assert status == openai_status
    if fault in ("context_length", "content_filter"):
        assert (body["error"]["code"], body["error"]["param"]) == (reference["code"], reference["param"])

"""GenAI and OpenInference mappings, both ways, and the single ingest entry ``span_from_otel``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.model._genai import genai_attributes_to_span_fields, genai_span_name, span_to_genai_attributes
from kansoku.model._ingest import span_from_otel
from kansoku.model._openinference import (
    openinference_attributes_to_span_fields,
    span_to_openinference_attributes,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
PARENT = "00f067aa0ba902b7"
T0 = 1_700_000_000_000_000_000

ToAttributes = Callable[[Span], dict[str, Any]]


def llm_span(**llm_overrides: Any) -> Span:
    llm = LLMCall(
        provider="openai",
        operation="chat",
        model="gpt-4o-2024-08-06",
        request_model="gpt-4o",
        temperature=0.2,
        parameters={"max_tokens": 256, "top_p": 0.9, "stop": ["END"], "seed": -7},
        input_messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather in Tokyo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Tokyo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
        ],
        output_messages=[{"role": "assistant", "content": "Sunny and 21C."}],
        input_tokens=120,
        output_tokens=8,
        cached_input_tokens=64,
        reasoning_tokens=3,
        total_tokens=128,
        usage_estimated=True,
        cost_usd=0.00042,
        ttft_ms=180.5,
        finish_reasons=["stop"],
        response_id="chatcmpl-123",
        stream=True,
    )
    for key, value in llm_overrides.items():
        setattr(llm, key, value)
    return Span(
        trace_id=TRACE,
        span_id=SPAN,
        parent_span_id=PARENT,
        name="chat gpt-4o",
        kind="client",
        start_ns=T0,
        end_ns=T0 + 1_250_000_000,
        status="error",
        status_code=429,
        error_type="rate_limit",
        error_message="Rate limit reached",
        service="checkout",
        environment="prod",
        region="ap-northeast-1",
        user_id="user-42",
        context_id="conv-7",
        prompt_id="weather-answer",
        prompt_version="3",
        tags={"team": "search", "tier": "gold"},
        attributes={"server.address": "api.openai.com", "retries": 1},
        events=[SpanEvent("retry", T0 + 500_000_000, {"attempt": 1})],
        llm=llm,
    )


def rebuild(span: Span, attrs: dict[str, Any]) -> Span:
    """What the collector does: the span's OTLP fields plus the attribute mapping."""
    resource = {"service.name": span.service, "deployment.environment.name": span.environment}
    return span_from_otel(
        span.name, span.trace_id, span.span_id, span.parent_span_id, span.kind, span.start_ns, span.end_ns,
        span.status, span.error_message, attrs, span.events, resource,
    )  # fmt: skip


@pytest.mark.parametrize(
    "to_attributes",
    [
        pytest.param(span_to_genai_attributes, id="genai"),
        pytest.param(span_to_openinference_attributes, id="openinference"),
    ],
)
@pytest.mark.parametrize(
    "span",
    [
        pytest.param(llm_span(), id="chat-with-tools"),
        pytest.param(
            llm_span(
                operation="embeddings",
                input_messages=None,
                output_messages=None,
                input_text="a sentence to embed",
                output_tokens=None,
                reasoning_tokens=None,
                cached_input_tokens=None,
                total_tokens=120,
                finish_reasons=None,
                stream=False,
                temperature=None,
                parameters={"dimensions": 256, "encoding_format": "float"},
            ),
            id="embedding",
        ),
        pytest.param(llm_span(finish_reasons=["stop", "length"], stream=False), id="two-finish-reasons"),
    ],
)
def test_round_trip_keeps_every_record_field(span: Span, to_attributes: ToAttributes) -> None:
    rebuilt = rebuild(span, to_attributes(span))
    assert rebuilt.to_record() == span.to_record()


def test_openinference_carries_texts_beside_messages() -> None:
    span = llm_span(input_text="What is the weather?", output_text="Sunny.")
    assert rebuild(span, span_to_openinference_attributes(span)).to_record() == span.to_record()


def test_genai_drops_flat_texts_when_messages_are_present() -> None:
    # By design: the messages are the content; kansoku.input_text/output_text would duplicate them.
    span = llm_span(input_text="What is the weather?", output_text="Sunny.")
    attrs = span_to_genai_attributes(span)
    assert "kansoku.input_text" not in attrs
    assert "kansoku.output_text" not in attrs
    rebuilt = rebuild(span, attrs)
    assert rebuilt.llm is not None
    assert span.llm is not None
    assert (rebuilt.llm.input_text, rebuilt.llm.output_text) == (None, None)
    assert rebuilt.llm.input_messages == span.llm.input_messages


def test_round_trip_plain_span_genai() -> None:
    span = Span(TRACE, SPAN, "retrieve", T0, T0 + 10, user_id="u", context_id="c", tags={"k": "v"})
    rebuilt = rebuild(span, span_to_genai_attributes(span))
    assert rebuilt.llm is None
    assert rebuilt.to_record() == span.to_record()


def test_plain_span_openinference_gets_a_kind() -> None:
    span = Span(TRACE, SPAN, "retrieve", T0, T0 + 10, context_id="c")
    attrs = span_to_openinference_attributes(span)
    assert attrs["openinference.span.kind"] == "CHAIN"
    rebuilt = rebuild(span, attrs)
    assert rebuilt.llm is None
    assert rebuilt.context_id == "c"


def test_genai_attribute_names_follow_current_conventions() -> None:
    attrs = span_to_genai_attributes(llm_span())
    assert attrs["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in attrs
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.max_tokens"] == 256
    assert attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.stop_sequences"] == ["END"]
    assert attrs["gen_ai.usage.input_tokens"] == 120
    assert attrs["gen_ai.usage.output_tokens"] == 8
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 64
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.response.id"] == "chatcmpl-123"
    assert attrs["gen_ai.conversation.id"] == "conv-7"
    assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.1805)
    assert attrs["error.type"] == "rate_limit"
    assert attrs["user.id"] == attrs["kansoku.user.id"] == "user-42"
    assert attrs["kansoku.cost_usd"] == 0.00042
    assert attrs["kansoku.prompt.id"] == "weather-answer"
    assert attrs["kansoku.prompt.version"] == "3"
    assert attrs["kansoku.tag.team"] == "search"
    assert attrs["kansoku.status_code"] == 429
    assert attrs["kansoku.usage_estimated"] is True
    assert attrs["server.address"] == "api.openai.com"
    # Messages are present, so the flat texts are not duplicated.
    assert "kansoku.input_text" not in attrs
    assert "kansoku.parameters" not in attrs  # every parameter has a standard attribute
    messages = json.loads(str(attrs["gen_ai.input.messages"]))
    assert messages[1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "What is the weather in Tokyo?"}],
    }
    assert messages[2]["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": '{"city":"Tokyo"}'}
    ]
    assert messages[3] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny, 21C"}],
    }
    output = json.loads(str(attrs["gen_ai.output.messages"]))
    assert output == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Sunny and 21C."}],
            "finish_reason": "stop",
        }
    ]


def test_openinference_attribute_names() -> None:
    attrs = span_to_openinference_attributes(llm_span())
    assert attrs["openinference.span.kind"] == "LLM"
    assert attrs["llm.model_name"] == "gpt-4o-2024-08-06"
    assert attrs["llm.provider"] == "openai"
    assert attrs["llm.system"] == "openai"
    assert json.loads(str(attrs["llm.invocation_parameters"]))["temperature"] == 0.2
    assert attrs["llm.input_messages.1.message.role"] == "user"
    assert attrs["llm.input_messages.1.message.content"] == "What is the weather in Tokyo?"
    assert attrs["llm.input_messages.2.message.tool_calls.0.tool_call.function.name"] == "weather"
    assert attrs["llm.input_messages.3.message.tool_call_id"] == "call_1"
    assert attrs["llm.output_messages.0.message.content"] == "Sunny and 21C."
    assert attrs["llm.token_count.prompt"] == 120
    assert attrs["llm.token_count.completion"] == 8
    assert attrs["llm.token_count.total"] == 128
    assert attrs["llm.token_count.prompt_details.cache_read"] == 64
    assert attrs["llm.token_count.completion_details.reasoning"] == 3
    assert attrs["session.id"] == "conv-7"
    assert attrs["user.id"] == "user-42"
    assert attrs["llm.prompt_template.version"] == "3"
    assert json.loads(str(attrs["metadata"])) == {"team": "search", "tier": "gold"}
    assert attrs["input.mime_type"] == "application/json"


def test_parameters_without_standard_attributes_travel_whole() -> None:
    span = llm_span(parameters={"max_completion_tokens": 50, "response_format": {"type": "json_object"}})
    attrs = span_to_genai_attributes(span)
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert json.loads(str(attrs["kansoku.parameters"]))["response_format"] == {"type": "json_object"}
    assert rebuild(span, attrs).to_record() == span.to_record()


def test_openllmetry_indexed_prompt_and_completion() -> None:
    attrs = {
        "gen_ai.system": "OpenAI",
        "llm.request.type": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "You are terse.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Hi",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Hello.",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.completion.0.tool_calls.0.name": "lookup",
        "gen_ai.completion.0.tool_calls.0.arguments": "{}",
        "gen_ai.usage.prompt_tokens": 12,
        "gen_ai.usage.completion_tokens": 3,
        "llm.usage.total_tokens": 15,
        "llm.is_streaming": False,
    }
    span = span_from_otel("openai.chat", TRACE, SPAN, None, 3, T0, T0 + 5, 0, None, attrs)
    assert span.llm is not None
    llm = span.llm
    assert (llm.provider, llm.operation) == ("OpenAI", "chat")
    assert (llm.request_model, llm.model) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert llm.input_messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
    ]
    assert llm.output_messages is not None
    assert llm.output_messages[0]["content"] == "Hello."
    assert llm.output_messages[0]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": "{}"}
    assert llm.finish_reasons == ["stop"]
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (12, 3, 15)
    assert llm.cached_input_tokens is None
    assert llm.reasoning_tokens is None
    assert span.kind == "client"
    assert span.attributes == {}


@pytest.mark.parametrize(
    ("prompt", "expected_messages", "expected_text"),
    [
        pytest.param(
            json.dumps([{"role": "user", "content": "Hi"}]),
            [{"role": "user", "content": "Hi"}],
            None,
            id="json",
        ),
        pytest.param("Complete this: once upon", None, "Complete this: once upon", id="text"),
    ],
)
def test_old_gen_ai_prompt_and_completion_strings(
    prompt: str, expected_messages: list[dict[str, Any]] | None, expected_text: str | None
) -> None:
    attrs = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku",
        "gen_ai.prompt": prompt,
        "gen_ai.completion": "a time",
    }
    fields = genai_attributes_to_span_fields(attrs)
    assert fields.llm is not None
    assert fields.llm.get("input_messages") == expected_messages
    assert fields.llm.get("input_text") == expected_text
    assert fields.llm["output_text"] == "a time"
    assert fields.attributes == {}


def test_content_on_old_style_events_is_read() -> None:
    events = [
        SpanEvent(
            "gen_ai.content.prompt", T0, {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Q"}])}
        ),
        SpanEvent("gen_ai.content.completion", T0 + 1, {"gen_ai.completion": "A"}),
    ]
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai"}
    span = span_from_otel("chat", TRACE, SPAN, None, 3, T0, T0 + 5, 0, None, attrs, events)
    assert span.llm is not None
    assert span.llm.input_messages == [{"role": "user", "content": "Q"}]
    assert span.llm.output_text == "A"
    assert len(span.events) == 2


def test_system_instructions_become_a_system_message() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be kind."}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
    }
    fields = genai_attributes_to_span_fields(attrs)
    assert fields.llm is not None
    assert fields.llm["input_messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]


def test_absent_counts_stay_none_and_bad_types_are_kept() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": "lots",
        "gen_ai.usage.output_tokens": -3,
        "gen_ai.request.temperature": [1, 2],
        "gen_ai.input.messages": "{not json",
        "gen_ai.response.finish_reasons": 5,
        "kansoku.cost_usd": "free",
        "user.id": 12345,
    }
    span = span_from_otel("chat", TRACE, SPAN, None, 3, T0, T0 + 5, 0, None, attrs)
    assert span.llm is not None
    llm = span.llm
    assert llm.input_tokens is None
    assert llm.output_tokens is None
    assert llm.total_tokens is None
    assert llm.cached_input_tokens is None
    assert llm.temperature is None
    assert llm.input_messages is None
    assert llm.cost_usd is None
    assert span.user_id is None
    for key in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.request.temperature",
        "gen_ai.input.messages",
        "gen_ai.response.finish_reasons",
        "kansoku.cost_usd",
        "user.id",
    ):
        assert span.attributes[key] == attrs[key]


def test_non_model_genai_operations_are_plain_spans() -> None:
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "weather",
        "gen_ai.usage.input_tokens": 5,
    }
    span = span_from_otel("execute_tool weather", TRACE, SPAN, PARENT, 1, T0, T0 + 5, 1, None, attrs)
    assert span.llm is None
    assert span.status == "ok"
    assert span.attributes == attrs


def test_openinference_chain_span_keeps_its_kind_and_values() -> None:
    attrs = {
        "openinference.span.kind": "CHAIN",
        "input.value": "question",
        "output.value": "answer",
        "session.id": "s1",
        "tag.tags": ["shopping", "travel"],
        "metadata": json.dumps({"experiment": "b", "n": 2}),
    }
    span = span_from_otel("chain", TRACE, SPAN, None, 1, T0, T0 + 5, 0, None, attrs)
    assert span.llm is None
    assert span.context_id == "s1"
    assert span.tags == {"experiment": "b", "n": "2", "shopping": "true", "travel": "true"}
    assert span.attributes == {
        "openinference.span.kind": "CHAIN",
        "input.value": "question",
        "output.value": "answer",
    }


def test_openinference_llm_from_a_third_party_instrumentation() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.provider": "azure",
        "llm.model_name": "gpt-4o-2024-08-06",
        "llm.invocation_parameters": json.dumps({"temperature": 0, "max_tokens": 10}),
        "input.value": json.dumps(request),
        "input.mime_type": "application/json",
        "output.value": "Hello!",
        "llm.token_count.prompt": 9,
        "llm.token_count.completion": 2,
        "user.id": "u9",
    }
    span = span_from_otel("ChatCompletion", TRACE, SPAN, None, 0, T0, T0 + 5, 0, None, attrs)
    assert span.llm is not None
    llm = span.llm
    assert llm.provider == "azure"
    assert llm.model == "gpt-4o-2024-08-06"
    assert llm.temperature == 0.0
    assert llm.parameters == {"max_tokens": 10}
    assert llm.input_messages == [{"role": "user", "content": "Hi"}]
    assert llm.output_text == "Hello!"
    assert llm.total_tokens == 11
    assert span.user_id == "u9"
    assert span.attributes == {"llm.system": "openai"}


def test_genai_takes_precedence_when_both_conventions_are_present() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 10,
        "openinference.span.kind": "LLM",
        "llm.token_count.prompt": 11,
        "llm.token_count.completion": 4,
    }
    span = span_from_otel("chat", TRACE, SPAN, None, 3, T0, T0 + 5, 0, None, attrs)
    assert span.llm is not None
    assert span.llm.input_tokens == 10
    assert span.llm.output_tokens == 4  # filled from OpenInference where GenAI was silent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("rate_limit", "rate_limit"),
        ("RateLimitError", "rate_limit"),
        ("openai.APITimeoutError", "timeout"),
        ("AuthenticationError", "auth"),
        ("503", "server_error"),
        ("SomethingOdd", "unknown"),
    ],
)
def test_foreign_error_types_map_onto_the_taxonomy(raw: str, expected: str) -> None:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "error.type": raw}
    span = span_from_otel("chat", TRACE, SPAN, None, 3, T0, T0 + 5, 0, None, attrs)
    assert span.status == "error"  # error.type alone marks the span failed
    assert span.error_type == expected
    # A foreign value keeps its detail in the attributes.
    assert span.attributes.get("error.type") == (None if raw == expected else raw)


def test_error_message_and_type_from_the_exception_event() -> None:
    events = [
        SpanEvent(
            "exception", T0 + 1, {"exception.type": "httpx.ConnectError", "exception.message": "refused"}
        )
    ]
    span = span_from_otel("x", TRACE, SPAN, None, 1, T0, T0 + 5, "STATUS_CODE_ERROR", "", {}, events)
    assert span.status == "error"
    assert span.error_message == "refused"
    assert span.error_type == "connection"


def test_resource_attributes_fill_service_environment_region() -> None:
    resource = {"service.name": "api", "deployment.environment": "staging", "cloud.region": "us-east-1"}
    span = span_from_otel("x", TRACE, SPAN, None, "SPAN_KIND_SERVER", T0, T0 + 5, 0, None, {}, (), resource)
    assert (span.service, span.environment, span.region, span.kind) == (
        "api",
        "staging",
        "us-east-1",
        "server",
    )


def test_ids_accept_bytes_and_reject_garbage() -> None:
    span = span_from_otel(
        "x", bytes.fromhex(TRACE), bytes.fromhex(SPAN), bytes(8), 1, T0, T0 - 5, 0, None, {}
    )
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, SPAN, None)
    assert span.end_ns == span.start_ns  # an end before the start is clamped, not negative
    with pytest.raises(ValueError, match="trace_id"):
        span_from_otel("x", "xyz", SPAN, None, 1, T0, T0, 0, None, {})
    with pytest.raises(ValueError, match="span_id"):
        span_from_otel("x", TRACE, bytes(8), None, 1, T0, T0, 0, None, {})


def test_openinference_fields_function_reads_kansoku_attributes_too() -> None:
    fields = openinference_attributes_to_span_fields(span_to_openinference_attributes(llm_span()))
    assert fields.llm is not None
    assert fields.llm["response_id"] == "chatcmpl-123"
    assert fields.llm["usage_estimated"] is True
    assert fields.span["status_code"] == 429
    assert fields.span["prompt_id"] == "weather-answer"


def test_span_name_convention() -> None:
    assert genai_span_name("chat", "gpt-4o") == "chat gpt-4o"
    assert genai_span_name("embeddings", None) == "embeddings"
    span = span_from_otel(
        "",
        TRACE,
        SPAN,
        None,
        3,
        T0,
        T0,
        0,
        None,
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"},
    )
    assert span.name == "chat m"


def test_anthropic_shaped_content_is_understood_on_export() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
    ]
    attrs = span_to_genai_attributes(llm_span(input_messages=messages))
    parts = [m["parts"] for m in json.loads(str(attrs["gen_ai.input.messages"]))]
    assert parts[0] == [
        {"type": "text", "content": "Look"},
        {"type": "uri", "modality": "image", "uri": "https://x/y.png"},
    ]
    assert parts[1] == [{"type": "tool_call", "id": "t1", "name": "f", "arguments": {"a": 1}}]
    oi = span_to_openinference_attributes(llm_span(input_messages=messages))
    assert oi["llm.input_messages.0.message.contents.1.message_content.image.image.url"] == "https://x/y.png"
    assert oi["llm.input_messages.1.message.tool_calls.0.tool_call.function.arguments"] == '{"a":1}'

"""Acceptance: the real ``openai`` SDK, pointed at the gateway, works unchanged.

Chat (streamed and not) against an OpenAI-style and an Anthropic-style deployment of the mock
upstream, embeddings against an OpenAI-style one, ``/v1/models``, the async client; what the
gateway records for each (model, tokens, cost, time to first token, the per-attempt spans), the
client's ``traceparent`` carried through to the record and to the upstream, and a
``validate:`` route that re-asks on a non-JSON answer before answering with its template.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from helpers.gateway import Launch, RunningGateway
from kansoku.model import Span
from kansoku.pricing import PriceCatalog
from kansoku.testing import MockUpstream

PROVIDERS = ["openai_compatible", "anthropic"]
UPSTREAM_MODEL = {"openai_compatible": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022"}
UPSTREAM_PATH = {"openai_compatible": "/v1/chat/completions", "anthropic": "/v1/messages"}
TEMPLATE = '{"answer": "unavailable"}'
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _base(up: MockUpstream, provider: str) -> str:
    return up.openai_base_url if provider == "openai_compatible" else up.anthropic_base_url


def config(up: MockUpstream) -> str:
    return f"""
models:
  - name: chat-openai_compatible
    deployments:
      - provider: openai_compatible
        model: {UPSTREAM_MODEL["openai_compatible"]}
        api_base: {up.openai_base_url}
        api_key: sk-provider-openai-0123456789
  - name: chat-anthropic
    deployments:
      - provider: anthropic
        model: {UPSTREAM_MODEL["anthropic"]}
        api_base: {up.anthropic_base_url}
        api_key: sk-ant-provider-0123456789
  - name: embed
    deployments:
      - provider: openai_compatible
        model: text-embedding-3-small
        api_base: {up.openai_base_url}
  - name: structured
    retry: {{attempts: 1}}
    fallback_response: '{TEMPLATE}'
    validate:
      reask: 1
      json_schema:
        type: object
        required: [answer]
        properties:
          answer: {{type: string}}
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {up.openai_base_url}
"""


@pytest.fixture
def gw(launch: Launch, upstream: MockUpstream) -> RunningGateway:
    return launch(config(upstream))


@pytest.fixture
def sdk(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=30) as c:
        yield c


def output_text(record: Span) -> str | None:
    text = record.to_record()["output_text"]
    assert text is None or isinstance(text, str)
    return text


def settled(gw: RunningGateway) -> list[Span]:
    """The records once every request has finished (a stream's record follows its last byte)."""
    deadline = time.monotonic() + 5
    while gw.gateway.inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    return gw.records()


def attempts_of(gw: RunningGateway, record: Span) -> list[Span]:
    return [s for s in gw.flush() if s.kind == "client" and s.parent_span_id == record.span_id]


def expected_cost(provider: str, model: str, prompt: int, completion: int) -> float:
    from kansoku.model import LLMCall

    call = LLMCall(
        provider=provider, operation="chat", model=model, input_tokens=prompt, output_tokens=completion
    )
    cost = PriceCatalog.default().cost(call, time.time_ns())
    assert cost is not None
    assert cost > 0
    return cost


# -- chat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_answers_through_the_sdk_and_is_recorded(
    sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream, provider: str
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=f"chat-{provider}", messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "Mock reply to: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 6)
    assert completion.usage.total_tokens == 8
    # The provider spoke its own wire format, with the gateway's key, not the client's.
    sent = upstream.requests[-1]
    assert sent.path == UPSTREAM_PATH[provider]
    assert "unused" not in json.dumps(sent.headers)
    deployment = f"{provider}/{UPSTREAM_MODEL[provider]}@default#0"
    assert raw.headers["x-kansoku-deployment"] == deployment
    assert raw.headers["x-kansoku-attempts"] == "1"
    trace_id = raw.headers["x-kansoku-trace-id"]
    assert len(trace_id) == 32
    assert int(trace_id, 16)

    [record] = settled(gw)
    assert record.trace_id == trace_id
    assert record.status == "ok"
    assert record.status_code == 200
    assert record.attributes["kansoku.gateway.deployment"] == deployment
    assert record.attributes["kansoku.gateway.outcome"] == "ok"
    llm = record.llm
    assert llm is not None
    assert llm.model == UPSTREAM_MODEL[provider]
    assert llm.request_model == f"chat-{provider}"
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (2, 6, 8)
    assert llm.cost_usd == pytest.approx(
        expected_cost("anthropic" if provider == "anthropic" else "openai", UPSTREAM_MODEL[provider], 2, 6)
    )
    assert output_text(record) == "Mock reply to: hello there"
    assert llm.stream is False
    assert llm.ttft_ms is None
    [attempt] = attempts_of(gw, record)
    assert attempt.trace_id == trace_id
    assert attempt.status == "ok"
    assert attempt.attributes["kansoku.gateway.deployment"] == deployment
    assert attempt.attributes["kansoku.gateway.attempt"] == 1
    # The upstream call carries the attempt's span as its parent.
    assert sent.headers["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("usage_wanted", [False, True], ids=["no-usage", "include-usage"])
def test_streamed_chat_arrives_incrementally(
    sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream, provider: str, usage_wanted: bool
) -> None:
    upstream.stream_interval_ms = 25
    prompt = "tell me one two three four five"
    started = time.monotonic()
    stream = sdk.chat.completions.create(
        model=f"chat-{provider}",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": usage_wanted},
    )
    pieces: list[tuple[float, str]] = []
    usage_chunks = []
    finish = None
    for chunk in stream:
        if chunk.usage is not None:
            usage_chunks.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append((time.monotonic() - started, choice.delta.content))
            finish = choice.finish_reason or finish

    text = "".join(p for _, p in pieces)
    assert text == f"Mock reply to: {prompt}"
    assert finish == "stop"
    assert len(pieces) >= 8
    # Passed through as they come: the first words arrive long before the last.
    first, last = pieces[0][0], pieces[-1][0]
    assert last - first >= 0.1, pieces
    # Usage reaches the client only when it asked; the record has it either way.
    if usage_wanted:
        [usage] = usage_chunks
        assert (usage.prompt_tokens, usage.completion_tokens) == (7, 11)
    else:
        assert usage_chunks == []
    [record] = settled(gw)
    llm = record.llm
    assert llm is not None
    assert llm.stream is True
    assert (llm.input_tokens, llm.output_tokens) == (7, 11)
    assert llm.cost_usd is not None
    assert llm.cost_usd > 0
    assert output_text(record) == text
    assert llm.model == UPSTREAM_MODEL[provider]
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < (record.end_ns - record.start_ns) / 1e6 - 100
    [attempt] = attempts_of(gw, record)
    assert attempt.attributes["kansoku.gateway.deployment"] == record.attributes["kansoku.gateway.deployment"]


# -- embeddings, models, traces -------------------------------------------------------------------


def test_embeddings_through_the_sdk(sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream) -> None:
    raw = sdk.embeddings.with_raw_response.create(model="embed", input=["first text", "second"])
    result = raw.parse()

    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 3
    assert upstream.requests[-1].path == "/v1/embeddings"
    assert upstream.requests[-1].json["model"] == "text-embedding-3-small"
    assert raw.headers["x-kansoku-deployment"] == "openai_compatible/text-embedding-3-small@default#0"
    [record] = settled(gw)
    assert record.trace_id == raw.headers["x-kansoku-trace-id"]
    llm = record.llm
    assert llm is not None
    assert llm.operation == "embeddings"
    assert (llm.model, llm.request_model, llm.input_tokens) == ("text-embedding-3-small", "embed", 3)
    assert llm.cost_usd is not None
    assert llm.cost_usd > 0
    assert len(attempts_of(gw, record)) == 1


def test_models_lists_the_configured_names(sdk: openai.OpenAI) -> None:
    names = [m.id for m in sdk.models.list()]
    assert names == ["chat-openai_compatible", "chat-anthropic", "embed", "structured"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_client_traceparent_is_continued(
    sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream, provider: str, stream: bool
) -> None:
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    create = sdk.chat.completions.with_raw_response.create
    if stream:
        raw_stream = create(
            model=f"chat-{provider}",
            messages=messages,
            stream=True,
            extra_headers={"traceparent": traceparent},
        )
        chunks = list(raw_stream.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock reply to: hi"
        headers = raw_stream.headers
    else:
        raw = create(model=f"chat-{provider}", messages=messages, extra_headers={"traceparent": traceparent})
        assert raw.parse().choices[0].message.content == "Mock reply to: hi"
        headers = raw.headers

    assert headers["x-kansoku-trace-id"] == CLIENT_TRACE
    [record] = settled(gw)
    assert record.trace_id == CLIENT_TRACE
    assert record.parent_span_id == CLIENT_SPAN
    assert record.span_id != CLIENT_SPAN
    [attempt] = attempts_of(gw, record)
    assert attempt.trace_id == CLIENT_TRACE
    sent = upstream.requests[-1].headers["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"


def test_async_client_works_unchanged(gw: RunningGateway) -> None:
    async def calls() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as ac:
            plain = await ac.chat.completions.create(
                model="chat-anthropic", messages=[{"role": "user", "content": "async one"}]
            )
            stream = await ac.chat.completions.create(
                model="chat-openai_compatible",
                messages=[{"role": "user", "content": "async two"}],
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(calls())
    assert plain == "Mock reply to: async one"
    assert streamed == "Mock reply to: async two"
    records = settled(gw)
    assert sorted(r.llm.request_model or "" for r in records if r.llm) == [
        "chat-anthropic",
        "chat-openai_compatible",
    ]


# -- validation ---------------------------------------------------------------------------------


def test_invalid_json_is_reasked_then_answered_by_the_template(
    sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream
) -> None:
    upstream.reply = "Sure! The answer is forty-two."
    raw = sdk.chat.completions.with_raw_response.create(
        model="structured", messages=[{"role": "user", "content": "answer in JSON"}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == TEMPLATE
    assert raw.headers["x-kansoku-fallback"] == "template"
    assert raw.headers["x-kansoku-deployment"] == "template"
    # One call and one re-ask, which shows the model its answer and what was wrong with it.
    assert upstream.request_count == 2
    reask = upstream.requests[-1].json["messages"]
    assert reask[0] == {"role": "user", "content": "answer in JSON"}
    assert any(m.get("content") == "Sure! The answer is forty-two." for m in reask[1:])
    assert len(reask) > 2
    [record] = settled(gw)
    assert record.attributes["kansoku.gateway.outcome"] == "template"
    assert record.attributes["kansoku.gateway.template"] is True
    assert output_text(record) == TEMPLATE
    first, again = sorted(attempts_of(gw, record), key=lambda s: s.start_ns)
    assert first.attributes["kansoku.gateway.validation"].startswith("invalid")
    assert again.attributes["kansoku.gateway.reask"] == 1
    assert again.status == "error"
    assert again.error_type == "invalid_output"
    assert first.parent_span_id == again.parent_span_id == record.span_id


def test_template_after_paid_calls_still_records_their_tokens_and_cost(
    sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream
) -> None:
    upstream.reply = "not JSON"
    sdk.chat.completions.create(model="structured", messages=[{"role": "user", "content": "answer"}])
    [record] = settled(gw)
    spent = [s.attributes.get("gen_ai.usage.output_tokens", 0) for s in attempts_of(gw, record)]
    assert len(spent) == 2
    assert all(n > 0 for n in spent)
    assert record.llm is not None
    assert record.llm.output_tokens == sum(spent)
    assert record.llm.cost_usd is not None
    assert record.llm.cost_usd > 0


def test_valid_json_passes_validation(sdk: openai.OpenAI, gw: RunningGateway, upstream: MockUpstream) -> None:
    upstream.reply = '{"answer": "42"}'
    raw = sdk.chat.completions.with_raw_response.create(
        model="structured", messages=[{"role": "user", "content": "answer in JSON"}]
    )
    completion = raw.parse()

    assert json.loads(completion.choices[0].message.content or "") == {"answer": "42"}
    assert "x-kansoku-fallback" not in raw.headers
    assert raw.headers["x-kansoku-deployment"] == "openai_compatible/gpt-4o-mini@default#0"
    assert upstream.request_count == 1
    [record] = settled(gw)
    assert record.attributes["kansoku.gateway.outcome"] == "ok"
    assert record.attributes["kansoku.gateway.validation"] == "valid"

"""The real ``openai`` SDK against the mock upstream: what kansoku records, and what the app still sees."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

import kansoku
from helpers.records import MODES, llm_of, only_call, take_calls, text_in, text_out, user
from kansoku.export import ExportResult
from kansoku.model import Span
from kansoku.pricing import PriceCatalog
from kansoku.testing import InMemoryExporter, MockUpstream

MODEL = "mock-gpt"
PRICES = PriceCatalog.default()
StartRecorder = Callable[..., InMemoryExporter]
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "total_tokens")


# -- helpers ----------------------------------------------------------------------------------


def recorded_usage(span: Span) -> dict[str, int | None]:
    llm = llm_of(span)
    return {name: getattr(llm, name) for name in TOKEN_FIELDS}


def chat_usage(usage: Any) -> dict[str, int | None]:
    """The usage the server returned on a Chat Completions answer, in record field names."""
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cached_input_tokens": usage.prompt_tokens_details.cached_tokens,
        "reasoning_tokens": usage.completion_tokens_details.reasoning_tokens,
        "total_tokens": usage.total_tokens,
    }


def responses_usage(usage: Any) -> dict[str, int | None]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.input_tokens_details.cached_tokens,
        "reasoning_tokens": usage.output_tokens_details.reasoning_tokens,
        "total_tokens": usage.total_tokens,
    }


def catalog_cost(span: Span, usage: dict[str, int | None]) -> float | None:
    """What the packaged price catalog charges for the server's usage."""
    price = PRICES.price_for("openai", MODEL, span.start_ns)
    assert price is not None
    return price.cost(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cached_input_tokens=usage["cached_input_tokens"],
        reasoning_tokens=usage["reasoning_tokens"],
    )


def sync_client(up: MockUpstream, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.openai_base_url, api_key="test", max_retries=0, **options)


def async_client(up: MockUpstream, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.openai_base_url, api_key="test", max_retries=0, **options)


def call_chat(up: MockUpstream, mode: str, **kwargs: Any) -> Any:
    """One ``chat.completions.create`` on a fresh client; a stream is read to the end (chunks returned)."""
    if mode == "sync":
        with sync_client(up) as client:
            result = client.chat.completions.create(**kwargs)
            return list(result) if kwargs.get("stream") else result

    async def run() -> Any:
        async with async_client(up) as client:
            result = await client.chat.completions.create(**kwargs)
            return [chunk async for chunk in result] if kwargs.get("stream") else result

    return asyncio.run(run())


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.fixture
def client(upstream: MockUpstream) -> Iterator[openai.OpenAI]:
    with sync_client(upstream) as c:
        yield c


@pytest.fixture
def cached_upstream(upstream: MockUpstream) -> MockUpstream:
    """The server reports cached and reasoning tokens, so those fields are really exercised."""
    upstream.cached_tokens = 2
    upstream.reasoning_tokens = 3
    return upstream


# -- chat completions -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_chat_record_has_the_servers_usage_and_the_catalog_price(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    completion = call_chat(cached_upstream, mode, model=MODEL, messages=user("Hello there, world!"))

    span = only_call(recorder)
    llm = llm_of(span)
    server = chat_usage(completion.usage)
    assert server["cached_input_tokens"] == 2
    assert server["reasoning_tokens"] == 3
    assert recorded_usage(span) == server
    assert llm.cost_usd == catalog_cost(span, server)
    # 5 prompt tokens (2 cached), 12 output tokens (3 reasoning) at the catalog's mock-gpt prices:
    # 3 x 1.0 + 2 x 0.5 + 9 x 2.0 + 3 x 2.0 per million.
    assert llm.cost_usd == pytest.approx(28e-6)
    assert llm.usage_estimated is False
    assert (llm.provider, llm.operation, llm.model, llm.request_model) == ("openai", "chat", MODEL, MODEL)
    assert text_out(span) == completion.choices[0].message.content
    assert text_in(span) == "Hello there, world!"
    assert llm.response_id == completion.id
    assert llm.finish_reasons == ["stop"]
    assert llm.stream is False
    assert llm.ttft_ms is None
    assert (span.status, span.status_code, span.error_type) == ("ok", 200, None)
    assert (span.kind, span.service, span.name) == ("client", "test", f"chat {MODEL}")


@pytest.mark.parametrize(
    ("headers", "server_ms"),
    [
        pytest.param({"x-mock-delay-ms": "150"}, 150, id="delay"),
        pytest.param({"x-mock-fault": "slow"}, 120, id="slow-fault"),
    ],
)
def test_latency_covers_the_server_delay_and_no_more_than_the_call(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI, headers: Any, server_ms: int
) -> None:
    upstream.slow_ms = 120
    started = time.perf_counter()
    client.chat.completions.create(model=MODEL, messages=user("hi"), extra_headers=headers)
    wall_ms = (time.perf_counter() - started) * 1000

    span = only_call(recorder)
    assert server_ms <= span.latency_ms <= wall_ms
    assert span.to_record()["latency_ms"] == pytest.approx(span.latency_ms, abs=0.001)


def test_the_users_messages_list_changed_after_the_call_does_not_change_the_record(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    messages.append({"role": "user", "content": "And 3+3?"})
    del messages[0]

    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.input_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert text_in(span) == "system: Be brief.\nuser: What is 2+2?"


def test_a_message_dict_reused_after_the_call_does_not_change_the_record(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    message = {"role": "user", "content": "first question"}
    client.chat.completions.create(model=MODEL, messages=[message])  # type: ignore[list-item]
    message["content"] = "second question"  # a template dict reused for the next request

    assert text_in(only_call(recorder)) == "first question"


# -- streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stream_without_usage_request_yields_no_usage_chunk_yet_the_record_has_usage(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    cached_upstream.stream_interval_ms = 5
    prompt = user("Tell me a story please")
    reference = call_chat(cached_upstream, mode, model=MODEL, messages=prompt)
    take_calls(recorder)

    chunks = call_chat(cached_upstream, mode, model=MODEL, messages=prompt, stream=True)

    # What the application iterates over is what it asked for: content chunks only.
    assert chunks
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert text_of(chunks) == reference.choices[0].message.content

    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == text_of(chunks)
    assert recorded_usage(span) == chat_usage(reference.usage)
    assert llm.cost_usd == catalog_cost(span, chat_usage(reference.usage))
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < span.latency_ms
    assert span.status == "ok"
    assert llm.finish_reasons == ["stop"]


@pytest.mark.parametrize("mode", MODES)
def test_stream_with_usage_request_still_delivers_the_usage_chunk(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    chunks = call_chat(
        cached_upstream,
        mode,
        model=MODEL,
        messages=user("Count to three"),
        stream=True,
        stream_options={"include_usage": True},
    )

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    span = only_call(recorder)
    assert recorded_usage(span) == chat_usage(last.usage)
    assert text_out(span) == text_of(chunks)
    assert llm_of(span).cost_usd == catalog_cost(span, chat_usage(last.usage))


def test_time_to_first_token_is_after_the_server_delay_and_before_the_end(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    upstream.stream_interval_ms = 10
    stream = client.chat.completions.create(
        model=MODEL, messages=user("one two three"), stream=True, extra_headers={"x-mock-delay-ms": "80"}
    )
    for _ in stream:
        pass

    span = only_call(recorder)
    ttft = llm_of(span).ttft_ms
    assert ttft is not None
    assert ttft >= 80
    # After the first token the server still sends more deltas, the finish chunk and [DONE], 10 ms apart.
    assert span.latency_ms - ttft >= 10


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("close", id="close"),
        pytest.param("with-block", id="with-block"),
        pytest.param("abandon", id="abandoned-iterator"),
    ],
)
def test_breaking_out_of_a_stream_early_still_produces_a_record(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI, how: str
) -> None:
    upstream.stream_interval_ms = 2
    seen: list[str] = []
    stream = client.chat.completions.create(
        model=MODEL, messages=user("one two three four five"), stream=True
    )
    if how == "with-block":
        with stream:
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
                if len(seen) == 3:
                    break
    else:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
            if len(seen) == 3:
                break
        if how == "close":
            stream.close()
        else:
            del stream, chunk
            gc.collect()

    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == "".join(seen)
    assert text_out(span) != "Mock reply to: one two three four five"


def test_peeking_the_first_chunk_then_reading_the_rest_is_one_record_of_the_whole_stream(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    upstream.stream_interval_ms = 10
    stream = client.chat.completions.create(model=MODEL, messages=user("one two three"), stream=True)
    for chunk in stream:  # e.g. to check the role before rendering
        first = chunk
        break
    rest = list(stream)  # the same iterator continues, as with the plain openai Stream

    assert [first, *rest][-1].choices[0].finish_reason == "stop"
    span = only_call(recorder)
    ttft = llm_of(span).ttft_ms
    assert text_out(span) == text_of([first, *rest]) == "Mock reply to: one two three"
    assert ttft is not None
    assert ttft < span.latency_ms


def test_breaking_out_of_an_async_stream_early_still_produces_a_record(
    recorder: InMemoryExporter, upstream: MockUpstream
) -> None:
    async def run() -> str:
        seen: list[str] = []
        async with async_client(upstream) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=user("one two three four five"), stream=True
            )
            async with stream:
                async for chunk in stream:
                    seen.append(chunk.choices[0].delta.content or "")
                    if len(seen) == 2:
                        break
        return "".join(seen)

    seen = asyncio.run(run())

    span = only_call(recorder)
    assert llm_of(span).stream is True
    assert text_out(span) == seen == "Mock "


class UserLoopError(Exception):
    pass


def test_an_exception_in_the_users_stream_loop_reaches_the_user_and_the_call_is_recorded(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    seen: list[str] = []
    raised = UserLoopError("the app's own bug")

    def consume() -> None:
        with client.chat.completions.create(model=MODEL, messages=user("a b c d"), stream=True) as stream:
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
                if len(seen) == 3:
                    raise raised

    with pytest.raises(UserLoopError) as info:
        consume()

    assert info.value is raised
    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == "".join(seen) == "Mock reply "


def test_a_stream_cut_by_the_server_is_recorded_as_a_connection_error(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    def consume() -> None:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=user("a b c d e f"),
            stream=True,
            extra_headers={"x-mock-fault": "truncated_stream"},
        )
        for _ in stream:
            pass

    with pytest.raises(openai.APIConnectionError):
        consume()

    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "connection")
    assert llm_of(span).stream is True


# -- other entry points -----------------------------------------------------------------------


def test_with_raw_response_records_the_call_and_keeps_the_raw_response(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("raw please"))
    completion = raw.parse()

    assert raw.headers["x-request-id"].startswith("req_mock")
    span = only_call(recorder)
    assert recorded_usage(span) == chat_usage(completion.usage)
    assert text_out(span) == completion.choices[0].message.content
    assert llm_of(span).response_id == completion.id
    assert llm_of(span).cost_usd == catalog_cost(span, chat_usage(completion.usage))


def test_with_raw_response_stream_is_recorded_when_read(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    prompt = user("raw stream")
    reference = client.chat.completions.create(model=MODEL, messages=prompt)
    take_calls(recorder)

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=prompt, stream=True)
    chunks = list(raw.parse())

    assert all(chunk.choices for chunk in chunks)
    span = only_call(recorder)
    assert text_out(span) == text_of(chunks) == reference.choices[0].message.content
    assert recorded_usage(span) == chat_usage(reference.usage)


def test_stream_helper_records_the_call_and_its_final_completion_still_works(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    cached_upstream.stream_interval_ms = 3
    prompt = user("help me stream")
    reference = client.chat.completions.create(model=MODEL, messages=prompt)
    take_calls(recorder)

    with client.chat.completions.stream(model=MODEL, messages=prompt) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()

    assert "".join(deltas) == final.choices[0].message.content == reference.choices[0].message.content
    assert final.usage is None  # as without kansoku: the user did not ask for usage
    span = only_call(recorder)
    llm = llm_of(span)
    assert text_out(span) == final.choices[0].message.content
    assert recorded_usage(span) == chat_usage(reference.usage)
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < span.latency_ms


def test_async_stream_helper_records_the_call(
    recorder: InMemoryExporter, cached_upstream: MockUpstream
) -> None:
    async def run() -> tuple[Any, list[str], Any]:
        async with async_client(cached_upstream) as client:
            prompt = user("help me stream")
            reference = await client.chat.completions.create(model=MODEL, messages=prompt)
            async with client.chat.completions.stream(model=MODEL, messages=prompt) as stream:
                deltas = [event.delta async for event in stream if event.type == "content.delta"]
                final = await stream.get_final_completion()
        return reference, deltas, final

    reference, deltas, final = asyncio.run(run())

    calls = take_calls(recorder)
    streamed = [c for c in calls if llm_of(c).stream]
    assert len(calls) == 2
    assert len(streamed) == 1
    assert "".join(deltas) == final.choices[0].message.content == text_out(streamed[0])
    assert recorded_usage(streamed[0]) == chat_usage(reference.usage)


def test_responses_create_records_usage_cost_and_text(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    response = client.responses.create(model=MODEL, input="Hi you", instructions="Be kind.")

    span = only_call(recorder)
    llm = llm_of(span)
    server = responses_usage(response.usage)
    assert server["cached_input_tokens"] == 2
    assert server["reasoning_tokens"] == 3
    assert recorded_usage(span) == server
    assert llm.cost_usd == catalog_cost(span, server)
    assert text_out(span) == response.output_text
    assert llm.input_messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi you"},
    ]
    assert llm.response_id == response.id
    assert span.status == "ok"


def test_responses_stream_records_usage_text_and_ttft(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    cached_upstream.stream_interval_ms = 3
    events = list(client.responses.create(model=MODEL, input="stream it to me", stream=True))

    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1
    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == deltas == "Mock reply to: stream it to me"
    assert recorded_usage(span) == responses_usage(completed[0].response.usage)
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < span.latency_ms


def test_responses_content_filter_is_a_content_policy_error(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    response = client.responses.create(
        model=MODEL, input="x", extra_headers={"x-mock-fault": "content_filter_finish"}
    )

    assert response.status == "incomplete"
    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "content_policy")


@pytest.mark.parametrize("mode", MODES)
def test_embeddings_record_input_tokens_and_cost(
    recorder: InMemoryExporter, upstream: MockUpstream, mode: str
) -> None:
    texts = ["a b", "c, d e"]
    if mode == "sync":
        with sync_client(upstream) as client:
            result = client.embeddings.create(model=MODEL, input=texts)
    else:

        async def run() -> Any:
            async with async_client(upstream) as client:
                return await client.embeddings.create(model=MODEL, input=texts)

        result = asyncio.run(run())

    span = only_call(recorder)
    llm = llm_of(span)
    assert result.usage.prompt_tokens == 6
    assert (llm.operation, llm.input_tokens, llm.output_tokens) == ("embeddings", 6, None)
    assert llm.total_tokens == result.usage.total_tokens
    assert llm.parameters["vectors"] == len(result.data) == 2
    price = PRICES.price_for("openai", MODEL, span.start_ns)
    assert price is not None
    assert llm.cost_usd == price.cost(input_tokens=6, output_tokens=None) == pytest.approx(6e-6)


# -- errors -----------------------------------------------------------------------------------

ERRORS = [  # fault -> (exception the app gets, error_type, status_code)
    pytest.param("rate_limit", (openai.RateLimitError, "rate_limit", 429), id="429-rate-limit"),
    pytest.param("server_error", (openai.InternalServerError, "server_error", 500), id="500-server-error"),
    pytest.param("overloaded", (openai.InternalServerError, "server_error", 503), id="503-overloaded"),
    pytest.param(
        "context_length", (openai.BadRequestError, "context_length_exceeded", 400), id="400-context-length"
    ),
    pytest.param("content_filter", (openai.BadRequestError, "content_policy", 400), id="400-content-filter"),
    pytest.param("auth", (openai.AuthenticationError, "auth", 401), id="401-auth"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("fault", "expected"), ERRORS)
def test_provider_errors_reach_the_app_unchanged_and_are_classified(
    recorder: InMemoryExporter,
    upstream: MockUpstream,
    mode: str,
    fault: str,
    expected: tuple[type[Exception], str, int],
) -> None:
    exc_type, error_type, status_code = expected
    with pytest.raises(exc_type) as info:
        call_chat(upstream, mode, model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": fault})

    assert getattr(info.value, "status_code", None) == status_code
    span = only_call(recorder)
    assert (span.status, span.error_type, span.status_code) == ("error", error_type, status_code)
    assert span.error_message is not None
    assert span.error_message.startswith(exc_type.__name__)
    assert llm_of(span).input_tokens is None  # no usage on a failed call, and none estimated
    assert llm_of(span).cost_usd is None


def test_an_error_on_a_stream_request_is_recorded(recorder: InMemoryExporter, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=MODEL, messages=user("hi"), stream=True, extra_headers={"x-mock-fault": "rate_limit"}
        )

    span = only_call(recorder)
    assert (span.status, span.error_type, span.status_code) == ("error", "rate_limit", 429)


@pytest.mark.parametrize("mode", MODES)
def test_a_hung_server_and_a_client_timeout_give_a_timeout_record(
    recorder: InMemoryExporter, upstream: MockUpstream, mode: str
) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": user("hi"),
        "extra_headers": {"x-mock-fault": "hang"},
        "timeout": 0.3,
    }
    with pytest.raises(openai.APITimeoutError):
        call_chat(upstream, mode, **kwargs)

    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "timeout")
    assert 300 <= span.latency_ms < 5000


def test_a_content_filter_finish_is_a_content_policy_error(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": "content_filter_finish"}
    )

    assert completion.choices[0].finish_reason == "content_filter"
    span = only_call(recorder)
    assert (span.status, span.error_type, span.status_code) == ("error", "content_policy", 200)
    assert recorded_usage(span) == chat_usage(completion.usage)


# -- trace propagation to the server ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_server_receives_a_traceparent_naming_the_records_span(
    recorder: InMemoryExporter, upstream: MockUpstream, mode: str
) -> None:
    with kansoku.span("handler") as parent:
        call_chat(upstream, mode, model=MODEL, messages=user("hi"))

    span = only_call(recorder)
    (request,) = upstream.requests
    assert request.headers["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    assert span.trace_id == parent.trace_id
    assert span.parent_span_id == parent.span_id


def test_a_traceparent_the_user_sets_is_not_overwritten(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.chat.completions.create(
        model=MODEL, messages=user("hi"), extra_headers={"traceparent": mine, "x-app": "1"}
    )

    (request,) = upstream.requests
    assert request.headers["traceparent"] == mine
    assert request.headers["x-app"] == "1"
    assert len(take_calls(recorder)) == 1


def test_each_call_sends_its_own_span_id(
    recorder: InMemoryExporter, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=user("hi"))

    sent = [r.headers["traceparent"].split("-")[2] for r in upstream.requests]
    recorded = sorted(c.span_id for c in take_calls(recorder))
    assert len(set(sent)) == 3
    assert sorted(sent) == recorded


# -- the SDK never breaks the application -----------------------------------------------------


class RaisingExporter:
    name = "raising"
    spool = False

    def __init__(self) -> None:
        self.attempts = 0

    def export(self, batch: Any) -> ExportResult:
        self.attempts += 1
        raise RuntimeError("exporter bug")

    def force_flush(self, timeout: float = 10.0) -> bool:
        raise RuntimeError("exporter bug")

    def shutdown(self) -> None:
        raise RuntimeError("exporter bug")


def raising_processor(span: Span) -> Span | None:
    raise RuntimeError("processor bug")


def test_an_exporter_that_raises_does_not_reach_the_app(
    start_recorder: StartRecorder, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    broken = RaisingExporter()
    memory = start_recorder(exporters=[broken])

    completion = client.chat.completions.create(model=MODEL, messages=user("still works"))
    chunks = list(client.chat.completions.create(model=MODEL, messages=user("still works"), stream=True))

    assert completion.choices[0].message.content == "Mock reply to: still works"
    assert text_of(chunks) == "Mock reply to: still works"
    assert len(take_calls(memory)) == 2  # the healthy exporter is not held back
    assert broken.attempts >= 1
    assert kansoku.stats()["exporters"]["raising"]["failures"] >= 1


def test_a_processor_that_raises_does_not_reach_the_app(
    start_recorder: StartRecorder, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    memory = start_recorder(processors=[raising_processor])

    completion = client.chat.completions.create(model=MODEL, messages=user("still works"))

    assert completion.choices[0].message.content == "Mock reply to: still works"
    assert take_calls(memory) == []
    assert kansoku.stats()["dropped"] == {"processor_error": 1}


def test_calls_before_init_and_after_shutdown_are_not_recorded(
    start_recorder: StartRecorder, upstream: MockUpstream, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model=MODEL, messages=user("before"))
    memory = start_recorder()
    client.chat.completions.create(model=MODEL, messages=user("during"))
    kansoku.shutdown()
    client.chat.completions.create(model=MODEL, messages=user("after"))

    assert [text_in(c) for c in memory.calls] == ["during"]
    assert [r.headers.get("traceparent") is not None for r in upstream.requests] == [False, True, False]

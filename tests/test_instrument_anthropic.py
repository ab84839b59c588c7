"""The real ``anthropic`` SDK against the mock upstream: what kansoku records, and what the app still sees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from helpers.records import MODES, llm_of, only_call, take_calls, text_in, text_out, user
from kansoku.model import Span
from kansoku.pricing import PriceCatalog
from kansoku.testing import InMemoryExporter, MockUpstream

MODEL = "mock-claude"
PRICES = PriceCatalog.default()


# -- helpers ----------------------------------------------------------------------------------


def expected_tokens(usage: Any) -> dict[str, int | None]:
    """kansoku's convention for Anthropic usage: input_tokens includes cache reads and writes,
    cached_input_tokens is the cache reads."""
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    total_in = usage.input_tokens + cache_read + cache_write
    return {
        "input_tokens": total_in,
        "cached_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": total_in + usage.output_tokens,
    }


def recorded_tokens(span: Span) -> dict[str, int | None]:
    llm = llm_of(span)
    return {
        name: getattr(llm, name)
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")
    }


def catalog_cost(span: Span, usage: Any) -> float | None:
    price = PRICES.price_for("anthropic", MODEL, span.start_ns)
    assert price is not None
    tokens = expected_tokens(usage)
    return price.cost(
        input_tokens=tokens["input_tokens"],
        output_tokens=tokens["output_tokens"],
        cached_input_tokens=tokens["cached_input_tokens"],
    )


def sync_client(up: MockUpstream, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=up.anthropic_base_url, api_key="test", max_retries=0, **options)


def async_client(up: MockUpstream, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=up.anthropic_base_url, api_key="test", max_retries=0, **options)


def create(up: MockUpstream, mode: str, **kwargs: Any) -> Any:
    """One ``messages.create`` on a fresh client; a stream is read to the end (events returned)."""
    kwargs.setdefault("max_tokens", 50)
    if mode == "sync":
        with sync_client(up) as client:
            result = client.messages.create(**kwargs)
            return list(result) if kwargs.get("stream") else result

    async def run() -> Any:
        async with async_client(up) as client:
            result = await client.messages.create(**kwargs)
            return [event async for event in result] if kwargs.get("stream") else result

    return asyncio.run(run())


def stream_helper(up: MockUpstream, mode: str, **kwargs: Any) -> tuple[list[str], Any]:
    """``messages.stream(...)``: the text_stream pieces and get_final_message()."""
    kwargs.setdefault("max_tokens", 50)
    if mode == "sync":
        with sync_client(up) as client, client.messages.stream(**kwargs) as stream:
            pieces = list(stream.text_stream)
            return pieces, stream.get_final_message()

    async def run() -> tuple[list[str], Any]:
        async with async_client(up) as client, client.messages.stream(**kwargs) as stream:
            pieces = [piece async for piece in stream.text_stream]
            return pieces, await stream.get_final_message()

    return asyncio.run(run())


@pytest.fixture
def cached_upstream(upstream: MockUpstream) -> MockUpstream:
    """The server reports cache reads and writes, so the input-token convention is really exercised."""
    upstream.cached_tokens = 2
    upstream.cache_creation_tokens = 1
    return upstream


@pytest.fixture
def client(upstream: MockUpstream) -> Iterator[anthropic.Anthropic]:
    with sync_client(upstream) as c:
        yield c


# -- messages.create --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_create_records_usage_with_cache_reads_cost_and_system_prompt(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    message = create(
        cached_upstream, mode, model=MODEL, system="Be brief and kind.", messages=user("Hey, you there")
    )

    span = only_call(recorder)
    llm = llm_of(span)
    assert message.usage.cache_read_input_tokens == 2
    assert message.usage.cache_creation_input_tokens == 1
    assert recorded_tokens(span) == expected_tokens(message.usage)
    assert llm.input_tokens == message.usage.input_tokens + 3
    assert llm.cost_usd == catalog_cost(span, message.usage)
    # 9 input tokens (2 read from cache) and 8 output tokens at the catalog's mock-claude prices:
    # 7 x 3.0 + 2 x 0.3 + 8 x 15.0 per million.
    assert message.usage.output_tokens == 8
    assert llm.cost_usd == pytest.approx(141.6e-6)
    assert llm.input_messages == [
        {"role": "system", "content": "Be brief and kind."},
        {"role": "user", "content": "Hey, you there"},
    ]
    assert text_in(span) == "system: Be brief and kind.\nuser: Hey, you there"
    assert text_out(span) == message.content[0].text
    assert (llm.provider, llm.model, llm.response_id) == ("anthropic", MODEL, message.id)
    assert llm.finish_reasons == ["end_turn"]
    assert llm.stream is False
    assert (span.status, span.status_code, span.error_type) == ("ok", 200, None)


def test_a_system_prompt_given_as_blocks_is_captured(
    recorder: InMemoryExporter, client: anthropic.Anthropic
) -> None:
    client.messages.create(
        model=MODEL,
        max_tokens=10,
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}],
        messages=user("hi"),
    )

    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.input_messages is not None
    assert llm.input_messages[0] == {"role": "system", "content": "You are terse.\nAnswer in English."}


def test_thinking_tokens_are_recorded_as_reasoning_tokens(
    recorder: InMemoryExporter, upstream: MockUpstream, client: anthropic.Anthropic
) -> None:
    upstream.reasoning_tokens = 3
    message = client.messages.create(model=MODEL, max_tokens=10, messages=user("think"))

    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 3
    assert llm_of(only_call(recorder)).reasoning_tokens == 3


def test_latency_covers_the_server_delay_and_no_more_than_the_call(
    recorder: InMemoryExporter, client: anthropic.Anthropic
) -> None:
    started = time.perf_counter()
    client.messages.create(
        model=MODEL, max_tokens=10, messages=user("hi"), extra_headers={"x-mock-delay-ms": "150"}
    )
    wall_ms = (time.perf_counter() - started) * 1000

    span = only_call(recorder)
    assert 150 <= span.latency_ms <= wall_ms


def test_the_users_messages_list_changed_after_the_call_does_not_change_the_record(
    recorder: InMemoryExporter, client: anthropic.Anthropic
) -> None:
    messages = user("first")
    reply = client.messages.create(model=MODEL, max_tokens=10, messages=messages)
    messages.append({"role": "assistant", "content": reply.content[0].text})  # type: ignore[union-attr]
    messages.append({"role": "user", "content": "second"})

    assert llm_of(only_call(recorder)).input_messages == [{"role": "user", "content": "first"}]


# -- streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_create_stream_records_text_usage_and_ttft(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    cached_upstream.stream_interval_ms = 3
    events = create(cached_upstream, mode, model=MODEL, messages=user("stream it to me"), stream=True)

    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    start_usage = events[0].message.usage
    final_output = next(e.usage.output_tokens for e in events if e.type == "message_delta")
    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == text == "Mock reply to: stream it to me"
    assert llm.output_tokens == final_output  # the message_delta count, not message_start's placeholder
    assert final_output != start_usage.output_tokens
    assert llm.input_tokens == start_usage.input_tokens + 2 + 1
    assert llm.cached_input_tokens == start_usage.cache_read_input_tokens == 2
    assert llm.total_tokens == llm.input_tokens + final_output
    assert llm.cost_usd is not None
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < span.latency_ms
    assert llm.finish_reasons == ["end_turn"]


@pytest.mark.parametrize("mode", MODES)
def test_stream_helper_text_stream_and_final_message_still_work_and_are_recorded(
    recorder: InMemoryExporter, cached_upstream: MockUpstream, mode: str
) -> None:
    cached_upstream.stream_interval_ms = 3
    pieces, final = stream_helper(
        cached_upstream, mode, model=MODEL, system="Be brief.", messages=user("stream it to me")
    )

    assert len(pieces) > 1
    assert "".join(pieces) == final.content[0].text == "Mock reply to: stream it to me"
    span = only_call(recorder)
    llm = llm_of(span)
    assert llm.stream is True
    assert text_out(span) == "".join(pieces)
    assert recorded_tokens(span) == expected_tokens(final.usage)
    assert llm.cost_usd == catalog_cost(span, final.usage)
    assert llm.input_messages is not None
    assert llm.input_messages[0] == {"role": "system", "content": "Be brief."}
    assert llm.ttft_ms is not None
    assert 0 < llm.ttft_ms < span.latency_ms


def test_stream_helper_get_final_text_works(recorder: InMemoryExporter, client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=10, messages=user("hello")) as stream:
        text = stream.get_final_text()

    assert text == "Mock reply to: hello"
    assert text_out(only_call(recorder)) == text


def test_leaving_a_stream_helper_early_still_produces_a_record(
    recorder: InMemoryExporter, upstream: MockUpstream, client: anthropic.Anthropic
) -> None:
    upstream.stream_interval_ms = 2
    seen: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=10, messages=user("one two three four")) as stream:
        for piece in stream.text_stream:
            seen.append(piece)
            break

    span = only_call(recorder)
    assert llm_of(span).stream is True
    assert seen == ["Mock "]
    assert text_out(span) == "Mock "


def test_the_server_receives_a_traceparent_naming_the_records_span(
    recorder: InMemoryExporter, upstream: MockUpstream, client: anthropic.Anthropic
) -> None:
    client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    with client.messages.stream(model=MODEL, max_tokens=10, messages=user("hi")) as stream:
        stream.until_done()

    sent = [r.headers["traceparent"] for r in upstream.requests]
    recorded = [f"00-{c.trace_id}-{c.span_id}-01" for c in take_calls(recorder)]
    assert len(sent) == 2
    assert sorted(sent) == sorted(recorded)


# -- errors -----------------------------------------------------------------------------------

ERRORS = [  # fault -> (exception the app gets, error_type, status_code)
    pytest.param("rate_limit", (anthropic.RateLimitError, "rate_limit", 429), id="429-rate-limit"),
    pytest.param("server_error", (anthropic.InternalServerError, "server_error", 500), id="500-server-error"),
    pytest.param("overloaded", (anthropic.APIStatusError, "server_error", 529), id="529-overloaded"),
    pytest.param(
        "context_length", (anthropic.BadRequestError, "context_length_exceeded", 400), id="400-context-length"
    ),
    pytest.param(
        "content_filter", (anthropic.BadRequestError, "content_policy", 400), id="400-content-filter"
    ),
    pytest.param("auth", (anthropic.AuthenticationError, "auth", 401), id="401-auth"),
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
        create(upstream, mode, model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": fault})

    assert getattr(info.value, "status_code", None) == status_code
    span = only_call(recorder)
    assert (span.status, span.error_type, span.status_code) == ("error", error_type, status_code)
    assert text_in(span) == "hi"
    assert llm_of(span).cost_usd is None


@pytest.mark.parametrize("mode", MODES)
def test_an_error_opening_the_stream_helper_is_recorded(
    recorder: InMemoryExporter, upstream: MockUpstream, mode: str
) -> None:
    with pytest.raises(anthropic.RateLimitError):
        stream_helper(
            upstream, mode, model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": "rate_limit"}
        )

    span = only_call(recorder)
    assert (span.status, span.error_type, span.status_code) == ("error", "rate_limit", 429)
    assert llm_of(span).stream is False  # nothing was streamed


@pytest.mark.parametrize("mode", MODES)
def test_a_hung_server_and_a_client_timeout_give_a_timeout_record(
    recorder: InMemoryExporter, upstream: MockUpstream, mode: str
) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        create(
            upstream,
            mode,
            model=MODEL,
            messages=user("hi"),
            extra_headers={"x-mock-fault": "hang"},
            timeout=0.3,
        )

    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "timeout")
    assert 300 <= span.latency_ms < 5000


def test_a_refusal_stop_reason_is_a_content_policy_error(
    recorder: InMemoryExporter, client: anthropic.Anthropic
) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=user("hi"),
        extra_headers={"x-mock-fault": "content_filter_finish"},
    )

    assert message.stop_reason == "refusal"
    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "content_policy")


def test_a_stream_cut_by_the_server_is_recorded_as_a_connection_error(
    recorder: InMemoryExporter, client: anthropic.Anthropic
) -> None:
    def consume() -> None:
        with client.messages.stream(
            model=MODEL,
            max_tokens=10,
            messages=user("a b c d e f"),
            extra_headers={"x-mock-fault": "truncated_stream"},
        ) as stream:
            stream.until_done()

    with pytest.raises(Exception, match="incomplete"):
        consume()

    span = only_call(recorder)
    assert (span.status, span.error_type) == ("error", "connection")

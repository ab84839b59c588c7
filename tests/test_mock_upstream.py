"""The mock LLM upstream, as the official ``openai`` and ``anthropic`` SDKs see it.

Every expected token count below is derived from the documented rule
(:func:`kansoku.testing._mock_payloads.count_tokens`) rather than hard-coded, except in
``test_token_rule`` which pins the rule itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from kansoku.testing import FaultMode, MockUpstream
from kansoku.testing._mock_payloads import count_tokens, default_reply, split_deltas

SYSTEM = "You are terse."
QUESTION = "Hello there, how are you today?"
# Typed Any: the SDKs' TypedDict message params reject plain dict variables under mypy.
MESSAGES: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
USER_ONLY: Any = [{"role": "user", "content": QUESTION}]
REPLY = default_reply(QUESTION)
PROMPT_TOKENS = count_tokens(SYSTEM) + count_tokens(QUESTION)


# Module-scoped: building an SDK client costs 50-100 ms (TLS context), and the server behind
# them is the module's shared mock; the per-test ``upstream`` fixture resets its state.
@pytest.fixture(scope="module")
def oai(mock_upstream: MockUpstream) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(
        base_url=mock_upstream.openai_base_url, api_key="sk-test", max_retries=0, timeout=5
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def ant(mock_upstream: MockUpstream) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=mock_upstream.anthropic_base_url, api_key="sk-ant-test", max_retries=0, timeout=5
    )
    yield client
    client.close()


def raw_request(
    up: MockUpstream, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    """One request over a fresh stdlib connection: (status, parsed JSON body)."""
    conn = http.client.HTTPConnection(up.host, up.port, timeout=5)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"content-type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


# -- the token rule and reply ------------------------------------------------------------


def test_token_rule() -> None:
    assert count_tokens("Mock reply to: hi!") == 6
    assert count_tokens("") == 0
    assert count_tokens("don't  stop") == 4  # don ' t stop
    assert default_reply("x" * 100) == "Mock reply to: " + "x" * 40
    for text in ("Mock reply to: Hello there", "  leading", "one", ""):
        assert "".join(split_deltas(text)) == text


# -- OpenAI chat completions -----------------------------------------------------------------


def test_openai_chat_non_streaming(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    upstream.cached_tokens, upstream.reasoning_tokens = 4, 3

    done = oai.chat.completions.create(model="gpt-test", messages=MESSAGES, temperature=0.2)

    assert done.object == "chat.completion"
    assert done.id.startswith("chatcmpl-")
    assert done.model == "gpt-test"
    choice = done.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", REPLY, "stop")
    usage = done.usage
    assert usage is not None
    completion = count_tokens(REPLY) + 3
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        PROMPT_TOKENS,
        completion,
        PROMPT_TOKENS + completion,
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 3

    [seen] = upstream.requests
    assert (seen.method, seen.path, seen.fault) == ("POST", "/v1/chat/completions", None)
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.json["temperature"] == 0.2
    assert upstream.request_count == 1


@pytest.mark.parametrize(
    "include_usage", [pytest.param(True, id="include-usage"), pytest.param(False, id="no-usage")]
)
def test_openai_chat_streaming(upstream: MockUpstream, oai: openai.OpenAI, include_usage: bool) -> None:
    stream = oai.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": include_usage}
    )
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-test" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3
    assert "".join(deltas) == REPLY
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    if include_usage:
        last = chunks[-1]
        assert last.choices == []
        assert last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
            PROMPT_TOKENS,
            count_tokens(REPLY),
        )
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks)


def test_stream_interval_puts_first_token_well_before_the_end(
    upstream: MockUpstream, oai: openai.OpenAI
) -> None:
    upstream.stream_interval_ms = 15
    started = time.perf_counter()
    first = None
    for chunk in oai.chat.completions.create(model="m", messages=USER_ONLY, stream=True):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    assert first is not None
    assert total - first >= 0.04  # at least three more 15 ms gaps after the first delta


def test_openai_async_client_against_mock_on_the_same_loop() -> None:
    async def scenario() -> None:
        async with MockUpstream(reasoning_tokens=2) as up:
            client = openai.AsyncOpenAI(base_url=up.openai_base_url, api_key="k", max_retries=0, timeout=5)
            try:
                done = await client.chat.completions.create(model="m", messages=USER_ONLY)
                assert done.choices[0].message.content == REPLY
                assert done.usage is not None
                assert done.usage.completion_tokens == count_tokens(REPLY) + 2
                stream = await client.chat.completions.create(
                    model="m", messages=USER_ONLY, stream=True, stream_options={"include_usage": True}
                )
                chunks = [c async for c in stream]
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert text == REPLY
                assert chunks[-1].usage is not None
                assert chunks[-1].usage.prompt_tokens == count_tokens(QUESTION)
            finally:
                await client.close()
            assert up.request_count == 2

    asyncio.run(scenario())


# -- OpenAI responses, embeddings, models ----------------------------------------------------


def test_openai_responses(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    upstream.cached_tokens, upstream.reasoning_tokens = 1, 5
    prompt = count_tokens(SYSTEM) + count_tokens(QUESTION)

    done = oai.responses.create(model="gpt-r", instructions=SYSTEM, input=QUESTION)
    assert (done.status, done.model, done.output_text) == ("completed", "gpt-r", REPLY)
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (prompt, count_tokens(REPLY) + 5)
    assert done.usage.input_tokens_details.cached_tokens == 1
    assert done.usage.output_tokens_details.reasoning_tokens == 5

    events = list(oai.responses.create(model="gpt-r", instructions=SYSTEM, input=QUESTION, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") >= 3
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == REPLY
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None
    assert final.response.usage.input_tokens == prompt

    # The SDK's accumulating helper needs a consistent event sequence.
    with oai.responses.stream(model="gpt-r", input=[{"role": "user", "content": QUESTION}]) as helper:
        assert helper.get_final_response().output_text == REPLY


def test_openai_embeddings(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; floats must match exactly.
    default = oai.embeddings.create(model="emb", input=["alpha beta", "gamma"])
    floats = oai.embeddings.create(model="emb", input=["alpha beta", "gamma"], encoding_format="float")
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == upstream.embedding_dim
    assert default.data[0].embedding != default.data[1].embedding
    assert all(-1.0 <= x <= 1.0 for x in default.data[0].embedding)
    assert (default.usage.prompt_tokens, default.usage.total_tokens) == (3, 3)
    assert default.model == "emb"

    single = oai.embeddings.create(model="emb", input="gamma", dimensions=3)
    assert len(single.data) == 1
    assert single.data[0].embedding == floats.data[1].embedding[:3]


def test_models_listing_in_each_provider_shape(
    upstream: MockUpstream, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    assert "mock-model" in [m.id for m in oai.models.list()]
    assert oai.models.retrieve("gpt-x").id == "gpt-x"
    assert "mock-model" in [m.id for m in ant.models.list()]


# -- Anthropic messages --------------------------------------------------------------------


def test_anthropic_non_streaming(upstream: MockUpstream, ant: anthropic.Anthropic) -> None:
    upstream.cached_tokens, upstream.cache_creation_tokens, upstream.reasoning_tokens = 3, 2, 4

    msg = ant.messages.create(model="claude-test", max_tokens=64, system=SYSTEM, messages=USER_ONLY)

    assert (msg.type, msg.role, msg.model, msg.stop_reason) == (
        "message",
        "assistant",
        "claude-test",
        "end_turn",
    )
    assert msg.id.startswith("msg_")
    [block] = msg.content
    assert block.type == "text"
    assert block.text == REPLY
    # Anthropic reports cache reads and writes beside input_tokens, not inside it.
    assert msg.usage.input_tokens == PROMPT_TOKENS - 3 - 2
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (3, 2)
    assert msg.usage.output_tokens == count_tokens(REPLY) + 4
    assert msg.usage.output_tokens_details is not None
    assert msg.usage.output_tokens_details.thinking_tokens == 4
    headers = upstream.requests[0].headers
    assert "anthropic-version" in headers
    # anthropic 2.x authenticates with a bearer token; older SDKs sent x-api-key.
    assert "sk-ant-test" in headers.get("authorization", headers.get("x-api-key", ""))


def test_anthropic_streaming(upstream: MockUpstream, ant: anthropic.Anthropic) -> None:
    upstream.cached_tokens = 2
    raw = list(ant.messages.create(model="c", max_tokens=64, system=SYSTEM, messages=USER_ONLY, stream=True))
    kinds = [e.type for e in raw]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") >= 3
    start, delta = raw[0], raw[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == PROMPT_TOKENS - 2
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.usage.output_tokens) == ("end_turn", count_tokens(REPLY))

    with ant.messages.stream(model="c", max_tokens=64, system=SYSTEM, messages=USER_ONLY) as helper:
        assert "".join(helper.text_stream) == REPLY
        final = helper.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_TOKENS - 2, count_tokens(REPLY))
    assert final.usage.cache_read_input_tokens == 2


def test_anthropic_async_client(upstream: MockUpstream) -> None:
    async def scenario() -> None:
        client = anthropic.AsyncAnthropic(
            base_url=upstream.anthropic_base_url, api_key="k", max_retries=0, timeout=5
        )
        try:
            msg = await client.messages.create(model="c", max_tokens=8, messages=USER_ONLY)
            assert msg.content[0].type == "text"
            assert msg.content[0].text == REPLY
            async with client.messages.stream(model="c", max_tokens=8, messages=USER_ONLY) as helper:
                text = "".join([t async for t in helper.text_stream])
                final = await helper.get_final_message()
            assert text == REPLY
            assert final.usage.output_tokens == count_tokens(REPLY)
        finally:
            await client.close()

    asyncio.run(scenario())


# -- error faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("rate_limit", (openai.RateLimitError, 429, "rate_limit_exceeded"), id="rate_limit"),
        pytest.param("server_error", (openai.InternalServerError, 500, None), id="server_error"),
        pytest.param("overloaded", (openai.InternalServerError, 503, None), id="overloaded"),
        pytest.param(
            "context_length", (openai.BadRequestError, 400, "context_length_exceeded"), id="context_length"
        ),
        pytest.param("content_filter", (openai.BadRequestError, 400, "content_filter"), id="content_filter"),
        pytest.param("auth", (openai.AuthenticationError, 401, "invalid_api_key"), id="auth"),
    ],
)
def test_openai_error_faults(
    upstream: MockUpstream,
    oai: openai.OpenAI,
    mode: str,
    expected: tuple[type[openai.APIStatusError], int, str | None],
) -> None:
    error, status, code = expected
    upstream.retry_after = 7
    with pytest.raises(error) as caught:
        oai.chat.completions.create(model="m", messages=USER_ONLY, extra_headers={"x-mock-fault": mode})
    exc = caught.value
    assert exc.status_code == status
    assert isinstance(exc.body, dict)
    assert set(exc.body) == {"message", "type", "param", "code"}
    assert exc.code == code
    if mode == "rate_limit":
        assert exc.response.headers["retry-after"] == "7"
    if mode == "context_length":
        assert f"resulted in {count_tokens(QUESTION)} tokens" in exc.message
    assert upstream.requests[0].fault == FaultMode(mode)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("rate_limit", (anthropic.RateLimitError, 429, "rate_limit_error"), id="rate_limit"),
        pytest.param("server_error", (anthropic.InternalServerError, 500, "api_error"), id="server_error"),
        pytest.param("overloaded", (anthropic.OverloadedError, 529, "overloaded_error"), id="overloaded"),
        pytest.param(
            "context_length", (anthropic.BadRequestError, 400, "invalid_request_error"), id="context_length"
        ),
        pytest.param(
            "content_filter", (anthropic.BadRequestError, 400, "invalid_request_error"), id="content_filter"
        ),
        pytest.param("auth", (anthropic.AuthenticationError, 401, "authentication_error"), id="auth"),
    ],
)
def test_anthropic_error_faults(
    upstream: MockUpstream,
    ant: anthropic.Anthropic,
    mode: str,
    expected: tuple[type[anthropic.APIStatusError], int, str],
) -> None:
    error, status, kind = expected
    with pytest.raises(error) as caught:
        ant.messages.create(model="c", max_tokens=8, messages=USER_ONLY, extra_headers={"x-mock-fault": mode})
    exc = caught.value
    assert exc.status_code == status
    assert isinstance(exc.body, dict)
    assert exc.body["type"] == "error"
    assert exc.body["error"]["type"] == kind
    assert exc.request_id is not None
    if mode == "rate_limit":
        assert exc.response.headers["retry-after"] == "1"
    if mode == "context_length":
        assert "prompt is too long" in exc.body["error"]["message"]


def test_content_filter_finish(upstream: MockUpstream, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    upstream.set_fault("content_filter_finish")
    assert (
        oai.chat.completions.create(model="m", messages=USER_ONLY).choices[0].finish_reason
        == "content_filter"
    )
    chunks = list(oai.chat.completions.create(model="m", messages=USER_ONLY, stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    response = oai.responses.create(model="m", input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert ant.messages.create(model="c", max_tokens=8, messages=USER_ONLY).stop_reason == "refusal"


# -- transport faults ------------------------------------------------------------------------


def test_hang_until_the_client_times_out(upstream: MockUpstream) -> None:
    hang = {"x-mock-fault": "hang"}
    with openai.OpenAI(base_url=upstream.openai_base_url, api_key="k", max_retries=0, timeout=0.3) as client:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=USER_ONLY, extra_headers=hang)
        assert 0.25 < time.perf_counter() - started < 2
    with (
        anthropic.Anthropic(
            base_url=upstream.anthropic_base_url, api_key="k", max_retries=0, timeout=0.3
        ) as aclient,
        pytest.raises(anthropic.APITimeoutError),
    ):
        aclient.messages.create(model="c", max_tokens=8, messages=USER_ONLY, extra_headers=hang)
    assert [r.fault for r in upstream.requests] == [FaultMode.HANG, FaultMode.HANG]


def test_slow_and_delay(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    upstream.slow_ms = 150
    started = time.perf_counter()
    oai.chat.completions.create(model="m", messages=USER_ONLY, extra_headers={"x-mock-fault": "slow"})
    assert time.perf_counter() - started >= 0.15

    upstream.delay_ms = 100
    started = time.perf_counter()
    oai.chat.completions.create(model="m", messages=USER_ONLY)
    assert time.perf_counter() - started >= 0.1

    started = time.perf_counter()
    oai.chat.completions.create(model="m", messages=USER_ONLY, extra_headers={"x-mock-delay-ms": "0"})
    assert time.perf_counter() - started < 0.1


def test_malformed_json(upstream: MockUpstream, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    upstream.set_fault("malformed_json")
    with pytest.raises(json.JSONDecodeError):
        oai.chat.completions.create(model="m", messages=USER_ONLY)
    with pytest.raises(json.JSONDecodeError):
        list(oai.chat.completions.create(model="m", messages=USER_ONLY, stream=True))
    with pytest.raises(json.JSONDecodeError):
        ant.messages.create(model="c", max_tokens=8, messages=USER_ONLY)


def test_truncated_stream(upstream: MockUpstream, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    upstream.set_fault("truncated_stream")
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(oai.chat.completions.create(model="m", messages=USER_ONLY, stream=True))
    assert received  # the stream started...
    assert not any(c.choices and c.choices[0].finish_reason for c in received)  # ...and never finished

    # anthropic 2.x lets the transport error through unwrapped while iterating a stream.
    events: list[Any] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        events.extend(ant.messages.create(model="c", max_tokens=8, messages=USER_ONLY, stream=True))
    assert events[0].type == "message_start"
    assert "message_stop" not in [e.type for e in events]

    with pytest.raises(openai.APIConnectionError):  # non-streaming: body shorter than Content-Length
        oai.chat.completions.create(model="m", messages=USER_ONLY)


def test_disconnect(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(
            model="m", messages=USER_ONLY, extra_headers={"x-mock-fault": "disconnect"}
        )
    assert oai.chat.completions.create(model="m", messages=USER_ONLY).choices[0].message.content == REPLY


# -- choosing faults -----------------------------------------------------------------------


def test_server_wide_fault_queue_and_header_precedence(upstream: MockUpstream, oai: openai.OpenAI) -> None:
    def outcome(**headers: str) -> str:
        try:
            oai.chat.completions.create(model="m", messages=USER_ONLY, extra_headers=headers)
        except openai.APIStatusError as exc:
            return str(exc.status_code)
        return "ok"

    upstream.set_fault("server_error")
    assert upstream.fault is FaultMode.SERVER_ERROR
    assert outcome() == "500"
    assert outcome(**{"x-mock-fault": "none"}) == "ok"  # the header wins
    upstream.set_fault("auth", count=2)
    upstream.set_fault("rate_limit", count=1)
    assert [outcome(), outcome(), outcome(), outcome()] == ["401", "401", "429", "500"]
    upstream.set_fault(None)
    assert outcome() == "ok"
    assert outcome(**{"x-mock-fault": "no-such-mode"}) == "400"

    with pytest.raises(ValueError, match="unknown fault mode"):
        upstream.set_fault("explode")
    with pytest.raises(ValueError, match="between 0 and 1"):
        MockUpstream(fault_rate=1.5)


def test_admin_endpoint(upstream: MockUpstream) -> None:
    status, state = raw_request(upstream, "POST", "/_mock/fault", {"mode": "rate_limit", "count": 2})
    assert status == 200
    assert state["queued"] == [{"mode": "rate_limit", "count": 2}]
    statuses = [
        raw_request(upstream, "POST", "/v1/chat/completions", {"messages": USER_ONLY})[0] for _ in range(3)
    ]
    assert statuses == [429, 429, 200]

    assert raw_request(upstream, "POST", "/_mock/fault", {"mode": "overloaded"})[1]["fault"] == "overloaded"
    status, body = raw_request(upstream, "POST", "/v1/messages", {"messages": USER_ONLY})
    assert (status, body["error"]["type"]) == (529, "overloaded_error")
    assert raw_request(upstream, "POST", "/_mock/fault", {"mode": None})[1]["fault"] is None

    status, body = raw_request(upstream, "POST", "/_mock/fault", {"mode": "nope"})
    assert status == 400
    assert "unknown fault mode" in body["error"]["message"]
    assert raw_request(upstream, "POST", "/_mock/fault", {"mode": "hang", "count": "x"})[0] == 400

    status, log = raw_request(upstream, "GET", "/_mock/requests")
    assert log["count"] == 4  # admin calls are neither counted nor recorded
    assert [r["fault"] for r in log["requests"]] == ["rate_limit", "rate_limit", None, "overloaded"]
    assert raw_request(upstream, "GET", "/_mock/health") == (200, {"ok": True})
    raw_request(upstream, "POST", "/_mock/reset")
    assert upstream.request_count == 0


def test_fault_rate_is_about_right_and_reproducible() -> None:
    def sample(seed: int) -> list[int]:
        with MockUpstream(fault="server_error", fault_rate=0.3, seed=seed, record_limit=None) as up:
            conn = http.client.HTTPConnection(up.host, up.port, timeout=5)
            statuses = []
            for _ in range(400):
                conn.request("POST", "/v1/chat/completions", body=b'{"messages": []}')
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
            conn.close()
            assert up.request_count == 400
            return statuses

    first = sample(seed=7)
    share = first.count(500) / len(first)
    assert 0.22 < share < 0.38
    assert set(first) == {200, 500}
    assert sample(seed=7) == first


# -- lifecycle and HTTP details -------------------------------------------------------------


def test_stop_with_a_hung_request_returns_promptly() -> None:
    up = MockUpstream(fault="hang").start()
    sock = socket.create_connection((up.host, up.port), timeout=5)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        deadline = time.monotonic() + 5
        while up.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        started = time.perf_counter()
        up.stop()
        assert time.perf_counter() - started < 1.0
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""  # closed without an answer
    finally:
        sock.close()
    up.stop()  # idempotent


def test_async_stop_with_a_hung_request_leaves_no_tasks() -> None:
    async def scenario() -> None:
        async with MockUpstream(fault="hang") as up:
            reader, writer = await asyncio.open_connection(up.host, up.port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            for _ in range(1000):
                if up.request_count:
                    break
                await asyncio.sleep(0.005)
        assert await asyncio.wait_for(reader.read(), 1) == b""
        writer.close()
        await writer.wait_closed()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())


def test_port_in_use_fails_at_start() -> None:
    with MockUpstream() as first:
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            MockUpstream(port=first.port).start()
        assert first.url == f"http://127.0.0.1:{first.port}"
        assert first.openai_base_url == first.url + "/v1"


def test_http_pipelining_chunked_bodies_and_bad_requests(upstream: MockUpstream) -> None:
    body = b'{"messages": [{"role": "user", "content": "one"}]}'
    one = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
        b"expect: 100-continue\r\nconnection: close\r\n\r\n"
        b"5\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection((upstream.host, upstream.port), timeout=5) as sock:
        sock.sendall(one + chunked)  # two pipelined requests; the second asks to close
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.count(b"Mock reply to: one") == 2
    assert [r.json for r in upstream.requests] == [json.loads(body)] * 2

    with socket.create_connection((upstream.host, upstream.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    assert raw_request(upstream, "GET", "/v2/nothing")[0] == 404
    assert raw_request(upstream, "GET", "/v1/chat/completions")[0] == 405
    status, err = raw_request(upstream, "POST", "/v1/messages", "not an object")
    assert (status, err["type"], err["error"]["type"]) == (400, "error", "invalid_request_error")


@pytest.mark.slow
def test_command_line_serves_until_sigterm() -> None:
    env = {**os.environ, "MOCK_DELAY_MS": "50"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kansoku.testing.mock_upstream_main",
            "--fault",
            "rate_limit",
            "--fault-rate",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        started = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=b"{}")
        assert conn.getresponse().status == 429
        assert time.perf_counter() - started >= 0.05  # MOCK_DELAY_MS applied
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

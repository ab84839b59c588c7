"""The gateway's upstream calls against a real MockUpstream on loopback.

Faults are queued with ``set_fault(mode, count=1)``: the ``x-mock-fault`` header would be
dropped by the header allow-list, as any caller header outside it must be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import aiohttp
import pytest

from kansoku.gateway._config import Deployment, Secret
from kansoku.gateway._upstream import (
    UpstreamError,
    UpstreamResult,
    build_request,
    complete,
    http_error,
    make_session,
)
from kansoku.gateway._upstream_stream import StreamBroken, UpstreamStream, stream
from kansoku.model._errors import ErrorType
from kansoku.testing import MockUpstream

KEY = "sk-canary-7f3a9c1e5b"
BODY: dict[str, Any] = {
    "model": "client-alias",
    "messages": [{"role": "user", "content": "Say hello to Tokyo"}],
}
_T = TypeVar("_T")


def run(work: Callable[[aiohttp.ClientSession], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        async with make_session() as session:
            return await work(session)

    return asyncio.run(main())


def deployment(up: MockUpstream, provider: str) -> Deployment:
    if provider == "anthropic":
        return Deployment("anthropic", "claude-mock", api_base=up.anthropic_base_url, api_key=Secret(KEY))
    return Deployment("openai_compatible", "gpt-mock", api_base=up.openai_base_url, api_key=Secret(KEY))


def call(up: MockUpstream, provider: str, timeout_s: float = 2.0) -> UpstreamResult:
    dep = deployment(up, provider)
    return run(lambda s: complete(s, dep, BODY, timeout_s=timeout_s, headers={}))


async def collect(it: UpstreamStream) -> list[dict[str, Any]]:
    async with it:
        return [chunk async for chunk in it]


def stream_all(
    up: MockUpstream, provider: str, body: dict[str, Any] = BODY, timeout_s: float = 2.0
) -> tuple[UpstreamStream, list[dict[str, Any]]]:
    dep = deployment(up, provider)

    async def work(session: aiohttp.ClientSession) -> tuple[UpstreamStream, list[dict[str, Any]]]:
        it = await stream(session, dep, body, timeout_s=timeout_s, headers={})
        return it, await collect(it)

    return run(work)


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_no_secret(err: BaseException) -> None:
    assert KEY not in str(err)
    assert KEY not in repr(err)
    assert err.__cause__ is None
    if isinstance(err, UpstreamError):
        assert KEY not in str(err.body)


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_complete_ok(upstream: MockUpstream, provider: str) -> None:
    result = call(upstream, provider)
    assert result.status == 200
    assert result.body["object"] == "chat.completion"
    assert result.body["choices"][0]["message"]["content"]
    assert result.usage is not None
    assert result.usage["prompt_tokens"] > 0
    assert result.usage["completion_tokens"] > 0
    assert 0 < result.latency_s < 2
    assert result.request_id is not None
    sent = upstream.requests[-1]
    assert sent.json["model"] == ("claude-mock" if provider == "anthropic" else "gpt-mock")


def test_request_headers_per_provider(upstream: MockUpstream) -> None:
    incoming = {
        "Authorization": "Bearer client-own-key",
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    }
    incoming |= {"X-Request-Id": "req-1", "cookie": "c=1", "x-mock-fault": "auth"}
    openai = build_request(deployment(upstream, "openai"), BODY, incoming)
    assert openai.url == upstream.openai_base_url + "/chat/completions"
    assert openai.headers["authorization"] == f"Bearer {KEY}"
    assert {"traceparent", "x-request-id"} <= openai.headers.keys()
    assert not {"cookie", "x-mock-fault"} & openai.headers.keys()
    anthropic = build_request(deployment(upstream, "anthropic"), BODY, incoming)
    assert anthropic.url == upstream.anthropic_base_url + "/v1/messages"
    assert anthropic.headers["x-api-key"] == KEY
    assert anthropic.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in anthropic.headers  # the client's own key never goes upstream
    azure = Deployment("azure", "gpt4o-prod", api_base="https://x.openai.azure.com/", api_key=Secret(KEY))
    built = build_request(azure, BODY, {})
    assert (
        built.url
        == "https://x.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    )
    assert built.headers["api-key"] == KEY
    assert "authorization" not in built.headers


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_trace_headers_reach_the_upstream(upstream: MockUpstream, provider: str) -> None:
    trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    dep = deployment(upstream, provider)
    headers = {"traceparent": trace, "tracestate": "k=v", "authorization": "Bearer client-own-key"}
    run(lambda s: complete(s, dep, BODY, timeout_s=2, headers=headers))
    seen = upstream.requests[-1].headers
    assert seen["traceparent"] == trace
    assert seen["tracestate"] == "k=v"
    assert "client-own-key" not in str(seen)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_ok(upstream: MockUpstream, provider: str) -> None:
    upstream.stream_interval_ms = 5
    body = {**BODY, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    it, chunks = stream_all(upstream, provider, body)
    total = time.perf_counter() - started
    expected = call(upstream, provider).body["choices"][0]["message"]["content"]
    assert text_of(chunks) == expected
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert it.usage is not None
    assert it.usage["completion_tokens"] > 0
    assert it.ttft_s is not None
    assert 0 < it.ttft_s < total / 2
    assert it.chunks == len(chunks)
    assert upstream.requests[0].json["stream"] is True


def test_anthropic_stream_usage_without_include_usage(upstream: MockUpstream) -> None:
    it, chunks = stream_all(upstream, "anthropic")
    assert it.usage is not None
    assert it.usage["prompt_tokens"] > 0
    assert all("usage" not in c for c in chunks)  # the client did not ask for a usage chunk


# -- faults -------------------------------------------------------------------------------------


class Fault(NamedTuple):
    fault: str
    provider: str
    status: int | None
    error_type: ErrorType
    retryable: bool
    retry_after_s: float | None = None


FAULTS = [
    Fault("rate_limit", "openai", 429, ErrorType.RATE_LIMIT, True, 1.0),
    Fault("rate_limit", "anthropic", 429, ErrorType.RATE_LIMIT, True, 1.0),
    Fault("server_error", "openai", 500, ErrorType.SERVER_ERROR, True),
    Fault("server_error", "anthropic", 500, ErrorType.SERVER_ERROR, True),
    Fault("overloaded", "openai", 503, ErrorType.SERVER_ERROR, True),
    Fault("overloaded", "anthropic", 529, ErrorType.SERVER_ERROR, True),
    Fault("context_length", "openai", 400, ErrorType.CONTEXT_LENGTH_EXCEEDED, False),
    Fault("context_length", "anthropic", 400, ErrorType.CONTEXT_LENGTH_EXCEEDED, False),
    Fault("content_filter", "openai", 400, ErrorType.CONTENT_POLICY, False),
    Fault("content_filter", "anthropic", 400, ErrorType.CONTENT_POLICY, False),
    Fault("auth", "openai", 401, ErrorType.AUTH, False),
    Fault("auth", "anthropic", 401, ErrorType.AUTH, False),
    Fault("disconnect", "openai", None, ErrorType.CONNECTION, True),
    Fault("disconnect", "anthropic", None, ErrorType.CONNECTION, True),
]
# Only non-streamed answers break this way; streams break after their first chunk (below).
BODY_FAULTS = [
    Fault("malformed_json", "openai", 200, ErrorType.SERVER_ERROR, True),
    Fault("malformed_json", "anthropic", 200, ErrorType.SERVER_ERROR, True),
    Fault("truncated_stream", "openai", None, ErrorType.CONNECTION, True),
    Fault("truncated_stream", "anthropic", None, ErrorType.CONNECTION, True),
]


def check(err: UpstreamError, case: Fault) -> None:
    assert (err.status, err.error_type, err.retryable, err.retry_after_s) == case[2:]
    assert isinstance(err.body["error"]["message"], str)
    assert_no_secret(err)


@pytest.mark.parametrize("case", FAULTS + BODY_FAULTS, ids=lambda c: f"{c.fault}-{c.provider}")
def test_complete_faults(upstream: MockUpstream, case: Fault) -> None:
    upstream.set_fault(case.fault, count=1)
    with pytest.raises(UpstreamError) as caught:
        call(upstream, case.provider)
    check(caught.value, case)
    if case.fault == "overloaded":
        assert caught.value.client_status == 503


@pytest.mark.parametrize("case", FAULTS, ids=lambda c: f"{c.fault}-{c.provider}")
def test_stream_faults_before_the_first_chunk(upstream: MockUpstream, case: Fault) -> None:
    upstream.set_fault(case.fault, count=1)
    with pytest.raises(UpstreamError) as caught:
        stream_all(upstream, case.provider)
    assert not isinstance(caught.value, StreamBroken)  # nothing was received: the caller may fail over
    check(caught.value, case)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(("fault", "error_type"), [("truncated_stream", ErrorType.CONNECTION),
                                                   ("malformed_json", ErrorType.SERVER_ERROR)])  # fmt: skip
def test_stream_broken_midway(
    upstream: MockUpstream, provider: str, fault: str, error_type: ErrorType
) -> None:
    upstream.stream_interval_ms = 2
    upstream.set_fault(fault, count=1)
    dep = deployment(upstream, provider)
    received: list[dict[str, Any]] = []

    async def work(session: aiohttp.ClientSession) -> None:
        it = await stream(session, dep, BODY, timeout_s=2, headers={})
        async with it:
            async for chunk in it:
                received.append(chunk)  # noqa: PERF401 - one by one: the loop ends in an exception

    with pytest.raises(StreamBroken) as caught:
        run(work)
    err = caught.value
    assert received
    assert err.chunks == len(received)
    assert err.error_type is error_type
    assert err.retryable
    assert_no_secret(err)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("streamed", [False, True])
def test_hang_times_out_within_bound(upstream: MockUpstream, provider: str, streamed: bool) -> None:
    upstream.set_fault("hang", count=1)
    dep = deployment(upstream, provider)

    async def work(session: aiohttp.ClientSession) -> object:
        if streamed:
            return await stream(session, dep, BODY, timeout_s=0.3, headers={})
        return await complete(session, dep, BODY, timeout_s=0.3, headers={})

    started = time.perf_counter()
    with pytest.raises(UpstreamError) as caught:
        run(work)
    elapsed = time.perf_counter() - started
    assert 0.3 <= elapsed < 0.4
    err = caught.value
    assert (err.status, err.error_type, err.retryable) == (None, ErrorType.TIMEOUT, True)
    assert err.client_status == 504
    assert_no_secret(err)


def test_slow_answer_within_and_beyond_the_timeout(upstream: MockUpstream) -> None:
    upstream.slow_ms = 200
    upstream.set_fault("slow", count=2)
    assert call(upstream, "openai", timeout_s=1.0).status == 200
    with pytest.raises(UpstreamError) as caught:
        call(upstream, "openai", timeout_s=0.1)
    assert caught.value.error_type is ErrorType.TIMEOUT


def test_connection_refused_is_retryable() -> None:
    dep = Deployment("openai_compatible", "m", api_base="http://127.0.0.1:9/v1", api_key=Secret(KEY))
    with pytest.raises(UpstreamError) as caught:
        run(lambda s: complete(s, dep, BODY, timeout_s=2, headers={}))
    assert (caught.value.status, caught.value.error_type, caught.value.retryable) == (
        None,
        ErrorType.CONNECTION,
        True,
    )
    assert_no_secret(caught.value)


def test_echoed_key_is_scrubbed(upstream: MockUpstream) -> None:
    dep = deployment(upstream, "openai")
    raw = (
        b'{"error": {"message": "Incorrect API key provided: '
        + KEY.encode()
        + b'", "type": "x", "code": null}}'
    )
    err = http_error(dep, 401, raw, {}, anthropic=False)
    assert err.error_type is ErrorType.AUTH
    assert not err.retryable
    assert_no_secret(err)


def test_non_json_error_page(upstream: MockUpstream) -> None:
    err = http_error(deployment(upstream, "openai"), 502, b"<html>bad gateway</html>", {}, anthropic=False)
    assert (err.status, err.error_type, err.retryable) == (502, ErrorType.SERVER_ERROR, True)
    assert "<html>" not in err.body["error"]["message"]


def test_retry_after_ms_is_preferred(upstream: MockUpstream) -> None:
    headers = {"Retry-After": "3", "retry-after-ms": "1500"}
    err = http_error(deployment(upstream, "openai"), 429, b"{}", headers, anthropic=False)
    assert err.retry_after_s == 1.5

"""Streamed calls to one deployment: OpenAI ``chat.completion.chunk`` dicts as they arrive.

:func:`stream` returns only once the first chunk is in hand, so every failure up to then
(HTTP error, timeout, refused connection, an error event first thing) is an
:class:`UpstreamError` the gateway can still retry or fail over, before it has sent its own
client a 200. Failures after that are :class:`StreamBroken`: chunks are already on their way
to the client, so the stream can only be ended with an error event.

Bytes are parsed as they arrive (:class:`SseParser` on whatever the socket gave), and events
are turned into chunks one at a time, so a broken event surfaces at its place in the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from kansoku.gateway._anthropic_stream import (
    AnthropicStreamError,
    AnthropicStreamTranslator,
    SseParser,
    openai_usage,
)
from kansoku.gateway._config import Deployment
from kansoku.gateway._upstream import (
    UpstreamError,
    build_request,
    connection_error,
    error_from_body,
    http_error,
    malformed_error,
    timeout_error,
)
from kansoku.model._errors import ErrorType

__all__ = ["StreamBroken", "UpstreamStream", "stream"]


class StreamBroken(UpstreamError):  # noqa: N818 - the name the gateway and its docs use
    """The stream failed after its first chunk; ``chunks`` is how many the caller received."""

    def __init__(self, cause: UpstreamError, chunks: int) -> None:
        super().__init__(
            f"stream broken after {chunks} chunks: {cause.message}",
            status=cause.status,
            error_type=cause.error_type,
            retryable=cause.retryable,
            body=cause.body,
            retry_after_s=cause.retry_after_s,
        )
        self.chunks = chunks


class UpstreamStream:
    """An async iterator of OpenAI chunk dicts; close it (``aclose`` or ``async with``).

    ``ttft_s``: seconds from sending the request to the first chunk. ``usage``: the OpenAI
    usage once the upstream reported it (OpenAI only sends it when the request has
    ``stream_options.include_usage``; Anthropic always does). ``status`` and ``request_id``
    are the upstream's.
    """

    def __init__(
        self,
        deployment: Deployment,
        response: aiohttp.ClientResponse,
        translator: AnthropicStreamTranslator | None,
        started: float,
        idle_timeout_s: float,
    ) -> None:
        self.deployment = deployment
        self.status = response.status
        self.request_id = response.headers.get("request-id" if translator else "x-request-id")
        self.ttft_s: float | None = None
        self.usage: dict[str, Any] | None = None
        self.chunks = 0
        self._response = response
        self._translator = translator
        self._started = started
        self._idle_timeout_s = idle_timeout_s
        self._parser = SseParser()
        self._events: deque[tuple[str, str]] = deque()
        self._chunks: deque[dict[str, Any]] = deque()
        self._anthropic_usage: dict[str, Any] = {}
        self._done = False  # the end marker ([DONE] / message_stop) was seen
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._step()
        except UpstreamError as err:
            self._close()
            raise StreamBroken(err, self.chunks) from None
        if chunk is None:
            self._close()
            raise StopAsyncIteration
        self.chunks += 1
        return chunk

    async def aclose(self) -> None:
        self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A connection is only pooled again when its body was read to the end; otherwise
        # (stopped early, or the final chunk of the framing has not come yet) it is dropped.
        if self._done and self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()

    async def _prime(self) -> None:
        """Read up to the first chunk; failures propagate as plain :class:`UpstreamError`."""
        try:
            chunk = await self._step()
        except BaseException:
            self._close()
            raise
        self.ttft_s = time.perf_counter() - self._started
        if chunk is not None:
            self._chunks.appendleft(chunk)

    async def _step(self) -> dict[str, Any] | None:
        """The next chunk, None at the end marker; every failure as an UpstreamError."""
        try:
            return await self._next()
        except TimeoutError:
            raise timeout_error(self.deployment, "stream data", self._idle_timeout_s) from None
        except aiohttp.ClientError as exc:
            raise connection_error(self.deployment, exc) from None

    async def _next(self) -> dict[str, Any] | None:
        while not self._chunks:
            if self._done:
                return None
            if self._events:
                self._convert(*self._events.popleft())
                continue
            data = await self._response.content.readany()
            if not data:
                message = f"{self.deployment.provider} deployment {self.deployment.model!r}: "
                message += "the stream ended before its end marker"
                raise UpstreamError(
                    message,
                    status=None,
                    error_type=ErrorType.CONNECTION,
                    retryable=True,
                    body={"error": {"message": message, "type": "server_error", "param": None,
                                    "code": "upstream_stream_incomplete"}},
                )  # fmt: skip
            self._events.extend(self._parser.feed(data))
        return self._chunks.popleft()

    def _convert(self, event: str, data: str) -> None:
        if self._translator is None and data == "[DONE]":
            self._done = True
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise malformed_error(self.deployment, self.status, "a stream event is not JSON") from None
        if not isinstance(payload, dict):
            raise malformed_error(self.deployment, self.status, "a stream event is not a JSON object")
        if self._translator is not None:
            self._anthropic_event(event, payload, self._translator)
            return
        if isinstance(payload.get("error"), dict) and "choices" not in payload:
            # OpenAI reports a failure after the 200 as a data event holding an error body.
            kind = payload["error"].get("type")
            raise error_from_body(self.deployment, 500 if kind in (None, "server_error") else 400, payload)
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        self._chunks.append(payload)

    def _anthropic_event(
        self, event: str, payload: dict[str, Any], translator: AnthropicStreamTranslator
    ) -> None:
        kind = payload.get("type")
        usage = (
            (payload.get("message") or {}).get("usage") if kind == "message_start" else payload.get("usage")
        )
        if isinstance(usage, dict):  # cumulative: the newest count of each field wins
            self._anthropic_usage.update((k, v) for k, v in usage.items() if v is not None)
            self.usage = openai_usage(self._anthropic_usage)
        try:
            self._chunks.extend(translator.feed(event, payload))
        except AnthropicStreamError as err:
            raise error_from_body(self.deployment, err.status, err.body) from None
        except (AttributeError, TypeError):  # a field of the wrong JSON type
            raise malformed_error(self.deployment, self.status, f"bad {kind} event") from None
        self._done = translator.done


async def stream(
    session: aiohttp.ClientSession,
    deployment: Deployment,
    body: dict[str, Any],
    *,
    timeout_s: float,
    headers: Mapping[str, str],
    idle_timeout_s: float = 60.0,
) -> UpstreamStream:
    """Start a streamed chat completion from ``deployment``; returns once the first chunk came.

    ``timeout_s`` bounds everything up to the first chunk; after it, each wait for more data
    is bounded by ``idle_timeout_s`` (at least ``timeout_s``, as aiohttp applies one read
    timeout to the whole exchange). ``body`` is sent with ``stream: true``.
    """
    req = build_request(deployment, {**body, "stream": True}, headers)
    req.headers["accept"] = "text/event-stream"
    translator = None
    if req.anthropic:
        options = body.get("stream_options")
        include = isinstance(options, dict) and options.get("include_usage") is True
        translator = AnthropicStreamTranslator(deployment.model, include_usage=include)
    idle = max(idle_timeout_s, timeout_s)
    read_timeout = aiohttp.ClientTimeout(total=None, sock_read=idle)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            response = await session.post(
                req.url, data=req.data, headers=req.headers, timeout=read_timeout, allow_redirects=False
            )
            if response.status >= 400:
                async with response:
                    raw = await response.read()
                raise http_error(deployment, response.status, raw, response.headers, anthropic=req.anthropic)
            it = UpstreamStream(deployment, response, translator, started, idle)
            await it._prime()
    except TimeoutError:
        raise timeout_error(deployment, "first chunk", timeout_s) from None
    except aiohttp.ClientError as exc:
        raise connection_error(deployment, exc) from None
    return it

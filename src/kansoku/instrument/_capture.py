"""Capture an LLM call on the caller's thread in a few microseconds; build its record later.

The caller's thread does only: read the context, make ids, take two timestamps, keep
references (the request kwargs, shallow-copied so later mutation of the caller's message list
cannot change the record; the response object; stream chunks with arrival times), and append
one :class:`PendingCall` to the pipeline queue. Extraction of text and usage, cost, redaction
and serialisation all happen on the pipeline thread.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from kansoku.model import LLMCall, Span
from kansoku.sdk._classify import classify_exception, error_message
from kansoku.sdk._context import CALL_CONTEXT, CallContext
from kansoku.sdk._state import HOLDER
from kansoku.sdk._tracer import start_ids


class Extractor(Protocol):
    """Provider- and operation-specific reading of requests, responses and stream chunks."""

    provider: str
    operation: str

    def request(self, kwargs: dict[str, Any], llm: LLMCall) -> None: ...

    def response(self, result: Any, llm: LLMCall) -> None: ...

    def stream(self, chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None: ...


def g(obj: Any, name: str) -> Any:
    """Field access that works on both SDK model objects and decoded JSON dicts."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def as_int(value: Any) -> int | None:
    """A provider's count, or ``None`` when it is absent or not an integer (never 0 for missing)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def common_params(kwargs: dict[str, Any], llm: LLMCall) -> None:
    """Request parameters every provider shares: temperature and the number of tools."""
    temp = kwargs.get("temperature")
    if isinstance(temp, int | float) and not isinstance(temp, bool):
        llm.temperature = float(temp)
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple) and tools:
        llm.parameters["tools"] = len(tools)


def estimate_tokens(text: str | None) -> int | None:
    """A rough count (about four characters a token) used only when a provider gives none."""
    if not text:
        return None
    return max(1, (len(text) + 3) // 4)


class PendingCall:
    """Everything the caller's thread captured; :meth:`build` runs on the pipeline thread."""

    __slots__ = (
        "_done",
        "attributes",
        "chunks",
        "ctx",
        "end_pc",
        "error",
        "extractor",
        "kwargs",
        "parent_span_id",
        "result",
        "sampled",
        "span_id",
        "start_ns",
        "start_pc",
        "trace_id",
    )  # fmt: skip

    def __init__(self, extractor: Extractor, kwargs: dict[str, Any], attributes: dict[str, Any]) -> None:
        self.extractor = extractor
        self.kwargs = kwargs
        self.attributes = attributes
        self.trace_id, self.span_id, self.parent_span_id, self.sampled = start_ids()
        self.ctx: CallContext = CALL_CONTEXT.get()
        self.result: Any = None
        self.error: BaseException | None = None
        self.chunks: list[tuple[int, Any]] | None = None
        self._done = False
        self.start_ns = time.time_ns()
        self.start_pc = time.perf_counter_ns()
        self.end_pc = 0

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Record the outcome once and queue the call for export."""
        if self._done:
            return
        self._done = True
        self.end_pc = time.perf_counter_ns()
        self.result = result
        self.error = error
        sink = HOLDER.sink  # read directly: one call layer less on the caller's thread
        if sink is not None:
            sink.submit(self)

    def build(self) -> Span:
        ext = self.extractor
        llm = LLMCall(provider=ext.provider, operation=ext.operation)
        attributes = self.attributes
        address = attributes.pop("server.address", None)
        host = address if isinstance(address, str) else getattr(address, "host", None)
        if host:
            attributes["server.address"] = str(host)
        status: str = "ok"
        status_code: int | None = 200
        error_type: str | None = None
        message: str | None = None
        try:
            ext.request(self.kwargs, llm)
        finally:
            self.kwargs = {}  # release the caller's objects as early as possible
        if self.chunks is not None:
            llm.stream = True
            ext.stream(self.chunks, self.start_pc, llm)
        elif self.result is not None:
            ext.response(self.result, llm)
        if self.error is not None:
            error_type, status_code = classify_exception(self.error)
            status, message = "error", error_message(self.error)
        elif llm.finish_reasons and {"content_filter", "refusal"} & set(llm.finish_reasons):
            # The provider answered 200 but withheld the content: an error users need to see.
            status, error_type = "error", "content_policy"
        if llm.input_tokens is None and llm.output_tokens is None and self.error is None:
            estimated_in, estimated_out = estimate_tokens(llm.text_in()), estimate_tokens(llm.text_out())
            if estimated_in is not None or estimated_out is not None:
                llm.input_tokens, llm.output_tokens = estimated_in, estimated_out
                llm.usage_estimated = True
        llm.fill_total()
        ctx = self.ctx
        model = llm.model or llm.request_model
        return Span(
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            name=f"{llm.operation} {model}" if model else llm.operation,
            kind="client",
            start_ns=self.start_ns,
            end_ns=self.start_ns + (self.end_pc - self.start_pc),
            status=status,
            status_code=status_code,
            error_type=error_type,
            error_message=message,
            user_id=ctx.user_id,
            context_id=ctx.session_id,
            prompt_id=ctx.prompt_id,
            prompt_version=ctx.prompt_version,
            tags=dict(ctx.tags),
            attributes=attributes,
            llm=llm,
        )


class StreamProxy:
    """Wraps a provider's sync stream: yields the same items, records chunks and the end.

    ``hide`` is a predicate for items kansoku asked the provider for (e.g. the usage-only chunk
    of an OpenAI stream when the user did not request it): they are recorded but not yielded,
    so the application iterates over exactly what it would without kansoku.
    """

    def __init__(self, stream: Any, pending: PendingCall, hide: Any = None) -> None:
        self._stream = stream
        self._pending = pending
        self._hide = hide
        self._chunks: list[tuple[int, Any]] = []
        self._gen: Iterator[Any] | None = None
        pending.chunks = self._chunks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Iterator[Any]:
        # One generator for the proxy's life: a second ``for`` loop continues where the first
        # stopped, as it does on the provider's own stream. Abandoned streams are finished by
        # close()/__del__, so a ``break`` does not end the call.
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    def _iterate(self) -> Iterator[Any]:
        # A generator costs about half as much per chunk as a __next__ method call.
        chunks, hide, clock, pending = self._chunks, self._hide, time.perf_counter_ns, self._pending
        try:
            for item in self._stream:
                chunks.append((clock(), item))
                if hide is None or not hide(item):
                    yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.finish(error=exc)
            raise
        pending.finish(result=None)

    def __next__(self) -> Any:
        if self._gen is not None:
            return next(self._gen)
        while True:
            try:
                item = next(self._stream)
            except StopIteration:
                self._pending.finish(result=None)
                raise
            except BaseException as exc:
                self._pending.finish(error=exc)
                raise
            self._chunks.append((time.perf_counter_ns(), item))
            if self._hide is None or not self._hide(item):
                return item

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pending.finish(result=None)
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        # The application stopped iterating without closing: still record what was seen.
        pending = self.__dict__.get("_pending")
        if pending is not None:
            pending.finish(result=None)


class AsyncStreamProxy:
    """The asyncio twin of :class:`StreamProxy`."""

    def __init__(self, stream: Any, pending: PendingCall, hide: Any = None) -> None:
        self._stream = stream
        self._pending = pending
        self._hide = hide
        self._chunks: list[tuple[int, Any]] = []
        pending.chunks = self._chunks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                item = await self._stream.__anext__()
            except StopAsyncIteration:
                self._pending.finish(result=None)
                raise
            except BaseException as exc:
                self._pending.finish(error=exc)
                raise
            self._chunks.append((time.perf_counter_ns(), item))
            if self._hide is None or not self._hide(item):
                return item

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._pending.finish(result=None)
        close = getattr(self._stream, "close", None)
        if close is not None:
            await close()

    def __del__(self) -> None:
        pending = self.__dict__.get("_pending")
        if pending is not None:
            pending.finish(result=None)

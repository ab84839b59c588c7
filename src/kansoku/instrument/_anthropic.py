"""Instrument the official ``anthropic`` client: messages (create, stream helper); sync and async."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kansoku.instrument._capture import AsyncStreamProxy, PendingCall, StreamProxy, as_int, common_params, g
from kansoku.instrument._messages import content_text, normalise
from kansoku.instrument._openai_extract import unwrap
from kansoku.instrument._patch import patch
from kansoku.instrument._wrap import _begin, wrap_async, wrap_sync
from kansoku.model import LLMCall

_PARAMS = ("max_tokens", "top_p", "top_k", "stop_sequences", "service_tier")


class MessagesExtractor:
    provider = "anthropic"
    operation = "chat"

    def request(self, kwargs: dict[str, Any], llm: LLMCall) -> None:
        llm.request_model = str(kwargs.get("model") or "") or None
        messages = normalise(kwargs.get("messages")) or []
        system = kwargs.get("system")
        system_text = content_text(system) if isinstance(system, str | list) else None
        if system_text:
            messages.insert(0, {"role": "system", "content": system_text})
        llm.input_messages = messages or None
        for name in _PARAMS:
            value = kwargs.get(name)
            if isinstance(value, str | int | float | list) and not isinstance(value, bool):
                llm.parameters[name] = value
        common_params(kwargs, llm)
        thinking = kwargs.get("thinking")
        if isinstance(thinking, dict) and thinking.get("budget_tokens"):
            llm.parameters["thinking_budget_tokens"] = thinking["budget_tokens"]

    def response(self, result: Any, llm: LLMCall) -> None:
        body = unwrap(result)
        if body is None:
            return
        llm.model = g(body, "model")
        llm.response_id = g(body, "id")
        texts, calls = [], []
        for block in g(body, "content") or []:
            kind = g(block, "type")
            if kind == "text":
                texts.append(g(block, "text") or "")
            elif kind == "tool_use":
                calls.append({"id": g(block, "id"), "name": g(block, "name"), "arguments": g(block, "input")})
        self._output(llm, "".join(texts) if texts else None, calls)
        reason = g(body, "stop_reason")
        llm.finish_reasons = [str(reason)] if reason else None
        self._usage(g(body, "usage"), llm)

    @staticmethod
    def _output(llm: LLMCall, text: str | None, calls: list[dict[str, Any]]) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        llm.output_messages = [message] if text is not None or calls else None

    @staticmethod
    def _usage(usage: Any, llm: LLMCall) -> None:
        if usage is None:
            return
        # Anthropic reports cache reads and writes beside input_tokens; kansoku's input_tokens
        # includes them (as OpenAI's and the GenAI conventions' do), cached_input_tokens = reads.
        base = as_int(g(usage, "input_tokens"))
        read = as_int(g(usage, "cache_read_input_tokens"))
        write = as_int(g(usage, "cache_creation_input_tokens"))
        if base is not None:
            llm.input_tokens = base + (read or 0) + (write or 0)
            llm.cached_input_tokens = read
        out = as_int(g(usage, "output_tokens"))
        if out is not None:
            llm.output_tokens = out
        thinking = as_int(g(g(usage, "output_tokens_details"), "thinking_tokens"))
        if thinking is not None:
            llm.reasoning_tokens = thinking

    def stream(self, chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
        if chunks and not isinstance(chunks[0][1], dict):
            # The SDK's typed events: plain attribute access for the text deltas (nearly every
            # event). If an event lacks an attribute the generic reader runs from the start; what
            # this loop wrote to ``llm`` by then (from the same events) it writes again, alike.
            try:
                texts, ttft = self._typed_deltas(chunks, llm)
            except (AttributeError, TypeError):
                pass
            else:
                if ttft is not None and llm.ttft_ms is None:
                    llm.ttft_ms = round((ttft - start_pc) / 1e6, 3)
                self._output(llm, "".join(texts) if texts else None, [])
                return
        texts = []
        for t, event in chunks:
            kind = g(event, "type")
            if kind == "content_block_delta":
                text = g(g(event, "delta"), "text")
                if text:
                    if llm.ttft_ms is None:
                        llm.ttft_ms = round((t - start_pc) / 1e6, 3)
                    texts.append(text)
            else:
                self._event(kind, event, llm)
        self._output(llm, "".join(texts) if texts else None, [])

    def _typed_deltas(self, chunks: list[tuple[int, Any]], llm: LLMCall) -> tuple[list[str], int | None]:
        """The text of the content deltas and the arrival time of the first; other events go to
        :meth:`_event` in order."""
        texts: list[str] = []
        append = texts.append
        ttft: int | None = None
        for t, event in chunks:
            kind = event.type
            if kind == "content_block_delta":
                delta = event.delta
                # Only text deltas have text (tool input, thinking and signatures do not).
                text = delta.text if delta.type == "text_delta" else getattr(delta, "text", None)
                if text:
                    if ttft is None:
                        ttft = t
                    append(text)
            elif kind in {"message_start", "message_delta"}:
                self._event(kind, event, llm)
        return texts, ttft

    def _event(self, kind: Any, event: Any, llm: LLMCall) -> None:
        """``message_start`` (model, id, input usage) and ``message_delta`` (stop reason, usage)."""
        if kind == "message_start":
            message = g(event, "message")
            llm.model = g(message, "model")
            llm.response_id = g(message, "id")
            self._usage(g(message, "usage"), llm)
        elif kind == "message_delta":
            reason = g(g(event, "delta"), "stop_reason")
            if reason:
                llm.finish_reasons = [str(reason)]
            # Cumulative counts; input is only present on some API versions and then replaces.
            self._usage(g(event, "usage"), llm)


_EXTRACTOR = MessagesExtractor()


def _extractor_for(_resource: Any) -> MessagesExtractor:
    return _EXTRACTOR


def _stream_helper(original: Callable[..., Any]) -> Callable[..., Any]:
    """``messages.stream(...)`` returns a manager; the request happens when it is entered."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            pending, call_kwargs, _ = _begin(self, kwargs, _extractor_for, None)
        except Exception:
            return original(self, *args, **kwargs)
        manager = original(self, *args, **call_kwargs)
        manager._kansoku_pending = pending
        return manager

    return wrapper


def _enter(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any) -> Any:
        pending: PendingCall | None = self.__dict__.get("_kansoku_pending")
        if pending is None:
            return original(self)
        try:
            stream = original(self)
        except BaseException as exc:
            pending.finish(error=exc)
            raise
        stream._raw_stream = StreamProxy(stream._raw_stream, pending)
        return stream

    return wrapper


def _aenter(original: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(self: Any) -> Any:
        pending: PendingCall | None = self.__dict__.get("_kansoku_pending")
        if pending is None:
            return await original(self)
        try:
            stream = await original(self)
        except BaseException as exc:
            pending.finish(error=exc)
            raise
        stream._raw_stream = AsyncStreamProxy(stream._raw_stream, pending)
        return stream

    return wrapper


def install() -> bool:
    """Patch the installed ``anthropic`` package; ``False`` when it is not installed."""
    try:
        from anthropic.lib.streaming import _messages as streaming
        from anthropic.resources import messages
    except ImportError:
        return False
    patch(messages.Messages, "create", wrap_sync(_extractor_for))
    patch(messages.AsyncMessages, "create", wrap_async(_extractor_for))
    patch(messages.Messages, "stream", _stream_helper)
    patch(messages.AsyncMessages, "stream", _stream_helper)
    patch(streaming.MessageStreamManager, "__enter__", _enter)
    patch(streaming.AsyncMessageStreamManager, "__aenter__", _aenter)
    return True

"""The wrappers put around client methods. Failures inside kansoku never reach the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kansoku.instrument._capture import AsyncStreamProxy, Extractor, PendingCall, StreamProxy

ExtractorFor = Callable[[Any], Extractor]
Prepare = Callable[[dict[str, Any]], tuple[dict[str, Any], Any]]


FLAGS = {True: "01", False: "00"}  # W3C trace-flags: sampled or not


class Options:
    """Process-wide instrumentation switches, set by ``init()``."""

    propagate = True


OPTIONS = Options()


def _snapshot(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Shallow copies: applications commonly append the reply to the same ``messages`` list.
    record = dict(kwargs)
    for key in ("messages", "input"):
        value = record.get(key)
        if isinstance(value, list):
            record[key] = [dict(m) if isinstance(m, dict) else m for m in value]
    return record


def _begin(
    resource: Any, kwargs: dict[str, Any], extractor_for: ExtractorFor, prepare: Prepare | None
) -> tuple[PendingCall, dict[str, Any], Any]:
    extractor = extractor_for(resource)
    client = getattr(resource, "_client", None)
    pending = PendingCall(extractor, _snapshot(kwargs), {"server.address": getattr(client, "base_url", None)})
    hide = None
    if prepare is not None:
        kwargs, hide = prepare(kwargs)
    if OPTIONS.propagate:
        headers = kwargs.get("extra_headers")
        if not isinstance(headers, dict) or "traceparent" not in headers:
            # The call's own span is the parent of whatever serves it (e.g. the kansoku gateway).
            kwargs = {
                **kwargs,
                "extra_headers": {
                    "traceparent": f"00-{pending.trace_id}-{pending.span_id}-{FLAGS[pending.sampled]}",
                    **(headers if isinstance(headers, dict) else {}),
                },
            }
    return pending, kwargs, hide


class RawResponseProxy:
    """``with_raw_response`` of a streaming call: ``parse()`` hands back an observed stream."""

    def __init__(self, raw: Any, pending: PendingCall, hide: Any) -> None:
        self._raw, self._pending, self._hide = raw, pending, hide

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        stream = self._raw.parse(*args, **kwargs)
        return _observe_stream(stream, self._pending, self._hide)


def _observe_stream(result: Any, pending: PendingCall, hide: Any) -> Any:
    if hasattr(result, "__next__"):
        return StreamProxy(result, pending, hide)
    if hasattr(result, "__anext__"):
        return AsyncStreamProxy(result, pending, hide)
    if hasattr(result, "http_response") and hasattr(result, "parse"):
        return RawResponseProxy(result, pending, hide)
    pending.finish(result=result)
    return result


def settle(result: Any, pending: PendingCall, hide: Any, streaming: bool) -> Any:
    """Return what the caller gets: the result, or a proxy that records the stream as it is read."""
    try:
        if streaming:
            return _observe_stream(result, pending, hide)
        pending.finish(result=result)
    except Exception:  # never let recording break the application's call
        return result
    return result


def wrap_sync(extractor_for: ExtractorFor, prepare: Prepare | None = None) -> Callable[[Any], Any]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                pending, call_kwargs, hide = _begin(self, kwargs, extractor_for, prepare)
            except Exception:
                return original(self, *args, **kwargs)
            try:
                result = original(self, *args, **call_kwargs)
            except BaseException as exc:
                pending.finish(error=exc)
                raise
            return settle(result, pending, hide, call_kwargs.get("stream") is True)

        return wrapper

    return make


def wrap_async(extractor_for: ExtractorFor, prepare: Prepare | None = None) -> Callable[[Any], Any]:
    def make(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                pending, call_kwargs, hide = _begin(self, kwargs, extractor_for, prepare)
            except Exception:
                return await original(self, *args, **kwargs)
            try:
                result = await original(self, *args, **call_kwargs)
            except BaseException as exc:
                pending.finish(error=exc)
                raise
            return settle(result, pending, hide, call_kwargs.get("stream") is True)

        return wrapper

    return make

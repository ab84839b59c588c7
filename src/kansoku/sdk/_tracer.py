"""User spans (``kansoku.span``, ``@kansoku.observe``) and W3C trace-context propagation.

A new span's parent is, in order: the kansoku span active in this context, a remote parent
set by :func:`extract`, or the active OpenTelemetry span when ``opentelemetry-api`` is
installed — so kansoku joins an existing OTel trace instead of starting a second one.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from kansoku.model import Span, SpanContext, SpanEvent, new_span_id, new_trace_id, parse_traceparent
from kansoku.sdk._classify import classify_exception, error_message
from kansoku.sdk._context import CALL_CONTEXT, CURRENT_SPAN
from kansoku.sdk._state import submit

P = ParamSpec("P")
R = TypeVar("R")

_otel_trace: Any = None  # the opentelemetry.trace module once looked up; False when absent


def _otel_parent() -> SpanContext | None:
    global _otel_trace  # noqa: PLW0603 - a cached optional import
    if _otel_trace is None:
        try:
            from opentelemetry import trace

            _otel_trace = trace
        except ImportError:
            _otel_trace = False
    if _otel_trace is False:
        return None
    ctx = _otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return SpanContext(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", sampled=bool(ctx.trace_flags & 1))


def current_parent() -> SpanContext | None:
    """The span context new work here would be a child of."""
    parent = CURRENT_SPAN.get()
    return parent if parent is not None else _otel_parent()


def start_ids() -> tuple[str, str, str | None]:
    """``(trace_id, span_id, parent_span_id)`` for a span starting now, here."""
    parent = current_parent()
    if parent is None:
        return new_trace_id(), new_span_id(), None
    return parent.trace_id, new_span_id(), parent.span_id


class ActiveSpan:
    """A span in progress. Use as a (sync or async) context manager; LLM calls inside nest under it."""

    __slots__ = (
        "_attributes", "_ctx", "_error", "_events", "_kind", "_name", "_start_ns", "_start_pc",
        "_status", "_token", "_trace",
    )  # fmt: skip

    def __init__(
        self, name: str, kind: str = "internal", attributes: Mapping[str, Any] | None = None
    ) -> None:
        self._name = name
        self._kind = kind
        self._attributes: dict[str, Any] = dict(attributes or {})
        self._events: list[SpanEvent] = []
        self._status = "unset"
        self._error: tuple[str | None, int | None, str | None] = (None, None, None)
        self._token: contextvars.Token[SpanContext | None] | None = None
        self._trace: tuple[str, str, str | None] = ("", "", None)
        self._start_ns = 0
        self._start_pc = 0

    @property
    def context(self) -> SpanContext:
        return SpanContext(self._trace[0], self._trace[1])

    @property
    def trace_id(self) -> str:
        return self._trace[0]

    @property
    def span_id(self) -> str:
        return self._trace[1]

    def set_attribute(self, key: str, value: Any) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._attributes.update(attributes)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._events.append(SpanEvent(name, time.time_ns(), dict(attributes or {})))

    def set_status(self, status: str, error_type: str | None = None, message: str | None = None) -> None:
        """``status`` is ``ok`` or ``error``; an error may name its type from the taxonomy."""
        self._status = status
        if status == "error":
            self._error = (error_type or "unknown", None, message)

    def record_exception(self, exc: BaseException) -> None:
        etype, status = classify_exception(exc)
        self._status = "error"
        self._error = (etype, status, error_message(exc))
        self.add_event("exception", {"exception.type": type(exc).__name__})

    def __enter__(self) -> ActiveSpan:
        self._trace = start_ids()
        self._start_ns = time.time_ns()
        self._start_pc = time.perf_counter_ns()
        self._token = CURRENT_SPAN.set(SpanContext(self._trace[0], self._trace[1]))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end_ns = self._start_ns + (time.perf_counter_ns() - self._start_pc)
        if exc is not None:
            self.record_exception(exc)
        elif self._status == "unset":
            self._status = "ok"
        if self._token is not None:
            CURRENT_SPAN.reset(self._token)
            self._token = None
        ctx = CALL_CONTEXT.get()
        etype, status_code, message = self._error
        submit(
            Span(
                trace_id=self._trace[0],
                span_id=self._trace[1],
                parent_span_id=self._trace[2],
                name=self._name,
                kind=self._kind,
                start_ns=self._start_ns,
                end_ns=end_ns,
                status=self._status,
                status_code=status_code,
                error_type=etype,
                error_message=message,
                user_id=ctx.user_id,
                context_id=ctx.session_id,
                prompt_id=ctx.prompt_id,
                prompt_version=ctx.prompt_version,
                tags=dict(ctx.tags),
                attributes=self._attributes,
                events=self._events,
            )
        )

    async def __aenter__(self) -> ActiveSpan:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def span(name: str, *, kind: str = "internal", attributes: Mapping[str, Any] | None = None) -> ActiveSpan:
    """A user step (retrieval, pre/post-processing) as a span: ``with kansoku.span("retrieve"):``."""
    return ActiveSpan(name, kind, attributes)


@overload
def observe(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def observe(
    *, name: str | None = None, kind: str = "internal"
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def observe(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, kind: str = "internal"
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync or async) so each call is a span named after it."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        span_name = name or func.__qualname__
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with ActiveSpan(span_name, kind):
                    return await async_func(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with ActiveSpan(span_name, kind):
                return func(*args, **kwargs)

        return wrapper

    return decorate(fn) if fn is not None else decorate


def inject(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Write ``traceparent`` for the current span into ``headers`` (a new dict if none) and return it."""
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    parent = current_parent()
    if parent is not None:
        carrier["traceparent"] = parent.to_traceparent()
    return carrier


class RemoteParent:
    """Returned by :func:`extract`; ``with`` it, new spans continue the caller's trace."""

    __slots__ = ("_token", "context")

    def __init__(self, context: SpanContext | None) -> None:
        self.context = context
        self._token: contextvars.Token[SpanContext | None] | None = None

    def __bool__(self) -> bool:
        return self.context is not None

    def __enter__(self) -> SpanContext | None:
        if self.context is not None:
            self._token = CURRENT_SPAN.set(self.context)
        return self.context

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            CURRENT_SPAN.reset(self._token)
            self._token = None

    async def __aenter__(self) -> SpanContext | None:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def extract(headers: Mapping[str, str]) -> RemoteParent:
    """Read ``traceparent`` (any header-name case); an invalid or absent header gives an empty parent."""
    value = headers.get("traceparent")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "traceparent"), None)
    return RemoteParent(parse_traceparent(value))

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
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, MutableMapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from kansoku.model import Span, SpanContext, SpanEvent, new_span_id, new_trace_id, parse_traceparent
from kansoku.sdk._classify import classify_exception, error_message
from kansoku.sdk._context import CALL_CONTEXT, CURRENT_SPAN
from kansoku.sdk._state import submit

P = ParamSpec("P")
R = TypeVar("R")


class _OTel:
    """How to read the active OpenTelemetry span, looked up once.

    The fast path reads OTel's own context variable: with no OTel context active (the common
    case) that is one ``ContextVar.get`` instead of ~0.5 µs through the public API. It falls back
    to the public API when OTel's internals differ from what is expected.
    """

    looked_up = False
    trace: Any = None
    context_get: Any = None
    span_key: Any = None

    @classmethod
    def lookup(cls) -> None:
        cls.looked_up = True
        try:
            from opentelemetry import trace
        except ImportError:
            return
        cls.trace = trace
        try:
            from opentelemetry.context import _RUNTIME_CONTEXT
            from opentelemetry.trace.propagation import _SPAN_KEY

            var = getattr(_RUNTIME_CONTEXT, "_current_context", None)
            if isinstance(var, contextvars.ContextVar):
                cls.context_get, cls.span_key = var.get, _SPAN_KEY
        except ImportError:
            pass


def _otel_parent() -> SpanContext | None:
    if not _OTel.looked_up:
        _OTel.lookup()
    if _OTel.trace is None:
        return None
    if _OTel.context_get is not None:
        ctx = _OTel.context_get()
        if not ctx:
            return None
        otel_span = ctx.get(_OTel.span_key)
        if otel_span is None:
            return None
        sc = otel_span.get_span_context()
    else:
        sc = _OTel.trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return SpanContext(f"{sc.trace_id:032x}", f"{sc.span_id:016x}", sampled=bool(sc.trace_flags & 1))


def current_parent() -> SpanContext | None:
    """The span context new work here would be a child of."""
    parent = CURRENT_SPAN.get()
    return parent if parent is not None else _otel_parent()


def start_ids() -> tuple[str, str, str | None, bool]:
    """``(trace_id, span_id, parent_span_id, sampled)`` for a span starting now, here."""
    parent = current_parent()
    if parent is None:
        return new_trace_id(), new_span_id(), None, True
    return parent.trace_id, new_span_id(), parent.span_id, parent.sampled


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
        self._trace: tuple[str, str, str | None, bool] = ("", "", None, True)
        self._ctx = SpanContext("", "")
        self._start_ns = 0
        self._start_pc = 0

    @property
    def context(self) -> SpanContext:
        return self._ctx

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

    def begin(self) -> ActiveSpan:
        """Start timing and take ids, without making the span current (see ``__enter__``)."""
        self._trace = start_ids()
        self._ctx = SpanContext(self._trace[0], self._trace[1], sampled=self._trace[3])
        self._start_ns = time.time_ns()
        self._start_pc = time.perf_counter_ns()
        return self

    def end(self, exc: BaseException | None = None) -> None:
        """Finish the span and hand it to the pipeline."""
        end_ns = self._start_ns + (time.perf_counter_ns() - self._start_pc)
        if exc is not None:
            self.record_exception(exc)
        elif self._status == "unset":
            self._status = "ok"
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

    def __enter__(self) -> ActiveSpan:
        self.begin()
        self._token = CURRENT_SPAN.set(self._ctx)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            CURRENT_SPAN.reset(self._token)
            self._token = None
        self.end(exc)

    async def __aenter__(self) -> ActiveSpan:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def span(name: str, *, kind: str = "internal", attributes: Mapping[str, Any] | None = None) -> ActiveSpan:
    """A user step (retrieval, pre/post-processing) as a span: ``with kansoku.span("retrieve"):``."""
    return ActiveSpan(name, kind, attributes)


def _observe_generator(
    func: Callable[..., Generator[Any]], name: str, kind: str
) -> Callable[..., Generator[Any]]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any]:
        active = ActiveSpan(name, kind).begin()
        gen = func(*args, **kwargs)
        error: BaseException | None = None
        try:
            while True:
                # The span is current only while the generator's own code runs, so the
                # consumer's work between items does not nest under it.
                token = CURRENT_SPAN.set(active.context)
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    CURRENT_SPAN.reset(token)
                yield item
        except GeneratorExit:
            gen.close()
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            active.end(error)

    return wrapper


def _observe_async_generator(
    func: Callable[..., AsyncIterator[Any]], name: str, kind: str
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        active = ActiveSpan(name, kind).begin()
        agen = func(*args, **kwargs)
        error: BaseException | None = None
        try:
            while True:
                token = CURRENT_SPAN.set(active.context)
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    CURRENT_SPAN.reset(token)
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            active.end(error)

    return wrapper


@overload
def observe(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def observe(
    *, name: str | None = None, kind: str = "internal"
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def observe(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, kind: str = "internal"
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function — sync, async, generator or async generator — so each call is a span."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        span_name = name or func.__qualname__
        if inspect.isasyncgenfunction(func):
            return cast(Callable[P, R], _observe_async_generator(cast(Any, func), span_name, kind))
        if inspect.isgeneratorfunction(func):
            return cast(Callable[P, R], _observe_generator(cast(Any, func), span_name, kind))
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

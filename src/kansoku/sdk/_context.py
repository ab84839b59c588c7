"""Who and what a call is for: user, session, prompt, tags — carried by ``contextvars``.

asyncio tasks copy context by themselves. Threads do not, so :func:`install_thread_propagation`
makes ``threading.Thread`` and ``ThreadPoolExecutor.submit`` carry kansoku's two variables
(and only those: other libraries' context variables keep their own semantics).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from kansoku.model import SpanContext

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CallContext:
    """The attribution stamped on every record made inside :func:`context`."""

    user_id: str | None = None
    session_id: str | None = None
    prompt_id: str | None = None
    prompt_version: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def merged(
        self,
        user_id: str | None,
        session_id: str | None,
        prompt_id: str | None,
        prompt_version: str | None,
        tags: Mapping[str, Any] | None,
    ) -> CallContext:
        merged_tags = self.tags
        if tags:
            merged_tags = MappingProxyType({**self.tags, **{str(k): str(v) for k, v in tags.items()}})
        return CallContext(
            user_id=self.user_id if user_id is None else str(user_id),
            session_id=self.session_id if session_id is None else str(session_id),
            prompt_id=self.prompt_id if prompt_id is None else str(prompt_id),
            prompt_version=self.prompt_version if prompt_version is None else str(prompt_version),
            tags=merged_tags,
        )


EMPTY = CallContext()
CALL_CONTEXT: contextvars.ContextVar[CallContext] = contextvars.ContextVar(
    "kansoku_call_context", default=EMPTY
)
#: The span new spans become children of (a live local span or a remote parent).
CURRENT_SPAN: contextvars.ContextVar[SpanContext | None] = contextvars.ContextVar(
    "kansoku_current_span", default=None
)


class context:  # noqa: N801 - used like a function: ``with kansoku.context(...)``
    """Attribute every call made inside the block; nests (inner values win, tags merge).

    Works as a sync or async context manager and as a decorator::

        with kansoku.context(user_id="u-42", session_id="s-1", tags={"feature": "search"}):
            client.chat.completions.create(...)
    """

    __slots__ = ("_fields", "_token")

    def __init__(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        prompt_id: str | None = None,
        prompt_version: str | int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        version = None if prompt_version is None else str(prompt_version)
        self._fields = (user_id, session_id, prompt_id, version, tags)
        self._token: contextvars.Token[CallContext] | None = None

    def __enter__(self) -> CallContext:
        ctx = CALL_CONTEXT.get().merged(*self._fields)
        self._token = CALL_CONTEXT.set(ctx)
        return ctx

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            CALL_CONTEXT.reset(self._token)
            self._token = None

    async def __aenter__(self) -> CallContext:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        user_id, session_id, prompt_id, prompt_version, tags = self._fields
        kwargs: dict[str, Any] = {
            "user_id": user_id,
            "session_id": session_id,
            "prompt_id": prompt_id,
            "prompt_version": prompt_version,
            "tags": tags,
        }
        if inspect.iscoroutinefunction(fn):
            async_fn = fn

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kw: Any) -> Any:
                with context(**kwargs):
                    return await async_fn(*args, **kw)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kw: P.kwargs) -> R:
            with context(**kwargs):
                return fn(*args, **kw)

        return wrapper


def current_context() -> CallContext:
    """The attribution in force here."""
    return CALL_CONTEXT.get()


# -- thread propagation --------------------------------------------------------------------------
_installed = False
_install_lock = threading.Lock()


def _carry(fn: Callable[..., R]) -> Callable[..., R]:
    """Wrap ``fn`` so it runs with the caller's kansoku context, wherever it runs."""
    # Always wrap, even for an empty context: pool worker threads outlive the submitter that
    # started them, and must not leak its context into later tasks.
    ctx, span = CALL_CONTEXT.get(), CURRENT_SPAN.get()

    def run(*args: Any, **kwargs: Any) -> R:
        t1, t2 = CALL_CONTEXT.set(ctx), CURRENT_SPAN.set(span)
        try:
            return fn(*args, **kwargs)
        finally:
            CURRENT_SPAN.reset(t2)
            CALL_CONTEXT.reset(t1)

    return run


def install_thread_propagation() -> None:
    """Patch ``Thread`` and ``ThreadPoolExecutor`` once so new work inherits the kansoku context."""
    global _installed  # noqa: PLW0603 - a process-wide, idempotent patch
    with _install_lock:
        if _installed:
            return
        _installed = True
        original_submit = ThreadPoolExecutor.submit
        original_start = threading.Thread.start

        def submit(
            self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
        ) -> Future[Any]:
            return original_submit(self, _carry(fn), *args, **kwargs)

        @functools.wraps(original_start)
        def start(self: threading.Thread) -> None:
            # Wrap this instance's own run(), so subclasses that override run() are covered.
            self.run = _carry(self.run)  # type: ignore[method-assign]
            original_start(self)

        submit.__wrapped__ = original_submit  # type: ignore[attr-defined]
        ThreadPoolExecutor.submit = submit  # type: ignore[assignment]
        threading.Thread.start = start  # type: ignore[method-assign]

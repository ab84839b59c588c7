"""A stand-in for the query API of ``kansoku server``: canned JSON per path, every request kept.

Only for the client and CLI tests (the real server has its own end-to-end tests)::

    with FakeQueryAPI() as api:
        api.reply("/api/v1/calls", {"object": "list", "data": [], "next_cursor": None, "has_more": False})
        Client(api.url).calls(model="m")
        api.requests[0].query  # [("model", "m")]

A reply may be a callable of the request, for answers that depend on the query (cursors).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    path: str  # decoded
    raw_path: str  # as sent, with the query string
    query: list[tuple[str, str]]
    headers: dict[str, str]

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


@dataclass(frozen=True)
class Reply:
    body: Any = None
    status: int = 200
    raw: bytes | None = None  # sent as is instead of JSON (foreign servers, broken answers)
    gzip: bool = False
    content_type: str = "application/json"


Answer = Reply | Callable[[Seen], Reply]

NOT_FOUND = Reply(
    {"error": {"message": "no such route", "type": "not_found_error", "param": None, "code": None}}, 404
)


class FakeQueryAPI:
    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, path: str, body: Any = None, status: int = 200, **kw: Any) -> None:
        self.routes[path] = Reply(body, status, **kw)

    def answer(self, path: str, fn: Callable[[Seen], Reply]) -> None:
        self.routes[path] = fn

    async def _handle(self, request: web.Request) -> web.Response:
        seen = Seen(request.path, request.raw_path, list(request.query.items()), dict(request.headers))
        self.requests.append(seen)
        answer = self.routes.get(request.path, NOT_FOUND)
        reply = answer(seen) if callable(answer) else answer
        body = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        headers = {"Content-Type": reply.content_type}
        if reply.gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, status=reply.status, headers=headers)

    def start(self) -> FakeQueryAPI:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def setup() -> None:
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(setup())
            ready.set()
            loop.run_forever()
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-query-api", daemon=True)
        self._thread.start()
        assert ready.wait(10), "fake query API did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeQueryAPI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- canned bodies in the API's shapes -----------------------------------------------------------


def record(n: int = 0, **over: Any) -> dict[str, Any]:
    """A record shaped like ``Span.to_record()`` for an LLM call (only the fields the views read, and ids)."""
    rec: dict[str, Any] = {
        "type": "llm_call",
        "timestamp": f"2026-05-01T12:00:{n % 60:02d}.000000Z",
        "trace_id": f"{n + 1:032x}",
        "span_id": f"{n + 1:016x}",
        "parent_span_id": None,
        "name": "chat",
        "latency_ms": 812.5,
        "status": "ok",
        "error_type": None,
        "error_message": None,
        "user_id": "u-1",
        "context_id": "conv-1",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_text": f"question {n}",
        "output_text": f"answer {n}",
        "input_messages": [{"role": "user", "content": f"question {n}"}],
        "input_tokens": 120,
        "output_tokens": 45,
        "total_tokens": 165,
        "cost_usd": 0.000123,
    }
    rec.update(over)
    return rec


def page(records: list[dict[str, Any]], next_cursor: str | None = None) -> dict[str, Any]:
    return {
        "object": "list",
        "data": records,
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }


def error(status: int, message: str, type_: str, param: str | None = None) -> Reply:
    return Reply({"error": {"message": message, "type": type_, "param": param, "code": None}}, status)

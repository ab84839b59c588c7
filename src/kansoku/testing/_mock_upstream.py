"""``MockUpstream``: a fake OpenAI + Anthropic API server for tests and benchmarks.

It speaks the real wire formats closely enough for the official ``openai`` and
``anthropic`` SDKs (streaming included), answers deterministically (see
:mod:`kansoku.testing._mock_payloads` for the reply and token-count rules), records what it
receives, and fails on demand in the ways real upstreams fail.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/embeddings``,
``GET /v1/models[/{id}]`` (Anthropic's shape when ``anthropic-version`` is sent),
``POST /v1/messages``, ``POST /v1/messages/count_tokens``. Admin routes, never recorded
or faulted: ``GET|POST /_mock/fault``, ``GET /_mock/requests``, ``POST /_mock/reset``,
``GET /_mock/health``.

Faults are chosen per request, first match wins:

1. the ``x-mock-fault: <mode>`` request header (``none`` forces a normal answer);
2. the queue filled by ``set_fault(mode, count=N)`` or ``POST /_mock/fault {"mode", "count"}``;
3. the server-wide fault (``fault=`` / ``set_fault(mode)``), applied with probability
   ``fault_rate`` drawn from an RNG seeded with ``seed``.

The ``x-mock-delay-ms`` header overrides ``delay_ms`` for one request, and
``x-mock-reply`` overrides the reply text.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson

from kansoku.testing import _mock_payloads as p
from kansoku.testing._mock_faults import FaultMode, _mode
from kansoku.testing._mock_http import Action, HttpRequest, HttpServer, Reply, StreamReply, header_lines

__all__ = ["FaultMode", "MockUpstream", "RecordedRequest"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the mock received: ``json`` is the parsed body (None if empty or not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    fault: FaultMode | None


_JSON = b"content-type: application/json\r\n"
_SSE = b"content-type: text/event-stream; charset=utf-8\r\n"
_ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
_INVALID = object()  # marks a body that failed to parse, as distinct from an empty one


class MockUpstream:
    """A fake LLM provider on loopback, for the official SDKs and for load tests.

    Sync tests run it on a background thread::

        with MockUpstream(cached_tokens=3) as up:
            client = openai.OpenAI(base_url=up.openai_base_url, api_key="x", max_retries=0)
            ...
            assert up.request_count == 1

    Async code runs it on the current loop with ``async with MockUpstream() as up:``.

    Args:
        host, port: where to listen; port 0 picks a free one (see :attr:`port`).
        reply: fixed reply text; default :func:`~kansoku.testing._mock_payloads.default_reply`.
        fault, fault_rate, seed: the server-wide fault, the share of requests it hits, and
            the RNG seed that makes that share reproducible.
        delay_ms: added before every answer. slow_ms: further delay of the ``slow`` fault.
        stream_interval_ms: gap between streamed events (0 sends them back to back; set it
            above 0 when a test needs time-to-first-token clearly below the total).
        retry_after: seconds in ``Retry-After`` of ``rate_limit`` answers.
        cached_tokens, cache_creation_tokens, reasoning_tokens: reported in every usage.
        embedding_dim: vector size unless the request sets ``dimensions``.
        record_limit: how many requests :attr:`requests` keeps (oldest dropped first);
            None keeps all. :attr:`request_count` always counts every request.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: str | None = None,
        fault: str | FaultMode | None = None,
        fault_rate: float = 1.0,
        seed: int = 0,
        delay_ms: float = 0.0,
        slow_ms: float = 1000.0,
        stream_interval_ms: float = 0.0,
        retry_after: int = 1,
        cached_tokens: int = 0,
        cache_creation_tokens: int = 0,
        reasoning_tokens: int = 0,
        embedding_dim: int = 8,
        record_limit: int | None = 10_000,
    ) -> None:
        self.host = host
        self.reply = reply
        self.delay_ms = delay_ms
        self.slow_ms = slow_ms
        self.stream_interval_ms = stream_interval_ms
        self.retry_after = retry_after
        self.cached_tokens = cached_tokens
        self.cache_creation_tokens = cache_creation_tokens
        self.reasoning_tokens = reasoning_tokens
        self.embedding_dim = embedding_dim
        self._port = port
        self._lock = threading.Lock()
        self._fault = _mode(fault)
        self._fault_rate = self._check_rate(fault_rate)
        self._rng = random.Random(seed)
        self._queue: deque[list[Any]] = deque()  # [mode, remaining] pairs
        # Raw (request, body, fault) triples: RecordedRequest objects (and the full header
        # dicts) are only built when a test reads them, keeping the hot path cheap.
        self._requests: deque[tuple[HttpRequest, Any, FaultMode | None]] = deque(maxlen=record_limit)
        self._count = 0
        self._ids = itertools.count(1)
        self._http = HttpServer(self._handle)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with port 0, once started)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``, also the Anthropic base URL."""
        return f"http://{self.host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``: :attr:`url` + ``/v1``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)``: :attr:`url`."""
        return self.url

    async def astart(self) -> Self:
        """Start serving on the running event loop."""
        if self._started:
            raise RuntimeError("this MockUpstream is already started")
        self._port = await self._http.start(self.host, self._port)
        self._started = True
        return self

    async def astop(self) -> None:
        """Stop serving: close every connection, hung ones included."""
        if self._started:
            self._started = False
            await self._http.close()

    def start(self) -> Self:
        """Start serving on a new event loop (uvloop when installed) in a daemon thread."""
        if self._started or self._thread is not None:
            raise RuntimeError("this MockUpstream is already started")
        ready = threading.Event()
        failure: list[OSError] = []
        loop = _new_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                try:
                    loop.run_until_complete(self.astart())
                except OSError as err:  # e.g. port in use: re-raised by start() below
                    failure.append(err)
                    return
                finally:
                    ready.set()
                loop.run_forever()
                loop.run_until_complete(self.astop())
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"kansoku-mock-upstream-{id(self):x}", daemon=True)
        self._thread.start()
        ready.wait()
        if not self._started:
            self._thread.join()
            self._thread = self._loop = None
            if failure:
                raise failure[0]
            raise RuntimeError("the mock upstream failed to start; see the thread's traceback above")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread started by :meth:`start` and wait for it."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"mock upstream thread did not stop within {timeout} s")
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    # -- faults and records -----------------------------------------------------------

    @staticmethod
    def _check_rate(rate: float) -> float:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {rate}")
        return rate

    def set_fault(self, mode: str | FaultMode | None, *, count: int | None = None, rate: float = 1.0) -> None:
        """Change faults at runtime, from any thread.

        With ``count``, queue ``mode`` for the next ``count`` requests (after any already
        queued; queued faults always apply). Without, make ``mode`` the server-wide fault,
        hitting a ``rate`` share of requests. ``None`` or ``"none"`` clears the server-wide
        fault and the queue.
        """
        parsed = _mode(mode)
        rate = self._check_rate(rate)
        with self._lock:
            if parsed is None:
                self._fault, self._fault_rate = None, 1.0
                self._queue.clear()
            elif count is not None:
                if count > 0:
                    self._queue.append([parsed, count])
            else:
                self._fault, self._fault_rate = parsed, rate

    @property
    def fault(self) -> FaultMode | None:
        """The server-wide fault, if any."""
        return self._fault

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded API requests, oldest first (admin routes excluded)."""
        with self._lock:
            raw = list(self._requests)
        return [RecordedRequest(r.method, r.path, dict(r.headers), body, fault) for r, body, fault in raw]

    @property
    def request_count(self) -> int:
        """How many API requests arrived since start (or the last :meth:`reset`)."""
        return self._count

    def reset(self) -> None:
        """Forget recorded requests and queued faults; the server-wide fault stays."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._count = 0

    def _pick_fault(self, header: str | None) -> FaultMode | None:
        if header is not None:
            return _mode(header)
        with self._lock:
            if self._queue:
                head = self._queue[0]
                head[1] -= 1
                if head[1] <= 0:
                    self._queue.popleft()
                return head[0]  # type: ignore[no-any-return]
            mode = self._fault
            if mode is None or (self._fault_rate < 1.0 and self._rng.random() >= self._fault_rate):
                return None
            return mode

    # -- request handling -------------------------------------------------------------

    def _record(self, req: HttpRequest, body: Any, fault: FaultMode | None) -> None:
        with self._lock:
            self._requests.append((req, body, fault))
            self._count += 1

    def _delay(self, req: HttpRequest, fault: FaultMode | None) -> float:
        """Seconds to wait before answering; raises ValueError on a bad header."""
        override = req.header("x-mock-delay-ms")
        try:
            delay_ms = self.delay_ms if override is None else float(override)
        except ValueError:
            raise ValueError(f"x-mock-delay-ms must be a number of milliseconds, got {override!r}") from None
        if fault is FaultMode.SLOW:
            delay_ms += self.slow_ms
        return delay_ms / 1000.0

    def _handle(self, req: HttpRequest) -> Reply | StreamReply | Action:
        if req.path.startswith("/_mock/"):
            return self._admin(req)
        path = req.path
        anthropic = path in _ANTHROPIC_ROUTES or (
            path.startswith("/v1/models") and req.header("anthropic-version") is not None
        )
        rid = f"mock{next(self._ids):012d}"
        try:
            body: Any = orjson.loads(req.body) if req.body else None
        except orjson.JSONDecodeError:
            body = _INVALID
        try:
            fault = self._pick_fault(req.header("x-mock-fault"))
            delay = self._delay(req, fault)
        except ValueError as err:
            self._record(req, None if body is _INVALID else body, None)
            return self._error(400, anthropic, rid, "invalid_request_error", str(err))
        self._record(req, None if body is _INVALID else body, fault)

        action = _ACTIONS.get(fault)
        if action is not None:
            return action
        if body is None:
            body = {}
        elif not isinstance(body, dict):
            return self._error(
                400, anthropic, rid, "invalid_request_error", "request body is not a JSON object"
            )
        if fault in p.ERRORS:
            reply: Reply | StreamReply = self._fault_reply(fault, anthropic, rid, body)
        else:
            reply = self._route(req, body, anthropic, rid, fault)
        reply.delay = delay
        if fault in _DAMAGE:
            _damage(reply, fault)
        return reply

    def _route(
        self, req: HttpRequest, body: dict[str, Any], anthropic: bool, rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        path, method = req.path, req.method
        handler = _POST_ROUTES.get(path) if method == "POST" else None
        if handler is not None:
            return handler(self, req, body, rid, fault)
        if method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return self._models(path, anthropic)
        known = path in _POST_ROUTES or path.startswith("/v1/models")
        status, kind = (405, "method_not_allowed") if known else (404, "not_found_error")
        return self._error(
            status, anthropic, rid, kind, f"{method} {path} is not served by the mock upstream"
        )

    def _answer(
        self,
        req: HttpRequest,
        body: dict[str, Any],
        rid: str,
        prompt: tuple[int, str],
        fault: FaultMode | None,
    ) -> p.Answer:
        tokens, last_user = prompt
        forced = req.header("x-mock-reply")
        text = (
            forced
            if forced is not None
            else self.reply
            if self.reply is not None
            else p.default_reply(last_user)
        )
        usage = p.Tokens.build(
            tokens, text, self.cached_tokens, self.cache_creation_tokens, self.reasoning_tokens
        )
        model = str(body.get("model", "mock-model"))
        return p.Answer(rid, int(time.time()), model, text, usage, fault is FaultMode.CONTENT_FILTER_FINISH)

    def _stream(self, events: list[bytes], rid_header: bytes) -> StreamReply:
        return StreamReply(200, _SSE + rid_header, events, interval=self.stream_interval_ms / 1000.0)

    def _chat(
        self, req: HttpRequest, body: dict[str, Any], rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        answer = self._answer(req, body, rid, p.chat_prompt(body), fault)
        rid_header = _openai_id(rid)
        if body.get("stream"):
            options = body.get("stream_options")
            include = isinstance(options, dict) and bool(options.get("include_usage"))
            return self._stream(p.chat_stream(answer, include), rid_header)
        return Reply(200, _JSON + rid_header, p.chat_completion(answer))

    def _responses(
        self, req: HttpRequest, body: dict[str, Any], rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        answer = self._answer(req, body, rid, p.responses_prompt(body), fault)
        rid_header = _openai_id(rid)
        if body.get("stream"):
            return self._stream(p.response_stream(answer, body), rid_header)
        return Reply(200, _JSON + rid_header, orjson.dumps(p.response_object(answer, body)))

    def _embeddings(
        self, req: HttpRequest, body: dict[str, Any], rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        data = p.embeddings(body, str(body.get("model", "mock-embedding")), self.embedding_dim)
        return Reply(200, _JSON + _openai_id(rid), data)

    def _messages(
        self, req: HttpRequest, body: dict[str, Any], rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        answer = self._answer(req, body, rid, p.anthropic_prompt(body), fault)
        rid_header = _anthropic_id(rid)
        if body.get("stream"):
            return self._stream(p.anthropic_stream(answer), rid_header)
        return Reply(200, _JSON + rid_header, p.anthropic_message(answer))

    def _count_tokens(
        self, req: HttpRequest, body: dict[str, Any], rid: str, fault: FaultMode | None
    ) -> Reply | StreamReply:
        prompt, _ = p.anthropic_prompt(body)
        return Reply(200, _JSON + _anthropic_id(rid), orjson.dumps({"input_tokens": prompt}))

    def _models(self, path: str, anthropic: bool) -> Reply:
        if path == "/v1/models":
            return Reply(200, _JSON, p.anthropic_models() if anthropic else p.openai_models())
        name = path.removeprefix("/v1/models/")
        obj: dict[str, Any]
        if anthropic:
            obj = {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}
        else:
            obj = {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "kansoku-mock"}
        return Reply(200, _JSON, orjson.dumps(obj))

    # -- errors -----------------------------------------------------------------------

    def _error(self, status: int, anthropic: bool, rid: str, kind: str, message: str) -> Reply:
        if anthropic:
            return Reply(status, _JSON + _anthropic_id(rid), p.anthropic_error(kind, message, "req_" + rid))
        return Reply(status, _JSON + _openai_id(rid), p.openai_error(message, kind))

    def _fault_reply(self, fault: str, anthropic: bool, rid: str, body: dict[str, Any]) -> Reply:
        spec = p.ERRORS[fault]
        extra = header_lines(("retry-after", str(self.retry_after))) if fault == FaultMode.RATE_LIMIT else b""
        if anthropic:
            tokens, _ = p.anthropic_prompt(body)
            message = spec.anthropic_message.format(tokens=tokens)
            payload = p.anthropic_error(spec.anthropic_type, message, "req_" + rid)
            return Reply(spec.anthropic_status, _JSON + _anthropic_id(rid) + extra, payload)
        tokens, _ = p.chat_prompt(body) if "messages" in body else p.responses_prompt(body)
        message = spec.openai_message.format(tokens=tokens)
        payload = p.openai_error(message, spec.openai_type, spec.openai_code, spec.openai_param)
        return Reply(spec.openai_status, _JSON + _openai_id(rid) + extra, payload)

    # -- admin API --------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        with self._lock:
            queued = [{"mode": str(mode), "count": left} for mode, left in self._queue]
            return {"fault": self._fault, "fault_rate": self._fault_rate, "queued": queued}

    def _admin(self, req: HttpRequest) -> Reply:
        route = (req.method, req.path)
        if route == ("GET", "/_mock/health"):
            data: Any = {"ok": True}
        elif route == ("GET", "/_mock/fault"):
            data = self._state()
        elif route == ("POST", "/_mock/fault"):
            try:
                mode, count, rate = _fault_request(req.body)
                self.set_fault(mode, count=count, rate=1.0 if rate is None else rate)
            except (TypeError, ValueError) as err:
                return Reply(400, _JSON, p.openai_error(str(err), "invalid_request_error"))
            data = self._state()
        elif route == ("GET", "/_mock/requests"):
            data = {
                "count": self._count,
                "requests": [
                    {
                        "method": r.method,
                        "path": r.path,
                        "headers": r.headers,
                        "json": r.json,
                        "fault": r.fault,
                    }
                    for r in self.requests
                ],
            }
        elif route == ("POST", "/_mock/reset"):
            self.reset()
            data = self._state()
        else:
            return Reply(404, _JSON, p.openai_error(f"no admin route {req.method} {req.path}", "not_found"))
        return Reply(200, _JSON, orjson.dumps(data))


def _fault_request(raw: bytes) -> tuple[str | None, int | None, float | None]:
    """Validate a ``POST /_mock/fault`` body: ``{"mode": str|null, "count"?: int, "rate"?: number}``."""
    try:
        spec = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise ValueError('the body must be JSON, e.g. {"mode": "rate_limit", "count": 2}') from None
    if not isinstance(spec, dict):
        raise TypeError('the body must be a JSON object, e.g. {"mode": "rate_limit", "count": 2}')
    mode, count, rate = spec.get("mode"), spec.get("count"), spec.get("rate")
    if mode is not None and not isinstance(mode, str):
        raise ValueError('"mode" must be a fault mode name or null')
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        raise ValueError('"count" must be an integer')
    if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)):
        raise ValueError('"rate" must be a number between 0 and 1')
    return mode, count, rate


def _openai_id(rid: str) -> bytes:
    return b"x-request-id: req_" + rid.encode() + b"\r\n"


def _anthropic_id(rid: str) -> bytes:
    return b"request-id: req_" + rid.encode() + b"\r\n"


_ACTIONS: dict[FaultMode | None, Action] = {FaultMode.HANG: Action.HANG, FaultMode.DISCONNECT: Action.DROP}
_DAMAGE = (FaultMode.MALFORMED_JSON, FaultMode.TRUNCATED_STREAM)


def _damage(reply: Reply | StreamReply, fault: FaultMode | None) -> None:
    """Break a good answer the way ``malformed_json`` / ``truncated_stream`` ask."""
    if fault is FaultMode.MALFORMED_JSON:
        if isinstance(reply, Reply):
            reply.body = reply.body[: len(reply.body) // 2]
        elif len(reply.events) > 1:
            reply.events[1] = p.break_event(reply.events[1])
    elif isinstance(reply, Reply):
        reply.truncate = True
    else:
        # Keep the opening events (role chunk / message_start) so clients see a started stream.
        reply.truncate_after = max(2, len(reply.events) // 2)


_POST_ROUTES = {
    "/v1/chat/completions": MockUpstream._chat,
    "/v1/responses": MockUpstream._responses,
    "/v1/embeddings": MockUpstream._embeddings,
    "/v1/messages": MockUpstream._messages,
    "/v1/messages/count_tokens": MockUpstream._count_tokens,
}


def _new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (faster), else the stdlib one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

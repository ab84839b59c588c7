"""The gateway's HTTP surface: OpenAI-compatible routes, errors mapped in one place.

``POST /v1/chat/completions`` (streamed or not), ``POST /v1/embeddings``, ``GET /v1/models``;
``/healthz``, ``/readyz``, ``/metrics``; the admin API is in ``_admin``. Every refusal is an
OpenAI-style ``{"error": {...}}`` body: :class:`GatewayError` (ours), :class:`UpstreamError`
(the deployment's: its provider key masked there, other secrets in its text masked here) and
aiohttp's own (404, 405, 413) meet in :func:`_errors` and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from kansoku.gateway._access import Access
from kansoku.gateway._chat import run_chat, run_stream, sse, template_chunks
from kansoku.gateway._deadletter import Attempt, scrub
from kansoku.gateway._errors import BadRequest, GatewayError, PayloadTooLarge, RateLimited, error_body
from kansoku.gateway._override import direct_call, override_base
from kansoku.gateway._proxy import Exchange, Gateway, Live, check_model, run_embeddings
from kansoku.gateway._router import Routed
from kansoku.gateway._upstream import UpstreamError
from kansoku.gateway._upstream_stream import StreamBroken, UpstreamStream
from kansoku.gateway._validate import SchemaError, Validator, compile_schema, schema_from_request
from kansoku.model._errors import ErrorType

__all__ = ["GATEWAY", "json_response", "make_app"]

log = logging.getLogger("kansoku.gateway")
GATEWAY = web.AppKey("gateway", Gateway)
_NO_ANSWER = UpstreamError(
    "no deployment answered",
    status=503,
    error_type=ErrorType.SERVER_ERROR,
    retryable=True,
    body=error_body("no deployment answered", "server_error", "no_answer"),
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(
    status: int, body: dict[str, Any], retry_after_s: float | None = None, **extra: str
) -> web.Response:
    headers = dict(extra)
    if retry_after_s is not None and status in (429, 503):
        headers["Retry-After"] = str(max(1, round(retry_after_s + 0.499)))  # whole seconds, rounded up
    return json_response(body, status, headers)


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return _error(exc.status, exc.body(), exc.retry_after_s)
    except UpstreamError as exc:
        return _error(exc.client_status, scrub(exc.body), exc.retry_after_s)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, error_body("request body too large", "invalid_request_error", "request_too_large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: f"no route {request.path[:200]!r}", 405: f"method {request.method} not allowed here"}
        return _error(exc.status, error_body(message.get(exc.status, exc.reason), "invalid_request_error"))
    except Exception:
        log.exception("kansoku gateway: internal error on %s %s", request.method, request.path[:200])
        return _error(
            500, error_body("internal error; see the gateway log", "server_error", "internal_error")
        )


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds the limit of {limit}")
    # read(n) returns what has arrived so far, not n bytes: read to the end (or past the limit).
    parts: list[bytes] = []
    size = 0
    while part := await request.content.read(limit + 1 - size):
        parts.append(part)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    raw = b"".join(parts)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    return model


def _validator(live: Live, model: str, body: dict[str, Any]) -> tuple[Validator | None, int]:
    route = live.config.model(model)
    reasks = route.validate.reask if route is not None and route.validate is not None else 1
    if model in live.validators:
        return live.validators[model], reasks
    try:
        schema = schema_from_request(body)
        return (compile_schema(schema) if schema is not None else None), reasks
    except SchemaError as exc:
        raise BadRequest(f"response_format.json_schema.schema: {exc}", param="response_format") from None
    except ValueError as exc:
        raise BadRequest(str(exc), param="response_format") from None


async def _begin(request: web.Request, operation: str) -> tuple[Exchange, Any, Any]:
    """Parse, authenticate, check the model and admit: the exchange, key and admission ticket."""
    gw = request.app[GATEWAY]
    live = gw.live
    access: Access = live.access
    key, body, ex = None, {}, None
    try:  # every refusal is counted and recorded: a bad key or body, a model not allowed, a limit
        key = access.authenticate(request.headers)
        body = await read_json(request, live.config.max_body_bytes)
        model = _model(body)
        ex = Exchange(gw, live, operation=operation, model=model, body=body, headers=request.headers)
        if key is not None:
            ex.facts.key_name, ex.facts.tags = key.name, dict(key.tags)
        if override_base(body, live.config) is None:
            check_model(live, model, key.models if key is not None else None)
        ticket = await access.admit(key, ex.facts.user, model, body)
    except GatewayError as exc:
        if isinstance(exc, RateLimited):
            gw.refused(exc.limits)
        if ex is None:  # refused before the model was known: recorded under what was sent
            sent = body.get("model")
            model = sent[:256] if isinstance(sent, str) and sent else "unknown"
            ex = Exchange(gw, live, operation=operation, model=model, body=body, headers=request.headers)
        ex.facts.outcome, ex.facts.status_code = "rejected", exc.status
        ex.facts.error_type, ex.facts.error_message = exc.code, exc.message
        ex.finish()
        raise
    return ex, key, ticket


def _cancelled(ex: Exchange) -> None:
    """The client left (aiohttp cancels the handler): the record says so, once."""
    if ex.facts.end_ns == 0:
        ex.facts.outcome, ex.facts.error_type = "client_error", "cancelled"
        ex.finish(499)


async def _settle(ex: Exchange, access: Access, ticket: Any) -> None:
    if ticket is not None:
        await access.settle(ticket, ex.facts)


async def _failed(ex: Exchange, routed: Routed[Any], key: Any, headers: dict[str, str]) -> web.Response:
    err = routed.error or _NO_ANSWER  # the router sets it whenever nothing answered
    if routed.exhausted:
        headers["x-kansoku-dead-letter"] = await ex.dead_letter(routed, key.name if key is not None else None)
    ex.finish(err.client_status)
    # The upstream's own error text may echo a credential (the provider key is already masked).
    return _error(err.client_status, scrub(err.body), err.retry_after_s, **headers)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    ex, key, ticket = await _begin(request, "chat")
    gw, live = ex.gw, ex.live
    if (base := override_base(ex.facts.request, live.config)) is not None:
        return await direct_call(ex, base)
    validator, reasks = _validator(live, ex.facts.model, ex.facts.request)
    gw.inflight += 1
    try:
        if ex.facts.stream:
            return await _stream(request, ex, key, ticket)
        routed = await run_chat(ex, validator, reasks)
        await _settle(ex, live.access, ticket)
        headers = ex.response_headers(routed)
        if routed.result is not None:
            ex.finish(200)
            return json_response(routed.result.body, headers=headers)
        if routed.template_body is not None:
            ex.finish(200)
            return json_response(routed.template_body, headers=headers)
        return await _failed(ex, routed, key, headers)
    except asyncio.CancelledError:
        _cancelled(ex)
        raise
    finally:
        gw.inflight -= 1


async def _stream(request: web.Request, ex: Exchange, key: Any, ticket: Any) -> web.StreamResponse:
    routed, strip_usage = await run_stream(ex)
    headers = ex.response_headers(routed)
    if routed.result is None and routed.template_body is None:
        await _settle(ex, ex.live.access, ticket)
        return await _failed(ex, routed, key, headers)
    resp = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await resp.prepare(request)
        if routed.template_body is not None:
            for part in template_chunks(routed.template_body):
                await resp.write(part)
            ex.facts.output_messages = [routed.template_body["choices"][0]["message"]]
            ex.finish(200)
            await _settle(ex, ex.live.access, ticket)
            return resp
        await _pipe(resp, ex, routed, strip_usage, key)
        await _settle(ex, ex.live.access, ticket)
        return resp
    finally:
        if routed.pending is not None:  # the client left before the first byte: close the books
            await asyncio.shield(ex.live.router.finish(routed, None))
            if routed.result is not None:
                await routed.result.aclose()


async def _pipe(
    resp: web.StreamResponse, ex: Exchange, routed: Routed[UpstreamStream], strip_usage: bool, key: Any
) -> None:
    """Pass chunks through as they come (no buffering), keeping the text and usage for the record."""
    it = routed.result
    if it is None:  # _stream answered templates and failures before
        return
    text: list[str] = []
    finish: str | None = None
    attempt = ex.facts.answered_by
    ok: bool | None = True  # the stream's outcome for the balancer and breaker; None: client left
    try:
        async for chunk in it:
            choices = chunk.get("choices")
            if choices:
                c0 = choices[0]
                delta = c0.get("delta")
                if delta and isinstance(part := delta.get("content"), str):
                    text.append(part)
                finish = c0.get("finish_reason") or finish
            elif strip_usage and chunk.get("usage") is not None:
                continue
            await resp.write(sse(chunk))
        await resp.write(b"data: [DONE]\n\n")
        ex.facts.status_code = 200
    except StreamBroken as exc:
        # Bytes already reached the client: no retry is possible. Tell it in-band, keep the letter.
        ok = False
        ex.facts.outcome, ex.facts.status_code = "dead_letter", exc.client_status
        ex.facts.error_type, ex.facts.error_message = exc.error_type.value, exc.message
        if attempt is not None:
            ex.failed(attempt, exc)
        broken = Attempt(routed.deployment_name or "", exc.status, exc.error_type.value, exc.message)
        failures = [a for a in routed.attempts if a.error_type != "ok"]
        ex.facts.dead_letter_id = await ex.gw.state.dead_letters.add(
            ex.facts.model, ex.facts.request, [*failures, broken], key.name if key is not None else None
        )
        await resp.write(sse(scrub(exc.body)))
    except (ConnectionResetError, OSError, asyncio.CancelledError):  # the client left mid-stream
        ok = None
        ex.facts.outcome, ex.facts.error_type, ex.facts.status_code = "client_error", "cancelled", 499
        raise
    finally:
        await it.aclose()
        await asyncio.shield(ex.live.router.finish(routed, ok))
        # The record is complete before it is handed over: the recorder builds it on its thread.
        if attempt is not None:
            attempt.end_ns = attempt.end_ns or ex.gw.clock.now_ns()
            attempt.usage = it.usage
        ex.facts.output_messages = [{"role": "assistant", "content": "".join(text)}]
        ex.facts.finish_reasons = [finish] if finish else None
        ex.finish()


async def embeddings(request: web.Request) -> web.StreamResponse:
    ex, key, ticket = await _begin(request, "embeddings")
    gw = ex.gw
    gw.inflight += 1
    try:
        routed, body = await run_embeddings(ex)
        await _settle(ex, ex.live.access, ticket)
        headers = ex.response_headers(routed)
        if body is not None:
            ex.finish(200)
            return json_response(body, headers=headers)
        return await _failed(ex, routed, key, headers)
    except asyncio.CancelledError:
        _cancelled(ex)
        raise
    finally:
        gw.inflight -= 1


async def models(request: web.Request) -> web.StreamResponse:
    live = request.app[GATEWAY].live
    key = live.access.authenticate(request.headers)
    allowed = key.models if key is not None else None
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "kansoku"}
        for m in live.config.models
        if allowed is None or m.name in allowed
    ]
    return json_response({"object": "list", "data": data})


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    lines = [
        "# HELP kansoku_gateway_requests_total Client requests by outcome.",
        "# TYPE kansoku_gateway_requests_total counter",
        *(f'kansoku_gateway_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(gw.counts.items())),
        "# HELP kansoku_gateway_inflight Requests being served.",
        "# TYPE kansoku_gateway_inflight gauge",
        f"kansoku_gateway_inflight {gw.inflight}",
    ]
    errors = getattr(gw.state, "errors", None)
    if errors is not None:
        lines += [
            "# HELP kansoku_gateway_state_errors_total Shared-state (Redis) calls that failed open.",
            "# TYPE kansoku_gateway_state_errors_total counter",
            f"kansoku_gateway_state_errors_total {errors}",
        ]
    if gw.recorder is not None:
        stats = gw.recorder.stats()
        lines += [
            "# HELP kansoku_gateway_records_dropped_total Records lost (queue full, export refused).",
            "# TYPE kansoku_gateway_records_dropped_total counter",
            f"kansoku_gateway_records_dropped_total {stats['dropped_total']}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def make_app(gw: Gateway) -> web.Application:
    from kansoku.gateway._admin import add_admin_routes

    # client_max_size is a backstop; read_json enforces the configured bound with a clear error.
    app = web.Application(middlewares=[_errors], client_max_size=1 << 30)
    app[GATEWAY] = gw
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/metrics", metrics)
    add_admin_routes(app)
    return app

"""The collector's HTTP routes (aiohttp): ingest, query, OpenAPI, metrics, health.

One error middleware renders every failure as an OpenAI-style JSON body: :class:`APIError` as is,
aiohttp's own HTTP errors (unknown route, wrong method, body too large) with their status, and
anything unexpected as a 500 that names no internals (the detail goes to the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from kansoku.server import _params, _views
from kansoku.server._collector import Collector
from kansoku.server._errors import APIError, error_response, json_response
from kansoku.server._openapi import document
from kansoku.store._protocol import check_id

log = logging.getLogger("kansoku.server")

COLLECTOR: web.AppKey[Collector] = web.AppKey("collector", Collector)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOCAL_PROJECT = "default"
_T = TypeVar("_T")
_EMPTY_OTLP_RESPONSE = b""  # an empty ExportTraceServiceResponse encodes to no bytes


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(APIError(413, f"request body too large: {exc.text}", code="body_too_large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = {404: f"no route {request.path[:200]!r}", 405: f"method {request.method} not allowed here"}
        return error_response(APIError(exc.status, message.get(exc.status, exc.reason), headers=headers))
    except Exception:
        log.exception("kansoku: internal error on %s %s", request.method, request.path[:200])
        return error_response(APIError(500, "internal error; see the collector log", code="internal_error"))


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def authorize(request: web.Request, scope: str) -> str:
    """The project the request may act on with ``scope``, or an :class:`APIError` (401/403)."""
    keys = request.app[COLLECTOR].keys
    if not keys.enabled:
        return _LOCAL_PROJECT
    token = _bearer(request)
    if token is None:
        raise APIError(401, "an API key is required: send 'Authorization: Bearer <key>'", code="missing_key")
    info = keys.lookup(token)
    if info is None:
        raise APIError(401, "unknown or revoked API key", code="invalid_key")
    if info.scope != scope:
        raise APIError(
            403, f"this key has scope {info.scope!r}; this route needs a {scope!r} key", code="scope"
        )
    return info.project


async def _body(request: web.Request) -> bytes:
    # aiohttp un-gzips Content-Encoding bodies and enforces client_max_size on the result.
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 -- a broken body (bad gzip, cut connection) is the client's
        raise APIError(400, f"cannot read the request body: {type(exc).__name__}", code="bad_body") from None


def _check_json(request: web.Request) -> None:
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media not in ("", "application/json"):  # no header: curl users; anything else is a mistake
        raise APIError(
            415, f"unsupported content type {media!r}: send application/json", code="unsupported_media_type"
        )


async def _ingest(request: web.Request, protocol: str) -> web.Response:
    collector = request.app[COLLECTOR]
    status = 500
    try:
        project = authorize(request, "ingest")
        body = await _body(request)
        if protocol == "native":
            _check_json(request)
            accepted = await collector.accept_native(body, project)
        else:
            await collector.accept_otlp(body, request.headers.get("Content-Type", ""), project)
        status = 200
    except APIError as exc:
        status = exc.status
        raise
    finally:
        collector.count_request(protocol, status)
    if protocol == "native":
        return json_response({"accepted": accepted})
    if request.headers.get("Content-Type", "").startswith("application/json"):
        return json_response({"partialSuccess": {}})
    return web.Response(body=_EMPTY_OTLP_RESPONSE, content_type="application/x-protobuf")


async def ingest_native(request: web.Request) -> web.Response:
    return await _ingest(request, "native")


async def ingest_otlp(request: web.Request) -> web.Response:
    return await _ingest(request, "otlp")


async def _run(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a store call in a worker thread; a bad parameter from the store is a 400."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, partial(fn, *args))
    except ValueError as exc:
        message = str(exc)
        raise APIError(400, message, param=message.split(" ", 1)[0], code="invalid_parameter") from None


async def calls(request: web.Request) -> web.Response:
    project = authorize(request, "read")
    q = _params.calls_query(request.query, project, time.time_ns())
    page = await _run(request.app[COLLECTOR].store.query_calls, q)
    return json_response(_views.calls_body(page))


def _path_id(request: web.Request, name: str) -> str:
    try:
        return check_id(name, str(request.match_info[name]))
    except ValueError as exc:
        raise APIError(400, str(exc), param=name, code="invalid_parameter") from None


async def trace(request: web.Request) -> web.Response:
    project = authorize(request, "read")
    trace_id = _path_id(request, "trace_id")
    spans = await _run(request.app[COLLECTOR].store.get_trace, project, trace_id)
    if not spans:
        raise APIError(404, f"no trace {trace_id[:64]!r} in this project", param="trace_id", code="not_found")
    return json_response(_views.trace_body(trace_id, spans))


async def session(request: web.Request) -> web.Response:
    project = authorize(request, "read")
    context_id = _path_id(request, "context_id")
    spans = await _run(request.app[COLLECTOR].store.get_session, project, context_id)
    if not spans:
        raise APIError(
            404, f"no session {context_id[:64]!r} in this project", param="context_id", code="not_found"
        )
    return json_response(_views.session_body(context_id, spans))


async def stats(request: web.Request) -> web.Response:
    project = authorize(request, "read")
    q = _params.stats_query(request.query, project, time.time_ns())
    rows = await _run(request.app[COLLECTOR].store.stats, q)
    return json_response(_views.stats_body(q, rows))


async def histogram(request: web.Request) -> web.Response:
    project = authorize(request, "read")
    q = _params.histogram_query(request.query, project, time.time_ns())
    bins = await _run(request.app[COLLECTOR].store.histogram, q)
    return json_response(_views.histogram_body(q, bins))


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def metrics(request: web.Request) -> web.Response:
    # With keys, /metrics needs a metrics-scope key: its labels name every project and model.
    authorize(request, "metrics")
    text = request.app[COLLECTOR].metrics.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Format": "0.0.4"})


async def healthz(request: web.Request) -> web.Response:
    collector = request.app[COLLECTOR]
    return json_response({"status": "ok", "uptime_s": round(time.monotonic() - collector.started, 3)})


async def readyz(request: web.Request) -> web.Response:
    ready, detail = request.app[COLLECTOR].readiness()
    return json_response(
        {"status": "ready" if ready else "not_ready", **detail}, status=200 if ready else 503
    )


def make_app(collector: Collector) -> web.Application:
    """The aiohttp application over ``collector`` (started and stopped with the app)."""
    app = web.Application(
        middlewares=[_errors],
        client_max_size=collector.settings.max_body_bytes,
        # Ids up to the API's 1000 characters, percent-encoded UTF-8, fit in the request line.
        handler_args={"max_line_size": 16 * 1024},
    )
    app[COLLECTOR] = collector
    app[OPENAPI] = document()

    async def lifecycle(app: web.Application) -> Any:
        await collector.start()
        yield
        await collector.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/traces", ingest_otlp)
    app.router.add_post("/api/v1/ingest", ingest_native)
    app.router.add_get("/api/v1/calls", calls)
    app.router.add_get("/api/v1/traces/{trace_id}", trace)
    app.router.add_get("/api/v1/sessions/{context_id}", session)
    app.router.add_get("/api/v1/stats", stats)
    app.router.add_get("/api/v1/histogram", histogram)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from kansoku.ui import add_ui_routes

    add_ui_routes(app)  # the web UI: files only; its data comes from the query API above
    from kansoku.server._gateway_routes import add_gateway_routes

    add_gateway_routes(app)  # the in-process gateway of `kansoku up`, for the UI's gateway page
    return app

"""The admin API: dead letters listed, shown and replayed. Every route needs an admin key.

``GET /admin/dead-letters?limit=&model=&before=`` (newest first; ``before`` is the
``created_ns`` of the last letter seen, for the next page), ``GET /admin/dead-letters/{id}``,
``POST /admin/dead-letters/{id}/replay``: the stored request goes through the router again
(policies, fallbacks, recording) as a non-streamed call; the outcome is appended to the
letter's replay history and returned. A replay that fails again leaves the letter in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from kansoku.gateway._app import GATEWAY, json_response
from kansoku.gateway._chat import run_chat
from kansoku.gateway._errors import BadRequest, GatewayError, ModelNotFound
from kansoku.gateway._proxy import Exchange, Gateway
from kansoku.gateway._status import status

__all__ = ["add_admin_routes"]


class NotFound(GatewayError):  # noqa: N818 - named for the answer, like the others
    status = 404
    code = "not_found"


def _int_param(request: web.Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw[:40]!r}", param=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, got {value}", param=name)
    return value


async def list_letters(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    gw.live.access.require_admin(request.headers)
    unknown = set(request.query) - {"limit", "model", "before"}
    if unknown:
        name = sorted(unknown)[0]
        raise BadRequest(f"unknown parameter {name[:40]!r}; known: limit, model, before", param=name)
    limit = _int_param(request, "limit", 1, 1000, 50)
    before = _int_param(request, "before", 0, 1 << 63, None)
    letters = await gw.state.dead_letters.list(
        limit=limit or 50, model=request.query.get("model"), before_ns=before
    )
    data = [letter.public() for letter in letters]
    return json_response(
        {"object": "list", "data": data, "next_before": data[-1]["created_ns"] if data else None}
    )


async def get_letter(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    gw.live.access.require_admin(request.headers)
    letter = await gw.state.dead_letters.get(request.match_info["id"])
    if letter is None:
        raise NotFound("no dead letter with this id", param="id")
    return json_response(letter.public())


async def replay(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    gw.live.access.require_admin(request.headers)
    status_code, body = await replay_letter(gw, request.match_info["id"], request.headers)
    return json_response(body, status=status_code)


async def replay_letter(
    gw: Gateway, letter_id: str, headers: Mapping[str, str]
) -> tuple[int, dict[str, Any]]:
    """Send a dead letter through the router again; (HTTP status, answer) — also for the UI."""
    live = gw.live
    letter = await gw.state.dead_letters.get(letter_id)
    if letter is None:
        raise NotFound("no dead letter with this id", param="id")
    if live.config.model(letter.model) is None:
        raise ModelNotFound(f"the letter's model {letter.model!r} is no longer configured", param="model")
    body = {k: v for k, v in letter.request.items() if k not in ("stream", "stream_options")}
    ex = Exchange(gw, live, operation="chat", model=letter.model, body=body, headers=headers)
    ex.facts.key_name = letter.key_name
    validator = live.validators.get(letter.model)
    route = live.config.model(letter.model)
    reasks = route.validate.reask if route is not None and route.validate is not None else 1
    gw.inflight += 1
    try:
        routed = await run_chat(ex, validator, reasks)
    finally:
        gw.inflight -= 1
    answer = routed.result.body if routed.result is not None else routed.template_body
    outcome: dict[str, Any] = {
        "trace_id": ex.facts.trace_id,
        "attempts": routed.tries,
        "outcome": ex.facts.outcome if answer is None else ("template" if routed.template else "ok"),
    }
    if routed.error is not None and answer is None:
        outcome["error"] = {"status": routed.error.client_status, "type": routed.error.error_type.value}
    await gw.state.dead_letters.record_replay(letter_id, outcome)
    ex.finish(200 if answer is not None else routed.error.client_status if routed.error else 502)
    return (200 if answer is not None else 502), {"id": letter_id, **outcome, "response": answer}


async def gateway_status(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    gw.live.access.require_admin(request.headers)
    return json_response(await status(gw))


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/status", gateway_status)
    app.router.add_get("/admin/dead-letters", list_letters)
    app.router.add_get("/admin/dead-letters/{id}", get_letter)
    app.router.add_post("/admin/dead-letters/{id}/replay", replay)

"""The gateway seen from the collector, for the web UI (``kansoku up`` runs both in one process).

``GET /api/v1/gateway/status`` (read key, like every query) and
``POST /api/v1/gateway/dead-letters/{id}/replay``. A replay sends a request to a provider again,
so besides the read key it needs the gateway's admin key (``X-Kansoku-Admin-Key``) whenever the
gateway has admin keys; with neither keys on the collector nor admin keys on the gateway (the
local, loopback-only default) it is allowed. Without a gateway in this process both answer 404
with what to do.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kansoku.server._errors import APIError, json_response

__all__ = ["add_gateway_routes"]


def _gateway(request: web.Request) -> Any:
    from kansoku.server._app import COLLECTOR, authorize

    authorize(request, "read")
    gw = getattr(request.app[COLLECTOR], "gateway", None)
    if gw is None:
        raise APIError(
            404,
            "no gateway runs in this process: start it with `kansoku up --gateway-config gateway.yaml` "
            "(or `kansoku up --demo`)",
            code="no_gateway",
        )
    return gw


async def gateway_status(request: web.Request) -> web.StreamResponse:
    from kansoku.gateway._status import status

    return json_response(await status(_gateway(request)))


async def replay(request: web.Request) -> web.StreamResponse:
    from kansoku.gateway._admin import replay_letter
    from kansoku.gateway._errors import GatewayError
    from kansoku.server._app import COLLECTOR

    gw = _gateway(request)
    keys = gw.live.access.keys
    admin = request.headers.get("X-Kansoku-Admin-Key")
    if keys.has_admin:
        if not admin or not keys.admin(f"Bearer {admin}"):
            raise APIError(
                401,
                "replaying needs the gateway's admin key in X-Kansoku-Admin-Key",
                code="admin_key_required",
            )
    elif request.app[COLLECTOR].keys.enabled:
        # A read key alone must not make the gateway spend: with keys, replays need an admin key.
        raise APIError(
            403,
            "the gateway has no admin_keys configured, so replays from the UI are closed",
            code="admin_api_closed",
        )
    try:
        status, body = await replay_letter(gw, request.match_info["id"], {})
    except GatewayError as exc:
        raise APIError(exc.status, exc.message, code=exc.code) from None
    return json_response(body, status=status)


def add_gateway_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/gateway/status", gateway_status)
    app.router.add_post("/api/v1/gateway/dead-letters/{id}/replay", replay)

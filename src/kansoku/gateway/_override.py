"""A client-supplied ``api_base``: refused unless the configuration allows it, and never to a
private address even then (no SSRF into the gateway's network or a cloud metadata service).

Allowed (``allow_api_base_override: true``), the request goes once, without the gateway's
policies, to an OpenAI-compatible server at that base with the client's own ``api_key``
from the body: configured provider keys are never sent to a host the client chose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from typing import Any

from aiohttp import web

from kansoku.gateway._config import Deployment, GatewayConfig, Secret
from kansoku.gateway._errors import BadRequest
from kansoku.gateway._upstream import UpstreamError, complete

__all__ = ["check_public", "direct_call", "override_base"]

_FIELDS = ("api_base", "base_url")
_BLOCKED_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "instance-data"})


def override_base(body: dict[str, Any], config: GatewayConfig) -> str | None:
    """The client's ``api_base`` if it sent one (400 when not allowed), else None."""
    for field in _FIELDS:
        if field in body:
            value = body[field]
            if not config.allow_api_base_override:
                raise BadRequest(
                    f"{field} is not accepted: this gateway routes to its configured deployments only "
                    "(set allow_api_base_override: true in gateway.yaml to allow it)",
                    param=field,
                    code="api_base_not_allowed",
                )
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise BadRequest(f"{field} must be an http:// or https:// URL", param=field)
            return value
    return None


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_public(url: str) -> None:
    """Refuse a URL whose host is, or resolves to, a non-public address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not host or host.lower().rstrip(".") in _BLOCKED_NAMES:
        raise BadRequest("api_base must name a public host", param="api_base", code="api_base_not_allowed")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise BadRequest(f"api_base host {host!r} does not resolve", param="api_base") from None
    if any(_private(str(info[4][0])) for info in infos):
        raise BadRequest(
            "api_base resolves to a private, loopback or link-local address; refused",
            param="api_base",
            code="api_base_not_allowed",
        )


async def direct_call(ex: Any, base: str) -> web.StreamResponse:
    from kansoku.gateway._app import json_response

    await check_public(base)
    body = {k: v for k, v in ex.facts.request.items() if k not in (*_FIELDS, "api_key", "stream")}
    key = ex.facts.request.get("api_key")
    dep = Deployment(
        provider="openai_compatible",
        model=ex.facts.model,
        api_base=base,
        api_key=Secret(key) if isinstance(key, str) else None,
        region="client",
    )
    a, headers = ex.attempt(dep)
    try:
        result = await complete(ex.gw.session, dep, body, timeout_s=60.0, headers=headers)
    except UpstreamError as err:
        ex.failed(a, err)
        ex.facts.outcome, ex.facts.error_type = "client_error", err.error_type.value
        ex.finish(err.client_status)
        raise
    ex.succeeded(a, result)
    ex.facts.answered_by = a
    ex.finish(200)
    return json_response(
        result.body, headers={"x-kansoku-trace-id": ex.facts.trace_id, "x-kansoku-attempts": "1"}
    )

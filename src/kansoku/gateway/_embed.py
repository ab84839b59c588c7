"""Embeddings from one deployment (OpenAI, compatible servers, Azure).

Anthropic has no embeddings endpoint: a route whose deployment is Anthropic answers with a
non-retryable 400 naming the deployment, rather than a translated guess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from kansoku.gateway._config import Deployment
from kansoku.gateway._upstream import (
    AZURE_API_VERSION,
    FORWARDED,
    OPENAI_BASE,
    UpstreamError,
    UpstreamResult,
    connection_error,
    http_error,
    malformed_error,
    timeout_error,
)
from kansoku.model._errors import ErrorType

__all__ = ["embed"]


def _request(
    deployment: Deployment, body: dict[str, Any], headers: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    out = {k.lower(): v for k, v in headers.items() if k.lower() in FORWARDED}
    out["content-type"] = "application/json"
    key = deployment.api_key.reveal() if deployment.api_key is not None else None
    if deployment.provider == "azure":
        base = (deployment.api_base or "").rstrip("/")
        version = deployment.api_version or AZURE_API_VERSION
        url = f"{base}/openai/deployments/{deployment.model}/embeddings?api-version={version}"
        if key is not None:
            out["api-key"] = key
    else:
        url = f"{(deployment.api_base or OPENAI_BASE).rstrip('/')}/embeddings"
        if key is not None:
            out["authorization"] = f"Bearer {key}"
    return url, out


def _unsupported(deployment: Deployment) -> UpstreamError:
    message = f"{deployment.provider} deployment {deployment.model!r} has no embeddings endpoint"
    return UpstreamError(
        message,
        status=400,
        error_type=ErrorType.BAD_REQUEST,
        retryable=False,
        body={"error": {"message": message, "type": "invalid_request_error", "param": "model", "code": None}},
    )


async def embed(
    session: aiohttp.ClientSession,
    deployment: Deployment,
    body: dict[str, Any],
    *,
    timeout_s: float,
    headers: Mapping[str, str],
) -> UpstreamResult:
    """One embeddings call; the answer in OpenAI's ``list`` format. Raises :class:`UpstreamError`."""
    if deployment.provider == "anthropic":
        raise _unsupported(deployment)
    url, out = _request(deployment, body, headers)
    data = orjson.dumps({**body, "model": deployment.model})
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=data, headers=out, allow_redirects=False) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
    except TimeoutError:
        raise timeout_error(deployment, "embeddings", timeout_s) from None
    except aiohttp.ClientError as exc:
        raise connection_error(deployment, exc) from None
    latency = time.perf_counter() - started
    if status >= 400:
        raise http_error(deployment, status, raw, resp_headers, anthropic=False)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise malformed_error(deployment, status, "the body is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
        raise malformed_error(deployment, status, "no data in an embeddings answer")
    usage = parsed.get("usage")
    return UpstreamResult(
        parsed, status, latency, usage if isinstance(usage, dict) else None, resp_headers.get("x-request-id")
    )

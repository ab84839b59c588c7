"""The gateway's calls to one deployment: a pooled aiohttp session, requests, errors.

Every call answers in OpenAI's format whatever the provider; Anthropic deployments are
translated both ways. Failures become one exception, :class:`UpstreamError`, already
classified (closed :class:`~kansoku.model.ErrorType` taxonomy, ``retryable``, ``Retry-After``)
so that retry, breaker and fail-over policies need not know HTTP or providers.
Streams are in :mod:`kansoku.gateway._upstream_stream`.

Secrets: an exception never holds the API key, the request headers or aiohttp's own exception
(whose ``request_info`` carries the headers); it is raised ``from None`` with a description.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from kansoku.errors import KansokuError
from kansoku.gateway._anthropic import to_anthropic_request
from kansoku.gateway._anthropic_stream import error_from_anthropic, from_anthropic_response
from kansoku.gateway._config import Deployment
from kansoku.model._errors import ErrorType, error_type_for_status
from kansoku.policy._retry import retry_after_from_headers

__all__ = ["UpstreamError", "UpstreamResult", "complete", "make_session"]

OPENAI_BASE = "https://api.openai.com/v1"
ANTHROPIC_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
AZURE_API_VERSION = "2024-10-21"  # the GA version when a deployment names none
FORWARDED = frozenset({"traceparent", "tracestate", "x-request-id"})
"""Caller headers passed on to the upstream; everything else (the client's own
``Authorization`` first of all) stays at the gateway."""


class UpstreamError(KansokuError):
    """A deployment failed to answer usefully.

    ``status`` is the upstream's HTTP status (529 stays 529), None when no answer came
    (connection error, timeout). ``error_type`` is an :class:`ErrorType` value. ``body`` is
    always an OpenAI-style ``{"error": {...}}`` dict: the upstream's own error (Anthropic's
    translated), or one made here for network failures and malformed answers.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        error_type: ErrorType,
        retryable: bool,
        body: dict[str, Any],
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.retryable = retryable
        self.body = body
        self.retry_after_s = retry_after_s

    @property
    def client_status(self) -> int:
        """The status for the gateway's own client: OpenAI clients know 503, not 529."""
        if self.status is None:
            return 504 if self.error_type is ErrorType.TIMEOUT else 502
        if self.status == 529:
            return 503
        return self.status if self.status >= 400 else 502  # a malformed 200 is a bad gateway

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status}, "
            f"error_type={self.error_type.value!r}, retryable={self.retryable})"
        )


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """A non-streamed answer: the OpenAI ``chat.completion`` dict and facts about the call."""

    body: dict[str, Any]
    status: int
    latency_s: float
    usage: dict[str, Any] | None
    request_id: str | None  # the provider's, for finding the call in its logs


def make_session(
    *, limit: int = 1000, limit_per_host: int = 0, keepalive_timeout_s: float = 30.0
) -> aiohttp.ClientSession:
    """The session all upstream calls share (create it inside the running event loop).

    One pool of keep-alive connections for every deployment: a new TLS handshake per
    request would cost more than the whole gateway. No cookie jar (cookies from one
    provider answer must never ride on another tenant's request). Timeouts are per call.
    """
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit_per_host, keepalive_timeout=keepalive_timeout_s, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        timeout=aiohttp.ClientTimeout(total=None),
        raise_for_status=False,
    )


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]
    data: bytes
    anthropic: bool


def build_request(deployment: Deployment, body: dict[str, Any], headers: Mapping[str, str]) -> Request:
    """URL, headers and body bytes for ``deployment``; ``model`` becomes the deployment's."""
    out = {k.lower(): v for k, v in headers.items() if k.lower() in FORWARDED}
    out["content-type"] = "application/json"
    key = deployment.api_key.reveal() if deployment.api_key is not None else None
    provider = deployment.provider
    if provider == "anthropic":
        base = (deployment.api_base or ANTHROPIC_BASE).rstrip("/")
        out["anthropic-version"] = ANTHROPIC_VERSION
        if key is not None:
            out["x-api-key"] = key
        payload = to_anthropic_request(body, deployment.model)  # TranslationError: the client's 400
        return Request(f"{base}/v1/messages", out, orjson.dumps(payload), anthropic=True)
    payload = {**body, "model": deployment.model}
    if provider == "azure":
        base = (deployment.api_base or "").rstrip("/")
        version = deployment.api_version or AZURE_API_VERSION
        url = f"{base}/openai/deployments/{deployment.model}/chat/completions?api-version={version}"
        if key is not None:
            out["api-key"] = key
    else:
        url = f"{(deployment.api_base or OPENAI_BASE).rstrip('/')}/chat/completions"
        if key is not None:
            out["authorization"] = f"Bearer {key}"
    return Request(url, out, orjson.dumps(payload), anthropic=False)


# -- errors ---------------------------------------------------------------------------------------


def _scrub(text: str, deployment: Deployment) -> str:
    # Some upstreams echo the key they rejected; it must not reach logs or the client.
    key = deployment.api_key.reveal() if deployment.api_key is not None else ""
    return text.replace(key, "***") if len(key) >= 4 else text


def _where(deployment: Deployment) -> str:
    return f"{deployment.provider} deployment {deployment.model!r}"


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def http_error(
    deployment: Deployment, status: int, raw: bytes, headers: Mapping[str, str], *, anthropic: bool
) -> UpstreamError:
    """The error for an upstream answer with status >= 400."""
    body: dict[str, Any]
    if anthropic:
        _, body = error_from_anthropic(status, raw)
    else:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        err = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(parsed, dict) and isinstance(err, dict) and isinstance(err.get("message"), str):
            body = parsed
        else:
            # An HTML page from a proxy, say: not echoed, it may be large or carry markup.
            kind = "server_error" if status >= 500 else "invalid_request_error"
            body = _error_body(f"the upstream answered HTTP {status} without an error body", kind, None)
    retry_after = retry_after_from_headers(headers, time.time()) if status in (429, 503, 529) else None
    return error_from_body(deployment, status, body, retry_after)


def error_from_body(
    deployment: Deployment, status: int, body: dict[str, Any], retry_after_s: float | None = None
) -> UpstreamError:
    """The error for an OpenAI-style error ``body`` the upstream sent with ``status``."""
    err = body["error"]
    err["message"] = _scrub(str(err.get("message")), deployment)
    text = f"{err.get('code') or ''} {err.get('type') or ''} {err['message']}"
    error_type = error_type_for_status(status, text)
    return UpstreamError(
        f"{_where(deployment)}: HTTP {status} {error_type.value}: {err['message']}",
        status=status,
        error_type=error_type,
        retryable=status >= 500 or status in (408, 409, 429),
        body=body,
        retry_after_s=retry_after_s,
    )


def timeout_error(deployment: Deployment, what: str, seconds: float) -> UpstreamError:
    message = f"{_where(deployment)}: no {what} within {seconds:g} s"
    return UpstreamError(
        message,
        status=None,
        error_type=ErrorType.TIMEOUT,
        retryable=True,
        body=_error_body(message, "timeout", "upstream_timeout"),
    )


def connection_error(deployment: Deployment, exc: BaseException) -> UpstreamError:
    # str() of aiohttp's connection/payload errors names host and cause, never headers.
    detail = str(exc) if not isinstance(exc, aiohttp.ClientResponseError) else exc.message
    message = _scrub(f"{_where(deployment)}: {type(exc).__name__}: {detail}", deployment)
    return UpstreamError(
        message,
        status=None,
        error_type=ErrorType.CONNECTION,
        retryable=True,
        body=_error_body(message, "server_error", "upstream_connection_error"),
    )


def malformed_error(deployment: Deployment, status: int, what: str) -> UpstreamError:
    """An answer that is not what the API promises: the upstream's fault, so worth a retry."""
    message = f"{_where(deployment)}: malformed answer: {what}"
    return UpstreamError(
        message,
        status=status,
        error_type=ErrorType.SERVER_ERROR,
        retryable=True,
        body=_error_body(message, "server_error", "upstream_malformed_response"),
    )


# -- non-streamed calls ---------------------------------------------------------------------------


async def complete(
    session: aiohttp.ClientSession,
    deployment: Deployment,
    body: dict[str, Any],
    *,
    timeout_s: float,
    headers: Mapping[str, str],
    read_timeout_s: float | None = None,
) -> UpstreamResult:
    """One non-streamed chat completion from ``deployment``, in OpenAI's format.

    ``timeout_s`` bounds connecting, sending and the response headers (for a non-streamed
    call that is the generation time); ``read_timeout_s`` (default ``timeout_s``) then bounds
    reading the whole body. Raises :class:`UpstreamError`, or ``TranslationError`` when the
    request cannot be expressed for an Anthropic deployment (the client's 400).
    """
    req = build_request(deployment, body, headers)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    phase, limit = "response headers", timeout_s
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            async with session.post(
                req.url,
                data=req.data,
                headers=req.headers,
                allow_redirects=False,  # no redirect SSRF
            ) as resp:
                phase, limit = "complete body", read_timeout_s or timeout_s
                deadline.reschedule(loop.time() + limit)
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
    except TimeoutError:  # also aiohttp's own timeouts, which subclass it
        raise timeout_error(deployment, phase, limit) from None
    except aiohttp.ClientError as exc:
        raise connection_error(deployment, exc) from None
    latency = time.perf_counter() - started
    if status >= 400:
        raise http_error(deployment, status, raw, resp_headers, anthropic=req.anthropic)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise malformed_error(deployment, status, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise malformed_error(deployment, status, "the body is not a JSON object")
    if req.anthropic:
        if data.get("type") != "message":
            raise malformed_error(deployment, status, "not an Anthropic message")
        data = from_anthropic_response(data, deployment.model)
    elif not isinstance(data.get("choices"), list):
        raise malformed_error(deployment, status, "no choices in a chat completion")
    usage = data.get("usage")
    request_id = resp_headers.get("request-id" if req.anthropic else "x-request-id")
    return UpstreamResult(data, status, latency, usage if isinstance(usage, dict) else None, request_id)

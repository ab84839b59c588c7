"""HTTP errors of the collector API, rendered in one place as OpenAI-style JSON bodies.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}``: the shape clients of LLM
APIs already parse. Handlers raise :class:`APIError`; the error middleware in ``_app`` renders it,
turns :class:`ValueError` from query validation into 400s and anything unexpected into a 500 that
names no internals.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from kansoku.errors import KansokuError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}


class APIError(KansokuError):
    """An error answered to the client: HTTP ``status`` with a message, the offending ``param``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
    err = APIError(status, message, param=param, code=code)
    return orjson.dumps({"error": {"message": message, "type": err.type, "param": param, "code": code}})


def error_response(exc: APIError) -> web.Response:
    body = error_body(exc.status, exc.message, param=exc.param, code=exc.code)
    return web.Response(body=body, status=exc.status, content_type="application/json", headers=exc.headers)


def bad_param(exc: ValueError) -> APIError:
    """A query validation error; the message starts with the parameter's name by contract."""
    message = str(exc)
    param = message.split(" ", 1)[0] if message else None
    return APIError(400, message, param=param, code="invalid_parameter")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )

"""The gateway's own refusals: one exception type per answer, mapped to HTTP in one place.

Each carries what the client is told (status, OpenAI-style ``type`` and ``code``, the
parameter at fault, a ``Retry-After``) — never a key or a header value. Upstream failures
are :class:`~kansoku.gateway.UpstreamError`; the app maps both with :func:`error_body`.
"""

from __future__ import annotations

# ruff: noqa: N818 - named for the answer the client gets (RateLimited), as OpenAI's own SDK does
from typing import TYPE_CHECKING, Any

from kansoku.errors import KansokuError

if TYPE_CHECKING:  # _keys imports this module
    from kansoku.gateway._keys import Limit

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetExceeded",
    "GatewayError",
    "ModelNotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "error_body",
]


class GatewayError(KansokuError):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(GatewayError):
    pass


class AuthError(GatewayError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class RateLimited(GatewayError):
    """A rate limit refused; ``retry_after_s`` None means the request can never fit.

    ``limits`` are the configured limits that refused (``(owning key or None, Limit)``), which
    the gateway counts for its status page; the client is not told them.
    """

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    limits: tuple[tuple[str | None, Limit], ...] = ()


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}

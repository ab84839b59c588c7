"""One GET against the query API, with its failures turned into :class:`QueryError`.

Standard library only (``http.client``), so the client works wherever kansoku is installed.
A new connection per request keeps the client stateless and safe to share between threads;
queries are few and large, so the handshake does not matter.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.parse
import zlib
from collections.abc import Sequence
from typing import Any

from kansoku import __version__
from kansoku.errors import ConfigError, QueryError

#: Error ``type`` per HTTP status when a body is not the API's error object (a proxy, another server).
_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_SNIPPET = 200  # characters of a foreign error body worth showing
_SECURE = "[secure]"


class Transport:
    """Where the server is and how to authenticate; ``get`` returns the decoded JSON object."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.username is not None or parts.password is not None:
            # Not echoed: the URL holds a credential.
            raise ConfigError(
                "url", "must not contain credentials; pass the key as api_key / KANSOKU_API_KEY"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL with a host, got {url!r}")
        if parts.query or parts.fragment:
            raise ConfigError("url", f"must not have a query or fragment, got {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("url", f"has an invalid port: {url!r}") from None
        if api_key is not None and (not api_key or not api_key.isascii() or not api_key.isprintable()):
            # http.client would reject it later with the header value (the key) in its message.
            raise ConfigError("api_key", "must be non-empty printable ASCII")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
            raise ConfigError("timeout_s", f"must be a positive number of seconds, got {timeout_s!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = port
        self.prefix = parts.path.rstrip("/")
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, self.prefix, "", ""))
        self.timeout_s = float(timeout_s)
        self._api_key = api_key

    @property
    def has_key(self) -> bool:
        return self._api_key is not None

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """GET ``prefix + path`` with repeated query parameters; raise :class:`QueryError` on failure."""
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(list(params))
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": f"kansoku-client/{__version__}",
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        conn_type = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = conn_type(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            encoding = (resp.getheader("Content-Encoding") or "").lower()
        except ConnectionRefusedError:
            raise self._error(
                f"cannot connect to {self.url}: connection refused (is `kansoku server` running?)",
                "connection_error",
            ) from None
        except TimeoutError:
            raise self._error(f"no answer from {self.url} within {self.timeout_s:g} s", "timeout") from None
        except socket.gaierror as exc:
            raise self._error(f"cannot resolve {self.host!r} ({exc.strerror})", "connection_error") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise self._error(f"cannot talk to {self.url}: {reason}", "connection_error") from None
        finally:
            conn.close()
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                raise self._error(
                    f"{self.url}{path}: the response is not valid gzip", status=resp.status
                ) from None
        return self._decode(path, resp.status, resp.reason, body)

    def _decode(self, path: str, status: int, reason: str, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if status >= 400:
            raise self._http_error(path, status, reason, doc, body)
        if not isinstance(doc, dict):
            raise self._error(
                f"{self.url}{path} did not answer with a JSON object (is this a kansoku server?)",
                status=status,
            )
        return doc

    def _http_error(self, path: str, status: int, reason: str, doc: Any, body: bytes) -> QueryError:
        default_type = _TYPE_BY_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return self._error(
                err["message"],
                _str_or(err.get("type"), None) or default_type,
                status=status,
                param=_str_or(err.get("param"), None),
                code=_str_or(err.get("code"), None),
            )
        # Not the API's error object: probably another service on the port (4318 is also OTLP/HTTP's).
        snippet = " ".join(body.decode("utf-8", "replace").split())[:_SNIPPET]
        message = f"{self.url}{path} answered {status} {reason}"
        message += f": {snippet}" if snippet else ""
        return self._error(f"{message} (is this a kansoku server?)", default_type, status=status)

    def _error(
        self,
        message: str,
        type_: str = "server_error",
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> QueryError:
        # A server or proxy could echo the Authorization header back; never pass the key on.
        key = self._api_key
        if key:
            message = message.replace(key, _SECURE)
            param = None if param is None else param.replace(key, _SECURE)
        return QueryError(message, status=status, type=type_, param=param, code=code)


def _str_or(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default

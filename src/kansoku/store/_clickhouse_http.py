"""A small ClickHouse HTTP client on the standard library (no driver dependency).

Requests are ``POST``s on keep-alive connections from a per-client pool, so concurrent readers
and the loader thread never share a socket. Settings travel as URL parameters; the SQL goes in
the body (``SELECT``/DDL) or in the ``query`` parameter with the data in the body (``INSERT``).
Credentials go in a Basic ``Authorization`` header and never into a message or a repr.
"""

from __future__ import annotations

import base64
import http.client
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kansoku.errors import KansokuError

# A pooled connection idle for longer than this is dropped rather than reused: the server
# closes idle keep-alive connections after `keep_alive_timeout` (3 s by default).
_MAX_IDLE_S = 2.0
_POOL_SIZE = 8
# Answers are read as JSON numbers, not the quoted strings ClickHouse uses for 64-bit integers.
_READ_SETTINGS = {"output_format_json_quote_64bit_integers": "0"}


class ClickHouseError(KansokuError):
    """The server answered with an error. ``code`` is ClickHouse's error code when it sent one."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"clickhouse: HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server's HTTP address and the account to use there."""

    host: str
    port: int = 8123
    user: str = "default"
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def _error(status: int, body: bytes) -> ClickHouseError:
    text = body.decode("utf-8", "replace").strip()
    code = None
    if text.startswith("Code: "):
        digits = text[6:].split(",", 1)[0]
        code = int(digits) if digits.isdigit() else None
    return ClickHouseError(status, code, text[:2000])


class HTTPClient:
    """Sends statements to one server, in one database, over pooled keep-alive connections."""

    def __init__(self, endpoint: Endpoint, database: str | None, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.database = database
        self.timeout = timeout
        self._pool: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        token = f"{endpoint.user}:{endpoint.password}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode("ascii")

    def __repr__(self) -> str:
        return f"HTTPClient({self.endpoint}, database={self.database!r})"

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            while self._pool:
                conn, since = self._pool.pop()
                if now - since < _MAX_IDLE_S:
                    return conn, True
                conn.close()
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=self.timeout), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._pool) < _POOL_SIZE:
                self._pool.append((conn, time.monotonic()))
                return
        conn.close()

    def request(self, body: bytes, settings: Mapping[str, Any] | None = None) -> bytes:
        """POST ``body`` with ``settings`` as URL parameters; the answer's body, or raise."""
        params = {str(k): str(v) for k, v in (settings or {}).items()}
        if self.database is not None:
            params["database"] = self.database
        path = "/?" + urllib.parse.urlencode(params)
        headers = {"Authorization": self._auth, "Content-Type": "application/octet-stream"}
        for attempt in (0, 1):
            conn, reused = self._take()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                # A reused connection the server had already closed: the request never ran.
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._give(conn)
            if resp.status != 200:
                raise _error(resp.status, data)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ALTER)."""
        self.request(sql.encode("utf-8"), settings)

    def select(self, sql: str, settings: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a ``SELECT`` (``FORMAT JSONCompact`` is appended here)."""
        merged = {**_READ_SETTINGS, **(settings or {})}
        data = self.request((sql + " FORMAT JSONCompact").encode("utf-8"), merged)
        rows: list[list[Any]] = orjson.loads(data)["data"]
        return rows

    def insert(self, sql: str, data: bytes, settings: Mapping[str, Any] | None = None) -> None:
        """``INSERT ... FORMAT X`` in the ``query`` parameter, ``data`` in the body."""
        self.request(data, {**(settings or {}), "query": sql})

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn, _ in pool:
            conn.close()

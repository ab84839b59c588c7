"""A tiny kansoku collector on loopback for tests: ``POST /api/v1/ingest`` with gzip JSON.

It checks the native batch format (``{"schema": "kansoku.batch/v1", "records": [...]}``),
answers with scripted statuses (then 200), and keeps every request and accepted span id::

    with Collector(statuses=[500, 200]) as c:
        kansoku.init(export=c.url, ...)
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

INGEST_PATH = "/api/v1/ingest"
SCHEMA = "kansoku.batch/v1"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes  # as received (gzip)
    status: int
    records: list[dict[str, Any]]


class Collector:
    """Start with ``with``; ``url`` is its base URL, ``span_ids`` what it accepted, in order."""

    def __init__(self, port: int = 0, statuses: Iterable[int] = ()) -> None:
        self._statuses: deque[int] = deque(statuses)
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.span_ids: list[str] = []
        self.errors: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                collector._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="test-collector",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> tuple[list[Request], list[str]]:
        with self._lock:
            return list(self.requests), list(self.span_ids)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        records: list[dict[str, Any]] = []
        status = 200
        problem: str | None = None
        doc: Any = None
        try:
            raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
            doc = json.loads(raw)
        except (OSError, ValueError) as exc:
            problem = repr(exc)
        if not isinstance(doc, dict) or handler.path != INGEST_PATH or doc.get("schema") != SCHEMA:
            problem = problem or f"bad path {handler.path!r} or document {str(doc)[:80]!r}"
        elif not isinstance(doc.get("records"), list):
            problem = "records is not a list"
        else:
            records = doc["records"]
        if problem is not None:
            with self._lock:
                self.errors.append(problem)
            status = 422
        with self._lock:
            if status == 200 and self._statuses:
                status = self._statuses.popleft()
            self.requests.append(Request(handler.path, headers, body, status, records))
            if 200 <= status < 300:
                self.span_ids.extend(r["span_id"] for r in records)
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

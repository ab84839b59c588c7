"""The kansoku collector's native batch format over HTTP.

``POST {base}/api/v1/ingest`` with ``Content-Type: application/json``,
``Content-Encoding: gzip`` and a body ``{"schema": "kansoku.batch/v1", "records": [...]}``
where each record is :meth:`kansoku.model.Span.to_record`. The collector answers 2xx once
the batch is durable, 429/503 (with ``Retry-After``) when it is busy, 4xx naming the problem
for bad data. Authentication: ``Authorization: Bearer <ingest key>``.
"""

from __future__ import annotations

import gzip
import logging
import urllib.parse
from collections.abc import Sequence

import orjson

from kansoku.export._base import ExportResult, post
from kansoku.model import Span

BATCH_SCHEMA = "kansoku.batch/v1"
INGEST_PATH = "/api/v1/ingest"
log = logging.getLogger("kansoku.export")


def encode_native(batch: Sequence[Span]) -> bytes:
    return orjson.dumps({"schema": BATCH_SCHEMA, "records": [s.to_record() for s in batch]})


class NativeHTTPExporter:
    """Send batches to a kansoku collector. The API key never appears in ``repr`` or logs."""

    spool = True

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port must be a number between 0 and 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port]")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not allowed; use api_key / KANSOKU_API_KEY")
        path = parts.path.rstrip("/")
        if not path.endswith(INGEST_PATH):
            path += INGEST_PATH
        netloc = parts.hostname + (f":{port}" if port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))
        self.name = f"http:{netloc}"
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "kansoku-sdk",
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"NativeHTTPExporter(url={self.url!r})"

    def export(self, batch: Sequence[Span]) -> ExportResult:
        body = gzip.compress(encode_native(batch), compresslevel=1)
        result, status, reason = post(self.url, body, self._headers, self._timeout)
        if result is not ExportResult.SUCCESS:
            log.debug("kansoku export to %s: %s (status %s)", self.url, reason, status)
        return result

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None

"""The exporter contract: ``export(batch) -> ExportResult``, ``force_flush``, ``shutdown``.

Exporters are called from a background thread owned by a :class:`~kansoku.export.Channel`,
never from the application's thread, so they may block on I/O. They must not raise: a
failure is reported as :attr:`ExportResult.RETRY` (the destination may come back; the batch
is spooled and retried) or :attr:`ExportResult.REJECTED` (the destination refused this data;
retrying cannot help, the batch is dropped and counted).
"""

from __future__ import annotations

import http.client
import logging
import urllib.parse
from collections.abc import Sequence
from enum import Enum
from typing import Protocol, runtime_checkable

from kansoku.model import Span

log = logging.getLogger("kansoku.export")


class ExportResult(Enum):
    SUCCESS = "success"
    RETRY = "retry"
    REJECTED = "rejected"


@runtime_checkable
class Exporter(Protocol):
    """Where finished spans go. ``name`` labels its counters in :func:`kansoku.stats`."""

    name: str

    def export(self, batch: Sequence[Span]) -> ExportResult: ...

    def force_flush(self, timeout: float = 10.0) -> bool: ...

    def shutdown(self) -> None: ...


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[ExportResult, int | None, str]:
    """POST ``body``; map the outcome onto an :class:`ExportResult`.

    Uses the standard library on purpose: it runs on the exporter's own thread, where a
    dependency buys nothing. 429, 5xx and connection failures are retryable; other 4xx are not.
    Returns (result, HTTP status or None, short reason without any header values).
    """
    parts = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn = conn_cls(parts.hostname or "localhost", parts.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return ExportResult.RETRY, None, f"connection failed: {type(exc).__name__}"
    if 200 <= status < 300:
        return ExportResult.SUCCESS, status, "ok"
    if status in (408, 429) or status >= 500:
        return ExportResult.RETRY, status, f"HTTP {status}"
    return ExportResult.REJECTED, status, f"HTTP {status}"

"""Export to any OTLP/HTTP trace endpoint (an OpenTelemetry Collector, Phoenix, Langfuse, ...).

Spans are sent as protobuf with attributes in the GenAI or the OpenInference conventions.
Header values (API keys, bearer tokens) are kept out of ``repr()`` and of every log line.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Mapping, Sequence

from kansoku.errors import ExportError
from kansoku.export._base import ExportResult, post
from kansoku.model import Span
from kansoku.model._otlp import CONVENTIONS, PROTOBUF, encode_spans

log = logging.getLogger("kansoku.export")

_TRACES_PATH = "/v1/traces"


class OTLPHTTPExporter:
    """POST batches to an OTLP/HTTP endpoint as ``application/x-protobuf``.

    ``endpoint`` is ``http(s)://host:port`` (``/v1/traces`` is appended) or a full URL with
    its own path. ``convention`` is ``"genai"`` or ``"openinference"``. ``headers`` are sent
    with every request (e.g. ``{"authorization": "Bearer ..."}``) and never shown.

    >>> OTLPHTTPExporter("http://localhost:4318", headers={"x-api-key": "secret"}).endpoint
    'http://localhost:4318/v1/traces'
    """

    name: str

    def __init__(
        self,
        endpoint: str,
        convention: str = "genai",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        # Error messages show the URL without credentials or query string.
        shown = urllib.parse.urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        try:
            parts.port  # noqa: B018 -- validates the port now rather than on every export
        except ValueError:
            raise ExportError(shown, "the OTLP endpoint has an invalid port") from None
        if parts.username or parts.password:
            raise ExportError(shown, "put credentials in headers, not in the endpoint URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ExportError(shown, "the OTLP endpoint must be an http:// or https:// URL with a host")
        if convention not in CONVENTIONS:
            raise ExportError(shown, f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
        if timeout <= 0:
            raise ExportError(shown, f"timeout must be positive, got {timeout}")
        path = parts.path if parts.path not in ("", "/") else _TRACES_PATH
        self._url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        # What logs and repr show: no query string, which some backends use for keys.
        self._shown_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        given = {str(k): str(v) for k, v in (headers or {}).items()}
        for key, value in given.items():
            # http.client would raise on these at send time, inside export(), which must not raise.
            if any(c in key + value for c in "\r\n\0") or not key.strip():
                raise ExportError(shown, f"header {key.strip()!r} has an empty name or a line break")
        self._convention = convention
        self._headers = {k: v for k, v in given.items() if k.lower() != "content-type"}
        self._user_header_names = list(self._headers)
        self._headers["Content-Type"] = PROTOBUF
        self._timeout = timeout
        self._closed = threading.Event()
        self.name = "otlp"

    @property
    def endpoint(self) -> str:
        """The URL batches are posted to, without its query string."""
        return self._shown_url

    @property
    def convention(self) -> str:
        """The attribute convention written: ``"genai"`` or ``"openinference"``."""
        return self._convention

    def __repr__(self) -> str:
        shown = dict.fromkeys(self._user_header_names, "[secure]")
        args = f"endpoint={self._shown_url!r}, convention={self._convention!r}, headers={shown!r}"
        return f"OTLPHTTPExporter({args})"

    def export(self, batch: Sequence[Span]) -> ExportResult:
        """Send one batch; never raises (see :class:`~kansoku.export.ExportResult`)."""
        if self._closed.is_set():
            # A batch racing with shutdown is spooled by the channel rather than lost.
            return ExportResult.RETRY
        if not batch:
            return ExportResult.SUCCESS
        try:
            body = encode_spans(batch, self._convention)
        except ValueError as exc:
            log.warning(
                "otlp export to %s: batch of %d spans not encodable: %s", self._shown_url, len(batch), exc
            )
            return ExportResult.REJECTED
        result, status, reason = post(self._url, body, self._headers, self._timeout)
        if result is not ExportResult.SUCCESS:
            log.warning(
                "otlp export to %s failed (%s), %d spans: %s",
                self._shown_url,
                result.value,
                len(batch),
                reason,
            )
        elif status is not None:
            log.debug("otlp export to %s: %d spans, HTTP %d", self._shown_url, len(batch), status)
        return result

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Nothing is buffered here: every ``export`` call sends at once."""
        return True

    def shutdown(self) -> None:
        """Refuse further exports (they return RETRY)."""
        self._closed.set()

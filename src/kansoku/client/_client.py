"""``Client``: the query API of ``kansoku server`` as Python methods."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, Unpack

from kansoku.client._http import Transport
from kansoku.client._params import (
    CALLS_KEYS,
    HISTOGRAM_KEYS,
    STATS_KEYS,
    CallsParams,
    HistogramParams,
    StatsParams,
    to_query,
)
from kansoku.client._types import (
    CallsPage,
    Histogram,
    Record,
    Session,
    Stats,
    Trace,
    parse_histogram,
    parse_page,
    parse_session,
    parse_stats,
    parse_trace,
)
from kansoku.errors import QueryError

DEFAULT_URL = "http://127.0.0.1:4318"
DEFAULT_TIMEOUT_S = 10.0
URL_ENV = "KANSOKU_URL"
API_KEY_ENV = "KANSOKU_API_KEY"
_PAGE_MAX = 1000  # the API's largest page

_T = TypeVar("_T")


class Client:
    """A synchronous client of the query API.

    Each setting is taken from the argument, else the environment (``KANSOKU_URL``,
    ``KANSOKU_API_KEY``), else the default (``http://127.0.0.1:4318``, no key, 10 s). Bad settings
    raise :class:`~kansoku.errors.ConfigError`; every failed query raises
    :class:`~kansoku.errors.QueryError` carrying the server's ``status``, ``type``, ``message`` and
    ``param``. The client holds no connection, so one instance may be shared between threads.

    >>> Client("http://collector:4318", api_key="k-123")
    Client(url='http://collector:4318', api_key=[secure], timeout_s=10.0)
    """

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float | None = None
    ) -> None:
        url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        self._http = Transport(url, api_key, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)

    @property
    def url(self) -> str:
        """The base URL (without a trailing slash)."""
        return self._http.url

    @property
    def timeout_s(self) -> float:
        return self._http.timeout_s

    def __repr__(self) -> str:
        key = "[secure]" if self._http.has_key else "None"
        return f"Client(url={self.url!r}, api_key={key}, timeout_s={self.timeout_s!r})"

    def calls(self, **params: Unpack[CallsParams]) -> CallsPage:
        """One page of calls (LLM calls unless ``type="span"`` or ``"all"``), newest first by default."""
        query = to_query("calls", CALLS_KEYS, params)
        return self._get("/api/v1/calls", query, parse_page)

    def iter_calls(self, *, max_items: int | None = None, **params: Unpack[CallsParams]) -> Iterator[Record]:
        """Every matching record, following ``next_cursor`` page by page (up to ``max_items``).

        Pages are ``limit`` records (default 1000 here, fewer requests); the filters are sent
        unchanged with every page, so a relative ``since="1h"`` is re-read by the server each time.
        """
        if max_items is not None and (isinstance(max_items, bool) or max_items < 0):
            raise ValueError("max_items must be a non-negative integer or None")
        base: dict[str, Any] = dict(params)
        page_size = base.pop("limit", None) or _PAGE_MAX
        cursor = base.pop("cursor", None)
        seen = 0
        while max_items is None or seen < max_items:
            want = page_size if max_items is None else min(page_size, max_items - seen)
            page = self.calls(**base, limit=want, cursor=cursor)
            for record in page.data[:want]:
                yield record
                seen += 1
            cursor = page.next_cursor
            if not page.has_more or not cursor or not page.data:
                return

    def trace(self, trace_id: str) -> Trace:
        """Every span of one trace as a tree; :class:`QueryError` with status 404 when unknown."""
        return self._get(f"/api/v1/traces/{_path_id('trace_id', trace_id)}", [], parse_trace)

    def session(self, context_id: str) -> Session:
        """The LLM calls of one session / conversation, in order, with totals (404 when unknown)."""
        return self._get(f"/api/v1/sessions/{_path_id('context_id', context_id)}", [], parse_session)

    def stats(self, **params: Unpack[StatsParams]) -> Stats:
        """Aggregates (count, errors, latency/TTFT/token percentiles, cost), grouped and bucketed."""
        query = to_query("stats", STATS_KEYS, params)
        return self._get("/api/v1/stats", query, parse_stats)

    def histogram(self, **params: Unpack[HistogramParams]) -> Histogram:
        """How ``field`` (default ``latency_ms``) is spread over every matching call: log-scale bins."""
        query = to_query("histogram", HISTOGRAM_KEYS, params)
        return self._get("/api/v1/histogram", query, parse_histogram)

    def _get(self, path: str, query: list[tuple[str, str]], parse: Callable[[dict[str, Any]], _T]) -> _T:
        doc = self._http.get(path, query)
        try:
            return parse(doc)
        except ValueError as exc:
            raise QueryError(
                f"unexpected answer from {self.url}{path}: {exc} (is this a kansoku server?)",
                status=None,
                type="server_error",
            ) from None


def _path_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return urllib.parse.quote(value, safe="")

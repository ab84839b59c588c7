"""A small synchronous client of the ``kansoku server`` query API (standard library only).

::

    from kansoku.client import Client

    client = Client()  # KANSOKU_URL / KANSOKU_API_KEY, else http://127.0.0.1:4318 without a key
    page = client.calls(model="gpt-4o-mini", status="error", since="1h", tags={"feature": "search"})
    for record in client.iter_calls(min_latency_ms=5000, since="24h", max_items=10_000):
        print(record["trace_id"], record["latency_ms"])
    tree = client.trace(page.data[0]["trace_id"])
    by_model = client.stats(group_by="model", since="24h", bucket="1h")
    latency = client.histogram(field="latency_ms", since="30d")  # bins over every matching call

Records are the public record dicts (``Span.to_record()``); failures raise
:class:`~kansoku.errors.QueryError`.
"""

from kansoku.client._client import API_KEY_ENV, DEFAULT_TIMEOUT_S, DEFAULT_URL, URL_ENV, Client
from kansoku.client._params import CallFilters, CallsParams, HistogramParams, StatsParams, TagsArg, TimeArg
from kansoku.client._types import (
    CallsPage,
    Histogram,
    HistogramBin,
    Percentiles,
    Record,
    Session,
    Stats,
    StatsRow,
    Trace,
)
from kansoku.errors import QueryError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "URL_ENV",
    "CallFilters",
    "CallsPage",
    "CallsParams",
    "Client",
    "Histogram",
    "HistogramBin",
    "HistogramParams",
    "Percentiles",
    "QueryError",
    "Record",
    "Session",
    "Stats",
    "StatsParams",
    "StatsRow",
    "TagsArg",
    "TimeArg",
    "Trace",
]

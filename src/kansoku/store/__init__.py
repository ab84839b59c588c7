"""Storage of spans and the query layer over them: the :class:`Store` protocol and its backends."""

from kansoku.store._clickhouse import ClickHouseStore
from kansoku.store._clickhouse_http import ClickHouseError
from kansoku.store._duckdb import DuckDBStore
from kansoku.store._open import open_store, register_store
from kansoku.store._protocol import (
    GROUP_FIELDS,
    HISTOGRAM_FIELDS,
    MAX_LIMIT,
    QUANTILE_FIELDS,
    SORT_FIELDS,
    CallQuery,
    Filters,
    HistogramBin,
    HistogramQuery,
    Page,
    StatsQuery,
    StatsRow,
    Store,
)
from kansoku.store._rows import to_ndjson as rows_ndjson

__all__ = [
    "GROUP_FIELDS",
    "HISTOGRAM_FIELDS",
    "MAX_LIMIT",
    "QUANTILE_FIELDS",
    "SORT_FIELDS",
    "CallQuery",
    "ClickHouseError",
    "ClickHouseStore",
    "DuckDBStore",
    "Filters",
    "HistogramBin",
    "HistogramQuery",
    "Page",
    "StatsQuery",
    "StatsRow",
    "Store",
    "open_store",
    "register_store",
    "rows_ndjson",
]

"""Storage of spans and the query layer over them: the :class:`Store` protocol and its backends."""

from kansoku.store._duckdb import DuckDBStore
from kansoku.store._protocol import (
    GROUP_FIELDS,
    MAX_LIMIT,
    SORT_FIELDS,
    CallQuery,
    Filters,
    Page,
    StatsQuery,
    StatsRow,
    Store,
)
from kansoku.store._rows import to_ndjson as rows_ndjson

__all__ = [
    "GROUP_FIELDS",
    "MAX_LIMIT",
    "SORT_FIELDS",
    "CallQuery",
    "DuckDBStore",
    "Filters",
    "Page",
    "StatsQuery",
    "StatsRow",
    "Store",
    "rows_ndjson",
]

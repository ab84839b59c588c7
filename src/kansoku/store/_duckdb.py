"""The embedded DuckDB backend: one file (or ``:memory:``), zero setup.

Writes are bulk loads only: a batch becomes one NDJSON temp file read by ``read_json`` in a
single ``INSERT ... SELECT`` (measured fastest here without new dependencies; row-wise
``INSERT``/``executemany`` run at ~1k rows/s). Rows are appended in start-time order per batch
so DuckDB's zone maps prune time ranges.

Idempotence rule: a span is identified by (project, span_id). A write skips rows whose
(project, span_id) is already stored with a start time inside the batch's own start-time range
(a replayed batch carries the same start times, so a replay never duplicates; the range keeps
the check to the few row groups the batch covers), and repeats within a batch keep the last.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

from kansoku.model import Span
from kansoku.store._duckdb_schema import SPAN_COLUMN_TYPES, migrate
from kansoku.store._duckdb_sql import SELECT_SPAN, calls_sql, histogram_sql, stats_sql
from kansoku.store._protocol import (
    CallQuery,
    HistogramBin,
    HistogramQuery,
    Page,
    StatsQuery,
    StatsRow,
    check_id,
    check_range,
    histogram_bins,
)
from kansoku.store._rows import COLUMNS, batch_rows, from_row

_NS_PER_DAY = 86_400 * 1_000_000_000
_CHECKPOINT_THRESHOLD = "256MiB"

# The read_json column spec is built from constants only (never from input).
_JSON_COLUMNS = (
    "{"
    + ", ".join(
        f"'{name}': '{ty.replace(' NOT NULL', '')}'" for name, ty in SPAN_COLUMN_TYPES if name != "latency_ms"
    )
    + "}"
)
_INSERT_SELECT = ", ".join(
    "(b.end_ns - b.start_ns) / 1e6" if c == "latency_ms" else f"b.{c}" for c in COLUMNS
)
_INSERT = (
    f"INSERT INTO spans SELECT {_INSERT_SELECT} "  # noqa: S608 (constants only)
    f"FROM read_json($path, format = 'newline_delimited', columns = {_JSON_COLUMNS}) AS b "
    "WHERE NOT EXISTS (SELECT 1 FROM spans AS s WHERE s.project = b.project "
    "AND s.start_ns BETWEEN $lo AND $hi AND s.span_id = b.span_id) "
    # Repeats inside one load (a retried batch replayed beside its original) are stored once.
    "QUALIFY row_number() OVER (PARTITION BY b.project, b.span_id ORDER BY b.end_ns DESC) = 1 "
    "ORDER BY b.start_ns"
)


class DuckDBStore:
    """A :class:`~kansoku.store.Store` on DuckDB. ``retention_days=None`` keeps everything."""

    def __init__(
        self,
        path: str = ":memory:",
        retention_days: int | None = 30,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        if retention_days is not None and (
            isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days <= 0
        ):
            raise ValueError("retention_days must be a positive integer or None")
        self.path = path
        self.retention_days = retention_days
        # DuckDB takes 80 % of RAM and every core by default; a collector beside other services
        # may cap both (duckdb:///path?memory_limit=1GB&threads=2). Validated by open_store.
        config: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        if threads is not None:
            config["threads"] = threads
        self._con = duckdb.connect(path, config=config)
        # At the default 16 MiB of WAL nearly every bulk load triggers a checkpoint, which
        # compresses and rewrites the table's last, partly filled row group again and again:
        # 256 MiB measured ~1.2-1.6x faster loads and a ~45 % smaller file (bench/store_load.py);
        # the cost is a WAL of up to that size to replay when the store reopens after a crash.
        self._con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")
        self._write_lock = threading.Lock()
        self._closed = False
        self.schema_version = migrate(self._con)

    # -- writing -------------------------------------------------------------------------------
    def write(self, spans: Sequence[Span], project: str = "default") -> int:
        rows, lo, hi = batch_rows(spans, check_id("project", project))
        return self._load(rows, lo, hi) if rows else 0

    def load(self, rows: bytes, lo_ns: int, hi_ns: int) -> int:
        check_range(lo_ns, hi_ns)
        return self._load(rows, lo_ns, hi_ns) if rows else 0

    def _load(self, data: bytes, lo: int, hi: int) -> int:
        fd, tmp = tempfile.mkstemp(prefix="kansoku-batch-", suffix=".ndjson")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with self._write_lock:
                row = self._con.execute(_INSERT, {"path": tmp, "lo": lo, "hi": hi}).fetchone()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return int(row[0]) if row else 0

    def apply_retention(self, now_ns: int) -> int:
        if self.retention_days is None:
            return 0
        cutoff = now_ns - self.retention_days * _NS_PER_DAY
        with self._write_lock:
            row = self._con.execute(
                "DELETE FROM spans WHERE start_ns < $cutoff", {"cutoff": cutoff}
            ).fetchone()
        return int(row[0]) if row else 0

    # -- reading -------------------------------------------------------------------------------
    def _fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._con.cursor() as cur:
            return cur.execute(sql, params).fetchall()

    def query_calls(self, q: CallQuery) -> Page:
        sql, params = calls_sql(q)
        rows = self._fetch(sql, params)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        items = [from_row(r[:-1]) for r in rows]
        cursor = q.make_cursor(rows[-1][-1], rows[-1][1]) if more else None
        return Page(items=items, next_cursor=cursor)

    def get_trace(self, project: str, trace_id: str) -> list[Span]:
        params = {"project": check_id("project", project), "id": check_id("trace_id", trace_id)}
        sql = (
            f"SELECT {SELECT_SPAN} FROM spans WHERE project = $project AND trace_id = $id "  # noqa: S608
            "ORDER BY start_ns, span_id"
        )
        return [from_row(r) for r in self._fetch(sql, params)]

    def get_session(self, project: str, context_id: str) -> list[Span]:
        params = {"project": check_id("project", project), "id": check_id("context_id", context_id)}
        sql = (
            f"SELECT {SELECT_SPAN} FROM spans WHERE project = $project AND context_id = $id "  # noqa: S608
            "ORDER BY start_ns, span_id"
        )
        return [from_row(r) for r in self._fetch(sql, params)]

    def stats(self, q: StatsQuery) -> list[StatsRow]:
        sql, params = stats_sql(q)
        return [
            StatsRow.of(g, b, n, errors, (by_type or {}).items(), lat, ttft, tin, tout, tok, cost)
            for g, b, n, errors, by_type, lat, ttft, tin, tout, tok, cost in self._fetch(sql, params)
        ]

    def histogram(self, q: HistogramQuery) -> list[HistogramBin]:
        sql, params = histogram_sql(q)
        return histogram_bins(self._fetch(sql, params))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

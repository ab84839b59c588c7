"""DuckDB schema: versioned migrations, applied when a store opens (idempotent)."""

from __future__ import annotations

import time

import duckdb

#: Column types of the ``spans`` table, in :data:`kansoku.store._rows.COLUMNS` order.
SPAN_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("project", "VARCHAR NOT NULL"), ("trace_id", "VARCHAR NOT NULL"), ("span_id", "VARCHAR NOT NULL"),
    ("parent_span_id", "VARCHAR"), ("type", "VARCHAR NOT NULL"), ("name", "VARCHAR"), ("kind", "VARCHAR"),
    ("start_ns", "BIGINT NOT NULL"), ("end_ns", "BIGINT NOT NULL"), ("latency_ms", "DOUBLE NOT NULL"),
    ("status", "VARCHAR"), ("status_code", "INTEGER"), ("error_type", "VARCHAR"),
    ("error_message", "VARCHAR"), ("service", "VARCHAR"), ("environment", "VARCHAR"), ("region", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("context_id", "VARCHAR"), ("prompt_id", "VARCHAR"), ("prompt_version", "VARCHAR"),
    ("tags", "MAP(VARCHAR, VARCHAR)"), ("attributes", "JSON"), ("events", "JSON"), ("provider", "VARCHAR"),
    ("operation", "VARCHAR"), ("model", "VARCHAR"), ("request_model", "VARCHAR"), ("temperature", "DOUBLE"),
    ("parameters", "JSON"), ("input_text", "VARCHAR"), ("output_text", "VARCHAR"), ("input_messages", "JSON"),
    ("output_messages", "JSON"), ("input_tokens", "INTEGER"), ("output_tokens", "INTEGER"),
    ("cached_input_tokens", "INTEGER"), ("reasoning_tokens", "INTEGER"), ("total_tokens", "INTEGER"),
    ("usage_estimated", "BOOLEAN"), ("cost_usd", "DOUBLE"), ("ttft_ms", "DOUBLE"),
    ("finish_reasons", "VARCHAR[]"), ("response_id", "VARCHAR"), ("stream", "BOOLEAN"),
)  # fmt: skip

_CREATE_SPANS = "CREATE TABLE IF NOT EXISTS spans (\n  {}\n)".format(
    ",\n  ".join(f"{name} {ty}" for name, ty in SPAN_COLUMN_TYPES)
)

#: Columns stored with ZSTD by migration 3: the prompts and replies, ~85 % of a row's bytes. With
#: DuckDB's default for strings (dictionary + FSST) and 16 MiB checkpoints, compressing them was
#: most of a bulk load; ZSTD loads faster and stores them in about half the space.
_ZSTD_V3 = frozenset({"input_text", "output_text", "input_messages", "output_messages"})

#: Columns stored with ZSTD from migration 4 on: the messages only (~45 % of a row's bytes), read
#: only when a row is fetched. The rendered input_text / output_text went back to the default:
#: text search scans them, and in ZSTD a day's scan took ~25 % longer and fetching a page of rows
#: too, so the user + time search missed its 50 ms p95 over 10 M calls (bench/store_query.py).
ZSTD_COLUMNS = frozenset({"input_messages", "output_messages"})


def _create_spans(table: str, zstd: frozenset[str]) -> str:
    return "CREATE TABLE {} (\n  {}\n)".format(
        table,
        ",\n  ".join(
            f"{name} {ty}" + (" USING COMPRESSION zstd" if name in zstd else "")
            for name, ty in SPAN_COLUMN_TYPES
        ),
    )


def _rebuild(table: str, zstd: frozenset[str]) -> tuple[str, ...]:
    """A column's compression is fixed when the table is made, so the table is rebuilt (in start
    time order, which keeps the zone maps on start_ns tight)."""
    return (
        _create_spans(table, zstd),
        f"INSERT INTO {table} SELECT * FROM spans ORDER BY start_ns",  # noqa: S608 (constants only)
        "DROP TABLE spans",
        f"ALTER TABLE {table} RENAME TO spans",
        "CREATE INDEX spans_trace_id ON spans (trace_id)",
    )


#: (version, statements). Append only: never edit a released migration.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (_CREATE_SPANS,)),
    # One trace by id: ~40 ms full scan at 1 M rows vs ~2 ms with this ART index (~15 % ingest cost).
    (2, ("CREATE INDEX IF NOT EXISTS spans_trace_id ON spans (trace_id)",)),
    (3, _rebuild("spans_v3", _ZSTD_V3)),
    (4, _rebuild("spans_v4", ZSTD_COLUMNS)),
)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply the migrations not yet recorded in ``schema_migrations``; return the schema version."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_ns BIGINT NOT NULL)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    current = int(row[0]) if row else 0
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for sql in statements:
                con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, time.time_ns()])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        current = version
    return current

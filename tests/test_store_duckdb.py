"""DuckDB-only behaviour of the store: schema migrations of an existing file, storage settings."""

from __future__ import annotations

from pathlib import Path

import pytest

import kansoku.store._duckdb_schema as schema
from kansoku.store import CallQuery, DuckDBStore
from test_store import make_calls


@pytest.mark.parametrize("from_version", [2, 3])
def test_rebuilding_migrations_keep_an_older_store_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_version: int
) -> None:
    path = str(tmp_path / "old.duckdb")
    spans = make_calls(50)
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:from_version])
        with DuckDBStore(path, retention_days=None) as old:
            assert old.schema_version == from_version
            assert old.write(spans, project="p") == 50
    with DuckDBStore(path, retention_days=None) as store:
        assert store.schema_version == schema.MIGRATIONS[-1][0]
        got = store.query_calls(CallQuery(project="p", limit=100, sort="timestamp", descending=False)).items
        assert [s.span_id for s in got] == [s.span_id for s in sorted(spans, key=lambda s: s.start_ns)]
        assert store.get_trace("p", spans[7].trace_id) == [spans[7]]
        assert store.write(spans, project="p") == 0  # still idempotent after the rebuild
        indexes = store._con.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'spans'")
        assert indexes.fetchall() == [("spans_trace_id",)]


def _compressions(store: DuckDBStore, column: str) -> set[str]:
    rows = store._con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('spans') "
        "WHERE column_name = $c AND segment_type <> 'VALIDITY'",
        {"c": column},
    ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize("column", ["input_messages", "output_messages", "input_text", "output_text"])
def test_messages_are_stored_with_zstd_and_searched_texts_are_not(tmp_path: Path, column: str) -> None:
    with DuckDBStore(str(tmp_path / "k.duckdb"), retention_days=None) as store:
        store.write(make_calls(200), project="p")
        store._con.execute("CHECKPOINT")
        found = _compressions(store, column)
    if column in schema.ZSTD_COLUMNS:
        assert "ZSTD" in found
        assert found <= {"ZSTD", "Constant"}
    else:
        assert "ZSTD" not in found


def test_checkpoints_wait_for_256_mib_of_wal(tmp_path: Path) -> None:
    with DuckDBStore(str(tmp_path / "k.duckdb")) as store:
        value = store._con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
    assert value == ("256.0 MiB",)

"""ClickHouse-specific behaviour: literal quoting (checked against a real server), the cluster
layout, and that credentials stay out of reprs and errors. The shared store contract is in
test_store.py."""

# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
from __future__ import annotations

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kansoku.errors import ConfigError
from kansoku.store import ClickHouseError, ClickHouseStore, rows_ndjson
from kansoku.store._clickhouse_http import Endpoint, HTTPClient
from kansoku.store._clickhouse_sql import identifier, quote
from kansoku.store._clickhouse_url import parse_clickhouse_url
from test_store import SEC, T0, calls, clickhouse_url, drop_clickhouse_database, make_calls


@pytest.fixture(scope="module")
def server():
    """A client of the single test server (no database)."""
    cfg = parse_clickhouse_url(clickhouse_url("clickhouse"))
    client = HTTPClient(cfg.endpoint, None)
    yield client
    client.close()


@pytest.fixture
def cluster_store():
    url = clickhouse_url("clickhouse_cluster")
    store = ClickHouseStore(url)
    yield store
    store.close()
    drop_clickhouse_database(url)


# -- quote: pure rules ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "sql"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("nul\0byte", "'nul\\0byte'"),
        ("\\'", "'\\\\\\''"),
        ("", "''"),
        (None, "NULL"),
        (True, "1"),
        (-5, "-5"),
        (0.1, "0.1"),
        (float("inf"), "inf"),
    ],
)
def test_quote_writes_clickhouse_literals(value, sql):
    assert quote(value) == sql


def test_quote_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="Unicode"):
        quote("lone \ud800 surrogate")
    with pytest.raises(ValueError, match="NaN"):
        quote(math.nan)
    with pytest.raises(TypeError):
        quote(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["db", "kansoku_test_1", "_x"])
def test_identifier_accepts_plain_names(name):
    assert identifier(name, "database") == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1db", "a-b", "a`b", "a b", "x" * 64, "db; DROP"])
def test_identifier_rejects_anything_else(name):
    with pytest.raises(ValueError, match=r"^database"):
        identifier(name, "database")


# -- quote: round trips through a real server -------------------------------------------------
def _select(server: HTTPClient, literal: str):
    return server.select(f"SELECT {literal}")[0][0]


_QUIET = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_QUIET
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_quoted_strings_read_back_unchanged(server, text):
    assert _select(server, quote(text)) == text
    # ... and inside a larger expression, nothing leaks out of the literal.
    assert server.select(f"SELECT length({quote(text)}), 'end'")[0] == [len(text.encode()), "end"]


@pytest.mark.parametrize(
    "text", ["\\", "'", "\\'", "\0", "'; DROP DATABASE default; --", "\\0", "\n\r\t", "é𝄞"]
)
def test_quoted_edge_strings_read_back_unchanged(server, text):
    assert _select(server, quote(text)) == text


@_QUIET
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_quoted_integers_read_back_unchanged(server, n):
    assert _select(server, quote(n)) == n


@_QUIET
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_quoted_floats_read_back_bit_for_bit(server, x):
    _assert_same_double(float(_select(server, f"toFloat64({quote(x)})")), x)


@pytest.mark.parametrize("x", [5e-324, -5e-324, 1.5e-323, 2.2250738585072009e-308, 1e308, -0.0, 0.1])
def test_quoted_extreme_floats_read_back_bit_for_bit(server, x):
    _assert_same_double(float(_select(server, f"toFloat64({quote(x)})")), x)


def _assert_same_double(got: float, want: float) -> None:
    if want == 0:  # the JSON output writes -0.0 as -0, which JSON readers take for the integer 0
        assert got == 0
    else:
        assert struct.pack("<d", got) == struct.pack("<d", want)


# -- the cluster layout -----------------------------------------------------------------------
def _per_node(store: ClickHouseStore, sql: str) -> list[int]:
    return [int(node.select(sql)[0][0]) for node in store._nodes]


def test_cluster_spreads_traces_over_shards_and_keeps_each_on_one(cluster_store):
    spans = make_calls(200)
    for i, s in enumerate(spans):  # 20 traces of 10 spans
        s.trace_id = spans[i - i % 10].trace_id
    assert cluster_store.load(rows_ndjson(spans, "p"), T0, T0 + 200 * SEC) == 200
    # Readable through the Distributed table as soon as load() returns.
    assert len(calls(cluster_store, project="p")) == 200
    counts = _per_node(cluster_store, "SELECT count() FROM spans_local")
    assert len(counts) == 2
    assert all(c > 0 for c in counts)
    assert sum(counts) == 200
    for trace in {s.trace_id for s in spans}:
        where = f"SELECT count() FROM spans_local WHERE trace_id = {quote(trace)}"  # noqa: S608
        assert sorted(_per_node(cluster_store, where)) == [0, 10]
    # The dedupe check sees every shard.
    assert cluster_store.load(rows_ndjson(spans, "p"), T0, T0 + 200 * SEC) == 0


def test_cluster_nodes_are_checked():
    url = clickhouse_url("clickhouse_cluster")
    cfg = parse_clickhouse_url(url)
    assert cfg.nodes is not None
    try:
        with pytest.raises(ConfigError, match="no HTTP address for shard"):
            ClickHouseStore(url, nodes=cfg.nodes[:1])
        with pytest.raises(ConfigError, match="no cluster 'nope'"):
            ClickHouseStore(url, cluster="nope")
    finally:
        drop_clickhouse_database(url)


def test_single_server_tables():
    url = clickhouse_url("clickhouse")
    try:
        with ClickHouseStore(url) as store:
            assert store.write(make_calls(3), project="p") == 3
            names = store._client.select(
                "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
            )
            assert dict(map(tuple, names)) == {
                "spans": "ReplacingMergeTree",
                "schema_migrations": "MergeTree",
            }
    finally:
        drop_clickhouse_database(url)


# -- credentials ------------------------------------------------------------------------------
def test_password_stays_out_of_repr_and_errors():
    url = clickhouse_url("clickhouse")
    cfg = parse_clickhouse_url(url)
    secret = "s3cret-canary"
    bad = url.replace("clickhouse://", f"clickhouse://default:{secret}@", 1)
    with pytest.raises(ClickHouseError) as info:
        ClickHouseStore(bad)
    assert info.value.code == 193  # wrong password
    assert secret not in str(info.value)
    assert secret not in repr(parse_clickhouse_url(bad))
    ep = Endpoint(cfg.endpoint.host, cfg.endpoint.port, "default", secret)
    assert secret not in repr(ep)
    assert secret not in str(ep)
    assert secret not in repr(HTTPClient(ep, "db"))
    with ClickHouseStore(url) as store:
        assert secret not in repr(store)
        assert repr(store).startswith("ClickHouseStore('clickhouse://default@")
    drop_clickhouse_database(url)


def test_bad_rows_are_refused(server):
    url = clickhouse_url("clickhouse")
    try:
        with ClickHouseStore(url) as store:
            with pytest.raises(ValueError, match=r"^rows"):
                store.load(b"not json\n", 0, 1)
            with pytest.raises(ValueError, match=r"^rows"):
                store.load(b'{"span_id": "x"}\n', 0, 1)
            line = rows_ndjson(make_calls(1), "p").replace(b'"status_code":200', b'"status_code":"x"')
            with pytest.raises(ValueError, match=r"^rows: column 'status_code'"):
                store.load(line, 0, T0 * 2)
            assert calls(store, project="p") == []
    finally:
        drop_clickhouse_database(url)

"""open_store: store URLs for both built-in backends, the scheme registry, and URL errors that
never repeat a password. Parsing needs no server; the ClickHouse round trip does."""

# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
from __future__ import annotations

from contextlib import closing

import pytest

from kansoku.errors import ConfigError
from kansoku.store import ClickHouseStore, DuckDBStore, Store, open_store, register_store
from kansoku.store._clickhouse_url import parse_clickhouse_url
from test_store import calls, clickhouse_url, drop_clickhouse_database, make_calls

SECRET = "pw-canary-9f3"


def test_duckdb_absolute_path(tmp_path):
    path = tmp_path / "a.duckdb"
    with closing(open_store(f"duckdb://{path}", retention_days=7)) as s:
        assert isinstance(s, DuckDBStore)
        assert (s.path, s.retention_days) == (str(path), 7)
    assert path.exists()


def test_duckdb_relative_path_and_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with closing(open_store("duckdb://sub.duckdb")) as s:
        assert isinstance(s, DuckDBStore)
        assert s.path == "sub.duckdb"
    assert (tmp_path / "sub.duckdb").exists()
    for url in ("duckdb:///:memory:", "duckdb://:memory:"):
        with closing(open_store(url, retention_days=None)) as s:
            assert isinstance(s, DuckDBStore)
            assert (s.path, s.retention_days) == (":memory:", None)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("duckdb://", "needs a file path"),
        ("duckdb:///tmp/dir/", "needs a file path"),
        ("duckdb:///x.duckdb?mode=ro", r"unknown duckdb option\(s\) \['mode'\]"),
        ("duckdb:///x.duckdb?memory_limit=lots", "memory_limit must look like"),
        ("duckdb:///x.duckdb?threads=0", "threads must be a number"),
        ("duckdb:///x.duckdb?threads=" + "9" * 5000, "threads must be a number"),
        ("nosuch://x", "unknown store scheme 'nosuch'"),
        ("just-a-path.duckdb", "scheme://"),
    ],
)
def test_bad_store_urls_name_the_problem(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_store(url)
    assert info.value.setting == "url"


def test_duckdb_memory_and_thread_caps(tmp_path):
    store = open_store(f"duckdb://{tmp_path}/k.duckdb?memory_limit=256MB&threads=1")
    try:
        con = store._con  # type: ignore[attr-defined]
        got = con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()
        assert got == ("244.1 MiB", 1)
    finally:
        store.close()


def test_bad_retention_days():
    with pytest.raises(ConfigError, match="retention_days"):
        open_store("duckdb:///:memory:", retention_days=0)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("clickhouse://h", ("h", 8123, "default", "", "default", None, None)),
        ("clickhouse://h:9123/db", ("h", 9123, "default", "", "db", None, None)),
        ("clickhouse://u:p%40ss@h:1/db", ("h", 1, "u", "p@ss", "db", None, None)),
        ("clickhouse://[::1]:8124/", ("::1", 8124, "default", "", "default", None, None)),
        ("clickhouse://h/db?cluster=c1", ("h", 8123, "default", "", "db", "c1", None)),
        (
            "clickhouse://h/db?cluster=c1&nodes=a:1,b",
            ("h", 8123, "default", "", "db", "c1", (("a", 1), ("b", 8123))),
        ),
    ],
)
def test_clickhouse_url_parts(url, want):
    cfg = parse_clickhouse_url(url)
    ep = cfg.endpoint
    assert (ep.host, ep.port, ep.user, ep.password, cfg.database, cfg.cluster, cfg.nodes) == want


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"clickhouse://u:{SECRET}@h:99999/db", "port must be a number"),
        (f"clickhouse://u:{SECRET}@h:x/db", "port must be a number"),
        (f"clickhouse://u:{SECRET}@/db", "needs a host"),
        (f"clickhouse://u:{SECRET}@h/db-name", "database must be a plain identifier"),
        (f"clickhouse://u:{SECRET}@h/a/b", "database must be a plain identifier"),
        (f"clickhouse://u:{SECRET}@h/db?secure=1", "unknown option 'secure'"),
        (f"clickhouse://u:{SECRET}@h/db?cluster=", "needs exactly one non-empty value"),
        (f"clickhouse://u:{SECRET}@h/db?cluster=a&cluster=b", "needs exactly one"),
        (f"clickhouse://u:{SECRET}@h/db?cluster=a;b", "cluster must be a plain identifier"),
        (f"clickhouse://u:{SECRET}@h/db?nodes=a:1", "nodes needs cluster"),
        (f"clickhouse://u:{SECRET}@h/db?cluster=c&nodes=a:1,u@b:2", "each of nodes must be host:port"),
        (f"clickhouse://u:{SECRET}@h/db?cluster=c&nodes=a:0x", "port must be a number"),
        (f"clickhouse://u:{SECRET}@h/db#frag", "no #fragment"),
    ],
)
def test_bad_clickhouse_urls_never_show_the_password(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_store(url)
    assert info.value.setting == "url"
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_registered_schemes_and_third_party_factories():
    opened: list[tuple[str, int | None]] = []

    def factory(url: str, retention_days: int | None) -> Store:
        opened.append((url, retention_days))
        return DuckDBStore(":memory:", retention_days=retention_days)

    register_store("Memo", factory)
    with closing(open_store("memo://anything", retention_days=3)) as s:
        assert isinstance(s, DuckDBStore)
    assert opened == [("memo://anything", 3)]

    def failing(url: str, retention_days: int | None) -> Store:
        raise ValueError(f"cannot open {url}")

    register_store("failing", failing)
    with pytest.raises(ConfigError) as info:
        open_store(f"failing://user:{SECRET}@host/x?token={SECRET}")
    assert SECRET not in str(info.value)
    assert "failing://host/x" in str(info.value)


def test_clickhouse_url_opens_a_working_store():
    url = clickhouse_url("clickhouse")
    try:
        with closing(open_store(url, retention_days=None)) as s:
            assert isinstance(s, ClickHouseStore)
            assert s.retention_days is None
            s.write(make_calls(4), project="p")
            assert len(calls(s, project="p")) == 4
    finally:
        drop_clickhouse_database(url)

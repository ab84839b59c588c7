"""The ClickHouse backend, for one server or a sharded cluster, over the HTTP interface.

Written for ClickHouse 18.16 and later (see :mod:`kansoku.store._clickhouse_schema` for what
that version lacks and how the schema copes).

Idempotence rule (the same as :class:`~kansoku.store.DuckDBStore`): a span is identified by
(project, span_id); a write skips rows whose (project, span_id) is already stored with a start
time inside the batch's own start-time range, and repeats within a batch keep the last. The
check is one ``SELECT`` per batch (through the ``Distributed`` table on a cluster, sharded by
trace so a span always lands on the same shard) followed by one ``INSERT``; writers in one
process are serialised, and ``ReplacingMergeTree`` collapses what concurrent processes might
still race in.

Cluster mode (``cluster=NAME``): every node gets the local table and a ``Distributed`` table
over the cluster; DDL and retention run on each node in turn because ``ON CLUSTER`` needs
ZooKeeper. Inserts use ``insert_distributed_sync=1`` so a batch is on its shards, and readable,
when :meth:`load` returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from kansoku.errors import ConfigError
from kansoku.model import Span
from kansoku.store._clickhouse_http import ClickHouseError, Endpoint, HTTPClient
from kansoku.store._clickhouse_schema import (
    INSERT_COLUMNS,
    NS_PER_DAY,
    Layout,
    decode_row,
    encode_row,
    migrate,
)
from kansoku.store._clickhouse_sql import (
    SELECT_SPAN,
    calls_sql,
    histogram_sql,
    identifier,
    quote,
    stats_sql,
)
from kansoku.store._clickhouse_url import ClickHouseConfig, parse_clickhouse_url
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
from kansoku.store._rows import batch_rows, from_row

_ID_CHUNK = 5000  # span ids per existence check (keeps the SQL well under the parser's limits)
_MUTATION_WAIT_S = 300.0


class ClickHouseStore:
    """A :class:`~kansoku.store.Store` on ClickHouse. ``retention_days=None`` keeps everything.

    ``url`` is ``clickhouse://[user[:password]@]host[:port][/database][?cluster=NAME&nodes=...]``
    (see :func:`kansoku.store.open_store`); ``cluster``/``nodes`` given here override the URL's.
    The database is created if missing.
    """

    def __init__(
        self,
        url: str = "clickhouse://127.0.0.1:8123/default",
        *,
        retention_days: int | None = 30,
        cluster: str | None = None,
        nodes: Sequence[tuple[str, int]] | None = None,
        timeout: float = 30.0,
    ) -> None:
        if retention_days is not None and (
            isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days <= 0
        ):
            raise ValueError("retention_days must be a positive integer or None")
        cfg = parse_clickhouse_url(url)
        if cluster is not None:
            identifier(cluster, "cluster")
            cfg = ClickHouseConfig(cfg.endpoint, cfg.database, cluster, cfg.nodes)
        if nodes is not None:
            cfg = ClickHouseConfig(cfg.endpoint, cfg.database, cfg.cluster, tuple(nodes))
        self.config = cfg
        self.retention_days = retention_days
        self.cluster = cfg.cluster
        self.database = cfg.database
        self._timeout = timeout
        self._layout = Layout("spans" if cfg.cluster is None else "spans_local", cfg.database, cfg.cluster)
        self._write_lock = threading.Lock()
        self._closed = False
        self._client = HTTPClient(cfg.endpoint, cfg.database, timeout)
        self._nodes: list[HTTPClient] = [self._client]
        try:
            if cfg.cluster is not None:
                self._nodes = self._cluster_nodes(cfg)
            versions = []
            for node in self._nodes:
                _run_once(
                    node.endpoint, timeout, f"CREATE DATABASE IF NOT EXISTS {identifier(cfg.database, 'db')}"
                )
                versions.append(migrate(node, self._layout))
        except BaseException:
            self.close()
            raise
        self.schema_version = min(versions)
        # Synchronous distributed inserts: rows are on their shards when load() returns.
        self._insert_settings = {} if cfg.cluster is None else {"insert_distributed_sync": 1}

    def __repr__(self) -> str:
        return f"ClickHouseStore({self.config.safe_url()!r}, retention_days={self.retention_days!r})"

    def _cluster_nodes(self, cfg: ClickHouseConfig) -> list[HTTPClient]:
        """One client per server of the cluster, each checked to be the server it claims to be."""
        where = f"cluster = {quote(cfg.cluster)}"
        members = _select_once(
            cfg.endpoint,
            self._timeout,
            f"SELECT shard_num, replica_num, host_address FROM system.clusters WHERE {where}",  # noqa: S608
        )
        if not members:
            raise ConfigError("cluster", f"the server has no cluster {cfg.cluster!r} in its remote_servers")
        if cfg.nodes is not None:
            addresses = list(dict.fromkeys(cfg.nodes))
        else:  # production layout: one server per host, all on the HTTP port of the URL
            addresses = list(dict.fromkeys((str(m[2]), cfg.endpoint.port) for m in members))
        wanted = {(int(m[0]), int(m[1])) for m in members}
        clients, covered = [], set()
        for host, port in addresses:
            ep = Endpoint(host, port, cfg.endpoint.user, cfg.endpoint.password)
            mine = _select_once(
                ep,
                self._timeout,
                f"SELECT shard_num, replica_num FROM system.clusters WHERE {where} AND is_local",  # noqa: S608
            )
            if not mine:
                raise ConfigError("url", f"node {host}:{port} is not a member of cluster {cfg.cluster!r}")
            covered |= {(int(s), int(r)) for s, r in mine}
            clients.append(HTTPClient(ep, cfg.database, self._timeout))
        missing = sorted(wanted - covered)
        if missing:
            raise ConfigError(
                "url", f"no HTTP address for shard/replica {missing} of {cfg.cluster!r}: list them in nodes="
            )
        return clients

    # -- writing -------------------------------------------------------------------------------
    def write(self, spans: Sequence[Span], project: str = "default") -> int:
        rows, lo, hi = batch_rows(spans, check_id("project", project))
        return self._load(rows, lo, hi) if rows else 0

    def load(self, rows: bytes, lo_ns: int, hi_ns: int) -> int:
        check_range(lo_ns, hi_ns)
        return self._load(rows, lo_ns, hi_ns) if rows else 0

    def _load(self, data: bytes, lo: int, hi: int) -> int:
        # Only the lines are kept between parsing and encoding: a batch of live dicts would make
        # the garbage collector rescan them over and over (measured 5x slower at 20k rows).
        batch: dict[tuple[str, str], bytes] = {}
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                key = (row["project"], row["span_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise ValueError("rows must be JSON objects with project and span_id, one per line") from None
            if not (isinstance(key[0], str) and isinstance(key[1], str)):
                raise ValueError("rows: project and span_id must be strings")
            batch[key] = line  # a repeat within the batch: the last one wins
        with self._write_lock:
            for key in self._existing(list(batch), lo, hi):
                del batch[key]
            if batch:
                body = b"".join([encode_row(orjson.loads(line)) for line in batch.values()])
                sql = f"INSERT INTO spans ({INSERT_COLUMNS}) FORMAT RowBinary"
                self._client.insert(sql, body, self._insert_settings)
        return len(batch)

    def _existing(self, keys: list[tuple[str, str]], lo: int, hi: int) -> set[tuple[str, str]]:
        """The keys already stored with a start time in [lo, hi]."""
        projects = ", ".join(quote(p) for p in sorted({p for p, _ in keys}))
        ids = sorted({s for _, s in keys})
        wanted = set(keys)
        found: set[tuple[str, str]] = set()
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            sql = (
                f"SELECT project, span_id FROM spans WHERE start_ns >= {quote(lo)} "  # noqa: S608 (quoted)
                f"AND start_ns <= {quote(hi)} AND project IN ({projects}) "
                f"AND span_id IN ({', '.join(quote(s) for s in chunk)})"
            )
            rows = self._client.select(sql, {"max_query_size": len(sql) + 1024})
            found |= {(p, s) for p, s in rows if (p, s) in wanted}
        return found

    def apply_retention(self, now_ns: int) -> int:
        """Drop the day partitions wholly older than the cutoff, then delete the older rows of
        the day the cutoff falls in with a ``DELETE`` mutation (18.16 has no table TTL)."""
        if self.retention_days is None:
            return 0
        cutoff = now_ns - self.retention_days * NS_PER_DAY
        with self._write_lock:
            return sum(self._retain(node, cutoff) for node in self._nodes)

    def _retain(self, node: HTTPClient, cutoff: int) -> int:
        table = self._layout.local
        old = f"SELECT count() FROM {table} WHERE start_ns < {quote(cutoff)}"  # noqa: S608 (quoted)
        deleted = int(node.select(old)[0][0])
        if not deleted:
            return 0
        in_table = f"database = {quote(self.database)} AND table = {quote(table)}"
        parts = node.select(f"SELECT DISTINCT partition_id FROM system.parts WHERE {in_table} AND active")  # noqa: S608
        first_kept_day = cutoff // NS_PER_DAY
        for (pid,) in parts:
            if int(pid) < first_kept_day:
                node.execute(f"ALTER TABLE {table} DROP PARTITION ID {quote(str(pid))}")
        if int(node.select(old)[0][0]):
            node.execute(f"ALTER TABLE {table} DELETE WHERE start_ns < {quote(cutoff)}")
            self._wait_for_mutations(node, in_table)
        return deleted

    def _wait_for_mutations(self, node: HTTPClient, in_table: str) -> None:
        # 18.16 runs mutations in the background and has no `mutations_sync`: poll until done.
        deadline = time.monotonic() + _MUTATION_WAIT_S
        pause = 0.02
        pending = f"SELECT count() FROM system.mutations WHERE {in_table} AND is_done = 0"  # noqa: S608
        while node.select(pending)[0][0]:
            if time.monotonic() > deadline:
                raise ClickHouseError(
                    0, None, f"retention: a DELETE mutation on {node.endpoint} did not finish"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    # -- reading -------------------------------------------------------------------------------
    def query_calls(self, q: CallQuery) -> Page:
        rows = self._client.select(calls_sql(q))
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        items = [from_row(decode_row(r[:-1])) for r in rows]
        cursor = None
        if more:
            key = float(rows[-1][-1]) if q.sort == "cost_usd" else int(rows[-1][-1])
            cursor = q.make_cursor(key, rows[-1][1])
        return Page(items=items, next_cursor=cursor)

    def _spans_where(self, column: str, project: str, value: str) -> list[Span]:
        sql = (
            f"SELECT {SELECT_SPAN} FROM spans WHERE project = {quote(project)} "  # noqa: S608 (quoted)
            f"AND {column} = {quote(value)} ORDER BY start_ns, span_id"
        )
        return [from_row(decode_row(r)) for r in self._client.select(sql)]

    def get_trace(self, project: str, trace_id: str) -> list[Span]:
        return self._spans_where("trace_id", check_id("project", project), check_id("trace_id", trace_id))

    def get_session(self, project: str, context_id: str) -> list[Span]:
        return self._spans_where(
            "context_id", check_id("project", project), check_id("context_id", context_id)
        )

    def stats(self, q: StatsQuery) -> list[StatsRow]:
        # An empty quantile state gives NaN, which the JSON output writes as null; a family
        # not asked for is selected as NULL.
        return [
            StatsRow.of(g, b, n, errors, by_type, lat, ttft, tin, tout, tok, cost)
            for g, b, n, errors, by_type, lat, ttft, tin, tout, tok, cost in self._client.select(stats_sql(q))
        ]

    def histogram(self, q: HistogramQuery) -> list[HistogramBin]:
        # On a cluster `spans` is the Distributed table: each shard counts its rows per bin and
        # the initiator adds the counts up, so only the bins cross the network.
        return histogram_bins(self._client.select(histogram_sql(q)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for node in {id(n): n for n in [self._client, *self._nodes]}.values():
                node.close()

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _select_once(endpoint: Endpoint, timeout: float, sql: str) -> list[list[Any]]:
    """A query outside any database, on a connection closed right after."""
    client = HTTPClient(endpoint, None, timeout)
    try:
        return client.select(sql)
    finally:
        client.close()


def _run_once(endpoint: Endpoint, timeout: float, sql: str) -> None:
    client = HTTPClient(endpoint, None, timeout)
    try:
        client.execute(sql)
    finally:
        client.close()

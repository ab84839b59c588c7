"""ClickHouse schema: the table layout, row encoding for inserts, and versioned migrations.

Targets ClickHouse 18.16 (Debian's package), which shapes several choices:

* no ``TTL`` on tables (19.6+), so each day is its own partition (``PARTITION BY`` the UTC day
  number) and retention drops whole partitions (see :mod:`kansoku.store._clickhouse`);
* no Map or JSON type: tags are a ``Nested`` column (two parallel arrays), JSON-valued fields
  are stored as JSON text;
* its text parsers (JSONEachRow, TSV, ``toFloat64(str)``) round some doubles by one ulp, so
  rows are inserted as ``RowBinary``, which carries doubles bit for bit;
* no insert deduplication for non-replicated tables: idempotence is a check before the insert,
  with ``ReplacingMergeTree`` on (project, start_ns, span_id) collapsing any duplicate that two
  concurrent writers might still race in, at the next merge.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kansoku.store._clickhouse_http import HTTPClient
from kansoku.store._clickhouse_sql import quote
from kansoku.store._rows import READ_COLUMNS

NS_PER_DAY = 86_400 * 1_000_000_000

# (column, ClickHouse type, encoding kind) in :data:`kansoku.store._rows.COLUMNS` order. Kinds:
# s/ns (nullable) string, i64, ni32/ni64, nf64, nb (nullable bool as UInt8), nj (JSON text).
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("project", "String", "s"), ("trace_id", "String", "s"), ("span_id", "String", "s"),
    ("parent_span_id", "Nullable(String)", "ns"), ("type", "String", "s"), ("name", "Nullable(String)", "ns"),
    ("kind", "Nullable(String)", "ns"), ("start_ns", "Int64", "i64"), ("end_ns", "Int64", "i64"),
    ("status", "Nullable(String)", "ns"), ("status_code", "Nullable(Int32)", "ni32"),
    ("error_type", "Nullable(String)", "ns"), ("error_message", "Nullable(String)", "ns"),
    ("service", "Nullable(String)", "ns"), ("environment", "Nullable(String)", "ns"),
    ("region", "Nullable(String)", "ns"), ("user_id", "Nullable(String)", "ns"),
    ("context_id", "Nullable(String)", "ns"), ("prompt_id", "Nullable(String)", "ns"),
    ("prompt_version", "Nullable(String)", "ns"), ("tags", "Nested(key String, value String)", "tags"),
    ("attributes", "Nullable(String)", "nj"), ("events", "Nullable(String)", "nj"),
    ("provider", "Nullable(String)", "ns"), ("operation", "Nullable(String)", "ns"),
    ("model", "Nullable(String)", "ns"), ("request_model", "Nullable(String)", "ns"),
    ("temperature", "Nullable(Float64)", "nf64"), ("parameters", "Nullable(String)", "nj"),
    ("input_text", "Nullable(String)", "ns"), ("output_text", "Nullable(String)", "ns"),
    ("input_messages", "Nullable(String)", "nj"), ("output_messages", "Nullable(String)", "nj"),
    ("input_tokens", "Nullable(Int64)", "ni64"), ("output_tokens", "Nullable(Int64)", "ni64"),
    ("cached_input_tokens", "Nullable(Int64)", "ni64"), ("reasoning_tokens", "Nullable(Int64)", "ni64"),
    ("total_tokens", "Nullable(Int64)", "ni64"), ("usage_estimated", "Nullable(UInt8)", "nb"),
    ("cost_usd", "Nullable(Float64)", "nf64"), ("ttft_ms", "Nullable(Float64)", "nf64"),
    ("finish_reasons", "Nullable(String)", "nj"), ("response_id", "Nullable(String)", "ns"),
    ("stream", "Nullable(UInt8)", "nb"),
)  # fmt: skip

_DDL_COLUMNS = ",\n  ".join(
    [f"{name} {ty}" for name, ty, _ in _COLUMNS]
    # Computed when read, so an insert never carries it (a MATERIALIZED column would be stored,
    # but 18.16's Distributed tables refuse inserts into tables that have one).
    + ["latency_ms Float64 ALIAS (end_ns - start_ns) / 1e6"]
)
# Every query filters one project and most a start-time range: the sort key serves both, and
# span_id last makes (project, start_ns, span_id) the row identity ReplacingMergeTree collapses.
_ENGINE = (
    f"ENGINE = ReplacingMergeTree PARTITION BY intDiv(start_ns, {NS_PER_DAY}) "
    "ORDER BY (project, start_ns, span_id)"
)

#: The column list of an ``INSERT ... FORMAT RowBinary`` (tags as their two arrays).
INSERT_COLUMNS = ", ".join("tags.key, tags.value" if n == "tags" else n for n, _, _ in _COLUMNS)


@dataclass(frozen=True, slots=True)
class Layout:
    """Table names of one store: ``spans`` is what queries read and inserts write; on a cluster
    it is a ``Distributed`` table over the ``local`` table on every node."""

    local: str  # "spans", or "spans_local" on a cluster
    database: str
    cluster: str | None = None


def _v1(layout: Layout) -> tuple[str, ...]:
    create = f"CREATE TABLE IF NOT EXISTS {layout.local} (\n  {_DDL_COLUMNS}\n) {_ENGINE}"
    if layout.cluster is None:
        return (create,)
    # Sharding by trace keeps a trace on one shard, and a replayed span on the shard that has it.
    dist = (
        f"CREATE TABLE IF NOT EXISTS spans AS {layout.local} ENGINE = Distributed("
        f"{quote(layout.cluster)}, {quote(layout.database)}, {quote(layout.local)}, cityHash64(trace_id))"
    )
    return (create, dist)


#: (version, statements for a layout). Append only: never edit a released migration.
MIGRATIONS: tuple[tuple[int, Callable[[Layout], tuple[str, ...]]], ...] = ((1, _v1),)


def migrate(client: HTTPClient, layout: Layout) -> int:
    """Apply the migrations not yet recorded on this server; return its schema version.

    Every statement is idempotent (``IF NOT EXISTS``), so two stores starting at once at worst
    both apply and record a version: harmless, the version is the maximum recorded.
    """
    client.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, applied_ns Int64) "
        "ENGINE = MergeTree ORDER BY version"
    )
    rows = client.select("SELECT max(version) FROM schema_migrations")
    current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        for sql in statements(layout):
            client.execute(sql)
        client.execute(f"INSERT INTO schema_migrations VALUES ({version}, {time.time_ns()})")  # noqa: S608
        current = version
    return current


# -- RowBinary encoding -----------------------------------------------------------------------
_I64 = struct.Struct("<q").pack
_I32 = struct.Struct("<i").pack
_F64 = struct.Struct("<d").pack
_NULL, _SOME = b"\x01", b"\x00"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _str(v: Any) -> bytes:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    b = v.encode("utf-8")
    return _varint(len(b)) + b


def _json(v: Any) -> bytes:
    b = orjson.dumps(v)
    return _varint(len(b)) + b


def _tags(v: Any) -> bytes:
    tags = v or {}
    if not isinstance(tags, dict):
        raise TypeError("expected an object of strings")
    n = _varint(len(tags))
    return n + b"".join(_str(k) for k in tags) + n + b"".join(_str(x) for x in tags.values())


def _opt(enc: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    return lambda v: _NULL if v is None else _SOME + enc(v)


def _int(pack: Callable[[int], bytes]) -> Callable[[Any], bytes]:
    def enc(v: Any) -> bytes:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("expected an integer")
        return pack(v)

    return enc


def _float(v: Any) -> bytes:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError("expected a number")
    return _F64(float(v))


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "s": _str,
    "ns": _opt(_str),
    "i64": _int(_I64),
    "ni32": _opt(_int(_I32)),
    "ni64": _opt(_int(_I64)),
    "nf64": _opt(_float),
    "nb": _opt(lambda v: b"\x01" if v else b"\x00"),
    "nj": _opt(_json),
    "tags": _tags,
}
_ROW_ENCODERS = tuple((name, _ENCODERS[kind]) for name, _, kind in _COLUMNS)


def encode_row(row: dict[str, Any]) -> bytes:
    """One row (a decoded :func:`kansoku.store.rows_ndjson` line) in RowBinary."""
    get = row.get
    try:
        return b"".join([enc(get(name)) for name, enc in _ROW_ENCODERS])
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        bad = next(n for n, enc in _ROW_ENCODERS if not _encodes(enc, get(n)))
        raise ValueError(f"rows: column {bad!r} of span {row.get('span_id')!r}: {exc}") from None


def _encodes(enc: Callable[[Any], bytes], value: Any) -> bool:
    try:
        enc(value)
    except (TypeError, ValueError, OverflowError, struct.error):
        return False
    return True


# -- reading ----------------------------------------------------------------------------------
_FLOATS = frozenset(n for n, _, kind in _COLUMNS if kind == "nf64")


def decode_row(r: Sequence[Any]) -> list[Any]:
    """A selected row (``SELECT_SPAN`` order) as :func:`kansoku.store._rows.from_row` wants it."""
    out: list[Any] = []
    i = 0
    for name in READ_COLUMNS:
        v = r[i]
        if name == "tags":
            out.append(list(zip(v, r[i + 1], strict=True)))
            i += 2
            continue
        i += 1
        if name == "finish_reasons" and v is not None:
            v = orjson.loads(v)
        elif name in _FLOATS and v is not None:
            # Integral doubles are printed without a point (and large ones as long integers).
            v = float(v)
        out.append(v)
    return out

"""Bulk-load rate of the DuckDB store (``DuckDBStore.load``), and what each part of it costs.

Run from the repository root::

    .venv/bin/python bench/store_load.py            # ~10 min, updates bench/RESULTS.md
    .venv/bin/python bench/store_load.py --quick    # CI smoke run, < 1 min, prints only
    .venv/bin/python bench/store_load.py --spans 500000 --rounds 5

The rows are ``bench/synth.py``'s realistic records (LLM calls of ~2.9 KB as NDJSON, with the
traces' server and tool spans), generated once before anything is timed and cut into batches
of N spans. Each round loads them all into a new store file under ``--data`` and closes it (the
final checkpoint is part of the cost); rate = spans / (time in ``load`` + close).

1. **Batch size**: the shipped store at 10k, 20k and 50k spans per batch.
2. **Options**: the same load with one thing changed at a time (batches of 20k spans), to show
   where the time goes: the store as it was before this benchmark (schema version 2: every string
   in DuckDB's default dictionary+FSST compression, 16 MiB checkpoints), each of the two changes
   alone, schema version 3 (the rendered texts in ZSTD too), the shipped store without the
   dedupe, without the ORDER BY, without the trace-id index, with an index on ``context_id``
   too, a larger checkpoint threshold, and ``read_json`` into a temporary table alone (the
   parse floor).

Variants and batch sizes run interleaved within each round; figures are medians [min, max].
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import kansoku.store._duckdb as duck
import kansoku.store._duckdb_schema as schema
from kansoku.store import DuckDBStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section
from store_query import DAY, END_NS, ROOT, command, load_average, machine
from synth import Synth

SECTION = "## Store bulk load (DuckDB; bench/store_load.py)"
TARGET = 100_000  # spans/s, the collector's ingest target (performance.md)


@dataclass
class Rows:
    lines: list[bytes]
    starts: list[int]
    calls: int

    def batches(self, size: int) -> Iterator[tuple[bytes, int, int]]:
        for i in range(0, len(self.lines), size):
            starts = self.starts[i : i + size]
            yield b"".join(self.lines[i : i + size]), min(starts), max(starts)


def make_rows(spans: int, seed: int) -> Rows:
    gen = Synth(seed=seed, start_ns=END_NS - 3 * DAY, end_ns=END_NS, calls=max(1000, int(spans / 1.75)))
    lines: list[bytes] = []
    for b in gen.ndjson(10_000):
        lines += b.rows.splitlines(keepends=True)
    lines = lines[:spans]
    starts = [int(line.split(b'"start_ns":', 1)[1].split(b",", 1)[0]) for line in lines]
    calls = sum(1 for line in lines if b'"type":"llm_call"' in line)
    return Rows(lines, starts, calls)


# -- variants: the shipped store with one thing changed ------------------------------------------


@contextlib.contextmanager
def patched(
    migrations: int | None = None,
    threshold: str | None = None,
    insert: Callable[[str], str] | None = None,
) -> Iterator[None]:
    saved = schema.MIGRATIONS, duck._CHECKPOINT_THRESHOLD, duck._INSERT
    try:
        if migrations is not None:
            schema.MIGRATIONS = schema.MIGRATIONS[:migrations]
        if threshold is not None:
            duck._CHECKPOINT_THRESHOLD = threshold
        if insert is not None:
            duck._INSERT = insert(duck._INSERT)
        yield
    finally:
        schema.MIGRATIONS, duck._CHECKPOINT_THRESHOLD, duck._INSERT = saved


def _no_dedupe(sql: str) -> str:
    head, _, tail = sql.partition(" WHERE NOT EXISTS")
    # The store binds $lo and $hi; a constant condition keeps them used.
    return head + " WHERE $lo <= $hi ORDER BY" + tail.rsplit("ORDER BY", 1)[1]


def _no_order(sql: str) -> str:
    return sql.rsplit(" ORDER BY", 1)[0]


@dataclass
class Variant:
    name: str
    patch: dict[str, object]
    after_open: Sequence[str] = ()
    parse_only: bool = False


VARIANTS = (
    Variant("before: schema v2 (messages in dictionary+FSST), 16 MiB checkpoints",
            {"migrations": 2, "threshold": "16MiB"}),
    Variant("ZSTD messages only (16 MiB checkpoints)", {"threshold": "16MiB"}),
    Variant("schema v3: ZSTD messages and input/output text, 256 MiB checkpoints", {"migrations": 3}),
    Variant("256 MiB checkpoints only (schema v2)", {"migrations": 2}),
    Variant("**shipped**: ZSTD messages + 256 MiB checkpoints", {}),
    Variant("shipped, 1 GiB checkpoints", {"threshold": "1GiB"}),
    Variant("shipped without the dedupe (NOT EXISTS and the in-load QUALIFY)", {"insert": _no_dedupe}),
    Variant("shipped without the ORDER BY start_ns", {"insert": _no_order}),
    Variant("shipped without the trace_id index", {}, ("DROP INDEX spans_trace_id",)),
    Variant("shipped + an index on context_id", {}, ("CREATE INDEX spans_context_id ON spans (context_id)",)),
    Variant("read_json into a temp table only (parse floor)", {}, parse_only=True),
)  # fmt: skip


def one_load(path: Path, rows: Rows, size: int, v: Variant | None) -> tuple[float, int]:
    """Spans per second of one load of every batch into a new store file (close included), and
    the file's size."""
    for f in (path, path.with_name(path.name + ".wal")):
        f.unlink(missing_ok=True)
    batches = list(rows.batches(size))
    with patched(**v.patch if v else {}):  # type: ignore[arg-type]
        store = DuckDBStore(str(path), retention_days=None)
        try:
            for sql in v.after_open if v else ():
                store._con.execute(sql)
            t0 = time.perf_counter()
            if v is not None and v.parse_only:
                for data, _lo, _hi in batches:
                    tmp = path.with_suffix(".ndjson")
                    tmp.write_bytes(data)
                    store._con.execute(
                        "CREATE OR REPLACE TEMP TABLE b AS SELECT * FROM read_json($p, "  # noqa: S608
                        f"format = 'newline_delimited', columns = {duck._JSON_COLUMNS})",
                        {"p": str(tmp)},
                    )
                    tmp.unlink()
            else:
                for data, lo, hi in batches:
                    store.load(data, lo, hi)
        finally:
            store.close()
        took = time.perf_counter() - t0
    file_bytes = path.stat().st_size
    for f in (path, path.with_name(path.name + ".wal")):
        f.unlink(missing_ok=True)
    return len(rows.lines) / took, file_bytes


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}, {max(values):,.0f}]"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--spans", type=int, default=None, help="spans loaded per round (default 150k; quick 40k)"
    )
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    ap.add_argument("--sizes", default="10000,20000,50000", help="batch sizes in spans")
    ap.add_argument("--no-options", dest="options", action="store_false", help="only the batch sizes")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / ".data")
    ap.add_argument("--quick", action="store_true", help="CI smoke run, prints only")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                    help="write bench/RESULTS.md (default: yes, except with --quick)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = ap.parse_args(argv)
    args.spans = args.spans or (40_000 if args.quick else 150_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    if args.write is None:
        args.write = not args.quick
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_average()
    args.data.mkdir(parents=True, exist_ok=True)
    path = args.data / f"load-{os.getpid()}.duckdb"
    rows = make_rows(args.spans, args.seed)
    nbytes = sum(map(len, rows.lines))
    call_bytes = [len(line) for line in rows.lines if b'"type":"llm_call"' in line]
    sizes: dict[int, list[float]] = {n: [] for n in args.sizes}
    options: dict[str, list[float]] = {v.name: [] for v in VARIANTS} if args.options else {}
    disk: dict[str, int] = {}
    one_load(path, rows, args.sizes[0], None)  # warm-up: imports, page cache
    for rnd in range(args.rounds):
        for n in args.sizes if rnd % 2 == 0 else reversed(args.sizes):
            sizes[n].append(one_load(path, rows, n, None)[0])
        for v in VARIANTS if args.options else ():
            rate, disk[v.name] = one_load(path, rows, 20_000, v)
            options[v.name].append(rate)
        print(f"round {rnd + 1}/{args.rounds} done, load average {load_average()}", file=sys.stderr)

    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [SECTION, ""]
    add = out.append
    add(
        f"Measured {date} with `{command()}`: {args.rounds} rounds; each loads {len(rows.lines):,} spans "
        f"({rows.calls:,} LLM calls, {nbytes / len(rows.lines):,.0f} B per span and "
        f"{statistics.mean(call_bytes):,.0f} B per call as NDJSON) into a new store file and closes it. "
        f"Load average {load} at start and {load_average()} at the end."
    )
    add("")
    add(f"Machine: {machine()}.")
    add("")
    add("| batch (spans) | spans/s, `DuckDBStore.load` + close | MB/s of NDJSON | target | verdict |")
    add("|---|---|---|---|---|")
    for n, rates in sizes.items():
        mbs = statistics.median(rates) * nbytes / len(rows.lines) / 1e6
        verdict = "**met**" if statistics.median(rates) >= TARGET else "**missed**"
        add(f"| {n:,} | {fmt(rates)} | {mbs:.0f} | ≥ {TARGET:,} | {verdict} |")
    add("")
    if options:
        add("Where the time goes (batches of 20,000 spans, one change at a time):")
        add("")
        add("| variant | spans/s | store file MB |")
        add("|---|---|---|")
        for name, rates in options.items():
            add(f"| {name} | {fmt(rates)} | {disk[name] / 1e6:.0f} |")
        add("")
    print("\n".join(out))
    if args.write:
        write_section(args.results, "\n".join(out), SECTION)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

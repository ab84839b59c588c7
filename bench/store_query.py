"""Query latency of the DuckDB store over 10 M realistic LLM-call records (30 days).

Run from the repository root::

    .venv/bin/python bench/store_query.py              # builds (or reuses) 10 M calls, updates RESULTS.md
    .venv/bin/python bench/store_query.py --quick      # CI smoke run: 200 k calls, prints only
    .venv/bin/python bench/store_query.py --records 2000000 --runs 30

The store is built once through the public API (``DuckDBStore.load`` of the NDJSON rows of
``bench/synth.py``, generated in a child process so the other core loads meanwhile) and cached
under ``--data`` (default ``bench/.data/``, git-ignored) with a ``.json`` note of how the build
went; a cached store is reused when its records, seed and schema version match.

Every query goes through the store's public methods (``stats``, ``query_calls``,
``get_trace``, ``get_session``) on the store as a collector would open it, and is timed with
``perf_counter`` around the call, Python decoding of the rows included. The queries run
round-robin (each round runs every query once, with new parameters: other users, traces,
sessions), after one untimed warm-up round; figures are p50 / p95 / min / max over the rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from kansoku.store import CallQuery, DuckDBStore, StatsQuery

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section
from synth import NS_PER_S, Synth

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Store queries (DuckDB, 10 M records; bench/store_query.py)"
DAY = 86_400 * NS_PER_S
HOUR = 3600 * NS_PER_S
#: The data ends here (a fixed instant, so a seed always gives the same store).
END_NS = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
PROJECT = "default"
#: (query name, target p95 in ms or None), in report order.
TARGETS: dict[str, float | None] = {
    "overview stats, 7 d by model, hourly": 300.0,
    "overview stats, 24 h, one group": 300.0,
    "user + time search, 24 h": 50.0,
    "one trace": 20.0,
    "one session": None,
    "text search, 24 h, common word": None,
    "text search, 24 h, rare word": None,
    "page 2 (cursor), 24 h by time": None,
    "page 2 (cursor), 24 h by latency": None,
}


# -- shared report helpers (store_load.py uses them too) -----------------------------------------


def command() -> str:
    exe = Path(sys.executable)
    shown = ".venv/bin/python" if ".venv" in exe.parts else exe.name
    script = Path(sys.argv[0]).resolve()
    script_shown = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0]
    return shlex.join([shown, script_shown, *sys.argv[1:]])


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = "unknown CPU"
    mem_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {mem_gib:.0f} GiB RAM, "
        f"shared; Linux {platform.release()}, CPython {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 30 runs is the 29th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def fmt_ms(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


# -- building the store ---------------------------------------------------------------------------


def _produce(  # noqa: PLR0917 - a process target takes positional arguments
    q: Any, records: int, seed: int, days: int, batch_calls: int, end_ns: int = END_NS
) -> None:
    """Child process: generate the batches and hand them over (bounded queue: memory stays flat)."""
    gen = Synth(seed=seed, start_ns=end_ns - days * DAY, end_ns=end_ns, calls=records, project=PROJECT)
    for b in gen.ndjson(batch_calls):
        q.put((b.rows, b.lo_ns, b.hi_ns, b.spans, b.calls))
    q.put(None)


def _batches(
    records: int, seed: int, days: int, batch_calls: int, end_ns: int = END_NS
) -> Iterator[tuple[bytes, int, int, int, int]]:
    ctx = mp.get_context("spawn")  # no fork of a process that may hold DuckDB threads
    q = ctx.Queue(maxsize=3)
    proc = ctx.Process(target=_produce, args=(q, records, seed, days, batch_calls, end_ns), daemon=True)
    proc.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()


@dataclass
class Built:
    path: Path
    meta: dict[str, Any]


def build(args: argparse.Namespace) -> Built:
    args.data.mkdir(parents=True, exist_ok=True)
    name = f"store-{args.records}-s{args.seed}-d{args.days}"
    path, note = args.data / f"{name}.duckdb", args.data / f"{name}.json"
    with DuckDBStore(":memory:") as probe:
        schema = probe.schema_version
    if note.exists() and path.exists() and not args.rebuild:
        meta = json.loads(note.read_text())
        if meta.get("schema_version") == schema:
            print(f"reusing {path} (built {meta['date']})", file=sys.stderr)
            return Built(path, meta)
    for stale in (path, path.with_name(path.name + ".wal"), note):
        stale.unlink(missing_ok=True)
    print(f"building {path}: {args.records:,} calls over {args.days} days ...", file=sys.stderr)
    load_s: list[float] = []
    spans = calls = nbytes = 0
    began = time.perf_counter()
    store = DuckDBStore(str(path), retention_days=None)
    for rows, lo, hi, n_spans, n_calls in _batches(args.records, args.seed, args.days, args.batch):
        t0 = time.perf_counter()
        store.load(rows, lo, hi)
        load_s.append(time.perf_counter() - t0)
        spans, calls, nbytes = spans + n_spans, calls + n_calls, nbytes + len(rows)
        if len(load_s) % 50 == 0:
            el = time.perf_counter() - began
            rate = spans / sum(load_s)
            print(
                f"  {calls:,} calls, {spans:,} spans, {el:.0f} s, {rate:,.0f} spans/s in load",
                file=sys.stderr,
            )
    t0 = time.perf_counter()
    store.close()  # checkpoints: part of the cost of loading
    close_s = time.perf_counter() - t0
    wall = time.perf_counter() - began
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
        "records": calls,
        "spans": spans,
        "bytes": nbytes,
        "batches": len(load_s),
        "batch_calls": args.batch,
        "load_s": sum(load_s),
        "close_s": close_s,
        "wall_s": wall,
        "batch_p50_s": statistics.median(load_s),
        "batch_max_s": max(load_s),
        "db_bytes": path.stat().st_size,
        "schema_version": schema,
        "duckdb": duckdb.__version__,
        "load_avg_end": load_average(),
    }
    note.write_text(json.dumps(meta, indent=1))
    return Built(path, meta)


# -- the queries ----------------------------------------------------------------------------------


@dataclass
class Samples:
    users: list[str]
    traces: list[str]
    sessions: list[str]


def sample(store: DuckDBStore, days: int, n: int) -> Samples:
    """Parameters for the timed queries, read through the public API (untimed).

    Users come from the last day's calls in order of appearance, so heavy users come up as
    often as they do in the traffic (what a dashboard user clicks on); traces and sessions come
    from minutes spread over the whole window.
    """
    recent = store.query_calls(CallQuery(project=PROJECT, since_ns=END_NS - DAY, limit=1000)).items
    users = list(dict.fromkeys(s.user_id for s in recent if s.user_id))[:n]
    traces: list[str] = []
    sessions: list[str] = []
    for i in range(n):
        at = END_NS - days * DAY + (i * 7919 % n) * (days * DAY // n) + HOUR
        page = store.query_calls(CallQuery(project=PROJECT, since_ns=at, until_ns=at + 600 * NS_PER_S,
                                           limit=5)).items  # fmt: skip
        if page:
            traces.append(page[0].trace_id)
            if page[-1].context_id:
                sessions.append(page[-1].context_id)
    return Samples(users, traces, sessions)


def queries(store: DuckDBStore, s: Samples) -> dict[str, Callable[[int], int]]:
    """Each takes the round number (to vary its parameters) and returns the number of rows read."""
    since_24h, since_7d = END_NS - DAY, END_NS - 7 * DAY

    def stats7(_i: int) -> int:
        q = StatsQuery(
            project=PROJECT, since_ns=since_7d, until_ns=END_NS, group_by="model", bucket_s=3600, limit=10_000
        )
        return len(store.stats(q))

    def stats24(_i: int) -> int:
        return len(store.stats(StatsQuery(project=PROJECT, since_ns=since_24h, until_ns=END_NS)))

    def user(i: int) -> int:
        q = CallQuery(project=PROJECT, user_id=s.users[i % len(s.users)], since_ns=since_24h)
        return len(store.query_calls(q).items)

    def trace(i: int) -> int:
        return len(store.get_trace(PROJECT, s.traces[i % len(s.traces)]))

    def session(i: int) -> int:
        return len(store.get_session(PROJECT, s.sessions[i % len(s.sessions)]))

    def text(word: str) -> Callable[[int], int]:
        def run(_i: int) -> int:
            return len(store.query_calls(CallQuery(project=PROJECT, text=word, since_ns=since_24h)).items)

        return run

    def page2(sort: str) -> Callable[[int], int]:
        first = store.query_calls(CallQuery(project=PROJECT, since_ns=since_24h, sort=sort))
        cursor = first.next_cursor

        def run(_i: int) -> int:
            q = CallQuery(project=PROJECT, since_ns=since_24h, sort=sort, cursor=cursor)
            return len(store.query_calls(q).items)

        return run

    return {
        "overview stats, 7 d by model, hourly": stats7,
        "overview stats, 24 h, one group": stats24,
        "user + time search, 24 h": user,
        "one trace": trace,
        "one session": session,
        "text search, 24 h, common word": text("Refund"),
        "text search, 24 h, rare word": text("#31337"),
        "page 2 (cursor), 24 h by time": page2("timestamp"),
        "page 2 (cursor), 24 h by latency": page2("latency_ms"),
    }


def measure(store: DuckDBStore, s: Samples, runs: int) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    qs = queries(store, s)
    for fn in qs.values():  # warm-up round: first reads of the file, untimed
        fn(runs)
    times: dict[str, list[float]] = {k: [] for k in qs}
    counts: dict[str, list[int]] = {k: [] for k in qs}
    for i in range(runs):
        for name, fn in qs.items():
            t0 = time.perf_counter()
            n = fn(i)
            times[name].append((time.perf_counter() - t0) * 1000)
            counts[name].append(n)
    return times, counts


# -- report ---------------------------------------------------------------------------------------


def report(args: argparse.Namespace, built: Built, times: dict[str, list[float]],
           counts: dict[str, list[int]], meta: dict[str, Any]) -> str:  # fmt: skip
    b = built.meta
    out = [SECTION, ""]
    add = out.append
    add(
        f"Measured {meta['date']} with `{meta['command']}`: {args.runs} rounds after one warm-up round; "
        "each round runs every query once through the store's public methods, with new parameters "
        "(other users, traces, sessions). Load average "
        f"{meta['load']} at start and {meta['load_end']} at the end."
    )
    add("")
    add(f"Machine: {machine()}.")
    add("")
    add(
        f"Data: {b['records']:,} LLM calls in {b['spans']:,} spans (traces of 1-6 spans, ~3 % errors, "
        f"Zipf-like users; `bench/synth.py`, seed {args.seed}) over {args.days} days, "
        f"{b['bytes'] / b['spans']:,.0f} B per span as NDJSON ({b['bytes'] / 1e9:.1f} GB); store file "
        f"{b['db_bytes'] / 1e9:.2f} GB (schema version {b['schema_version']})."
    )
    add(
        f"Built {b['date']} with `{b['command']}` through `DuckDBStore.load` in {b['batches']:,} batches "
        f"of ~{b['batch_calls']:,} calls: {b['load_s']:.0f} s in `load` + {b['close_s']:.1f} s final "
        f"checkpoint = **{b['spans'] / (b['load_s'] + b['close_s']):,.0f} spans/s** "
        f"(batch p50 {b['batch_p50_s'] * 1000:.0f} ms, max {b['batch_max_s'] * 1000:.0f} ms; the "
        "generator ran on the other core meanwhile)."
    )
    add("")
    add("| query | rows | p50 ms | p95 ms | min ms | max ms | target p95 | verdict |")
    add("|---|---|---|---|---|---|---|---|")
    for name, target in TARGETS.items():
        t = times[name]
        p50, p95 = statistics.median(t), percentile(t, 0.95)
        rows = counts[name]
        rows_s = str(rows[0]) if min(rows) == max(rows) else f"{min(rows)}-{max(rows)}"
        verdict = "" if target is None else ("**met**" if p95 <= target else "**missed**")
        tgt = "" if target is None else f"≤ {target:g}"
        add(f"| {name} | {rows_s} | {fmt_ms(p50)} | {fmt_ms(p95)} | {fmt_ms(min(t))} | {fmt_ms(max(t))} | "
            f"{tgt} | {verdict} |")  # fmt: skip
    add("")
    add(
        "Queries: *overview stats* = `StatsQuery` (count, errors by type, p50/p95/p99 latency and "
        "TTFT, token sums and quantiles, cost) over the last 7 days by model in hourly buckets, and "
        "over the last 24 h as one group; *user + time search* = `CallQuery(user_id=..., "
        "since_ns=now-24h)`, first page of 100, users as they appear in the traffic (heavy ones "
        "often); *one trace* = `get_trace`; *one session* = `get_session` (all turns of one "
        "`context_id`, no time bound); *text search* = `CallQuery(text=..., since_ns=now-24h)`, "
        "first page, for a word in ~45 % of calls (the newest matches fill the page soon) and for a "
        "token in none (every text of the day is scanned); "
        "*page 2* = the second page of 100 through `next_cursor` of the last 24 h, newest first "
        "and slowest first."
    )
    add("")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="LLM calls (default 10 M; quick 200 k)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=None, help="timed rounds per query (default 30; quick 20)")
    ap.add_argument("--batch", type=int, default=30_000, help="calls per load batch (~1.75 spans each)")
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / ".data")
    ap.add_argument("--rebuild", action="store_true", help="build the store even if a cached one matches")
    ap.add_argument("--quick", action="store_true", help="CI smoke run, 200 k calls, prints only")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                    help="write bench/RESULTS.md (default: yes, except with --quick)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = ap.parse_args(argv)
    args.records = args.records or (200_000 if args.quick else 10_000_000)
    args.runs = args.runs or (20 if args.quick else 30)
    if args.write is None:
        args.write = not args.quick
    if args.records < 1000 or args.runs < 1 or args.days < 8:
        ap.error("need --records >= 1000, --runs >= 1 and --days >= 8")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_average()
    built = build(args)
    with DuckDBStore(str(built.path), retention_days=None) as store:
        s = sample(store, args.days, max(args.runs, 20))
        times, counts = measure(store, s, args.runs)
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command(),
            "load": load, "load_end": load_average()}  # fmt: skip
    section = report(args, built, times, counts, meta)
    print(section)
    if args.write:
        write_section(args.results, section, SECTION)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Collector ingest, durable and end to end: ``kansoku server`` beside a minimal fsync-ing aiohttp server.

Run from the repository root::

    .venv/bin/python bench/ingest.py                 # full run (~3 min), writes bench/RESULTS.md
    .venv/bin/python bench/ingest.py --quick         # CI smoke run (~5 s), prints only
    .venv/bin/python bench/ingest.py --clickhouse clickhouse://127.0.0.1:8123/kansoku_bench   # + ClickHouse
    .venv/bin/python bench/ingest.py --profile       # where the server's CPU goes, per span (cProfile)

What one run is: a fresh server subprocess (``python -m kansoku server`` on a DuckDB file in a
temporary data dir, or on ``--clickhouse URL``), and a load generator in ``--loadgens`` separate
processes (aiohttp client, keep-alive, ``--concurrency`` requests in flight in all) that posts
native batches of ``--batch-sizes`` records, gzip'd at level 1 like the SDK's exporter. The
records are realistic LLM-call traffic from ``bench/synth.py`` (``Span.to_record()``, ~2 KB
each), encoded once before anything is timed; every run posts the same bodies.

* **acked spans/s**: spans / (last 200 received - start signal), across all load generators.
* **queryable spans/s**: spans / (time the server's ``kansoku_store_rows_loaded_total`` reached
  them all - start signal): the rate at which data becomes visible to queries.
* **server CPU per 1k spans**: utime + stime of the server process (``/proc/PID/stat``) from the
  start signal until everything is loaded, every thread included.

The baseline is the floor of durable HTTP ingest in Python: aiohttp + uvloop that reads the body
(aiohttp un-gzips it), appends it to one file with group commit (one ``fdatasync`` for all bodies
pending at that moment, as kansoku's WAL does) and answers 200 -- no parsing, no store. Runs are
interleaved (kansoku, baseline, baseline, kansoku, ...) and every figure is the median over
``--rounds`` with min and max; ratios to the baseline are taken per round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _report import cpu_model, git_commit, write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Collector ingest (bench/ingest.py)"
TARGET_SPANS_S = 100_000
LISTENING = "listening on "
CLK_TCK = os.sysconf("SC_CLK_TCK")
HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
INGEST_PATH = "/api/v1/ingest"

# -- the data: synthetic records, encoded once ---------------------------------------------------------


def make_records(n_spans: int, seed: int) -> list[dict[str, Any]]:
    """``n_spans`` native records (``Span.to_record()``) of realistic traffic over the last 6 hours."""
    sys.path.insert(0, str(ROOT / "bench"))
    from synth import Synth

    now = time.time_ns()
    calls = int(n_spans / 1.25) + 10  # ~1.33 spans per call; a little extra, trimmed below
    gen = Synth(seed=seed, start_ns=now - 6 * 3600 * 10**9, end_ns=now - 10**9, calls=calls)
    records: list[dict[str, Any]] = []
    for spans in gen.spans(batch_calls=5000):
        records.extend(s.to_record() for s in spans)
        if len(records) >= n_spans:
            break
    if len(records) < n_spans:
        raise SystemExit(f"synth produced only {len(records)} of {n_spans} spans")
    return records[:n_spans]


def encode_bodies(records: list[dict[str, Any]], batch: int) -> list[tuple[int, bytes]]:
    """``(records, gzip'd native body)`` per batch, as the SDK's exporter sends them."""
    import orjson

    out = []
    for i in range(0, len(records), batch):
        chunk = records[i : i + batch]
        raw = orjson.dumps({"schema": "kansoku.batch/v1", "records": chunk})
        out.append((len(chunk), gzip.compress(raw, compresslevel=1)))
    return out


_LEN = struct.Struct(">II")  # records, body length


def write_bodies(path: Path, bodies: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        for n, body in bodies:
            f.write(_LEN.pack(n, len(body)))
            f.write(body)


def read_bodies(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        n, size = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        out.append((n, data[pos : pos + size]))
        pos += size
    return out


# -- the baseline server: read, gunzip, group-commit fsync, 200 ------------------------------------------


def baseline_server(directory: str) -> int:
    """The floor of durable HTTP ingest in Python (runs in its own process)."""
    from aiohttp import web

    fd = os.open(Path(directory) / "bodies.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sync = getattr(os, "fdatasync", os.fsync)
    pending: list[tuple[bytes, asyncio.Future[None]]] = []
    busy = False

    def write(chunks: list[bytes]) -> None:
        view = memoryview(b"".join(chunks))
        while view:
            view = view[os.write(fd, view) :]
        sync(fd)

    async def drain() -> None:
        nonlocal busy, pending
        loop = asyncio.get_running_loop()
        try:
            while pending:
                batch, pending = pending, []
                await loop.run_in_executor(None, write, [b for b, _ in batch])
                for _, fut in batch:
                    fut.set_result(None)
        finally:
            busy = False

    async def ingest(request: web.Request) -> web.Response:
        nonlocal busy
        body = await request.read()  # aiohttp un-gzips Content-Encoding: gzip
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.append((struct.pack(">I", len(body)) + body, fut))
        if not busy:
            busy = True
            asyncio.get_running_loop().create_task(drain())
        await fut
        return web.Response(body=b'{"accepted":true}', content_type="application/json")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(INGEST_PATH, ingest)
        app.router.add_get("/healthz", ok)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"baseline {LISTENING}http://127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    import uvloop

    uvloop.run(main())
    os.close(fd)
    return 0


# -- the load generator (its own process) ----------------------------------------------------------------


def loadgen(url: str, bodies_path: str, part: int, parts: int, concurrency: int) -> int:
    """Post every ``parts``-th body (from ``part``) with ``concurrency`` requests in flight.

    Prints ``READY`` once its connections are open, waits for ``GO`` on stdin, then prints one
    JSON line: start, last acknowledgement (``time.monotonic``, shared by processes), latencies.
    """
    import aiohttp

    bodies = read_bodies(Path(bodies_path))[part::parts]

    async def main() -> dict[str, Any]:
        conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout, auto_decompress=False) as session:

            async def warm() -> None:
                async with session.get(url + "/healthz") as r:
                    await r.read()

            await asyncio.gather(*(warm() for _ in range(concurrency)))  # open the keep-alive connections
            loop = asyncio.get_running_loop()
            print("READY", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            t0 = time.monotonic()
            it = iter(bodies)
            lat: list[float] = []
            stats = {"requests": 0, "retries": 0, "spans": 0, "last": t0, "status": {}}

            async def worker() -> None:
                for n, body in it:
                    while True:
                        s = time.monotonic()
                        async with session.post(url + INGEST_PATH, data=body, headers=HEADERS) as r:
                            await r.read()
                            status = r.status
                            retry_after = float(r.headers.get("Retry-After", "0.1"))
                        stats["requests"] += 1
                        if status == 200:
                            now = time.monotonic()
                            lat.append(now - s)
                            stats["spans"] += n
                            stats["last"] = max(stats["last"], now)
                            break
                        stats["retries"] += 1
                        stats["status"][status] = stats["status"].get(status, 0) + 1
                        if status not in (429, 503):
                            raise SystemExit(f"HTTP {status} from {url}")
                        await asyncio.sleep(min(retry_after, 1.0))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return {"t0": t0, **stats, "latencies": lat}

    import uvloop

    print(json.dumps(uvloop.run(main())), flush=True)
    return 0


# -- running one measurement -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``, all threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 -- loopback URL we built
        return bytes(r.read())


def rows_loaded(url: str) -> float:
    for line in http_get(url + "/metrics").decode().splitlines():
        if line.startswith("kansoku_store_rows_loaded_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Proc:
    """A child process whose stdout we read line by line (bounded waits)."""

    def __init__(self, cmd: list[str], *, stdin: bool = False, log: Path | None = None) -> None:
        import queue

        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 -- closed in close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KANSOKU_")}
        self.p = subprocess.Popen(  # noqa: S603 -- our own programs with this interpreter
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        with self.p.stdout:
            for line in self.p.stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float, startswith: str = "") -> str:
        import queue

        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{self.p.args!r} exited ({self.p.poll()})")
            if line.startswith(startswith) or (startswith and startswith in line):
                return line
        raise RuntimeError(f"no {startswith!r} line from {self.p.args!r} within {timeout} s")

    def send(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text)
        self.p.stdin.flush()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            code = self.p.wait(10)
        if self.p.stdin is not None:
            self.p.stdin.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]
        return code


@dataclass
class Run:
    variant: str
    batch: int
    spans: int
    acked_s: float  # seconds from GO to the last 200
    loaded_s: float  # seconds from GO until queryable (baseline: = acked_s)
    cpu_s: float
    rss_mib: float
    retries: int
    p50_ms: float
    p99_ms: float

    @property
    def acked_rate(self) -> float:
        return self.spans / self.acked_s

    @property
    def loaded_rate(self) -> float:
        return self.spans / self.loaded_s

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_s / self.spans * 1000


def server_cmd(variant: str, data_dir: Path, clickhouse: str | None, profile_out: Path | None) -> list[str]:
    exe = sys.executable
    if variant == "baseline":
        return [exe, str(Path(__file__).resolve()), "--_baseline-server", str(data_dir)]
    args = ["server", "--port", "0", "--data-dir", str(data_dir), "--retention-days", "0"]
    if variant == "clickhouse":
        assert clickhouse
        args += ["--store", clickhouse]
    if profile_out is not None:
        return [exe, str(Path(__file__).resolve()), "--_profile-server", str(profile_out), "--", *args]
    return [exe, "-m", "kansoku", *args]


def one_run(  # noqa: PLR0917 -- one call site each, reads better positional
    variant: str,
    batch: int,
    bodies_path: Path,
    warm_path: Path,
    spans: int,
    args: argparse.Namespace,
    work: Path,
    profile_out: Path | None = None,
) -> Run:
    data_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=work))
    log = work / f"{variant}.log"
    server = Proc(server_cmd(variant, data_dir, args.clickhouse, profile_out), log=log)
    gens: list[Proc] = []
    try:
        url = server.line(60, LISTENING).split(LISTENING, 1)[1].split()[0]
        # Warm the server's paths (imports, first load, DuckDB schema) with other spans.
        warm_spans = 0
        for n, body in read_bodies(warm_path):
            req = urllib.request.Request(url + INGEST_PATH, data=body, headers=HEADERS, method="POST")  # noqa: S310
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 -- loopback URL we built
                r.read()
            warm_spans += n
        base_loaded = 0.0
        if variant != "baseline":
            wait_until(lambda: rows_loaded(url) >= warm_spans, 30, "warm-up load")
            base_loaded = rows_loaded(url)
        per = max(1, args.concurrency // args.loadgens)
        for k in range(args.loadgens):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_loadgen", url, str(bodies_path)]
            gens.append(Proc([*cmd, str(k), str(args.loadgens), str(per)], stdin=True, log=log))
        for g in gens:
            g.line(60, "READY")
        if profile_out is not None:
            server.p.send_signal(signal.SIGUSR1)  # forget start-up and warm-up
            time.sleep(0.5)
        cpu0 = cpu_seconds(server.p.pid)
        t_go = time.monotonic()
        for g in gens:
            g.send("GO\n")
        results = [json.loads(g.line(600, "{")) for g in gens]
        t_acked = max(r["last"] for r in results)
        acked = sum(r["spans"] for r in results)
        if acked != spans:
            raise RuntimeError(f"{acked} of {spans} spans acknowledged")
        t_loaded = t_acked
        if variant != "baseline":
            target = base_loaded + spans
            wait_until(lambda: rows_loaded(url) >= target, 300, "load", poll=0.01)
            t_loaded = time.monotonic()
        cpu = cpu_seconds(server.p.pid) - cpu0
        rss = rss_peak_mib(server.p.pid)
        if profile_out is not None:
            server.p.send_signal(signal.SIGUSR2)
            wait_until(profile_out.exists, 30, "profile dump")
        lat = sorted(x for r in results for x in r["latencies"])
        return Run(
            variant,
            batch,
            spans,
            acked_s=t_acked - t_go,
            loaded_s=t_loaded - t_go,
            cpu_s=cpu,
            rss_mib=rss,
            retries=sum(r["retries"] for r in results),
            p50_ms=lat[len(lat) // 2] * 1000,
            p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        )
    finally:
        for g in gens:
            g.stop(10)
        code = server.stop(60)
        if code not in (0, None):
            print(f"warning: {variant} server exited {code}; see {log}", file=sys.stderr)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_until(pred: Any, timeout: float, what: str, poll: float = 0.02) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not finish within {timeout} s")
        time.sleep(poll)


# -- profile ---------------------------------------------------------------------------------------------


class _Snapshot:
    """What :class:`pstats.Stats` needs from a profile: ``create_stats`` and ``stats``."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


def profile_server(out: str, argv: list[str]) -> int:
    """Run ``kansoku server`` with cProfile on every thread (CPU clock).

    SIGUSR1 clears what was collected so far (start-up, warm-up); SIGUSR2 writes the stats
    collected since to ``out`` (plus ``out.threads.json``: CPU per thread group).
    """
    import cProfile
    import pstats

    lock = threading.Lock()
    profs: list[tuple[str, cProfile.Profile]] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time: blocking waits are not costs
        with lock:
            profs.append((self.name, prof))
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    def reset(signum: int, frame: Any) -> None:
        with lock:
            for _, p in profs:
                p.clear()

    def dump(signum: int, frame: Any) -> None:
        merged: pstats.Stats | None = None
        threads: dict[str, float] = {}
        with lock:
            for name, p in profs:
                p.snapshot_stats()
                snap = _Snapshot(dict(p.stats))  # type: ignore[attr-defined]
                cpu = float(sum(v[2] for v in snap.stats.values()))
                key = (
                    "event loop (main thread)" if name == "MainThread"
                    else "loader thread" if "loader" in name
                    else "executor threads (run_in_executor: WAL append, decoding, queries)"
                )  # fmt: skip
                threads[key] = threads.get(key, 0.0) + cpu
                if merged is None:
                    merged = pstats.Stats(snap)  # type: ignore[arg-type]
                else:
                    merged.add(snap)
        assert merged is not None
        merged.dump_stats(out + ".tmp")
        Path(out + ".threads.json").write_text(json.dumps(threads))
        os.replace(out + ".tmp", out)

    threading.Thread.run = run  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, dump)
    from kansoku.cli import main

    prof = cProfile.Profile(time.thread_time_ns, 1e-9)
    profs.append(("MainThread", prof))
    prof.enable()
    try:
        return int(main(argv) or 0)
    finally:
        prof.disable()


#: Stages of the ingest path: (label, file suffix, function name), inclusive time (cumtime). Rows whose
#: function no longer exists are left out, so the table follows the code as it is optimised.
STAGES = (
    ("HTTP handler on the event loop (`_app._ingest`)", "server/_app.py", "_ingest"),
    ("read body + gunzip (`_app._body`)", "server/_app.py", "_body"),
    ("native fast path, body -> WAL entry (`native_entry`)", "server/_ingest.py", "native_entry"),
    ("  JSON parse of the body (`_ingest._records`)", "server/_ingest.py", "_records"),
    ("  record -> row, validated (`_records.fast_row`)", "server/_records.py", "fast_row"),
    ("  slow path per record (`Span.from_record`)", "model/_span.py", "from_record"),
    ("Spans -> WAL entry (`encode_entry`)", "server/_ingest.py", "encode_entry"),
    ("metrics per request (`LLMMetrics.observe_rows`)", "server/_metrics.py", "observe_rows"),
    ("  histogram observations (`_metrics.*.observe`)", "server/_metrics.py", "observe"),
    ("JSON answer (`json_response`)", "server/_errors.py", "json_response"),
    ("WAL append + hand-over to the loader (`Collector._append`)", "server/_collector.py", "_append"),
    ("  CRC of the payload (`payload_crc`)", "server/_wal_format.py", "payload_crc"),
    ("  write + fdatasync (`WriteAheadLog._flush`)", "server/_wal.py", "_flush"),
    ("loader: bulk loads, whole (`Loader._load_until_done`)", "server/_loader.py", "_load_until_done"),
    ("  `DuckDBStore._load` (temp file + INSERT ... read_json)", "store/_duckdb.py", "_load"),
    ("  row count of queued entries (`Loader._rows`)", "server/_loader.py", "_rows"),
)

#: Own time grouped into areas: (label, predicate on (file, function)). First match wins.
AREAS: tuple[tuple[str, Any], ...] = (
    ("orjson (loads/dumps, C)", lambda f, fn: "orjson" in fn),
    ("zlib (gunzip, crc32, C)", lambda f, fn: "zlib" in fn or "decompress" in fn or "crc32" in fn),
    ("duckdb (C: execute, fetch)", lambda f, fn: "duckdb" in fn.lower() or "store/_duckdb" in f),
    ("os write/fsync/unlink syscalls", lambda f, fn: fn.startswith("<built-in method posix.")),
    (
        "kansoku record validation + row encoding",
        lambda f, fn: "server/_records" in f or "server/_ingest" in f,
    ),
    ("kansoku model (Span, records)", lambda f, fn: "kansoku/model/" in f or "store/_rows" in f),
    ("kansoku WAL", lambda f, fn: "server/_wal" in f),
    ("kansoku loader", lambda f, fn: "server/_loader" in f),
    ("kansoku metrics", lambda f, fn: "server/_metrics" in f),
    ("kansoku HTTP layer (_app, _collector, _errors)", lambda f, fn: "kansoku/server/" in f),
    ("aiohttp (Python part)", lambda f, fn: "aiohttp/" in f),
    (
        "event loop (uvloop C, asyncio, threads, queues)",
        lambda f, fn: (
            "asyncio/" in f
            or "threading" in f
            or "concurrent/" in f
            or "queue" in fn.lower()
            or "lock" in fn.lower()
        ),
    ),
)


def _area(f: str, fn: str) -> str:
    for label, pred in AREAS:
        if pred(f, fn):
            return str(label)
    return "other"


def _areas(raw: dict[Any, Any]) -> dict[str, float]:
    """Own time per area; a C function's time goes to the areas of its callers (by call edge)."""
    out: dict[str, float] = {}
    for (f, _, fn), (_cc, _nc, tt, _ct, callers) in raw.items():
        area = _area(f, fn)
        if f == "~" and area == "other" and callers:
            edges = {k: v[2] for k, v in callers.items()}
            total = sum(edges.values()) or 1.0
            for (cf, _, cfn), t in edges.items():
                name = _area(cf, cfn)
                out[name] = out.get(name, 0.0) + tt * t / total
            continue
        out[area] = out.get(area, 0.0) + tt
    return out


def print_profile(path: Path, spans: int, run: Run) -> None:
    import pstats

    st = pstats.Stats(str(path))
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    threads = json.loads(Path(str(path) + ".threads.json").read_text())
    us = 1e6 / spans
    print(f"\n=== server CPU per span: cProfile with a CPU clock on every Python thread, from the start "
          f"signal until queryable ({spans:,} spans, {run.loaded_s:.1f} s)")  # fmt: skip
    print("The profiler slows Python-level calls more than C calls: read the shares, not absolute µs.")
    print(
        f"\nprocess CPU (/proc, every OS thread, profiler included): {run.cpu_s / spans * 1e6:8.2f} µs/span"
        f"\nprofiled CPU of the Python threads:                       {total * us:8.2f} µs/span"
        "\n(the gap is mostly DuckDB's own worker threads running the INSERT, which cProfile cannot see)"
    )
    print("\nby thread:")
    for name, t in sorted(threads.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<70} {t * us:8.2f} µs/span  {t / total:6.1%}")
    print("\nown time by area (C builtins such as dict.get or isinstance charged to their callers):")
    for name, t in sorted(_areas(raw).items(), key=lambda kv: -kv[1]):
        print(f"  {name:<70} {t * us:8.2f} µs/span  {t / total:6.1%}")
    print("\nstages of the ingest path (inclusive time):")
    for label, suffix, func in STAGES:
        hits = [v for (f, _, fn), v in raw.items() if fn == func and f.endswith(suffix)]
        if hits:
            cum = sum(v[3] for v in hits)
            print(f"  {label:<76} {cum * us:8.2f} µs/span  {cum / total:6.1%}")
    print("\ntop functions by own time (tottime):")
    print(f"  {'µs/span':>8} {'share':>6} {'calls/span':>10}  function")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:30]
    for (f, line, fn), (_cc, nc, tt, _ct, _callers) in rows:
        print(f"  {tt * us:8.2f} {tt / total:6.1%} {nc / spans:10.3f}  {fn}  ({_short(f)}:{line})")
    print(f"\nfull stats: {path} (.venv/bin/python -m pstats {path})")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- report ----------------------------------------------------------------------------------------------


@dataclass
class Dist:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def fmt(self, digits: int = 0, scale: float = 1.0) -> str:
        v = [x * scale for x in self.values]
        return f"{statistics.median(v):,.{digits}f} [{min(v):,.{digits}f}, {max(v):,.{digits}f}]"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def command() -> str:
    exe = Path(sys.executable)
    shown = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    script = Path(sys.argv[0]).resolve()
    script_shown = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0]
    return shlex.join([shown, script_shown, *sys.argv[1:]])


LABELS = {
    "duckdb": "kansoku, DuckDB",
    "clickhouse": "kansoku, ClickHouse",
    "baseline": "baseline (fsync only)",
}


def verdict(d: Dist, target: float) -> str:
    if min(d.values) >= target:
        return "**met**"
    if max(d.values) < target:
        return "**missed**"
    return "**met** (median)" if d.median >= target else "**missed** (median)"


def report(runs: list[Run], meta: dict[str, Any]) -> str:
    out: list[str] = [SECTION, ""]
    add = out.append
    variants = [v for v in ("duckdb", "clickhouse", "baseline") if any(r.variant == v for r in runs)]
    batches = sorted({r.batch for r in runs})

    def dist(v: str, b: int, attr: str) -> Dist:
        return Dist([getattr(r, attr) for r in runs if r.variant == v and r.batch == b])

    def ratio(v: str, b: int, attr: str) -> Dist:
        mine = [r for r in runs if r.variant == v and r.batch == b]
        base = [r for r in runs if r.variant == "baseline" and r.batch == b]
        return Dist([getattr(x, attr) / getattr(y, attr) for x, y in zip(mine, base, strict=False)])

    add(
        f"Measured {meta['date']} with `{meta['command']}`: {meta['rounds']} rounds; per run "
        f"{meta['spans']:,} spans posted by {meta['loadgens']} load-generator process(es) with "
        f"{meta['concurrency']} requests in flight over keep-alive connections; runs interleaved "
        "A B B A across variants, a fresh server and data dir each."
    )
    add("")
    add(
        f"Machine: {meta['cpu']}, {meta['cores']} cores ({meta['affinity']} usable), shared: load average "
        f"{meta['load']} at start and {meta['load_end']} at the end. {meta['os']}, CPython "
        f"{meta['python']}. kansoku {meta['kansoku']} (commit {meta['commit']} + working tree), aiohttp "
        f"{meta['aiohttp']}, uvloop {meta['uvloop']}, duckdb {meta['duckdb']}, orjson {meta['orjson']}."
    )
    add("")
    add(
        f"Data: `bench/synth.py` traffic as native records (`Span.to_record()`), mean "
        f"{meta['record_bytes']:,.0f} B of JSON per record, gzip level 1 like the SDK's exporter "
        f"({meta['gzip_ratio']:.1f}x smaller); bodies encoded once before timing. Figures: median "
        "[min, max] over rounds. *Queryable* = the server's `kansoku_store_rows_loaded_total` covers every "
        "span. *CPU* = utime + stime of the server process (all threads) from the start signal until "
        "queryable. Ratios to the baseline are per round."
    )
    add("")
    add("### Against the target")
    add("")
    add("| store | batch | durable (acked) spans/s | queryable spans/s | target | verdict (queryable) |")
    add("|---|---|---|---|---|---|")
    for v in variants:
        if v == "baseline":
            continue
        for b in batches:
            q = dist(v, b, "loaded_rate")
            add(
                f"| {LABELS[v]} | {b} | {dist(v, b, 'acked_rate').fmt()} | {q.fmt()} | "
                f"≥ {TARGET_SPANS_S:,} | {verdict(q, TARGET_SPANS_S)} |"
            )
    add("")
    add("### Per run")
    add("")
    add(
        "| variant | batch | acked spans/s | queryable spans/s | server CPU s per 1k spans | "
        "acked vs baseline | CPU vs baseline | request p50 / p99 ms | retries (429) | peak RSS MiB |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        for b in batches:
            base = v == "baseline"
            lat = f"{dist(v, b, 'p50_ms').median:.1f} / {dist(v, b, 'p99_ms').median:.1f}"
            add(
                f"| {LABELS[v]} | {b} | {dist(v, b, 'acked_rate').fmt()} | "
                f"{'-' if base else dist(v, b, 'loaded_rate').fmt()} | {dist(v, b, 'cpu_per_1k').fmt(3)} | "
                f"{'1' if base else ratio(v, b, 'acked_rate').fmt(2)} | "
                f"{'1' if base else ratio(v, b, 'cpu_per_1k').fmt(2)} | {lat} | "
                f"{sum(dist(v, b, 'retries').values):.0f} | {dist(v, b, 'rss_mib').fmt(0)} |"
            )
    add("")
    add(
        "The baseline reads and un-gzips the body and group-commits it to one file with `fdatasync` "
        "before answering: no JSON parsing, no validation, no store. kansoku additionally decodes and "
        "validates every record, encodes the store's rows into its write-ahead log and bulk-loads "
        "them; the difference in CPU per span is what that costs. Both sides share the machine's two "
        "cores with the load generator. `--profile` shows where the server's CPU goes."
    )
    if "clickhouse" in variants:
        add("")
        add(
            "With ClickHouse the CPU column counts the kansoku process only; the ClickHouse server's own "
            "work is not in it, and its database keeps the rows of earlier runs (the same span ids)."
        )
    add("")
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 1)")
    ap.add_argument("--spans", type=int, default=None, help="spans per run (default 100000; quick 10000)")
    ap.add_argument("--batch-sizes", default=None, help="records per request, e.g. 500,2000 (the default)")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight, all load generators")
    ap.add_argument("--loadgens", type=int, default=1, choices=(1, 2), help="load-generator processes")
    ap.add_argument("--clickhouse", metavar="URL", help="also run kansoku on this ClickHouse store URL")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline server")
    ap.add_argument("--quick", action="store_true", help="CI smoke run, a few seconds, does not write")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                    help="write bench/RESULTS.md (default: yes, except with --quick)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--profile", action="store_true", help="one cProfile'd kansoku run; per-span costs")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick or args.profile else 5)
    args.spans = args.spans or (10_000 if args.quick else 100_000)
    default_batches = "2000" if args.profile else "500" if args.quick else "500,2000"
    args.batch_list = [int(x) for x in (args.batch_sizes or default_batches).split(",")]
    if args.rounds < 1 or args.spans < 1 or min(args.batch_list) < 1 or args.concurrency < 1:
        ap.error("--rounds, --spans, --batch-sizes and --concurrency must be positive")
    if args.write is None:
        args.write = not (args.quick or args.profile)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_baseline-server"]:
        return baseline_server(argv[1])
    if argv[:1] == ["--_loadgen"]:
        url, path, part, parts, conc = argv[1:6]
        return loadgen(url, path, int(part), int(parts), int(conc))
    if argv[:1] == ["--_profile-server"]:
        return profile_server(argv[1], argv[3:])
    args = parse_args(argv)
    started = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    records = make_records(args.spans + 500, args.seed)
    warm, records = records[:500], records[500:]
    work = Path(tempfile.mkdtemp(prefix="kansoku-bench-ingest-"))
    try:
        warm_path = work / "warm.bin"
        write_bodies(warm_path, encode_bodies(warm, 500))
        paths: dict[int, Path] = {}
        gz_bytes = 0
        for b in args.batch_list:
            bodies = encode_bodies(records, b)
            paths[b] = work / f"bodies-{b}.bin"
            write_bodies(paths[b], bodies)
            gz_bytes = gz_bytes or sum(len(x) for _, x in bodies)
        import orjson

        raw_bytes = sum(len(orjson.dumps(r)) for r in records[:2000])
        record_bytes = raw_bytes / min(2000, len(records))
        gzip_ratio = record_bytes * len(records) / gz_bytes
        print(
            f"prepared {len(records):,} spans ({record_bytes:,.0f} B/record, gzip {gzip_ratio:.1f}x) "
            f"in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

        if args.profile:
            prof = work / "server.prof"
            b = args.batch_list[0]
            run = one_run("duckdb", b, paths[b], warm_path, len(records), args, work, profile_out=prof)
            print(
                f"profiled run, batch {b}: acked {run.acked_rate:,.0f} spans/s, queryable "
                f"{run.loaded_rate:,.0f} spans/s, server CPU {run.cpu_per_1k:.3f} s per 1k spans "
                "(all slowed by the profiler)"
            )
            keep = ROOT / "bench" / ".data" / "ingest-server.prof"
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(prof, keep)
            shutil.copy(str(prof) + ".threads.json", str(keep) + ".threads.json")
            print_profile(keep, len(records), run)
            return 0

        variants = ["duckdb"] + (["clickhouse"] if args.clickhouse else [])
        if not args.no_baseline:
            variants.append("baseline")
        runs: list[Run] = []
        for rnd in range(args.rounds):
            t0 = time.perf_counter()
            for i, b in enumerate(args.batch_list):
                order = variants if (rnd + i) % 2 == 0 else variants[::-1]  # A B, B A, ...
                for v in order:
                    r = one_run(v, b, paths[b], warm_path, len(records), args, work)
                    runs.append(r)
                    print(
                        f"round {rnd + 1}/{args.rounds} {v:<10} batch {b:>5}: acked {r.acked_rate:>9,.0f}/s "
                        f"queryable {r.loaded_rate:>9,.0f}/s cpu {r.cpu_per_1k:.3f} s/1k "
                        f"p99 {r.p99_ms:.0f} ms retries {r.retries}",
                        file=sys.stderr,
                    )
            print(f"round {rnd + 1}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
        "rounds": args.rounds,
        "spans": len(records),
        "loadgens": args.loadgens,
        "concurrency": args.concurrency,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "load": load,
        "load_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kansoku": version("kansoku"),
        "commit": git_commit(),
        "aiohttp": version("aiohttp"),
        "uvloop": version("uvloop"),
        "duckdb": version("duckdb"),
        "orjson": version("orjson"),
        "record_bytes": record_bytes,
        "gzip_ratio": gzip_ratio,
    }
    section = report(runs, meta)
    print(section)
    print(f"(took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    if args.write:
        write_section(args.results, section, SECTION)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

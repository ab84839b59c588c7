"""Web UI: how long the overview takes to render over a store of 1 M calls.

    .venv/bin/python bench/ui_overview.py                 # 1 M calls over 30 days ending now
    .venv/bin/python bench/ui_overview.py --quick         # 50 k calls, prints only (CI smoke)

Builds (or reuses, while its data still ends within the last 12 h) a DuckDB store of synthetic
traffic (``bench/synth.py``) ending now, runs ``kansoku server`` on it, and loads the overview
page in headless Chromium (Debian's ``chromium``, driven by ``playwright``): the time from the
start of navigation until the page says it is ready (``main#page[data-state=ready]``, every
panel drawn), for each time range. Two clocks: the page's own (navigation start until the frame
after the panels were drawn -- what a user waits for) and the harness's wall clock around
``page.goto`` (adds opening the tab and the driver noticing the change, ~50-400 ms here). Beside
them, the API requests the page made and their times, so that a slow panel is named. Target
(issue): under 1 s on 1 M calls, judged on the page's clock at p95.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import cpu_model, git_commit, write_section
from kansoku.store import DuckDBStore
from store_query import _batches, load_average

ROOT = Path(__file__).resolve().parent.parent
RANGES = ("1h", "24h", "7d", "30d")
SECTION = "## Web UI overview (bench/ui_overview.py)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(records: int, days: int, data: Path, rebuild: bool) -> Path:
    """A store of ``records`` calls over ``days`` days ending now (reused while still recent)."""
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"ui-{records}-d{days}.duckdb"
    stamp = path.with_suffix(".end")
    fresh = stamp.exists() and time.time() - float(stamp.read_text()) < 12 * 3600
    if path.exists() and fresh and not rebuild:
        print(f"reusing {path}", file=sys.stderr)
        return path
    for stale in (path, path.with_name(path.name + ".wal"), stamp):
        stale.unlink(missing_ok=True)
    end_ns = time.time_ns()
    print(f"building {path}: {records:,} calls over {days} days ending now ...", file=sys.stderr)
    store = DuckDBStore(str(path), retention_days=None)
    t0 = time.perf_counter()
    for rows, lo, hi, _spans, _calls in _batches(records, 1, days, 30_000, end_ns):
        store.load(rows, lo, hi)
    store.close()
    print(f"built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    stamp.write_text(str(end_ns / 1e9))
    return path


def chromium() -> str | None:
    return os.environ.get("KANSOKU_TEST_CHROMIUM") or shutil.which("chromium")


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our loopback server
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no answer from {url} within {timeout:.0f} s")


# Notes when the page is drawn, then waits for the next frame to be produced (the paint).
_MARK_READY = """
window.__kansokuDrawn = null;
new MutationObserver(() => {
  const m = document.querySelector('main#page');
  if (window.__kansokuDrawn === null && m && m.dataset.page === 'overview'
      && (m.dataset.state === 'ready' || m.dataset.state === 'empty')) {
    window.__kansokuDrawn = -1;
    window.__kansokuReadyAt = performance.now();
    requestAnimationFrame(() => setTimeout(() => { window.__kansokuDrawn = performance.now(); }, 0));
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
"""


def _fetch(url: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - our loopback server
        r.read()


def replay(urls: list[str], runs: int) -> list[float]:
    """The page's API requests sent together without a browser: the server's share of the time."""
    if not urls:
        return []
    walls: list[float] = []
    with ThreadPoolExecutor(len(urls)) as pool:
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            list(pool.map(_fetch, urls))
            walls.append(time.perf_counter() - t0)
    return walls[1:]  # the first is a warm-up


def measure(url: str, runs: int, exe: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            for rng in RANGES:
                times: list[float] = []
                drawn: list[float] = []
                api: dict[str, list[float]] = {}
                states: set[str] = set()
                page_requests: list[str] = []
                for i in range(runs + 1):  # the first is a warm-up (DuckDB caches, browser cache)
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.add_init_script(_MARK_READY)
                    requests: list[Any] = []
                    page.on("requestfinished", lambda r, seen=requests: seen.append(r))
                    t0 = time.perf_counter()
                    page.goto(f"{url}/#/overview?since={rng}")
                    page.wait_for_selector(
                        "main#page[data-page=overview]:is([data-state=ready], [data-state=empty])",
                        timeout=60_000,
                    )
                    states.add(page.get_attribute("main#page", "data-state") or "")
                    took = time.perf_counter() - t0
                    page.wait_for_function("window.__kansokuDrawn > 0", timeout=60_000)
                    if not i:  # what the page fetched to draw (not the filter suggestions after it)
                        ready_at = page.evaluate("performance.timeOrigin + window.__kansokuReadyAt")
                        page_requests = [
                            r.url
                            for r in requests
                            if "/api/v1/" in r.url and r.timing["startTime"] < ready_at
                        ]
                    if i:
                        times.append(took)
                        drawn.append(page.evaluate("window.__kansokuDrawn") / 1000)
                        for r in requests:
                            if "/api/v1/" in r.url:
                                t = r.timing
                                key = r.url.split("/api/v1/", 1)[1][:90]
                                api.setdefault(key, []).append(t["responseEnd"] - t["requestStart"])  # ms
                    # Let the page finish what it fetches after its panels (filter suggestions), so
                    # that it does not run into the next load's measurement.
                    page.wait_for_load_state("networkidle")
                    page.close()
                out[rng] = {
                    "times": times, "drawn": drawn, "api": api, "states": sorted(states),
                    "alone": replay(page_requests, runs), "page_requests": page_requests,
                }  # fmt: skip
        finally:
            browser.close()
    return out


def report(args: argparse.Namespace, path: Path, results: dict[str, Any]) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        calls = con.execute("SELECT count(*) FROM spans WHERE type = 'llm_call'").fetchone()
        spans = con.execute("SELECT count(*) FROM spans").fetchone()
    finally:
        con.close()
    command = f"`.venv/bin/python bench/ui_overview.py{' --quick' if args.quick else ''}`"
    n_calls, n_spans = (calls[0] if calls else 0), (spans[0] if spans else 0)
    lines = [
        (
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with {command}: a DuckDB "
            f"store of {n_calls:,} LLM calls ({n_spans:,} spans) over {args.days} days ending now; the "
            f"overview loaded {args.runs} times per range in headless Chromium after one warm-up."
        ),
        "",
        (
            f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average {load_average()}; "
            f"commit {git_commit()}."
        ),
        "",
        (
            "| range | drawn (page clock) p50 ms | p95 ms | max ms | harness wall p50 / p95 ms "
            "| target (page p95) | its API requests alone, together, no browser: p50 ms "
            "| slowest API request in the page (median ms) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]

    def p95(xs: list[float]) -> float:
        return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]

    for rng, r in results.items():
        t, d = r["times"], r["drawn"]
        slow = max(r["api"].items(), key=lambda kv: statistics.median(kv[1]), default=("-", [0.0]))
        verdict = "met" if p95(d) < 1.0 else "**missed**"
        alone = (
            f"{statistics.median(r['alone']) * 1000:,.0f} ({len(r['page_requests'])} requests)"
            if r["alone"]
            else "-"
        )
        lines.append(
            f"| {rng} | {statistics.median(d) * 1000:,.0f} | {p95(d) * 1000:,.0f} | {max(d) * 1000:,.0f} | "
            f"{statistics.median(t) * 1000:,.0f} / {p95(t) * 1000:,.0f} | "
            f"< 1,000 ({verdict}{'' if r['states'] == ['ready'] else ', page: ' + '/'.join(r['states'])}) | "
            f"{alone} | `{slow[0]}` {statistics.median(slow[1]):,.0f} |"
        )
    return SECTION + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="LLM calls (default 1 M; quick 50 k)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=None, help="page loads per range (default 10; quick 2)")
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / ".data")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args()
    args.records = args.records or (50_000 if args.quick else 1_000_000)
    args.runs = args.runs or (2 if args.quick else 20)
    write = args.write if args.write is not None else not args.quick
    exe = chromium()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium (or set KANSOKU_TEST_CHROMIUM)")
    path = build(args.records, args.days, args.data, args.rebuild)
    port = free_port()
    work = args.data / "ui-server"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "kansoku", "server", "--port", str(port), "--store", f"duckdb:///{path}",
           "--data-dir", str(work), "--retention-days", "0"]  # fmt: skip
    with (work / "server.log").open("wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", 120)
        results = measure(url, args.runs, exe)
    finally:
        server.terminate()
        server.wait(30)
    text = report(args, path, results)
    print(text)
    if write:
        write_section(ROOT / "bench" / "RESULTS.md", text, SECTION)
        print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()

"""Gateway overhead: ``kansoku gateway`` (recording on) beside a bare aiohttp passthrough and LiteLLM.

Run from the repository root::

    .venv/bin/python bench/gateway.py                 # full run (~8-10 min), writes bench/RESULTS.md
    .venv/bin/python bench/gateway.py --quick         # CI smoke run (< 60 s), prints only
    .venv/bin/python bench/gateway.py --litellm /tmp/litellm-venv/bin/litellm   # + LiteLLM proxy
    KANSOKU_BENCH_LITELLM=/tmp/litellm-venv/bin/litellm .venv/bin/python bench/gateway.py

Every process is its own and binds 127.0.0.1 only:

* **mock upstream** (``bench/_mock_upstream.py``): raw asyncio Protocol + uvloop, canned OpenAI
  chat completion / SSE stream / embeddings, keep-alive, a fixed delay settable at run time.
* the targets, all pointing at that one mock: **direct** (the mock itself: the floor), the **bare
  passthrough** (``bench/_passthrough.py``: aiohttp + uvloop + orjson, parses request and response
  JSON), **kansoku gateway** (``kansoku gateway`` with a one-deployment YAML, recording to a
  ``kansoku server`` collector in its own process and temp data dir), and **LiteLLM proxy** when a
  ``litellm`` executable is given (installed in its own virtualenv, never a project dependency;
  ``LITELLM_LOCAL_MODEL_COST_MAP=True``, ``--telemetry False``, no retries).
* the **load generator** (``bench/_httpload.py``): a minimal HTTP/1.1 client on raw asyncio +
  uvloop with keep-alive connections; the same one for every target. Its ceiling (against the
  mock directly) and its own CPU per request are reported.

With ``--pin`` (the default on 2+ CPUs) the target proxy gets the last CPU to itself and
everything else (mock, load generator, collector) shares CPU 0, so "one process" means one core.

Per round, each phase runs every target in turn (order reversed every other round):

1. **c=1**: one connection, ``--c1-requests`` sequential requests: latency p50/p99; *added* is
   target - direct, per round.
2. **c=16**: 16 connections, ``--c16-requests`` requests (bounded by ``--max-s``): throughput and
   CPU per request of the proxy process (``/proc/PID/stat`` utime + stime over exactly the timed
   window; the collector's CPU separately for the gateway), ratios to the passthrough per round.
3. **streaming**, c=1: time to the first chunk and to the end of an SSE stream of 16 chunks.

Then once (``--fixed-rounds``) per target, the mock's delay is set to 60 ms and an open-loop
generator sends 500 req/s for 60 s on schedule, latency counted from the scheduled send time:
errors, p99 added vs direct under the same load, and the proxy's RSS every second (maximum, and
the mean of the first vs the last 10 s). Figures are medians [min, max] over rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import queue
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _report import cpu_model, git_commit, write_section

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECTION = "## Gateway overhead (bench/gateway.py)"
KANSOKU = ROOT / ".venv" / "bin" / "kansoku"
CHAT_PATH = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in one sentence."},
]
CHAT_BODY = json.dumps({"model": "bench", "messages": MESSAGES})
STREAM_BODY = json.dumps({"model": "bench", "messages": MESSAGES, "stream": True})
LABELS = {
    "direct": "direct to mock",
    "passthrough": "bare aiohttp passthrough",
    "gateway": "kansoku gateway (recording on)",
    "litellm": "LiteLLM proxy",
}
# The targets of the issue / performance.md, in one place.
ADDED_P50_MS = 0.3
ADDED_P99_MS = 1.0
CPU_RATIO_MAX = 1.5
THROUGHPUT_RATIO_MIN = 0.8
FIXED_RATE = 500.0
FIXED_DELAY_MS = 60.0
FIXED_P99_ADDED_MS = 2.0
RSS_MAX_MIB = 80.0
RSS_FLAT_MIB = 5.0  # "flat": the last window's mean RSS at most this much above the first window's
LITELLM_FACTOR = 25.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes -------------------------------------------------------------------------------------------


class Proc:
    """A child process: stdout read line by line (or sent to its log), stderr to its log, stopped by PID."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        work: Path,
        *,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        read_stdout: bool = True,
        stdin: bool = False,
    ) -> None:
        self.name = name
        self.log = work / f"{name}.log"
        self._log = open(self.log, "ab")  # noqa: SIM115 -- closed in stop()
        self._lines: queue.Queue[str | None] = queue.Queue()
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]  # taskset execs: the PID stays the program's
        self.p = subprocess.Popen(  # noqa: S603 -- our own programs
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if read_stdout else self._log,
            stderr=self._log,
            env=env,
            text=True,
            cwd=work,
        )
        self.pid = self.p.pid
        if read_stdout:
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        with self.p.stdout:
            for line in self.p.stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float, contains: str = "") -> str:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise StartError(self, f"exited with code {self.p.wait(5)}")
            if contains in line:
                return line
        raise StartError(self, f"printed no {contains!r} line within {timeout:.0f} s")

    def send(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text)
        self.p.stdin.flush()

    def stderr_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM this PID, then SIGKILL it if it has not exited within ``timeout``."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            code = self.p.wait(10)
        self._log.close()
        return code


class StartError(RuntimeError):
    def __init__(self, proc: Proc, what: str) -> None:
        tail = proc.stderr_tail()
        super().__init__(
            f"{proc.name} {what}.\n  command: {shlex.join(map(str, proc.p.args))}\n  log: {proc.log}\n"
            + (
                "  last lines of its output:\n    " + tail.replace("\n", "\n    ")
                if tail
                else "  (no output)"
            )
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 -- loopback URL we built
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def wait_healthy(proc: Proc, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early, with the process's output, if it exits."""
    end = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise StartError(proc, f"exited with code {proc.p.returncode} before {url} answered 200")
        try:
            status, body = http(url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    raise StartError(proc, f"did not answer 200 on {url} within {timeout:.0f} s (last: {last})")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (LiteLLM may fork workers): CPU and RSS are summed over them."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- targets ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    pids: list[int]  # the proxy process (and its children); for direct: the mock
    collector: list[int] = field(default_factory=list)
    collector_url: str = ""
    version: str = ""


def gateway_available() -> tuple[bool, str]:
    """Whether ``kansoku gateway`` exists; the note is why not, or its ``--help`` text when it does."""
    if not KANSOKU.exists():
        return False, f"{KANSOKU} does not exist"
    try:
        r = subprocess.run(  # noqa: S603 -- the project's own CLI
            [str(KANSOKU), "gateway", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return False, "`kansoku gateway --help` did not finish within 60 s"
    if r.returncode != 0:
        return (
            False,
            f"`kansoku gateway --help` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}",
        )
    return True, r.stdout


def start_gateway(
    work: Path,
    mock_url: str,
    *,
    help_text: str,
    cpu: int | None,
    other_cpu: int | None,
    timeout: float,
    procs: list[Proc],
) -> Target:
    cport, gport = free_port(), free_port()
    data = work / "collector-data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANSOKU_")}
    collector = Proc(
        "collector",
        [str(KANSOKU), "server", "--host", "127.0.0.1", "--port", str(cport), "--data-dir", str(data)],
        work,
        cpu=other_cpu,
        env=env,
        read_stdout=False,
    )
    procs.append(collector)
    wait_healthy(collector, f"http://127.0.0.1:{cport}/healthz", timeout)
    config = work / "gateway.yaml"
    config.write_text(
        "models:\n  - name: bench\n    deployments:\n"
        "      - {provider: openai_compatible, model: mock-model, "
        f'api_base: "{mock_url}/v1", api_key: sk-bench}}\n'
    )
    collector_url = f"http://127.0.0.1:{cport}"
    cmd = [str(KANSOKU), "gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(gport)]
    # The recording flag was named --collector in the issue and --record in the CLI: use what --help shows.
    cmd += ["--collector" if "--collector" in help_text else "--record", collector_url]
    if "--data-dir" in help_text:  # its spool and dead letters: a temp dir, not the user's
        spool = work / "gateway-data"
        spool.mkdir()
        cmd += ["--data-dir", str(spool)]
    gw = Proc("gateway", cmd, work, cpu=cpu, env=env, read_stdout=False)
    procs.append(gw)
    url = f"http://127.0.0.1:{gport}"
    wait_healthy(gw, url + "/healthz", timeout)
    return Target(
        "gateway",
        url,
        process_tree(gw.pid),
        process_tree(collector.pid),
        collector_url,
        version("kansoku"),
    )


def start_litellm(
    exe: str, work: Path, mock_url: str, *, cpu: int | None, timeout: float, procs: list[Proc]
) -> Target:
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/mock-model\n"
        f"      api_base: {mock_url}/v1\n      api_key: sk-bench\n      max_retries: 0\n"
        "litellm_settings:\n  num_retries: 0\n  request_timeout: 30\n  telemetry: false\n"
        "router_settings:\n  num_retries: 0\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    cmd = [
        exe,
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--telemetry",
        "False",
        "--num_workers",
        "1",
    ]
    proc = Proc("litellm", cmd, work, cpu=cpu, env=env, read_stdout=False)
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url + "/health/liveliness", timeout)
    ver = "unknown"
    py = Path(exe).parent / "python"
    if py.exists():
        r = subprocess.run(  # noqa: S603 -- the given virtualenv's interpreter
            [str(py), "-c", "from importlib.metadata import version; print(version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        ver = r.stdout.strip() or ver
    time.sleep(1.0)  # let its workers (if any) come up before the process tree is taken
    return Target("litellm", url, process_tree(proc.pid), version=ver)


def check(target: Target) -> None:
    """One chat call and one stream through the target, before anything is timed."""
    status, body = http(target.url + CHAT_PATH, CHAT_BODY.encode(), timeout=30)
    if status != 200 or b"chat.completion" not in body:
        raise RuntimeError(f"{target.name}: chat completion answered HTTP {status}: {body[:500]!r}")
    status, body = http(target.url + CHAT_PATH, STREAM_BODY.encode(), timeout=30)
    if status != 200 or b"[DONE]" not in body:
        raise RuntimeError(f"{target.name}: streamed completion answered HTTP {status}: {body[:500]!r}")


# -- the load generator ----------------------------------------------------------------------------------


class LoadGen:
    def __init__(self, work: Path, cpu: int | None, procs: list[Proc]) -> None:
        self.proc = Proc("loadgen", [sys.executable, str(BENCH / "_httpload.py")], work, cpu=cpu, stdin=True)
        procs.append(self.proc)
        self.proc.line(30, "READY")

    def run(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.proc.send(json.dumps(cmd) + "\n")
        out: dict[str, Any] = json.loads(self.proc.line(timeout, "{"))
        if "error" in out:
            raise RuntimeError(f"load generator: {out['error']}")
        return out


# -- measurement -----------------------------------------------------------------------------------------


def cpu_ms_per_request(run: dict[str, Any], pids: list[int]) -> float:
    return sum(run["cpu"].get(str(p), 0.0) for p in pids) / max(1, run["requests"]) * 1000


@dataclass
class Dist:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 2) -> str:
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{self.values[0]:,.{digits}f}"
        return f"{self.median:,.{digits}f} [{min(self.values):,.{digits}f}, {max(self.values):,.{digits}f}]"


def verdict(d: Dist, limit: float, higher_is_better: bool = False) -> str:
    if not d.values:
        return "not measured"
    ok: Callable[[float], bool] = (lambda v: v >= limit) if higher_is_better else (lambda v: v <= limit)
    if all(ok(v) for v in d.values):
        return "**met**"
    if not any(ok(v) for v in d.values):
        return "**missed**"
    return "**met** (median)" if ok(d.median) else "**missed** (median)"


def run_rounds(targets: list[Target], mock: Target, gen: LoadGen, args: argparse.Namespace) -> dict[str, Any]:
    """Phases 1-3, every round, targets interleaved; returns ``{phase: {target: [run, ...]}}``."""
    res: dict[str, dict[str, list[dict[str, Any]]]] = {"c1": {}, "c16": {}, "stream": {}}
    phases = {
        "c1": {
            "conc": 1,
            "n": args.c1_requests,
            "warmup": 100,
            "body": CHAT_BODY,
            "expect": "chat.completion",
        },
        "c16": {
            "conc": 16,
            "n": args.c16_requests,
            "warmup": 320,
            "body": CHAT_BODY,
            "expect": "chat.completion",
        },
        "stream": {
            "conc": 1,
            "n": args.stream_requests,
            "warmup": 20,
            "body": STREAM_BODY,
            "expect": "[DONE]",
        },
    }
    for rnd in range(args.rounds):
        t0 = time.perf_counter()
        for k, (phase, spec) in enumerate(phases.items()):
            order = targets if (rnd + k) % 2 == 0 else targets[::-1]
            for t in order:
                pids = sorted({*t.pids, *t.collector, *mock.pids})
                cmd = {
                    "op": "closed",
                    "url": t.url,
                    "path": CHAT_PATH,
                    **spec,
                    "max_s": args.max_s,
                    "cpu_pids": pids,
                }
                run = gen.run(cmd, timeout=args.max_s + 120)
                res[phase].setdefault(t.name, []).append(run)
                extra = ""
                if phase == "c16":
                    extra = (
                        f" {run['rate']:>8,.0f} req/s, cpu {cpu_ms_per_request(run, t.pids):.3f} ms/req"
                        + (f" (+collector {cpu_ms_per_request(run, t.collector):.3f})" if t.collector else "")
                    )
                lat = run["lat"]
                ttfb = f" first chunk p50 {run['ttfb']['p50']:.3f}" if phase == "stream" else ""
                print(
                    f"round {rnd + 1}/{args.rounds} {phase:<6} {t.name:<12} p50 {lat.get('p50', 0):.3f} "
                    f"p99 {lat.get('p99', 0):.3f} ms{ttfb}{extra} errors {run['errors']}"
                    + (f" {run['statuses']} {run['samples'][:1]}" if run["errors"] else ""),
                    file=sys.stderr,
                )
        print(f"round {rnd + 1}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return res


def run_fixed(
    targets: list[Target], mock: Target, gen: LoadGen, args: argparse.Namespace, rounds: dict[str, Any]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Phase 4: open loop at ``--rate`` with the mock's delay at ``--delay-ms``, for ``--duration`` s."""
    out: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    run_on: list[Target] = []
    for t in targets:
        c16 = rounds["c16"].get(t.name, [])
        capacity = max((r["rate"] for r in c16), default=0.0)
        if t.name != "direct" and capacity < 1.5 * args.rate:
            skipped[t.name] = f"its c=16 throughput ({capacity:,.0f} req/s) is below 1.5x the rate"
        else:
            run_on.append(t)
    http(mock.url + "/_mock/config", json.dumps({"delay_ms": args.delay_ms}).encode())
    try:
        pool = max(64, int(args.rate * args.delay_ms / 1000 * 2))  # twice the in-flight requests
        for rnd in range(args.fixed_rounds):
            order = run_on if rnd % 2 == 0 else run_on[::-1]
            for t in order:
                rss_pids = sorted({*t.pids, *t.collector}) if t.name != "direct" else []
                cmd = {
                    "op": "rate",
                    "url": t.url,
                    "path": CHAT_PATH,
                    "body": CHAT_BODY,
                    "rate": args.rate,
                    "duration": args.duration,
                    "pool": pool,
                    "expect": "chat.completion",
                    "timeout": 10,
                    "rss_pids": rss_pids,
                }
                run = gen.run(cmd, timeout=args.duration + 120)
                out.setdefault(t.name, []).append(run)
                rss = sum_rss(run, t.pids)
                print(
                    f"fixed {rnd + 1}/{args.fixed_rounds} {t.name:<12} {args.rate:.0f} req/s for "
                    f"{args.duration:.0f} s: p50 {run['lat'].get('p50', 0):.2f} "
                    f"p99 {run['lat'].get('p99', 0):.2f} ms, errors {run['errors']} {run['statuses'] or ''}, "
                    f"new connections {run['new_connections']}, late sends {run['late_sends']}"
                    + (f", RSS max {max(rss):.1f} MiB" if rss else ""),
                    file=sys.stderr,
                )
    finally:
        http(mock.url + "/_mock/config", b'{"delay_ms": 0}')
    return out, skipped


def sum_rss(run: dict[str, Any], pids: list[int]) -> list[float]:
    """The RSS samples of ``pids`` summed per second (one process for all but a forking proxy)."""
    series = [run["rss"][str(p)] for p in pids if str(p) in run["rss"]]
    return [sum(x) for x in zip(*series, strict=False)] if series else []


def rss_growth(samples: list[float], window: int) -> float:
    if len(samples) < 2:
        return float("nan")
    w = max(1, min(window, len(samples) // 3))
    return statistics.mean(samples[-w:]) - statistics.mean(samples[:w])


# -- report ----------------------------------------------------------------------------------------------


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


def report(
    targets: list[Target],
    res: dict[str, Any],
    *,
    fixed: dict[str, list[dict[str, Any]]],
    skipped_fixed: dict[str, str],
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    out: list[str] = [SECTION, ""]
    add = out.append
    names = [t.name for t in targets]
    by = {t.name: t for t in targets}

    def runs(phase: str, name: str) -> list[dict[str, Any]]:
        return list(res[phase].get(name, []))

    def lat(phase: str, name: str, key: str, what: str = "lat") -> Dist:
        return Dist([r[what][key] for r in runs(phase, name) if r[what]])

    def added(phase: str, name: str, key: str) -> Dist:
        return Dist(
            [
                a[key] - b[key]
                for a, b in zip(
                    [r["lat"] for r in runs(phase, name)],
                    [r["lat"] for r in runs(phase, "direct")],
                    strict=False,
                )
            ]
        )

    def cpu(name: str, collector: bool = False) -> Dist:
        t = by[name]
        pids = t.collector if collector else t.pids
        return Dist([cpu_ms_per_request(r, pids) for r in runs("c16", name)])

    def cpu_ratio(name: str, base: str, with_collector: bool = False) -> Dist:
        mine = [
            cpu_ms_per_request(r, by[name].pids)
            + (cpu_ms_per_request(r, by[name].collector) if with_collector else 0.0)
            for r in runs("c16", name)
        ]
        theirs = [cpu_ms_per_request(r, by[base].pids) for r in runs("c16", base)]
        return Dist([a / b for a, b in zip(mine, theirs, strict=False) if b > 0])

    def rate(name: str) -> Dist:
        return Dist([r["rate"] for r in runs("c16", name)])

    def rate_ratio(name: str, base: str) -> Dist:
        return Dist(
            [a["rate"] / b["rate"] for a, b in zip(runs("c16", name), runs("c16", base), strict=False)]
        )

    def fixed_p99_added(name: str) -> Dist:
        return Dist(
            [
                a["lat"]["p99"] - b["lat"]["p99"]
                for a, b in zip(fixed.get(name, []), fixed.get("direct", []), strict=False)
                if a["lat"] and b["lat"]
            ]
        )

    window = int(min(10, max(1, args.duration // 3)))

    add(
        f"Measured {meta['date']} with `{meta['command']}`: {args.rounds} rounds; per round and target "
        f"{args.c1_requests:,} requests at c=1, {args.c16_requests:,} at c=16 (at most {args.max_s:.0f} s), "
        f"{args.stream_requests:,} streamed at c=1, targets interleaved (order reversed every other "
        f"phase); then {args.fixed_rounds} open-loop run(s) per target at {args.rate:.0f} req/s for "
        f"{args.duration:.0f} s with the mock answering after {args.delay_ms:.0f} ms."
    )
    add("")
    add(
        f"Machine: {meta['cpu']}, {meta['cores']} cores ({meta['affinity']} usable), shared: load average "
        f"{meta['load']} at start and {meta['load_end']} at the end. {meta['os']}, CPython "
        f"{meta['python']}. kansoku {meta['kansoku']} (commit {meta['commit']} + working tree), aiohttp "
        f"{meta['aiohttp']}, uvloop {meta['uvloop']}, orjson {meta['orjson']}; LiteLLM {meta['litellm']}."
    )
    add("")
    add(f"Placement: {meta['placement']}")
    add("")
    d16 = runs("c16", "direct")
    if d16:
        lg = Dist([r["self_cpu"] / max(1, r["requests"]) * 1000 for r in d16])
        mk = Dist([cpu_ms_per_request(r, by["direct"].pids) for r in d16])
        add(
            f"Load generator (`bench/_httpload.py`, raw asyncio + uvloop HTTP/1.1 client, keep-alive; "
            f"{meta['tools']}): its ceiling against the mock at c=16 is {rate('direct').fmt(0)} req/s, at "
            f"{lg.fmt(4)} ms of its own CPU per request. The mock itself costs {mk.fmt(4)} ms of CPU per "
            "request. Figures: median [min, max] over rounds; *added* = target - direct in the same round; "
            "ratios to the passthrough are per round. CPU = utime + stime from `/proc/PID/stat` over "
            "the timed window at c=16, divided by the requests."
        )
        add("")
    add("### Against the targets")
    add("")
    add("| what | measured | target | verdict |")
    add("|---|---|---|---|")

    def row(what: str, d: Dist, digits: int, target: str, limit: float, *, higher: bool = False) -> None:
        unit = "x" if target.endswith("x") else ""
        add(f"| {what} | {d.fmt(digits)}{unit} | {target} | {verdict(d, limit, higher_is_better=higher)} |")

    if "gateway" in names:
        row(
            "gateway added latency at c=1, p50 (ms)",
            added("c1", "gateway", "p50"),
            3,
            f"≤ {ADDED_P50_MS}",
            ADDED_P50_MS,
        )
        row(
            "gateway added latency at c=1, p99 (ms)",
            added("c1", "gateway", "p99"),
            3,
            f"≤ {ADDED_P99_MS}",
            ADDED_P99_MS,
        )
        row(
            "gateway CPU per request / passthrough's",
            cpu_ratio("gateway", "passthrough"),
            2,
            f"≤ {CPU_RATIO_MAX}x",
            CPU_RATIO_MAX,
        )
        crc = cpu_ratio("gateway", "passthrough", with_collector=True)
        add(
            f"| same, gateway + collector CPU / passthrough's (recording's full cost) | {crc.fmt(2)}x | "
            "(for information) | |"
        )
        row(
            "gateway throughput at c=16 / passthrough's",
            rate_ratio("gateway", "passthrough"),
            2,
            f"≥ {THROUGHPUT_RATIO_MIN}x",
            THROUGHPUT_RATIO_MIN,
            higher=True,
        )
        if "gateway" in fixed:
            g = fixed["gateway"]
            rss = [sum_rss(r, by["gateway"].pids) for r in g]
            fixed_name = (
                f"fixed {args.rate:.0f} req/s, {args.delay_ms:.0f} ms upstream, {args.duration:.0f} s"
            )
            errors = Dist([float(r["errors"]) for r in g])
            row(f"{fixed_name}: errors (of {g[0]['requests']:,} per run)", errors, 0, "0", 0)
            row(
                "same: p99 added vs direct under the same load (ms)",
                fixed_p99_added("gateway"),
                2,
                f"≤ {FIXED_P99_ADDED_MS}",
                FIXED_P99_ADDED_MS,
            )
            row(
                "same: gateway RSS, max (MiB)",
                Dist([max(x) for x in rss if x]),
                1,
                f"≤ {RSS_MAX_MIB:.0f}",
                RSS_MAX_MIB,
            )
            growth = Dist([rss_growth(x, window) for x in rss])
            what = f"same: gateway RSS growth, last {window} s vs first {window} s (MiB)"
            row(what, growth, 1, f"flat (≤ {RSS_FLAT_MIB:.0f})", RSS_FLAT_MIB)
        else:
            add(f"| fixed-rate run | not run: {skipped_fixed.get('gateway', 'skipped')} | | **missed** |")
        if "litellm" in names:
            lc = Dist([1 / v for v in cpu_ratio("gateway", "litellm").values if v > 0])
            row(
                "LiteLLM CPU per request / gateway's",
                lc,
                1,
                f"≥ {LITELLM_FACTOR:.0f}x",
                LITELLM_FACTOR,
                higher=True,
            )
            row(
                "gateway throughput at c=16 / LiteLLM's",
                rate_ratio("gateway", "litellm"),
                1,
                f"≥ {LITELLM_FACTOR:.0f}x",
                LITELLM_FACTOR,
                higher=True,
            )
    else:
        add(f"| every gateway target | not measured: {meta['gateway_note']} | | |")
    add("")
    add("### Per target")
    add("")
    add(
        "| target | c=1 p50 ms | c=1 p99 ms | added p50 ms | added p99 ms | c=16 req/s | vs passthrough | "
        "CPU ms/request | vs passthrough | stream first chunk p50 ms | stream total p50 ms | errors |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        base = n == "direct"
        errors = sum(r["errors"] for ph in ("c1", "c16", "stream") for r in runs(ph, n))
        cpu_cell = cpu(n).fmt(3) + (" (the mock)" if base else "")
        if by[n].collector:
            cpu_cell += f" + collector {cpu(n, collector=True).fmt(3)}"
        cells = [
            LABELS[n],
            lat("c1", n, "p50").fmt(3),
            lat("c1", n, "p99").fmt(3),
            "-" if base else added("c1", n, "p50").fmt(3),
            "-" if base else added("c1", n, "p99").fmt(3),
            rate(n).fmt(0),
            "-" if base else rate_ratio(n, "passthrough").fmt(2),
            cpu_cell,
            "-" if base else cpu_ratio(n, "passthrough").fmt(2),
            lat("stream", n, "p50", "ttfb").fmt(3),
            lat("stream", n, "p50").fmt(3),
            str(errors),
        ]
        add("| " + " | ".join(cells) + " |")
    add("")
    add(
        f"### Fixed rate: {args.rate:.0f} req/s open loop, mock delay {args.delay_ms:.0f} ms, "
        f"{args.duration:.0f} s"
    )
    add("")
    add(
        "| target | errors | p50 ms | p99 ms | p99 added ms | p99.9 ms | RSS max MiB | "
        f"RSS first {window} s → last {window} s MiB | new connections | late sends |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        if n not in fixed:
            add(f"| {LABELS[n]} | not run: {skipped_fixed.get(n, 'skipped')} | | | | | | | | |")
            continue
        rs = fixed[n]
        rss = [sum_rss(r, by[n].pids) for r in rs]
        first_last = "-"
        if rss and rss[0]:
            w = max(1, min(window, len(rss[0]) // 3))
            first_last = f"{statistics.mean(rss[0][:w]):.1f} → {statistics.mean(rss[0][-w:]):.1f}"
        coll = ""
        if by[n].collector:
            crss = [sum(r["rss"][str(p)][-1] for p in by[n].collector if str(p) in r["rss"]) for r in rs]
            coll = f" (collector {max(crss):.0f})"
        add(
            f"| {LABELS[n]} | {sum(r['errors'] for r in rs)} of {sum(r['requests'] for r in rs):,} | "
            f"{Dist([r['lat']['p50'] for r in rs if r['lat']]).fmt(2)} | "
            f"{Dist([r['lat']['p99'] for r in rs if r['lat']]).fmt(2)} | "
            f"{'-' if n == 'direct' else fixed_p99_added(n).fmt(2)} | "
            f"{Dist([r['lat']['p999'] for r in rs if r['lat']]).fmt(2)} | "
            f"{'-' if n == 'direct' else Dist([max(x) for x in rss if x]).fmt(1) + coll} | {first_last} | "
            f"{sum(r['new_connections'] for r in rs)} | {sum(r['late_sends'] for r in rs)} |"
        )
    add("")
    notes = [
        (
            "*Late sends* counts requests the generator put on the wire more than 1 ms after their scheduled "
            "time; latency is measured from the schedule, so lateness shows in every target's figures alike. "
            "*New connections*: opened during the run because every pooled keep-alive connection was busy."
        ),
    ]
    if meta.get("recorded"):
        notes.append(f"Recording: {meta['recorded']}")
    if meta.get("notes"):
        notes.extend(meta["notes"])
    for note in notes:
        add(note)
        add("")
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------------


def collector_counts(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    status, body = http(url + "/metrics")
    if status != 200:
        return counts
    for line in body.decode().splitlines():
        for name in ("kansoku_ingest_spans_total", "kansoku_store_rows_loaded_total"):
            if line.startswith(name):
                counts[name] = counts.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="rounds of phases 1-3 (default 5; quick 1)")
    ap.add_argument("--c1-requests", type=int, default=None, help="per target and round (default 2000)")
    ap.add_argument("--c16-requests", type=int, default=None, help="per target and round (default 20000)")
    ap.add_argument("--stream-requests", type=int, default=None, help="per target and round (default 300)")
    ap.add_argument("--max-s", type=float, default=None, help="bound on one closed-loop run (default 20 s)")
    ap.add_argument("--rate", type=float, default=FIXED_RATE, help="fixed-rate phase, req/s (default 500)")
    ap.add_argument(
        "--delay-ms", type=float, default=FIXED_DELAY_MS, help="mock delay in the fixed-rate phase"
    )
    ap.add_argument("--duration", type=float, default=None, help="fixed-rate phase, s (default 60; quick 5)")
    ap.add_argument("--fixed-rounds", type=int, default=1, help="fixed-rate runs per target (default 1)")
    ap.add_argument(
        "--gateway",
        choices=("auto", "require", "skip"),
        default="auto",
        help="auto: measure kansoku gateway when `kansoku gateway --help` works",
    )
    ap.add_argument(
        "--litellm",
        default=os.environ.get("KANSOKU_BENCH_LITELLM"),
        help="path to a `litellm` executable in its own virtualenv (or KANSOKU_BENCH_LITELLM)",
    )
    ap.add_argument("--start-timeout", type=float, default=60.0, help="s to wait for a target's health check")
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="proxy on the last CPU, the rest on CPU 0 (default: on with 2+ CPUs)",
    )
    ap.add_argument("--quick", action="store_true", help="CI smoke run (< 60 s), does not write")
    ap.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write bench/RESULTS.md (default: yes when the gateway was measured, never with --quick)",
    )
    ap.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = ap.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (1 if q else 5)
    args.c1_requests = args.c1_requests or (200 if q else 2000)
    args.c16_requests = args.c16_requests or (2000 if q else 20000)
    args.stream_requests = args.stream_requests or (30 if q else 300)
    args.max_s = args.max_s or (5.0 if q else 20.0)
    args.duration = args.duration or (5.0 if q else 60.0)
    if min(args.rounds, args.c1_requests, args.c16_requests, args.stream_requests, args.fixed_rounds) < 1:
        ap.error("counts and rounds must be positive")
    if args.rate <= 0 or args.duration <= 0 or args.delay_ms < 0:
        ap.error("--rate and --duration must be positive, --delay-ms not negative")
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin is None:
        args.pin = len(cpus) >= 2
    args.proxy_cpu, args.other_cpu = (cpus[-1], cpus[0]) if args.pin and len(cpus) >= 2 else (None, None)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)):
        # Pinned targets cannot move away from foreign work: tails (p99) suffer most.
        print(
            f"warning: load average {load} before the run: other work is using the CPUs; "
            "the figures will be noisy",
            file=sys.stderr,
        )
    tools = [t for t in ("wrk", "oha", "hey", "ab") if shutil.which(t)]
    tools_note = f"{', '.join(tools)} also on this machine" if tools else "no wrk/oha/hey/ab on this machine"
    notes: list[str] = []

    gw_ok, gw_note = (False, "skipped (--gateway skip)") if args.gateway == "skip" else gateway_available()
    if not gw_ok:
        if args.gateway == "require":
            print(f"kansoku gateway is not available: {gw_note}", file=sys.stderr)
            return 2
        print(f"note: kansoku gateway not measured: {gw_note}", file=sys.stderr)
    litellm = args.litellm
    if litellm and not (Path(litellm).exists() or shutil.which(litellm)):
        print(f"note: LiteLLM not measured: {litellm} does not exist", file=sys.stderr)
        litellm = None
    elif not litellm:
        print(
            "note: LiteLLM not measured: pass --litellm /path/to/venv/bin/litellm or set "
            "KANSOKU_BENCH_LITELLM (install it in its own virtualenv, never into .venv)",
            file=sys.stderr,
        )

    work = Path(tempfile.mkdtemp(prefix="kansoku-bench-gateway-"))
    procs: list[Proc] = []
    keep_logs = False
    try:
        mock_p = Proc(
            "mock",
            [sys.executable, str(BENCH / "_mock_upstream.py"), "--port", "0"],
            work,
            cpu=args.other_cpu,
        )
        procs.append(mock_p)
        mock_url = mock_p.line(15, "listening on ").split("listening on ", 1)[1].strip()
        mock = Target("direct", mock_url, [mock_p.pid])
        pt_p = Proc(
            "passthrough",
            [sys.executable, str(BENCH / "_passthrough.py"), "--upstream", mock_url, "--port", "0"],
            work,
            cpu=args.proxy_cpu,
        )
        procs.append(pt_p)
        pt_url = pt_p.line(30, "listening on ").split("listening on ", 1)[1].strip()
        targets = [mock, Target("passthrough", pt_url, [pt_p.pid])]
        if gw_ok:
            print("starting kansoku collector + gateway ...", file=sys.stderr)
            gw_target = start_gateway(
                work,
                mock_url,
                help_text=gw_note,
                cpu=args.proxy_cpu,
                other_cpu=args.other_cpu,
                timeout=args.start_timeout,
                procs=procs,
            )
            targets.append(gw_target)
        if litellm:
            print("starting LiteLLM proxy ...", file=sys.stderr)
            n_procs = len(procs)
            try:
                lt = start_litellm(
                    litellm,
                    work,
                    mock_url,
                    cpu=args.proxy_cpu,
                    timeout=max(args.start_timeout, 180),
                    procs=procs,
                )
                check(lt)
                targets.append(lt)
            except RuntimeError as e:  # optional: the run goes on without it
                print(f"note: LiteLLM not measured: {e}", file=sys.stderr)
                notes.append(f"LiteLLM ({litellm}) was given but failed to start or answer: {str(e)[:300]}")
                while len(procs) > n_procs:
                    procs.pop().stop()
        for t in targets:
            if t.name != "litellm":  # checked above
                check(t)
        gen = LoadGen(work, args.other_cpu, procs)
        res = run_rounds(targets, mock, gen, args)
        fixed, skipped = run_fixed(targets, mock, gen, args, res)
        if fixed.get("gateway") or res["c16"].get("gateway"):
            time.sleep(2.0)  # let the gateway's exporter and the collector's loader catch up
        recorded = ""
        gw = next((t for t in targets if t.name == "gateway"), None)
        if gw is not None:
            served = sum(r["requests"] for ph in res.values() for r in ph.get("gateway", []))
            served += sum(r["requests"] for r in fixed.get("gateway", []))
            counts = collector_counts(gw.collector_url)
            recorded = (
                f"the collector received {counts.get('kansoku_ingest_spans_total', 0):,.0f} spans "
                f"(store rows loaded {counts.get('kansoku_store_rows_loaded_total', 0):,.0f}) for "
                f"{served:,} timed gateway requests (plus warm-ups)."
            )
            notes.append(
                f"Peak RSS over the whole run (VmHWM): gateway {peak_rss_mib(gw.pids[0]):.0f} MiB, "
                f"collector {peak_rss_mib(gw.collector[0]):.0f} MiB, "
                f"passthrough {peak_rss_mib(pt_p.pid):.0f} MiB."
            )
        for p in procs:
            if p.p.poll() is not None:
                keep_logs = True
                print(
                    f"warning: {p.name} exited early ({p.p.returncode}); log kept at {p.log}", file=sys.stderr
                )
    except (RuntimeError, OSError) as e:
        keep_logs = True
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for p in reversed(procs):
            if p.name == "loadgen" and p.p.poll() is None:
                p.send('{"op": "quit"}\n')
            code = p.stop()
            if code not in (0, None, -signal.SIGTERM):
                print(f"note: {p.name} exited {code} on SIGTERM; log: {p.log}", file=sys.stderr)
                keep_logs = True
        if keep_logs:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    placement = (
        f"`taskset`: the proxy under test on CPU {args.proxy_cpu}; mock, load generator and collector on CPU "
        f"{args.other_cpu}."
        if args.pin
        else "not pinned (`--no-pin`): the OS scheduler places every process."
    )
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
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
        "orjson": version("orjson"),
        "litellm": next((f"{t.version} (1 worker)" for t in targets if t.name == "litellm"), "not measured"),
        "placement": placement,
        "tools": tools_note,
        "gateway_note": "" if gw_ok else gw_note,
        "recorded": recorded,
        "notes": notes,
    }
    section = report(targets, res, fixed=fixed, skipped_fixed=skipped, meta=meta, args=args)
    print(section)
    print(f"(took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    write = args.write if args.write is not None else (gw_ok and not args.quick)
    if write:
        write_section(args.results, section, SECTION)
        print(f"wrote {args.results}", file=sys.stderr)
    elif not gw_ok and not args.quick and args.write is None:
        print("not writing RESULTS.md without gateway figures (pass --write to force)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

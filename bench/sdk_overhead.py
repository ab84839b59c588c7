"""What the kansoku SDK costs an application, measured beside an OpenTelemetry SDK span.

Run from the repository root::

    .venv/bin/python bench/sdk_overhead.py             # full run (~1-2 min), writes bench/RESULTS.md
    .venv/bin/python bench/sdk_overhead.py --quick     # CI smoke run (< 10 s), prints only
    .venv/bin/python bench/sdk_overhead.py --profile   # cProfile of the caller path and of a record

Three measurements, all in one process and interleaved (A B B A blocks inside each round, so
drift hits both sides alike); every figure is the median over rounds with min and max:

1. **Caller's thread.** A real ``openai.OpenAI`` client over an in-process ``httpx2.MockTransport``
   (canned chat completion / SSE stream, no network). Plain = kansoku shut down (original methods
   restored); instrumented = ``kansoku.init`` with a discarding exporter. Caller CPU is the calling
   thread's ``time.thread_time``, so the pipeline thread's work on the other core is not counted;
   wall time is shown too. Because an openai call itself costs ~1 ms of CPU, the same wrapper is
   also timed around a stub method returning the same parsed objects: that isolates the few
   microseconds kansoku adds from the client's own noise.
2. **CPU per record** with a 1 KB prompt, on one thread: ``PendingCall.build()``, every default
   processor (``kansoku.sdk._runtime._processors``) and ``orjson.dumps(span.to_record())``.
3. **OpenTelemetry baseline**: a local ``TracerProvider`` + ``BatchSpanProcessor`` over a no-op
   exporter, ``start_as_current_span`` with six ``gen_ai.*`` attributes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import kansoku
from _report import cpu_model, git_commit, write_section
from kansoku.export import ExportResult
from kansoku.instrument._capture import PendingCall
from kansoku.instrument._openai import _ask_stream_usage, _extractor_for
from kansoku.instrument._openai_extract import ChatExtractor
from kansoku.instrument._wrap import _snapshot, wrap_sync
from kansoku.sdk import Settings
from kansoku.sdk._runtime import _processors

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## SDK overhead (bench/sdk_overhead.py)"
TARGET_CALLER_US = 5.0
TARGET_RECORD_US = 50.0
#: Figures also reported as a ratio to the OTel span measured in the same round.
RATIO_KEYS = (
    "stub.chat.added.cpu",
    "openai.chat.added.cpu",
    "stub.stream.added.cpu",
    "openai.stream.added.cpu",
    "openai.stream_usage.added.cpu",
    "record.total",
    "stream.total",
    "kspan.cpu",
)

# -- fixtures: a 1 KB prompt with PII in it, a canned completion and stream --------------------------

SYSTEM = (
    "You are the support assistant of Northwind Outfitters. Answer in three sentences at most, "
    "quote the order number, and never reveal internal notes or other customers' data."
)
USER = (
    "Hi, I placed order A-20931 on March 3rd for two pairs of trail running shoes (size 10.5, blue) "
    "and a rain jacket, but the tracking page has said 'label created' for nine days now. I already "
    "wrote to shipping@northwind-outfitters.example twice and got no answer. Could you check what "
    "happened and whether the jacket is still in stock? If it is easier, call me at +1 (415) 555-0132 "
    "between 9am and 5pm Pacific, or at 03-5550-0199 while I am in Tokyo next week. You can also reach "
    "my assistant at maria.lopez@example.com. I would prefer a refund for the jacket if it cannot ship "
    "by Friday, but please keep the shoes on the order. The account is under Daniel Okafor. Thanks for "
    "your help; this is the third time I am asking, so a clear answer about the delivery date and "
    "the refund timeline would be appreciated."
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
PROMPT_BYTES = len((SYSTEM + USER).encode())
MODEL = "gpt-4o-mini"
REPLY = (
    "Thanks for your patience, Daniel. Order A-20931 left our warehouse this morning and should "
    "arrive by Thursday; the tracking page will update within a few hours. The rain jacket is in "
    "stock and ships with the shoes, so no refund is needed. If it does not arrive by Friday, reply "
    "here and we will refund the jacket right away."
)
USAGE = {
    "prompt_tokens": 231,
    "completion_tokens": 68,
    "total_tokens": 299,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
_HEAD = {"id": "chatcmpl-bench", "created": 1_763_900_000, "model": "gpt-4o-mini-2024-07-18"}
COMPLETION_BODY = orjson.dumps(
    {
        **_HEAD,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }
)


def _sse(include_usage: bool) -> bytes:
    """One chunk per word, as the real API sends roughly one per token."""

    def event(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps(
            {**_HEAD, "object": "chat.completion.chunk", "choices": [choice], **extra}
        )

    words = REPLY.split(" ")
    events = [event({"role": "assistant", "content": ""}, None)]
    events += [event({"content": w if i == 0 else " " + w}, None) for i, w in enumerate(words)]
    events.append(event({}, "stop"))
    if include_usage:  # kansoku asks for it when the caller did not; the caller never sees it
        usage_only = {**_HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
        events.append(b"data: " + orjson.dumps(usage_only))
    events.append(b"data: [DONE]")
    return b"\n\n".join(events) + b"\n\n"


SSE_PLAIN, SSE_WITH_USAGE = _sse(False), _sse(True)
STREAM_CHUNKS = SSE_PLAIN.count(b"data: {")


def _handler(request: httpx2.Request) -> httpx2.Response:
    body = request.content
    if b'"stream":true' in body or b'"stream": true' in body:
        sse = SSE_WITH_USAGE if b"include_usage" in body else SSE_PLAIN
        return httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=COMPLETION_BODY, headers={"content-type": "application/json"})


def make_client() -> openai.OpenAI:
    transport = httpx2.MockTransport(_handler)
    return openai.OpenAI(
        api_key="sk-bench",
        base_url="https://api.openai.com/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


# -- exporters that discard ---------------------------------------------------------------------------


class NullExporter:
    """A kansoku exporter that drops every batch (no serialisation: that is timed on its own)."""

    name = "null"
    spool = False

    def export(self, batch: Sequence[Any]) -> ExportResult:
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None


class NullSpanExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


# -- kansoku on / off ---------------------------------------------------------------------------------


def redaction_available() -> bool:
    try:
        _processors(Settings(service_name="bench"))
    except ImportError:
        return False
    return True


class KansokuSwitch:
    """Initialise or shut down kansoku only when the wanted state differs from the current one."""

    def __init__(self, redact: bool) -> None:
        self.redact = redact
        self.on = False

    def set(self, on: bool) -> None:
        if on and not self.on:
            kansoku.init(
                export=[NullExporter()], service_name="bench", redact=self.redact, instrument=["openai"]
            )
        elif not on and self.on:
            kansoku.shutdown()
        self.on = on


# -- measurement --------------------------------------------------------------------------------------


@dataclass
class Acc:
    """Per-call figures (µs) of each block of one variant in one round."""

    blocks: dict[str, list[float]] = field(default_factory=lambda: {"cpu": [], "wall": [], "proc": []})

    def per_call(self, what: str) -> float:
        """The round's figure: the median block, so one block hit by a neighbour's burst does not count."""
        return statistics.median(self.blocks[what])


@dataclass
class Variant:
    name: str
    kansoku_on: bool
    loop: Callable[[int], None]
    flush: Callable[[], Any] | None = None


@dataclass
class Dist:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def fmt(self, digits: int = 1) -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{self.median:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def timed(variant: Variant, n: int, acc: Acc) -> None:
    p0, c0, w0 = time.process_time_ns(), time.thread_time_ns(), time.perf_counter_ns()
    variant.loop(n)
    w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    if variant.flush is not None:  # the pipeline's work lands in process CPU, not caller CPU
        variant.flush()
    p1 = time.process_time_ns()
    for what, ns in (("wall", w1 - w0), ("cpu", c1 - c0), ("proc", p1 - p0)):
        acc.blocks[what].append(ns / n / 1000.0)


def ab_round(a: Variant, b: Variant, total: int, block: int, switch: KansokuSwitch) -> tuple[Acc, Acc]:
    """``total`` calls of each variant in blocks ordered A B B A A B ..., one round."""
    accs = {a.name: Acc(), b.name: Acc()}
    for i in range(max(1, total // block)):
        for v in (a, b) if i % 2 == 0 else (b, a):
            switch.set(v.kansoku_on)
            timed(v, block, accs[v.name])
    return accs[a.name], accs[b.name]


class Results:
    def __init__(self) -> None:
        self.d: dict[str, Dist] = {}

    def add(self, key: str, value: float) -> None:
        self.d.setdefault(key, Dist()).values.append(value)

    def last(self, key: str) -> float:
        return self.d[key].values[-1]

    def __getitem__(self, key: str) -> Dist:
        return self.d[key]

    def pair(self, key: str, plain: Acc, inst: Acc) -> None:
        """Record both sides and *added*: the median over adjacent block pairs of (inst - plain)."""
        for what in ("cpu", "wall", "proc"):
            self.add(f"{key}.plain.{what}", plain.per_call(what))
            self.add(f"{key}.inst.{what}", inst.per_call(what))
            diffs = [i - p for p, i in zip(plain.blocks[what], inst.blocks[what], strict=True)]
            self.add(f"{key}.added.{what}", statistics.median(diffs))


# -- the workloads ------------------------------------------------------------------------------------


def openai_loops(client: openai.OpenAI) -> tuple[Callable[[int], None], ...]:
    def chat(n: int) -> None:
        create = client.chat.completions.create  # looked up per block: patched or not
        for _ in range(n):
            create(model=MODEL, messages=MESSAGES, temperature=0.2)

    def stream(n: int) -> None:
        create = client.chat.completions.create
        for _ in range(n):
            for _chunk in create(model=MODEL, messages=MESSAGES, temperature=0.2, stream=True):
                pass

    def stream_usage(
        n: int,
    ) -> None:  # the caller asks for usage itself: kansoku changes nothing but a header
        create = client.chat.completions.create
        options = {"include_usage": True}
        for _ in range(n):
            for _chunk in create(
                model=MODEL, messages=MESSAGES, temperature=0.2, stream=True, stream_options=options
            ):
                pass

    return chat, stream, stream_usage


@dataclass
class Parsed:
    """The objects the openai client returns for the canned bodies (parsed once, reused)."""

    completion: Any
    chunks: list[Any]
    chunks_with_usage: list[Any]

    @classmethod
    def fetch(cls, client: openai.OpenAI) -> Parsed:
        create = client.chat.completions.create
        return cls(
            create(model=MODEL, messages=MESSAGES),
            list(create(model=MODEL, messages=MESSAGES, stream=True)),
            list(create(model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True})),
        )


class StubCompletions:
    """Stands in for ``openai.resources.chat.Completions``: returns already-parsed objects at once."""

    def __init__(self, parsed: Parsed) -> None:
        self._client = type("OpenAI", (), {"base_url": httpx2.URL("https://api.openai.com/v1/")})()
        self._parsed = parsed

    def create(self, **kwargs: Any) -> Any:
        if kwargs.get("stream") is True:
            opts = kwargs.get("stream_options")
            usage = opts and opts.get("include_usage")
            return iter(self._parsed.chunks_with_usage if usage else self._parsed.chunks)
        return self._parsed.completion


def stub_loops(parsed: Parsed) -> dict[str, Callable[[int], None]]:
    stub = StubCompletions(parsed)
    original = StubCompletions.create
    wrapped = wrap_sync(_extractor_for(ChatExtractor), _ask_stream_usage)(original)

    def chat(fn: Callable[..., Any]) -> Callable[[int], None]:
        def loop(n: int) -> None:
            for _ in range(n):
                fn(stub, model=MODEL, messages=MESSAGES, temperature=0.2)

        return loop

    def stream(fn: Callable[..., Any]) -> Callable[[int], None]:
        def loop(n: int) -> None:
            for _ in range(n):
                for _chunk in fn(stub, model=MODEL, messages=MESSAGES, temperature=0.2, stream=True):
                    pass

        return loop

    return {"chat.plain": chat(original), "chat.inst": chat(wrapped), "stream.plain": stream(original),
            "stream.inst": stream(wrapped)}  # fmt: skip


GENAI_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": MODEL,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 231,
    "gen_ai.usage.output_tokens": 68,
}


def span_loops() -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], Any], TracerProvider]:
    provider = TracerProvider()  # local: the global provider stays unset
    processor = BatchSpanProcessor(NullSpanExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench.sdk_overhead")

    def otel(n: int) -> None:
        start = tracer.start_as_current_span
        for _ in range(n):
            with start("chat", attributes=GENAI_ATTRS):
                pass

    def ksp(n: int) -> None:
        span = kansoku.span
        for _ in range(n):
            with span("chat", attributes=GENAI_ATTRS):
                pass

    return ksp, otel, processor.force_flush, provider


STAGE_NAMES = {
    "Sampler": "sampling",
    "CostProcessor": "cost",
    "ResourceProcessor": "resource",
    "ContentDropper": "content drop",
    "RedactionProcessor": "redaction",
}


def pending_calls(n: int, parsed: Parsed, stream: bool = False) -> list[PendingCall]:
    """What the caller's thread hands the pipeline for one 1 KB-prompt chat call, ``n`` times."""
    extractor = ChatExtractor("openai")
    address = httpx2.URL("https://api.openai.com/v1/")
    kwargs = {
        "model": MODEL,
        "messages": MESSAGES,
        "temperature": 0.2,
        **({"stream": True} if stream else {}),
    }
    out = []
    with kansoku.context(user_id="u-1842", session_id="s-77", tags={"feature": "support"}):
        for _ in range(n):
            p = PendingCall(extractor, _snapshot(kwargs), {"server.address": address})
            if stream:  # as StreamProxy records them: (arrival perf_counter_ns, chunk), usage chunk included
                p.chunks = [
                    (p.start_pc + 300_000 + i * 20_000, c) for i, c in enumerate(parsed.chunks_with_usage)
                ]
            else:
                p.result = parsed.completion
            p.end_pc = p.start_pc + 1_812_000
            out.append(p)
    return out


def one_pass(pend: list[PendingCall], procs: list[Any]) -> float:
    """µs of caller-thread CPU per record for build -> processors -> to_record -> orjson.dumps."""
    dumps, clock = orjson.dumps, time.thread_time_ns
    t = clock()
    for p in pend:
        s = p.build()
        for proc in procs:
            s = proc(s)
        dumps(s.to_record())
    return (clock() - t) / len(pend) / 1000


def record_round(n: int, parsed: Parsed, procs: list[Any], results: Results) -> int:
    """Time each pipeline stage over ``n`` records, then one pass per record; returns record bytes."""
    clock = time.thread_time_ns
    stages: dict[str, int] = {}
    pend = pending_calls(n, parsed)
    t = clock()
    spans = [p.build() for p in pend]
    stages["build"] = clock() - t
    for proc in procs:
        t = clock()
        spans = [proc(s) for s in spans]
        stages[STAGE_NAMES.get(type(proc).__name__, type(proc).__name__)] = clock() - t
    t = clock()
    recs = [s.to_record() for s in spans]
    stages["to_record"] = clock() - t
    dumps = orjson.dumps
    t = clock()
    for rec in recs:  # not kept: a list of 1000 fresh 4 KB buffers would time page faults, not orjson
        dumps(rec)
    stages["orjson.dumps"] = clock() - t
    for name, ns in stages.items():
        results.add(f"stage.{name}", ns / n / 1000)
    results.add("stage.sum", sum(stages.values()) / n / 1000)

    results.add("record.single_pass", one_pass(pending_calls(n, parsed), procs))

    n_stream = max(1, n // 5)
    pend = pending_calls(n_stream, parsed, stream=True)
    t = clock()
    for p in pend:
        p.build()
    results.add("stream.build", (clock() - t) / n_stream / 1000)
    results.add("stream.single_pass", one_pass(pending_calls(n_stream, parsed, stream=True), procs))
    return len(dumps(recs[0]))


# -- report -------------------------------------------------------------------------------------------


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


def verdict(dist: Dist, target: float) -> str:
    """Met or missed in every round; else the median, unless rounds disagree by far more than the target."""
    lo, hi = min(dist.values), max(dist.values)
    if hi <= target:
        return "**met**"
    if lo > target:
        return "**missed**"
    if hi - lo > 4 * target:
        return f"not resolved (rounds spread {hi - lo:.0f} µs)"
    return "**met** (median)" if dist.median <= target else "**missed** (median)"


def report(r: Results, meta: dict[str, Any]) -> str:
    out: list[str] = [SECTION, ""]
    add = out.append
    add(
        f"Measured {meta['date']} with `{meta['command']}`: {meta['rounds']} rounds; per round "
        f"{meta['calls']} openai chat calls and {meta['streams']} streamed calls, {meta['micro']} stub "
        f"calls and spans, {meta['micro_streams']} stub streams, {meta['calls']} records; each in >= 8 "
        "blocks ordered A B B A."
    )
    add("")
    add(
        f"Machine: {meta['cpu']}, {meta['cores']} cores ({meta['affinity']} usable), shared: load average "
        f"{meta['load']} at start and {meta['load_end']} at the end. Linux {platform.release()}, CPython "
        f"{platform.python_version()}. kansoku {meta['kansoku']} (commit {meta['commit']} + working tree), "
        f"openai {version('openai')}, httpx2 {version('httpx2')}, pydantic {version('pydantic')}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}, orjson {version('orjson')}."
    )
    add("")
    if not meta["redact"]:
        add(
            "**Redaction not measured:** `kansoku.redact` has no `RedactionProcessor` yet, so the default "
            "processors cannot be built (`kansoku.init()` with default settings raises ImportError); "
            "this run uses `redact=False`. Rerun once redaction lands."
        )
        add("")
    add(
        "Figures: median [min, max] over rounds, in µs. *Caller CPU* is `time.thread_time()` of the "
        "calling thread (the pipeline thread's work is not in it); *added* is instrumented - plain over "
        "adjacent blocks; ratios to the OTel span are taken per round. *Wrapper alone* times kansoku's "
        "wrapper around a stub that returns the already-parsed openai objects at once: the same code as "
        "through openai, without the client's ~1 ms of noise."
    )
    add("")
    add("### Against the targets")
    add("")
    add("| what | µs | target | verdict | vs OTel span (CPU) |")
    add("|---|---|---|---|---|")
    caller, record = TARGET_CALLER_US, TARGET_RECORD_US
    rows = [
        ("caller CPU added per chat call, wrapper alone", "stub.chat.added.cpu", caller),
        ("caller CPU added per chat call, through openai", "openai.chat.added.cpu", caller),
        (f"caller CPU added per streamed call ({STREAM_CHUNKS} chunks), wrapper alone",
         "stub.stream.added.cpu", caller),
        ("caller CPU added per streamed call, through openai", "openai.stream.added.cpu", caller),
        ("same, when the caller asks for usage itself", "openai.stream_usage.added.cpu", caller),
        ("CPU per record, 1 KB prompt: capture + build + processors + serialisation", "record.total", record),
        (f"CPU per record, streamed call ({STREAM_CHUNKS} chunks), same stages", "stream.total", record),
    ]  # fmt: skip
    for label, key, target in rows:
        dist, ratio = r[key], r["ratio." + key]
        add(f"| {label} | {dist.fmt()} | ≤ {target:g} | {verdict(dist, target)} | {ratio.fmt(2)} |")
    kspan, otel = r["kspan.cpu"], r["otel.cpu"]
    add(
        f"| `kansoku.span()` enter/exit, 6 attributes | {kspan.fmt()} | below an OTel span | "
        f"{verdict(r['ratio.kspan.cpu'], 1.0)} | {r['ratio.kspan.cpu'].fmt(2)} |"
    )
    add(f"| OTel SDK span, 6 attributes, BatchSpanProcessor (local provider) | {otel.fmt()} | | | 1 |")
    add("")
    add("### Per call")
    add("")
    add("| workload | caller CPU | wall | process CPU, all threads, incl. flush |")
    add("|---|---|---|---|")
    for key, label, digits in (
        ("openai.chat", "openai `chat.completions.create`", 1),
        ("openai.stream", f"openai `create(stream=True)`, {STREAM_CHUNKS} chunks read", 1),
        ("openai.stream_usage", "same, caller passes `stream_options={'include_usage': True}`", 1),
        ("stub.chat", "wrapper alone, chat", 2),
        ("stub.stream", f"wrapper alone, stream of {STREAM_CHUNKS} chunks", 2),
    ):
        for part, name in (("plain", "plain"), ("inst", "instrumented"), ("added", "**added**")):
            cells = " | ".join(r[f"{key}.{part}.{w}"].fmt(digits) for w in ("cpu", "wall", "proc"))
            add(f"| {label} — {name} | {cells} |")
    for key, label in (
        ("kspan", "`kansoku.span()`, 6 attributes"),
        ("otel", "OTel `start_as_current_span`, 6 attributes"),
    ):
        add(f"| {label} | {' | '.join(r[f'{key}.{w}'].fmt(2) for w in ('cpu', 'wall', 'proc'))} |")
    add("")
    add(
        "Wall time above caller CPU means the thread waited: for the GIL, or for a core on this shared "
        "machine. The process-CPU column adds the pipeline and export threads (kansoku is flushed at the "
        "end of each block, inside that window); the exporter discards batches, so serialisation is not "
        "in it."
    )
    add("")
    add(f"### CPU per record, one thread ({PROMPT_BYTES} B prompt, {meta['record_bytes']} B JSON record)")
    add("")
    add("| stage | µs per record |")
    add("|---|---|")
    for key in [k for k in r.d if k.startswith("stage.") and k != "stage.sum"]:
        name = key.removeprefix("stage.")
        if name == "to_record" and not meta["redact"]:
            add("| redaction | not measured (no `RedactionProcessor` yet) |")
        add(f"| {name} | {r[key].fmt(2)} |")
    add(f"| sum of stages | {r['stage.sum'].fmt(2)} |")
    add(
        f"| one pass per record (build → processors → to_record → dumps) | {r['record.single_pass'].fmt(2)} |"
    )
    add(f"| + capture on the caller's thread (wrapper alone) = **total** | {r['record.total'].fmt(2)} |")
    if not meta["redact"]:
        left = TARGET_RECORD_US - r["record.total"].median
        add(f"| budget left for redaction within {TARGET_RECORD_US:g} µs | {left:.1f} |")
    add(f"| streamed call, {STREAM_CHUNKS} chunks: build | {r['stream.build'].fmt(2)} |")
    add(f"| streamed call: one pass | {r['stream.single_pass'].fmt(2)} |")
    add(f"| streamed call: + capture (wrapper alone) = **total** | {r['stream.total'].fmt(2)} |")
    add("")
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------------


def profile(
    stubs: dict[str, Callable[[int], None]], parsed: Parsed, procs: list[Any], switch: KansokuSwitch
) -> int:
    """Where the time goes: cProfile of the wrapper alone (caller's thread) and of record building."""
    import cProfile
    import pstats

    switch.set(True)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("caller's thread: 20000 chat calls, wrapper alone", lambda: stubs["chat.inst"](20_000)),
        ("caller's thread: 500 streamed calls, wrapper alone", lambda: stubs["stream.inst"](500)),
    ]
    for title, job in jobs:
        kansoku.flush()
        prof = cProfile.Profile()
        prof.runcall(job)
        print(f"\n=== {title}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    switch.set(False)
    for title, stream in (("pipeline: 2000 chat records", False), ("pipeline: 200 streamed records", True)):
        pend = pending_calls(200 if stream else 2000, parsed, stream=stream)
        prof = cProfile.Profile()
        prof.runcall(one_pass, pend, procs)
        print(f"\n=== {title} (build, processors, to_record, orjson.dumps)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 7; quick 5)")
    ap.add_argument(
        "--calls",
        type=int,
        default=None,
        help="openai chat calls per round (default 600; streams, stub calls and records scale with it)",
    )
    ap.add_argument("--quick", action="store_true", help="CI smoke run, < 10 s, does not write RESULTS.md")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                    help="write bench/RESULTS.md (default: yes, except with --quick)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--cpus", default=None, help="pin the process to these CPUs, e.g. 1 or 0,1")
    ap.add_argument(
        "--profile", action="store_true", help="only print cProfile of the caller path and a record"
    )
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 7)
    args.calls = args.calls or (40 if args.quick else 600)
    if args.rounds < 1 or args.calls < 1:
        ap.error("--rounds and --calls must be positive")
    if args.write is None:
        args.write = not args.quick
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    started = time.perf_counter()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    redact = redaction_available()
    if not redact:
        print(
            "note: kansoku.redact has no RedactionProcessor yet; measuring with redact=False", file=sys.stderr
        )
    settings = Settings(service_name="bench", redact=redact)
    procs = _processors(settings)

    client = make_client()
    parsed = Parsed.fetch(client)
    switch = KansokuSwitch(redact)
    chat, stream, stream_usage = openai_loops(client)
    stubs = stub_loops(parsed)
    ksp, otel, otel_flush, provider = span_loops()
    if args.profile:
        provider.shutdown()
        return profile(stubs, parsed, procs, switch)

    def flush() -> bool:
        return kansoku.flush(10.0)

    def both(key: str) -> tuple[Variant, Variant]:
        return Variant("plain", True, stubs[f"{key}.plain"], flush), Variant(
            "inst", True, stubs[f"{key}.inst"], flush
        )

    # (plain, instrumented, calls per round, calls per block); a stream reads STREAM_CHUNKS chunks.
    streams = max(4, args.calls // 10)
    micro = args.calls * 10
    micro_streams = max(4, args.calls // 2)
    pairs = {
        "openai.chat": (Variant("plain", False, chat), Variant("inst", True, chat, flush), args.calls),
        "openai.stream": (Variant("plain", False, stream), Variant("inst", True, stream, flush), streams),
        "openai.stream_usage": (
            Variant("plain", False, stream_usage),
            Variant("inst", True, stream_usage, flush),
            streams,
        ),
        "stub.chat": (*both("chat"), micro),
        "stub.stream": (*both("stream"), micro_streams),
        "spans": (Variant("kspan", True, ksp, flush), Variant("otel", True, otel, otel_flush), micro),
    }

    def block_of(total: int) -> int:
        return max(1, min(1000, total // 8))  # >= 8 blocks per variant and round: 4 A B B A pairs

    # Warm up every path (imports, caches, price-name resolution) before anything is timed.
    for plain, inst, total in pairs.values():
        ab_round(plain, inst, max(2, total // 10), max(1, total // 20), switch)
    record_round(min(50, args.calls), parsed, procs, Results())

    r = Results()
    record_bytes = 0
    for rnd in range(args.rounds):
        gc.collect()
        t0 = time.perf_counter()
        for key, (plain, inst, total) in pairs.items():
            a, b = ab_round(plain, inst, total, block_of(total), switch)
            if key != "spans":
                r.pair(key, a, b)
                continue
            for name, acc in (("kspan", a), ("otel", b)):
                for what in ("cpu", "wall", "proc"):
                    r.add(f"{name}.{what}", acc.per_call(what))
        switch.set(False)
        record_bytes = record_round(args.calls, parsed, procs, r)
        r.add("record.total", r.last("stub.chat.added.cpu") + r.last("record.single_pass"))
        r.add("stream.total", r.last("stub.stream.added.cpu") + r.last("stream.single_pass"))
        otel_cpu = r.last("otel.cpu")
        for key in RATIO_KEYS:
            r.add(f"ratio.{key}", r.last(key) / otel_cpu)
        print(f"round {rnd + 1}/{args.rounds}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    switch.set(False)
    provider.shutdown()

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
        "rounds": args.rounds,
        "calls": args.calls,
        "streams": streams,
        "micro": micro,
        "micro_streams": micro_streams,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "load": load,
        "load_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kansoku": kansoku.__version__,
        "commit": git_commit(),
        "redact": redact,
        "record_bytes": record_bytes,
    }
    section = report(r, meta)
    print(section)
    print(f"(took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    if args.write:
        write_section(args.results, section, SECTION)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Exporters and the SDK lifecycle as a user sees them.

File (one JSON line per record, rotation), ``stdout:``, ``logging:``, the native HTTP exporter
(wire format, status mapping, retries), export URL parsing, secrets kept out of reprs and logs,
``init``/``shutdown``/``stats``, configuration errors, and sampling.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import kansoku
from helpers.collector import Collector
from helpers.sdk import Start, channel, free_port, started_sdk, wait_until
from kansoku.export import (
    ExportOptions,
    ExportResult,
    FileExporter,
    LoggingExporter,
    NativeHTTPExporter,
    StdoutExporter,
    create_exporter,
)
from kansoku.model import LLM_FIELDS, SPAN_FIELDS, LLMCall, Span, new_span_id, new_trace_id
from kansoku.sdk._state import submit
from kansoku.testing import InMemoryExporter

API_KEY = "ksk-canary-3f9a1c77e0b24d58"
REDACT_KEY = "rk-canary-d41d8cd98f00b204"


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Start]:
    """``start(*exporters, **settings)`` with test defaults; ``kansoku.shutdown()`` always runs after."""
    with started_sdk(monkeypatch, tmp_path, service_name="export-tests") as start:
        yield start


def make_span(
    name: str = "step",
    *,
    trace_id: str | None = None,
    status: str = "ok",
    latency_ms: float = 1.0,
    llm: LLMCall | None = None,
) -> Span:
    start = time.time_ns()
    return Span(
        trace_id=trace_id or new_trace_id(),
        span_id=new_span_id(),
        name=name,
        start_ns=start,
        end_ns=start + int(latency_ms * 1_000_000),
        status=status,
        error_type="server_error" if status == "error" else None,
        llm=llm,
    )


def llm_span() -> Span:
    return make_span(
        "chat gpt-4o-mini",
        llm=LLMCall(provider="openai", model="gpt-4o-mini", input_tokens=12, output_tokens=3),
    )


# -- file exporter ------------------------------------------------------------------------------------


def test_file_exporter_writes_one_json_line_per_record_with_public_field_names(sdk, tmp_path):
    path = tmp_path / "logs" / "calls.jsonl"
    sdk(f"file://{path}", service_name="support-bot")
    plain, call = make_span("retrieve"), llm_span()
    submit(plain)
    submit(call)
    assert kansoku.flush()

    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    by_id = {r["span_id"]: r for r in records}
    assert set(by_id[plain.span_id]) == set(SPAN_FIELDS)
    assert set(by_id[call.span_id]) == set(SPAN_FIELDS) | set(LLM_FIELDS)
    assert by_id[plain.span_id]["type"] == "span"
    assert by_id[call.span_id]["type"] == "llm_call"
    assert by_id[call.span_id]["model"] == "gpt-4o-mini"
    assert by_id[call.span_id]["input_tokens"] == 12
    assert {r["service"] for r in records} == {"support-bot"}


@pytest.mark.parametrize("backups", [pytest.param(0, id="no-backups"), pytest.param(2, id="two-backups")])
def test_file_rotation_keeps_the_configured_number_of_backups(tmp_path, backups):
    path = tmp_path / "calls.jsonl"
    exporter = FileExporter(path, max_bytes=1024, backups=backups)
    names = [f"record-{i:03d}" for i in range(40)]
    try:
        for name in names:
            assert exporter.export([make_span(name)]) is ExportResult.SUCCESS
    finally:
        exporter.shutdown()

    files = [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]
    assert sorted(tmp_path.iterdir()) == sorted(files), "exactly the live file plus `backups` old ones"
    for f in files:
        assert 0 < f.stat().st_size <= 1024
    # Oldest backup first: together they are the newest records, contiguous and in order.
    kept = [json.loads(line)["name"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert kept == names[-len(kept) :]


@pytest.mark.parametrize(
    ("query", "max_bytes", "backups"),
    [
        pytest.param("?max_bytes=1kb&backups=2", 1024, 2, id="1kb-2-backups"),
        pytest.param("?max_bytes=1.5mb", int(1.5 * 1024**2), 5, id="1.5mb"),
        pytest.param("?max_bytes=4096&backups=0", 4096, 0, id="plain-bytes"),
        pytest.param("?max_bytes=2G", 2 * 1024**3, 5, id="2g"),
        pytest.param("", 100 * 1024**2, 5, id="defaults"),
    ],
)
def test_file_url_parsing(tmp_path, query, max_bytes, backups):
    target = f"file://{tmp_path}/calls.jsonl{query}"
    exporter = create_exporter(target)
    assert isinstance(exporter, FileExporter)
    assert exporter.path == tmp_path / "calls.jsonl"
    assert exporter.max_bytes == max_bytes
    assert exporter.backups == backups


@pytest.mark.parametrize(
    ("query", "named"),
    [
        pytest.param("?max_bytes=lots", "max_bytes", id="bad-size"),
        pytest.param("?backups=two", "backups", id="bad-backups"),
    ],
)
def test_file_url_bad_options_raise_export_error(tmp_path, query, named):
    with pytest.raises(kansoku.ExportError) as info:
        create_exporter(f"file://{tmp_path}/calls.jsonl{query}")
    assert named in str(info.value)


def test_file_url_rotation_end_to_end(sdk, tmp_path):
    path = tmp_path / "calls.jsonl"
    sdk(f"file://{path}?max_bytes=1kb&backups=2", batch_size=1)
    for i in range(30):
        with kansoku.span(f"step-{i}"):
            pass
    assert kansoku.flush()
    assert sorted(p.name for p in tmp_path.glob("calls.jsonl*")) == [
        "calls.jsonl",
        "calls.jsonl.1",
        "calls.jsonl.2",
    ]


# -- stdout and logging ---------------------------------------------------------------------------------


def test_stdout_exporter_writes_json_lines(sdk, capsys):
    sdk("stdout:")
    spans = [make_span(f"s{i}") for i in range(3)]
    for s in spans:
        submit(s)
    assert kansoku.flush()
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["span_id"] for r in records] == [s.span_id for s in spans]
    assert all(set(r) == set(SPAN_FIELDS) for r in records)


@pytest.mark.parametrize(
    ("target", "logger_name"),
    [
        pytest.param("logging:", "kansoku.calls", id="default-logger"),
        pytest.param("logging:app.llm", "app.llm", id="named"),
    ],
)
def test_logging_exporter_emits_records_with_extra(sdk, caplog, target, logger_name):
    caplog.set_level(logging.INFO, logger=logger_name)
    sdk(target)
    ok, failed = make_span("fine"), make_span("broken", status="error")
    submit(ok)
    submit(failed)
    assert kansoku.flush()
    mine = [r for r in caplog.records if r.name == logger_name]
    assert len(mine) == 2
    by_id = {r.kansoku["span_id"]: r for r in mine}
    assert set(by_id) == {ok.span_id, failed.span_id}
    for rec in mine:
        structured = rec.kansoku
        assert json.loads(rec.getMessage()) == structured
        assert set(structured) == set(SPAN_FIELDS)
    assert by_id[ok.span_id].levelno == logging.INFO
    assert by_id[failed.span_id].levelno == logging.WARNING


def test_stdout_and_logging_exporters_do_not_spool():
    assert StdoutExporter().spool is False
    assert LoggingExporter().spool is False
    assert FileExporter("/nonexistent/never-opened.jsonl").spool is False


# -- the native HTTP exporter ---------------------------------------------------------------------------


def test_native_http_sends_gzip_json_batches_with_bearer_key(sdk):
    with Collector() as collector:
        sdk(collector.url, api_key=API_KEY, service_name="wire")
        spans = [make_span("plain"), llm_span()]
        for s in spans:
            submit(s)
        assert kansoku.flush()
        requests, arrived = collector.snapshot()
    assert collector.errors == []
    assert arrived == [s.span_id for s in spans]
    (req,) = requests
    assert req.path == "/api/v1/ingest"
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    doc = json.loads(gzip.decompress(req.body))
    assert doc["schema"] == "kansoku.batch/v1"
    assert set(doc["records"][0]) == set(SPAN_FIELDS)
    assert set(doc["records"][1]) == set(SPAN_FIELDS) | set(LLM_FIELDS)
    assert {r["service"] for r in doc["records"]} == {"wire"}


def test_native_http_without_key_sends_no_authorization(sdk):
    with Collector() as collector:
        sdk(collector.url)
        submit(make_span())
        assert kansoku.flush()
        (req,), _ = collector.snapshot()
    assert "authorization" not in req.headers


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(200, ExportResult.SUCCESS, id="200"),
        pytest.param(202, ExportResult.SUCCESS, id="202"),
        pytest.param(400, ExportResult.REJECTED, id="400"),
        pytest.param(401, ExportResult.REJECTED, id="401"),
        pytest.param(413, ExportResult.REJECTED, id="413"),
        pytest.param(408, ExportResult.RETRY, id="408"),
        pytest.param(429, ExportResult.RETRY, id="429"),
        pytest.param(500, ExportResult.RETRY, id="500"),
        pytest.param(503, ExportResult.RETRY, id="503"),
    ],
)
def test_native_http_status_mapping(status, expected):
    with Collector(statuses=[status]) as collector:
        exporter = NativeHTTPExporter(collector.url, api_key=API_KEY, timeout=5)
        assert exporter.export([make_span()]) is expected


def test_native_http_connection_refused_is_retryable():
    exporter = NativeHTTPExporter(f"http://127.0.0.1:{free_port()}", timeout=5)
    assert exporter.export([make_span()]) is ExportResult.RETRY


@pytest.mark.parametrize("status", [pytest.param(500, id="500"), pytest.param(429, id="429")])
def test_native_http_retryable_status_is_spooled_and_delivered_later(sdk, status):
    with Collector(statuses=[status]) as collector:
        sdk(collector.url, batch_size=10)
        spans = [make_span(f"s{i}") for i in range(10)]
        for s in spans:
            submit(s)
        assert kansoku.flush()
        name = f"http:127.0.0.1:{collector.port}"
        assert channel(name)["failures"] == 1
        assert channel(name)["spooled"] == 10
        assert wait_until(lambda: len(collector.snapshot()[1]) == 10, timeout=20), channel(name)
        requests, arrived = collector.snapshot()
    assert arrived == [s.span_id for s in spans]
    assert [r.status for r in requests] == [status, 200]
    counters = channel(name)
    assert counters["replayed"] == 10
    assert counters["dropped"] == 0


def test_native_http_400_is_rejected_counted_and_not_retried(sdk):
    with Collector(statuses=[400]) as collector:
        sdk(collector.url, batch_size=10)
        refused = [make_span(f"bad{i}") for i in range(10)]
        for s in refused:
            submit(s)
        assert kansoku.flush()
        name = f"http:127.0.0.1:{collector.port}"
        counters = channel(name)
        assert counters["rejected"] == 10
        assert counters["dropped"] == 10
        assert counters["spooled"] == 0
        assert counters["spool_batches"] == 0
        # Later data flows normally and the rejected batch never comes back.
        later = [make_span(f"good{i}") for i in range(3)]
        for s in later:
            submit(s)
        assert kansoku.flush()
        requests, arrived = collector.snapshot()
    assert [r.status for r in requests] == [400, 200]
    assert arrived == [s.span_id for s in later]


# -- export targets by URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("kafka://broker:9092/topic", id="kafka"),
        pytest.param("s3://bucket/key", id="s3"),
        pytest.param("nonsense", id="no-scheme"),
    ],
)
def test_unknown_scheme_raises_export_error_naming_known_schemes(sdk, target):
    with pytest.raises(kansoku.ExportError) as info:
        create_exporter(target)
    message = str(info.value)
    for known in ("file", "stdout", "logging", "http", "https"):
        assert known in message
    with pytest.raises(kansoku.ExportError):
        sdk(target)


def test_http_target_builds_native_exporter():
    exporter = create_exporter("http://collector.internal:8080", ExportOptions(api_key=API_KEY))
    assert isinstance(exporter, NativeHTTPExporter)
    assert exporter.url == "http://collector.internal:8080/api/v1/ingest"
    assert exporter.name == "http:collector.internal:8080"


@pytest.mark.parametrize(
    "target",
    [pytest.param("http://collector:notaport", id="http"), pytest.param("kafka://broker:xx", id="unknown")],
)
def test_bad_port_raises_export_error(target):
    with pytest.raises(kansoku.ExportError):
        create_exporter(target)


# -- secrets stay out of reprs and logs ------------------------------------------------------------------


def test_api_key_not_in_reprs(sdk):
    exporter = create_exporter("https://collector.example", ExportOptions(api_key=API_KEY))
    assert API_KEY not in repr(exporter)
    assert API_KEY not in str(exporter)
    assert API_KEY not in repr(ExportOptions(api_key=API_KEY))
    settings = sdk("stdout:", api_key=API_KEY, redact_key=REDACT_KEY)
    for text in (repr(settings), str(settings), repr(kansoku.stats())):
        assert API_KEY not in text
        assert REDACT_KEY not in text
    assert "[secure]" in repr(settings)


def test_api_key_never_logged(sdk, caplog):
    caplog.set_level(logging.DEBUG)
    with Collector(statuses=[500, 400, 401, 429]) as collector:
        sdk(collector.url, f"http://127.0.0.1:{free_port()}", api_key=API_KEY, batch_size=5)
        for i in range(20):
            submit(make_span(f"s{i}"))
            if i % 5 == 4:
                assert kansoku.flush()
        assert wait_until(lambda: len(collector.snapshot()[0]) >= 5, timeout=20)
        kansoku.shutdown()
    assert caplog.records, "the failures above should have been logged at debug level"
    assert API_KEY not in caplog.text
    for rec in caplog.records:
        assert API_KEY not in rec.getMessage()
        assert API_KEY not in repr(rec.args)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(f"http://user:{API_KEY}@", id="userinfo"),
        pytest.param(f"http://?api_key={API_KEY}", id="query"),
    ],
)
def test_export_error_does_not_echo_credentials(target):
    with pytest.raises(kansoku.ExportError) as info:
        create_exporter(target)
    assert API_KEY not in str(info.value)


# -- lifecycle: init, shutdown, stats ------------------------------------------------------------------


def test_stats_before_init_says_disabled(sdk):
    assert kansoku.stats() == {"enabled": False}
    with kansoku.span("nobody listens"):
        pass
    assert kansoku.flush() is True


def test_shutdown_flushes_pending_spans(sdk):
    memory = InMemoryExporter()
    sdk(memory, flush_interval_ms=3_600_000, batch_size=512)
    for i in range(10):
        with kansoku.span(f"pending-{i}"):
            pass
    assert memory.spans == []  # still waiting for the (hour-long) flush interval
    kansoku.shutdown()
    assert [s.name for s in memory.spans] == [f"pending-{i}" for i in range(10)]
    assert kansoku.stats() == {"enabled": False}


def test_init_twice_replaces_the_configuration(sdk):
    first, second = InMemoryExporter("first"), InMemoryExporter("second")
    sdk(first, service_name="one", flush_interval_ms=3_600_000)
    with kansoku.span("before"):
        pass
    sdk(second, service_name="two")
    with kansoku.span("after"):
        pass
    assert kansoku.flush()
    assert [(s.name, s.service) for s in first.spans] == [("before", "one")]
    assert [(s.name, s.service) for s in second.spans] == [("after", "two")]
    assert set(kansoku.stats()["exporters"]) == {"second"}


@pytest.mark.parametrize("how", [pytest.param("argument", id="argument"), pytest.param("env", id="env")])
def test_disabled_records_nothing(sdk, monkeypatch, how):
    memory = InMemoryExporter()
    running = InMemoryExporter("running")
    sdk(running)
    if how == "env":
        monkeypatch.setenv("KANSOKU_DISABLED", "true")
        settings = sdk(memory)
    else:
        settings = sdk(memory, disabled=True)
    assert settings.disabled is True
    with kansoku.span("ignored"):
        pass
    submit(make_span())
    assert kansoku.flush()
    assert memory.spans == []
    assert running.spans == []
    assert kansoku.stats() == {"enabled": False}


@pytest.mark.parametrize(
    ("settings", "env", "named"),
    [
        pytest.param({"sample_rate": 2}, {}, "sample_rate", id="sample-rate-2"),
        pytest.param({"sample_rate": -0.1}, {}, "sample_rate", id="sample-rate-negative"),
        pytest.param({"redact": True, "redact_mode": "hash"}, {}, "redact_key", id="hash-without-key"),
        pytest.param({"redact_mode": "sha1"}, {}, "redact_mode", id="unknown-redact-mode"),
        pytest.param({"sampel_rate": 0.5}, {}, "sampel_rate", id="unknown-setting"),
        pytest.param({"queue_size": 0}, {}, "queue_size", id="queue-size-0"),
        pytest.param({"queue_size": 10, "batch_size": 50}, {}, "batch_size", id="batch-bigger-than-queue"),
        pytest.param({"flush_interval_ms": "soon"}, {}, "flush_interval_ms", id="interval-not-a-number"),
        pytest.param({}, {"KANSOKU_SAMPLE_RATE": "abc"}, "KANSOKU_SAMPLE_RATE", id="env-sample-rate-abc"),
        pytest.param({}, {"KANSOKU_DISABLED": "maybe"}, "KANSOKU_DISABLED", id="env-disabled-maybe"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_setting(sdk, monkeypatch, settings, env, named):
    memory = InMemoryExporter()
    sdk(memory)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(kansoku.ConfigError) as info:
        sdk(InMemoryExporter("replacement"), **settings)
    assert info.value.setting == named
    assert named in str(info.value)
    # A rejected configuration leaves the running one in place.
    with kansoku.span("still recorded"):
        pass
    assert kansoku.flush()
    assert [s.name for s in memory.spans] == ["still recorded"]


# -- sampling ---------------------------------------------------------------------------------------------


def test_sample_rate_zero_keeps_only_errors_and_slow_spans(sdk):
    memory = InMemoryExporter()
    sdk(memory, sample_rate=0.0, slow_ms=1000)
    fast_ok = [make_span(f"ok{i}", latency_ms=5) for i in range(50)]
    errors = [make_span(f"err{i}", status="error", latency_ms=5) for i in range(7)]
    slow = [make_span(f"slow{i}", latency_ms=1500) for i in range(4)]
    for s in [*fast_ok, *errors, *slow]:
        submit(s)
    assert kansoku.flush()
    kept = {s.span_id: s for s in memory.spans}
    assert set(kept) == {s.span_id for s in [*errors, *slow]}
    assert {kept[s.span_id].attributes["kansoku.sampling"] for s in errors} == {"error"}
    assert {kept[s.span_id].attributes["kansoku.sampling"] for s in slow} == {"slow"}
    assert all(s.attributes["kansoku.sample_rate"] == 0.0 for s in kept.values())
    stats = kansoku.stats()
    assert stats["dropped"] == {"sampled_out": 50}
    assert stats["received"] == 61


def test_sample_rate_half_keeps_about_half_of_traces_and_whole_traces(sdk):
    memory = InMemoryExporter()
    sdk(memory, sample_rate=0.5, queue_size=20_000, batch_size=500)
    rng = random.Random(20240501)
    traces = [f"{rng.getrandbits(128):032x}" for _ in range(2000)]
    spans_by_trace: dict[str, list[Span]] = {}
    for t in traces:
        spans_by_trace[t] = [make_span(f"{t[:6]}-{k}", trace_id=t) for k in range(3)]
    # Interleave traces so a decision cannot depend on arrival order.
    for k in range(3):
        for t in traces:
            submit(spans_by_trace[t][k])
    assert kansoku.flush(timeout=30)

    kept_per_trace: dict[str, int] = {}
    for s in memory.spans:
        kept_per_trace[s.trace_id] = kept_per_trace.get(s.trace_id, 0) + 1
    assert set(kept_per_trace.values()) <= {3}, "a trace is kept or dropped whole"
    kept = len(kept_per_trace)
    assert 0.45 * len(traces) <= kept <= 0.55 * len(traces)
    assert kansoku.stats()["dropped"]["sampled_out"] == 3 * (len(traces) - kept)
    assert all(s.attributes["kansoku.sampling"] == "sampled" for s in memory.spans)


def test_sampling_decision_is_the_same_in_every_process(sdk):
    """Two services at the same rate keep the same traces (the decision hashes the trace id)."""
    rng = random.Random(7)
    traces = [f"{rng.getrandbits(128):032x}" for _ in range(300)]
    decisions: list[set[str]] = []
    for service in ("frontend", "backend"):
        memory = InMemoryExporter()
        sdk(memory, sample_rate=0.3, service_name=service)
        for t in traces:
            submit(make_span(service, trace_id=t))
        assert kansoku.flush()
        decisions.append({s.trace_id for s in memory.spans})
    assert decisions[0] == decisions[1]
    assert 0 < len(decisions[0]) < len(traces)

"""The store contract, run against every backend: DuckDB, one ClickHouse server, and a
two-shard ClickHouse cluster behind a ``Distributed`` table.

The ClickHouse URLs come from ``KANSOKU_TEST_CLICKHOUSE_URL`` and
``KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL`` (``.ci/services.sh`` starts the servers and sets them).
Unset, those backends are skipped locally and fail under CI (``CI`` set): CI never skips them.
Each ClickHouse test gets a fresh database, dropped afterwards.
"""

# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
# mypy: disable-error-code="union-attr,operator,misc,type-arg"
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import urllib.parse
import uuid

import pytest

from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.store import (
    HISTOGRAM_FIELDS,
    QUANTILE_FIELDS,
    CallQuery,
    ClickHouseStore,
    DuckDBStore,
    HistogramBin,
    HistogramQuery,
    StatsQuery,
    Store,
    rows_ndjson,
)
from kansoku.store._clickhouse_http import HTTPClient
from kansoku.store._clickhouse_url import parse_clickhouse_url

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
DAY = 86_400 * SEC
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4")
DEPARTMENTS = ("support", "sales", "eng")
ERRORS = ("rate_limit", "timeout", "server_error")

BACKENDS = ("duckdb", "clickhouse", "clickhouse_cluster")
CLICKHOUSE_ENV = {
    "clickhouse": "KANSOKU_TEST_CLICKHOUSE_URL",
    "clickhouse_cluster": "KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL",
}


def clickhouse_url(kind: str) -> str:
    """The test server's URL with a fresh database name; skips (locally) or fails (CI) if unset."""
    env = CLICKHOUSE_ENV[kind]
    url = os.environ.get(env)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{env} is not set: CI must run the ClickHouse tests (source .ci/services.sh)")
        pytest.skip(f"{env} is not set (source .ci/services.sh to run the ClickHouse tests)")
    parts = urllib.parse.urlsplit(url)
    database = f"kansoku_test_{uuid.uuid4().hex[:16]}"
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def drop_clickhouse_database(url: str) -> None:
    """Drop the URL's database on every server it names (all nodes of a cluster)."""
    cfg = parse_clickhouse_url(url)
    endpoints = [cfg.endpoint]
    if cfg.nodes:
        endpoints += [dataclasses.replace(cfg.endpoint, host=h, port=p) for h, p in cfg.nodes]
    for ep in {(e.host, e.port): e for e in endpoints}.values():
        client = HTTPClient(ep, None, timeout=30)
        try:
            client.execute(f"DROP DATABASE IF EXISTS `{cfg.database}`")
        finally:
            client.close()


@pytest.fixture(params=BACKENDS)
def open_backend(request, tmp_path):
    """``open_backend(retention_days=30)`` opens (or reopens) this test's store of the backend."""
    opened: list[Store] = []
    url = None
    if request.param != "duckdb":
        url = clickhouse_url(request.param)

    def open_(retention_days: int | None = 30) -> Store:
        if url is None:
            s: Store = DuckDBStore(str(tmp_path / "kansoku.duckdb"), retention_days=retention_days)
        else:
            s = ClickHouseStore(url, retention_days=retention_days)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
    if url is not None:
        drop_clickhouse_database(url)


@pytest.fixture
def store(open_backend):
    return open_backend()


def _ids(rng: random.Random) -> tuple[str, str]:
    return f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"


def make_calls(n: int, seed: int = 7, t0: int = T0, step: int = SEC) -> list[Span]:
    """Varied LLM calls, one per ``step``; every 10th is an error without output or counts."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        trace_id, span_id = _ids(rng)
        start = t0 + i * step
        err = i % 10 == 3
        model = MODELS[i % 3]
        llm = LLMCall(
            provider="anthropic" if model.startswith("claude") else "openai",
            model=model,
            request_model=model,
            temperature=None if i % 4 == 0 else 0.5,
            parameters={"max_tokens": 100 + i},
            input_messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Question {i}"},
            ],
            output_messages=None if err else [{"role": "assistant", "content": f"Answer {i} about Refunds"}],
            input_tokens=10 + i,
            output_tokens=None if err else 5 + i % 7,
            cached_input_tokens=None if i % 2 else 4,
            total_tokens=None if err else 15 + i + i % 7,
            cost_usd=None if i % 5 == 4 else round(0.001 * (i % 13), 6),
            ttft_ms=None if err else float(20 + i % 17),
            finish_reasons=None if err else ["stop"],
            response_id=f"resp-{i}",
            stream=i % 2 == 0,
            usage_estimated=i % 9 == 0,
        )
        out.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                name=f"chat {model}",
                start_ns=start,
                end_ns=start + (100 + (i * 37) % 900) * 1_000_000,
                kind="client",
                status="error" if err else "ok",
                status_code=429 if err else 200,
                error_type=ERRORS[i % 3] if err else None,
                error_message="boom" if err else None,
                service="bot" if i % 2 else "mail",
                environment="staging" if i % 3 == 1 else "prod",
                region=None,
                user_id=f"u-{i % 5}",
                context_id=f"conv-{i % 4}",
                prompt_id="answer" if i % 2 else "summarize",
                prompt_version=f"v{i % 3}",
                tags={"department": DEPARTMENTS[i % 3], "feature": "search"},
                attributes={"http.route": "/chat", "n": i, "nested": {"a": [1, None]}},
                events=[SpanEvent("first_token", start + 1000, {"i": i})] if i % 2 else [],
                llm=llm,
            )
        )
    return out


def calls(store: Store, **kw) -> list[Span]:
    """Every span of a query, walking all pages."""
    items: list[Span] = []
    cursor = None
    while True:
        page = store.query_calls(CallQuery(cursor=cursor, **kw))
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def test_round_trip_preserves_every_field(store):
    spans = make_calls(30)
    rng = random.Random(1)
    trace_id, root_id = _ids(rng)
    root = Span(trace_id=trace_id, span_id=root_id, name="handle", start_ns=T0, end_ns=T0 + 5 * SEC)
    explicit = dataclasses.replace(spans[0], span_id="00000000000000aa")
    assert spans[0].llm is not None
    explicit.llm = dataclasses.replace(
        spans[0].llm, input_text="typed by hand", output_text=None, output_messages=None
    )
    bare = dataclasses.replace(spans[1], span_id="00000000000000bb", tags={}, attributes={}, events=[])
    bare.llm = LLMCall(provider="openai")
    batch = [*spans, root, explicit, bare]
    assert store.write(batch, project="p") == len(batch)
    got = {s.span_id: s for s in calls(store, project="p", record_type=None, limit=7)}
    assert len(got) == len(batch)
    for s in batch:
        assert got[s.span_id] == s
        assert got[s.span_id].to_record() == s.to_record()
    assert got["00000000000000bb"].llm.input_tokens is None
    assert got[root_id].llm is None


def test_each_filter(store):
    spans = make_calls(60)
    store.write(spans, project="p")

    def ids(**kw):
        return {s.span_id for s in calls(store, project="p", **kw)}

    def expect(pred):
        return {s.span_id for s in spans if pred(s)}

    assert ids() == expect(lambda s: True)
    assert ids(user_id="u-2") == expect(lambda s: s.user_id == "u-2")
    assert ids(context_id="conv-1") == expect(lambda s: s.context_id == "conv-1")
    assert ids(prompt_id="answer") == expect(lambda s: s.prompt_id == "answer")
    assert ids(prompt_version="v2") == expect(lambda s: s.prompt_version == "v2")
    assert ids(model="gpt-4o") == expect(lambda s: s.llm.model == "gpt-4o")
    assert ids(provider="anthropic") == expect(lambda s: s.llm.provider == "anthropic")
    assert ids(error_type="timeout") == expect(lambda s: s.error_type == "timeout")
    assert ids(environment="staging") == expect(lambda s: s.environment == "staging")
    assert ids(service="mail", environment="prod") == expect(
        lambda s: s.service == "mail" and s.environment == "prod"
    )
    assert ids(status="error") == expect(lambda s: s.status == "error")
    assert ids(tags=(("department", "sales"),)) == expect(lambda s: s.tags["department"] == "sales")
    assert ids(tags=(("department", "sales"), ("feature", "search"))) == expect(
        lambda s: s.tags["department"] == "sales"
    )
    assert ids(tags=(("missing", "x"),)) == set()
    assert ids(since_ns=T0 + 10 * SEC, until_ns=T0 + 20 * SEC) == expect(
        lambda s: T0 + 10 * SEC <= s.start_ns < T0 + 20 * SEC
    )
    assert ids(min_latency_ms=500) == expect(lambda s: s.latency_ms >= 500)
    assert ids(min_tokens=50) == expect(lambda s: (s.llm.total_tokens or -1) >= 50)
    assert ids(min_cost=0.005) == expect(lambda s: (s.llm.cost_usd or -1) >= 0.005)
    assert ids(user_id="u-1", model="gpt-4o", status="ok") == expect(
        lambda s: s.user_id == "u-1" and s.llm.model == "gpt-4o" and s.status == "ok"
    )


def test_text_search_is_case_insensitive_substring(store):
    spans = make_calls(30)
    store.write(spans, project="p")
    assert {s.span_id for s in calls(store, project="p", text="answer 1")} == {
        s.span_id for s in spans if s.llm.output_messages and "Answer 1" in s.llm.text_out()
    }
    assert len(calls(store, project="p", text="qUESTION 2")) == 11  # 2, 20..29
    assert len(calls(store, project="p", text="refunds")) == 27
    assert calls(store, project="p", text="100%") == []
    assert calls(store, project="p", text="_") == []


@pytest.mark.parametrize("sort", ["timestamp", "latency_ms", "cost_usd", "total_tokens"])
@pytest.mark.parametrize("descending", [True, False])
def test_pagination_walks_every_row_once_in_order(store, sort, descending):
    # Equal timestamps: three spans per start time.
    spans = []
    for k in range(3):
        spans += make_calls(40, seed=k, step=SEC)
    store.write(spans, project="p")
    got = calls(store, project="p", sort=sort, descending=descending, limit=7)
    assert len(got) == len(spans)
    assert len({s.span_id for s in got}) == len(spans)

    def key(s):
        value = {
            "timestamp": s.start_ns,
            "latency_ms": (s.end_ns - s.start_ns) / 1e6,
            "cost_usd": s.llm.cost_usd,
            "total_tokens": s.llm.total_tokens,
        }[sort]
        missing = value is None
        value = 0 if missing else value
        return (missing, -value if descending else value)

    keys = [key(s) for s in got]
    assert keys == sorted(keys)
    for a, b in itertools.pairwise(got):  # ties broken by span_id in the same direction
        if key(a) == key(b):
            assert (a.span_id > b.span_id) if descending else (a.span_id < b.span_id)


def test_cursor_from_another_sort_is_rejected(store):
    store.write(make_calls(10), project="p")
    page = store.query_calls(CallQuery(project="p", limit=3))
    with pytest.raises(ValueError, match=r"^cursor"):
        CallQuery(project="p", sort="latency_ms", cursor=page.next_cursor)
    with pytest.raises(ValueError, match=r"^cursor"):
        CallQuery(project="p", cursor="not a cursor!")


def test_trace_and_session(store):
    rng = random.Random(3)
    trace_id, root_id = _ids(rng)
    children = make_calls(6, seed=11)
    for i, c in enumerate(children):
        c.trace_id, c.parent_span_id, c.context_id = trace_id, root_id, "conv-x"
        c.start_ns = c.end_ns = T0 + (6 - i) * SEC  # written out of order
    root = Span(
        trace_id=trace_id, span_id=root_id, name="root", start_ns=T0, end_ns=T0 + 9 * SEC, context_id="conv-x"
    )
    store.write([*children, root, *make_calls(20, seed=12)], project="p")
    trace = store.get_trace("p", trace_id)
    assert [s.span_id for s in trace] == [root_id] + [c.span_id for c in reversed(children)]
    session = store.get_session("p", "conv-x")
    assert [s.start_ns for s in session] == sorted(s.start_ns for s in session)
    assert len(session) == 7
    assert store.get_trace("other", trace_id) == []
    assert store.get_session("p", "nope") == []


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


@pytest.mark.parametrize("group_by", ["model", "error_type", "tag:department", "environment"])
def test_stats_grouped_and_bucketed(store, group_by):
    spans = make_calls(300, step=SEC)
    store.write(spans, project="p")
    bucket = 60
    rows = store.stats(
        StatsQuery(project="p", group_by=group_by, bucket_s=bucket, since_ns=T0, until_ns=T0 + 300 * SEC)
    )

    def group_of(s):
        if group_by == "model":
            return s.llm.model
        if group_by == "error_type":
            return s.error_type
        if group_by == "environment":
            return s.environment
        return s.tags["department"]

    expected: dict[tuple, list[Span]] = {}
    for s in spans:
        b = s.start_ns // (bucket * SEC) * (bucket * SEC)
        expected.setdefault((group_of(s), b), []).append(s)
    assert {(r.group, r.bucket_start_ns) for r in rows} == set(expected)
    for r in rows:
        members = expected[(r.group, r.bucket_start_ns)]
        assert r.count == len(members)
        assert r.errors == sum(s.is_error for s in members)
        want_types: dict[str, int] = {}
        for s in members:
            if s.error_type:
                want_types[s.error_type] = want_types.get(s.error_type, 0) + 1
        assert r.errors_by_type == want_types
        lat = [s.latency_ms for s in members]
        for q, got in ((0.5, r.latency_p50), (0.95, r.latency_p95), (0.99, r.latency_p99)):
            assert got == pytest.approx(_quantile(lat, q), rel=0.02)
        ttft = [s.llm.ttft_ms for s in members if s.llm.ttft_ms is not None]
        if ttft:
            assert r.ttft_p95 == pytest.approx(_quantile(ttft, 0.95), rel=0.02)
        else:
            assert r.ttft_p50 is None
        tokens = [s.llm.total_tokens for s in members if s.llm.total_tokens is not None]
        if tokens:
            assert r.tokens_p50 == pytest.approx(_quantile(tokens, 0.5), rel=0.02)
            assert r.tokens_p95 == pytest.approx(_quantile(tokens, 0.95), rel=0.02)
        assert r.input_tokens == sum(s.llm.input_tokens for s in members)
        outs = [s.llm.output_tokens for s in members if s.llm.output_tokens is not None]
        assert r.output_tokens == (sum(outs) if outs else None)
        costs = [s.llm.cost_usd for s in members if s.llm.cost_usd is not None]
        assert r.cost_usd == (pytest.approx(sum(costs)) if costs else None)


def test_stats_overall_and_filtered(store):
    spans = make_calls(90)
    store.write(spans, project="p")
    (row,) = store.stats(StatsQuery(project="p"))
    assert (row.group, row.bucket_start_ns, row.count) == (None, None, 90)
    rows = store.stats(StatsQuery(project="p", group_by="user_id", model="gpt-4o"))
    assert sum(r.count for r in rows) == 30
    assert {r.group for r in rows} == {s.user_id for s in spans if s.llm.model == "gpt-4o"}


def test_failed_calls_count_under_the_requested_model(store):
    """An error has no response model; "error rate by model" must still see it."""
    spans = make_calls(10)
    for s in spans:
        s.status, s.error_type = "error", "rate_limit"
        s.llm.model, s.llm.request_model = None, "gpt-4o"
    store.write(spans, project="p")
    (row,) = store.stats(StatsQuery(project="p", group_by="model"))
    assert (row.group, row.count, row.errors) == ("gpt-4o", 10, 10)
    assert len(store.query_calls(CallQuery(project="p", model="gpt-4o")).items) == 10


def test_projects_are_isolated(store):
    a, b = make_calls(20, seed=1), make_calls(20, seed=2)
    store.write(a, project="A")
    store.write(b, project="B")
    assert {s.span_id for s in calls(store, project="B")} == {s.span_id for s in b}
    assert store.get_trace("B", a[0].trace_id) == []
    assert store.get_session("B", "conv-1") != []
    assert {s.span_id for s in store.get_session("B", "conv-1")} <= {s.span_id for s in b}
    assert sum(r.count for r in store.stats(StatsQuery(project="B"))) == 20
    assert calls(store, project="C") == []
    # The same span id in two projects is two rows.
    assert store.write(a[:5], project="B") == 5


def test_replaying_a_batch_does_not_duplicate(store):
    spans = make_calls(50)
    assert store.write(spans, project="p") == 50
    assert store.write(spans, project="p") == 0
    assert store.write(spans[10:30] + make_calls(5, seed=99, t0=T0 + 1000 * SEC), project="p") == 5
    assert store.write([spans[0], spans[0]], project="p") == 0
    fresh = make_calls(3, seed=5, t0=T0 + 2000 * SEC)
    assert store.write([fresh[0], fresh[0], fresh[1]], project="p") == 2
    assert len(calls(store, project="p")) == 57


def test_retention(open_backend):
    store = open_backend(retention_days=2)
    store.write(make_calls(10, t0=T0, step=DAY // 2), project="p")  # spans over 4.5 days
    store.write(make_calls(4, seed=3, t0=T0, step=DAY), project="q")
    now = T0 + 5 * DAY
    assert store.apply_retention(now) == 6 + 3  # older than T0 + 3 days
    left = calls(store, project="p")
    assert len(left) == 4
    assert min(s.start_ns for s in left) >= now - 2 * DAY
    assert len(calls(store, project="q")) == 1
    assert store.apply_retention(now) == 0
    # Whole days past the cutoff go too (on ClickHouse: dropped partitions, no mutation).
    assert store.apply_retention(now + 30 * DAY) == 5
    assert calls(store, project="p") == []


def test_no_retention_keeps_everything(open_backend):
    keep = open_backend(retention_days=None)
    keep.write(make_calls(3), project="p")
    assert keep.apply_retention(T0 + 1000 * DAY) == 0
    assert len(calls(keep, project="p")) == 3


def test_reopen_keeps_data_and_migrations_are_idempotent(open_backend):
    s = open_backend()
    s.write(make_calls(5), project="p")
    version = s.schema_version
    s.close()
    s = open_backend()
    assert s.schema_version == version >= 1
    assert len(calls(s, project="p")) == 5
    assert s.write(make_calls(5), project="p") == 0


def test_load_takes_encoded_rows_of_several_projects(store):
    a, b = make_calls(20, seed=1), make_calls(10, seed=2, t0=T0 + 5 * SEC)
    rows = rows_ndjson(a, "A") + rows_ndjson(b, "B")
    lo, hi = T0, T0 + 30 * SEC
    assert store.load(rows, lo, hi) == 30
    assert store.load(rows, lo, hi) == 0  # a replayed batch
    assert store.load(b"", lo, hi) == 0
    got = {s.span_id: s for s in calls(store, project="B")}
    assert got == {s.span_id: s for s in b}
    assert [s.latency_ms for s in calls(store, project="A", sort="latency_ms", limit=3)] == sorted(
        (s.latency_ms for s in a), reverse=True
    )
    with pytest.raises(ValueError, match=r"^lo_ns"):
        store.load(rows, hi, lo)


INJECTIONS = (
    "' OR 1=1 --",
    '"; DROP TABLE spans; --',
    "x') OR ('1'='1",
    "%",
    "\\",
    "'; DELETE FROM spans; --",
    "$p0",
    "] OR 1=1 --",
)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_payloads_find_nothing(store, payload):
    store.write(make_calls(20, seed=1), project="victim")
    store.write(make_calls(5, seed=2), project="p")
    for name in (
        "user_id",
        "context_id",
        "prompt_id",
        "prompt_version",
        "model",
        "provider",
        "error_type",
        "text",
    ):
        assert store.query_calls(CallQuery(project="p", **{name: payload})).items == [], name
        assert store.stats(StatsQuery(project="p", **{name: payload})) == [], name
        assert store.histogram(HistogramQuery(project="p", **{name: payload})) == [], name
    assert store.query_calls(CallQuery(project=payload)).items == []
    assert store.query_calls(CallQuery(project="p", tags=((payload, "x"),))).items == []
    assert store.query_calls(CallQuery(project="p", tags=(("department", payload),))).items == []
    rows = store.stats(StatsQuery(project="p", group_by=f"tag:{payload}"))
    assert [(r.group, r.count) for r in rows] == [(None, 5)]
    assert store.get_trace(payload, payload) == []
    assert store.get_trace("p", payload) == []
    assert store.get_session("p", payload) == []
    with pytest.raises(ValueError, match=r"^status"):
        CallQuery(project="p", status=payload)
    with pytest.raises(ValueError, match=r"^sort"):
        CallQuery(project="p", sort=payload)
    with pytest.raises(ValueError, match=r"^group_by"):
        StatsQuery(project="p", group_by=payload)
    with pytest.raises(ValueError, match=r"^field"):
        HistogramQuery(project="p", field=payload)
    assert store.histogram(HistogramQuery(project="p", tags=((payload, "x"),))) == []
    assert len(calls(store, project="victim")) == 20


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"sort": "span_id"}, "sort"),
        ({"sort": "start_ns; DROP TABLE spans"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"project": ""}, "project"),
        ({"since_ns": -1}, "since_ns"),
        ({"min_tokens": 1.5}, "min_tokens"),
        ({"tags": (("k",),)}, "tags"),
        ({"record_type": "row"}, "record_type"),
    ],
)
def test_bad_call_query_names_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=rf"^{param}"):
        CallQuery(**{"project": "p", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"group_by": "latency_ms"}, "group_by"),
        ({"group_by": "model, project"}, "group_by"),
        ({"group_by": "tag:"}, "group_by"),
        ({"bucket_s": 0}, "bucket_s"),
        ({"bucket_s": 60}, "bucket_s"),  # needs a time range
        ({"bucket_s": 1, "since_ns": 0, "until_ns": 10 * DAY}, "bucket_s"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_stats_query_names_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=rf"^{param}"):
        StatsQuery(**{"project": "p", **kwargs})


def test_store_validates_ids_and_project(store):
    with pytest.raises(ValueError, match=r"^project"):
        store.write(make_calls(1), project="")
    with pytest.raises(ValueError, match=r"^trace_id"):
        store.get_trace("p", "")
    assert store.write([], project="p") == 0
    assert isinstance(store, Store)


def test_stats_without_quantiles_keep_counts_tokens_and_cost(store):
    spans = make_calls(60)
    store.write(spans, project="p")
    full = {r.group: r for r in store.stats(StatsQuery(project="p", group_by="model"))}
    lean = {r.group: r for r in store.stats(StatsQuery(project="p", group_by="model", quantiles=False))}
    assert lean.keys() == full.keys()
    for g, r in lean.items():
        f = full[g]
        assert (r.count, r.errors, r.errors_by_type) == (f.count, f.errors, f.errors_by_type)
        assert (r.input_tokens, r.output_tokens) == (f.input_tokens, f.output_tokens)
        assert r.cost_usd == pytest.approx(f.cost_usd)
        assert (r.latency_p50, r.latency_p95, r.ttft_p99, r.tokens_p50) == (None, None, None, None)
        assert f.latency_p50 is not None


_FAMILY_FIELDS = {
    "latency_ms": ("latency_p50", "latency_p95", "latency_p99"),
    "ttft_ms": ("ttft_p50", "ttft_p95", "ttft_p99"),
    "total_tokens": ("tokens_p50", "tokens_p95"),
}
_PLAIN_FIELDS = (
    "group", "bucket_start_ns", "count", "errors", "errors_by_type", "input_tokens", "output_tokens",
)  # fmt: skip


@pytest.mark.parametrize("families", [("latency_ms",), ("ttft_ms", "total_tokens"), ("total_tokens",)])
def test_stats_compute_only_the_quantile_families_asked_for(store, families):
    store.write(make_calls(60), project="p")
    q = StatsQuery(project="p", group_by="model", bucket_s=20, since_ns=T0, until_ns=T0 + 60 * SEC)
    full = store.stats(q)
    some = store.stats(dataclasses.replace(q, quantiles=families))
    assert len(some) == len(full) > 3  # several groups and buckets
    for r, f in zip(some, full, strict=True):
        assert [getattr(r, n) for n in _PLAIN_FIELDS] == [getattr(f, n) for n in _PLAIN_FIELDS]
        assert r.cost_usd == pytest.approx(f.cost_usd)
        for family, names in _FAMILY_FIELDS.items():
            got = [getattr(r, n) for n in names]
            if family in families:
                assert got == [getattr(f, n) for n in names], family
            else:
                assert got == [None] * len(names), family
    assert all(f.latency_p50 is not None and f.tokens_p50 is not None for f in full)


def test_stats_quantiles_true_and_false_are_all_and_none(store):
    store.write(make_calls(30), project="p")
    default = store.stats(StatsQuery(project="p", group_by="model"))
    assert store.stats(StatsQuery(project="p", group_by="model", quantiles=True)) == default
    assert store.stats(StatsQuery(project="p", group_by="model", quantiles=QUANTILE_FIELDS)) == default
    none = store.stats(StatsQuery(project="p", group_by="model", quantiles=False))
    assert store.stats(StatsQuery(project="p", group_by="model", quantiles=())) == none
    assert all(r.latency_p50 is None and r.ttft_p50 is None and r.tokens_p50 is None for r in none)


def test_stats_query_quantiles_normalise_to_a_frozenset_and_refuse_unknown_names():
    assert StatsQuery(project="p").quantiles == frozenset(QUANTILE_FIELDS)
    assert StatsQuery(project="p", quantiles=False).quantiles == frozenset()
    some = StatsQuery(project="p", quantiles=("ttft_ms", "latency_ms", "ttft_ms"))
    assert some.quantiles == some.quantile_fields == frozenset({"latency_ms", "ttft_ms"})
    assert some == StatsQuery(project="p", quantiles=frozenset({"latency_ms", "ttft_ms"}))
    assert hash(some) == hash(StatsQuery(project="p", quantiles=("latency_ms", "ttft_ms")))
    assert StatsQuery(project="p", quantiles=True) == StatsQuery(project="p", quantiles=QUANTILE_FIELDS)
    bad_values: list[object] = [("p99",), ("latency_ms", "latency"), "latency_ms", None, 1, (None,)]
    for bad in bad_values:
        with pytest.raises(ValueError, match=r"^quantiles .*'latency_ms', 'ttft_ms', 'total_tokens'"):
            StatsQuery(project="p", quantiles=bad)  # type: ignore[arg-type]


# -- histogram -------------------------------------------------------------------------------------


def _bin(i: int | None, count: int) -> HistogramBin:
    """The expected bin ``i`` (None: values <= 0), bounds written out as the spec gives them."""
    if i is None:
        return HistogramBin(0.0, 0.0, count)
    return HistogramBin(10 ** (i / 10), 10 ** ((i + 1) / 10), count)


def _with_values(values, field: str, seed: int = 21, t0: int = T0) -> list[Span]:
    """One call per value, ``field`` set to it (latency through the end time; it is never null)."""
    spans = make_calls(len(values), seed=seed, t0=t0)
    for s, v in zip(spans, values, strict=True):
        if field == "latency_ms":
            s.end_ns = s.start_ns + round(v * 1_000_000)
        else:
            setattr(s.llm, field, v)
    return spans


# 1.5 and 2 share a decade but not a bin; 10 and 100 sit exactly on a bin edge and open theirs.
KNOWN = [1.5, 2, 15, 150, 150, 0, 10, 100, 1000, 0.05]
KNOWN_BINS = [
    _bin(None, 1), _bin(-14, 1), _bin(1, 1), _bin(3, 1), _bin(10, 1), _bin(11, 1), _bin(20, 1),
    _bin(21, 2), _bin(30, 1),
]  # fmt: skip


@pytest.mark.parametrize("field", ["latency_ms", "ttft_ms", "cost_usd"])
def test_histogram_puts_known_values_in_their_log_bins(store, field):
    spans = _with_values(KNOWN, field)
    if field != "latency_ms":  # missing values are left out
        spans += _with_values([None, None], field, seed=22)
    store.write(spans, project="p")
    got = store.histogram(HistogramQuery(project="p", field=field))
    assert got == KNOWN_BINS
    # Exact floats, the same on every backend (computed from the index, never in SQL).
    assert [(b.lo, b.hi) for b in got[4:7]] == [
        (10.0, 12.589254117941675), (12.589254117941675, 15.848931924611133), (100.0, 125.89254117941675),
    ]  # fmt: skip
    assert got[0] == HistogramBin(0.0, 0.0, 1)


def test_histogram_of_token_counts(store):
    values = [1, 2, 15, 150, 150, 0, None, 1000]
    for field in ("total_tokens", "input_tokens", "output_tokens"):
        store.write(_with_values(values, field, seed=len(field)), project=field)
        got = store.histogram(HistogramQuery(project=field, field=field))
        assert got == [_bin(None, 1), _bin(0, 1), _bin(3, 1), _bin(11, 1), _bin(21, 2), _bin(30, 1)], field


def test_histogram_counts_only_the_filtered_calls(store):
    spans = make_calls(90)
    store.write(spans, project="p")
    store.write(make_calls(20, seed=3), project="other")

    def counts(**kw) -> int:
        return sum(b.count for b in store.histogram(HistogramQuery(project="p", **kw)))

    assert counts() == 90
    assert counts(model="gpt-4o") == 30
    assert counts(since_ns=T0 + 10 * SEC, until_ns=T0 + 25 * SEC) == 15
    assert counts(tags=(("department", "sales"),)) == 30
    assert counts(model="gpt-4o", tags=(("department", "sales"),)) == 30  # both i % 3 == 1
    assert counts(model="gpt-4o", tags=(("department", "support"),)) == 0
    assert counts(environment="staging", service="bot") == sum(
        s.environment == "staging" and s.service == "bot" for s in spans
    )
    assert counts(status="error") == 9
    assert counts(record_type="span") == 0
    # Per field only the calls that have it: errors carry no TTFT or total tokens.
    assert counts(field="ttft_ms") == sum(s.llm.ttft_ms is not None for s in spans)
    assert counts(field="total_tokens", status="error") == 0
    assert store.histogram(HistogramQuery(project="p", model="no-such-model")) == []
    assert store.histogram(HistogramQuery(project="nobody")) == []


def _reference(values) -> list[HistogramBin]:
    """The binning rule in Python: what every backend must agree with."""
    counts: dict[int | None, int] = {}
    for v in values:
        if v is not None:
            i = math.floor(math.log10(v) * 10 + 1e-9) if v > 0 else None
            counts[i] = counts.get(i, 0) + 1
    return [_bin(i, n) for i, n in sorted(counts.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))]


def test_histogram_matches_the_binning_rule_on_many_values(store):
    rng = random.Random(5)
    # Log-uniform values over nine decades, plus every bin edge of four decades (edges are where
    # a backend's log10 could differ by an ulp: the 1e-9 must put them in the same bin).
    values = [10 ** rng.uniform(-3, 6) for _ in range(400)] + [10 ** (i / 10) for i in range(-10, 31)]
    store.write(_with_values(values, "cost_usd"), project="p")
    got = store.histogram(HistogramQuery(project="p", field="cost_usd"))
    assert got == _reference(values)
    assert sum(b.count for b in got) == len(values)
    assert [b.lo for b in got] == sorted(b.lo for b in got)
    assert all(a.hi <= b.lo for a, b in itertools.pairwise(got))


@pytest.mark.parametrize("field", ["duration", "latency_ms; DROP TABLE spans", "tag:department", ""])
def test_histogram_of_an_unknown_field_names_the_parameter(field):
    with pytest.raises(ValueError, match=r"^field must be one of \[.*'latency_ms'.*'cost_usd'\]"):
        HistogramQuery(project="p", field=field)
    assert HistogramQuery(project="p").field == "latency_ms"  # the default


def test_every_histogram_field_can_be_binned(store):
    store.write(make_calls(30), project="p")
    for field in HISTOGRAM_FIELDS:
        bins = store.histogram(HistogramQuery(project="p", field=field))
        assert bins, field
        assert [b.lo for b in bins] == sorted(b.lo for b in bins), field

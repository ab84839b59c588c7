"""``kansoku.client``: query parameters, paging, typed answers, errors, and keeping the key secret.

Runs against a canned stand-in of the query API (``helpers.query_api``); end-to-end tests against
``kansoku server`` live with the server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from helpers.query_api import FakeQueryAPI, Reply, Seen, error, page, record
from helpers.sdk import free_port
from kansoku.client import Client, Percentiles, QueryError
from kansoku.errors import ConfigError, KansokuError

KEY = "sk-kansoku-canary-7f3a"
CALLS = "/api/v1/calls"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeQueryAPI]:
    with FakeQueryAPI() as api:
        yield api


@pytest.fixture
def api(server: FakeQueryAPI, monkeypatch: pytest.MonkeyPatch) -> FakeQueryAPI:
    monkeypatch.delenv("KANSOKU_URL", raising=False)
    monkeypatch.delenv("KANSOKU_API_KEY", raising=False)
    server.routes.clear()
    server.requests.clear()
    return server


def test_filters_become_query_parameters(api: FakeQueryAPI) -> None:
    api.reply(CALLS, page([record(1)]))
    got = Client(api.url).calls(
        user_id="u-42",
        context_id="conv-9",
        prompt_id="answer",
        prompt_version="v4",
        model="gpt-4o-mini",
        provider="openai",
        error_type=None,  # None means "not given"
        status="error",
        tags={"department": "support", "feature": "search"},
        since="15m",
        until=datetime(2026, 5, 1, 12, 30, tzinfo=UTC),
        q="パスワード",
        min_latency_ms=500,
        min_tokens=100,
        min_cost=0.01,
        type="all",
        sort="latency_ms",
        order="asc",
        limit=10,
        cursor="abc=",
    )
    seen = api.requests[-1]
    assert seen.path == CALLS
    assert seen.query == [
        ("user_id", "u-42"),
        ("context_id", "conv-9"),
        ("prompt_id", "answer"),
        ("prompt_version", "v4"),
        ("model", "gpt-4o-mini"),
        ("provider", "openai"),
        ("status", "error"),
        ("tag", "department:support"),
        ("tag", "feature:search"),
        ("since", "15m"),  # relative: the server's clock decides
        ("until", "2026-05-01T12:30:00Z"),
        ("q", "パスワード"),
        ("min_latency_ms", "500"),
        ("min_tokens", "100"),
        ("min_cost", "0.01"),
        ("type", "all"),
        ("sort", "latency_ms"),
        ("order", "asc"),
        ("limit", "10"),
        ("cursor", "abc="),
    ]
    assert seen.headers["Accept"] == "application/json"
    assert "Authorization" not in seen.headers  # no key configured
    assert got.data == [record(1)]
    assert got.next_cursor is None
    assert got.has_more is False
    assert len(got) == 1


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (timedelta(days=7), "1w"),
        (timedelta(hours=36), "36h"),
        (timedelta(seconds=90), "90s"),
        (timedelta(milliseconds=1500), "1500ms"),
        (1_777_000_000, "1777000000"),
        ("2026-05-01T00:00:00+09:00", "2026-05-01T00:00:00+09:00"),
    ],
)
def test_time_forms(api: FakeQueryAPI, value: object, sent: str) -> None:
    api.reply(CALLS, page([]))
    Client(api.url).calls(since=value)  # type: ignore[arg-type]
    assert api.requests[-1].params("since") == [sent]


def test_tags_as_strings_and_bad_arguments_are_refused_before_sending(api: FakeQueryAPI) -> None:
    api.reply(CALLS, page([]))
    client = Client(api.url)
    client.calls(tags=["department:support", "tier:gold:plus"])
    assert api.requests[-1].params("tag") == ["department:support", "tier:gold:plus"]
    client.calls(tags="team:search")
    assert api.requests[-1].params("tag") == ["team:search"]
    sent = len(api.requests)
    with pytest.raises(ValueError, match="key:value"):
        client.calls(tags=["no-colon"])
    with pytest.raises(TypeError, match="modle"):
        client.calls(modle="gpt")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="time zone"):
        client.calls(since=datetime(2026, 5, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="trace_id"):
        client.trace("")
    assert len(api.requests) == sent


def test_iter_calls_follows_cursors_with_the_same_filters(api: FakeQueryAPI) -> None:
    pages: dict[str | None, tuple[range, str | None]] = {
        None: (range(3), "c1"),
        "c1": (range(3, 6), "c2"),
        "c2": (range(6, 7), None),
    }

    def answer(seen: Seen) -> Reply:
        cursor = seen.params("cursor")[0] if seen.params("cursor") else None
        numbers, nxt = pages[cursor]
        return Reply(page([record(n) for n in numbers], nxt))

    api.answer(CALLS, answer)
    got = list(Client(api.url).iter_calls(model="m", since="1h", limit=3))
    assert [r["span_id"] for r in got] == [record(n)["span_id"] for n in range(7)]
    assert [s.params("cursor") for s in api.requests] == [[], ["c1"], ["c2"]]
    assert all(s.params("since") == ["1h"] and s.params("model") == ["m"] for s in api.requests)
    assert all(s.params("limit") == ["3"] for s in api.requests)

    api.requests.clear()
    got = list(Client(api.url).iter_calls(limit=3, max_items=4))
    assert len(got) == 4
    assert [s.params("limit") for s in api.requests] == [["3"], ["1"]]  # asks only for what is missing


def test_iter_calls_default_page_is_the_largest(api: FakeQueryAPI) -> None:
    api.reply(CALLS, page([record(0)]))
    assert len(list(Client(api.url).iter_calls())) == 1
    assert api.requests[-1].params("limit") == ["1000"]


def test_trace_is_a_tree_in_display_order(api: FakeQueryAPI) -> None:
    root = record(0, type="span", name="handle", children=[])
    step = record(1, type="span", name="retrieve", children=[record(3, name="embed", children=[])])
    root["children"] = [step, record(2, name="chat", children=[])]
    api.reply(
        "/api/v1/traces/t/1",
        {
            "object": "trace",
            "trace_id": "t/1",
            "span_count": 4,
            "start_time": "2026-05-01T12:00:00Z",
            "duration_ms": 1500.0,
            "spans": [root],
        },
    )
    trace = Client(api.url).trace("t/1")
    assert api.requests[-1].raw_path == "/api/v1/traces/t%2F1"  # ids are quoted into the path
    assert trace.trace_id == "t/1"
    assert trace.span_count == 4
    assert trace.duration_ms == 1500.0
    assert [(d, r["name"]) for d, r in trace.walk()] == [
        (0, "handle"),
        (1, "retrieve"),
        (2, "embed"),
        (1, "chat"),
    ]
    assert trace.raw["object"] == "trace"


def test_session_and_stats_are_typed(api: FakeQueryAPI) -> None:
    api.reply(
        "/api/v1/sessions/conv-1",
        {
            "object": "session",
            "context_id": "conv-1",
            "call_count": 2,
            "start_time": "2026-05-01T12:00:00Z",
            "end_time": "2026-05-01T12:01:00Z",
            "input_tokens": 240,
            "output_tokens": None,
            "cost_usd": 0.5,
            "calls": [record(0), record(1)],
        },
    )
    session = Client(api.url).session("conv-1")
    assert (session.call_count, session.input_tokens, session.output_tokens, session.cost_usd) == (
        2,
        240,
        None,
        0.5,
    )
    assert len(session.calls) == 2

    row = {
        "group": "gpt-4o-mini",
        "bucket_start": "2026-05-01T12:00:00Z",
        "count": 10,
        "errors": 2,
        "error_rate": 0.2,
        "errors_by_type": {"rate_limit": 2},
        "latency_ms": {"p50": 800.0, "p95": 1900.5, "p99": None},
        "ttft_ms": None,
        "input_tokens": 1200,
        "output_tokens": 450,
        "tokens": {"p50": 160, "p95": 200},
        "cost_usd": None,
    }
    api.reply("/api/v1/stats", {"object": "stats", "group_by": "model", "bucket_s": 3600, "data": [row]})
    stats = Client(api.url).stats(group_by="model", since="24h", bucket=timedelta(hours=1), limit=5)
    assert api.requests[-1].query == [
        ("group_by", "model"),
        ("since", "24h"),
        ("bucket", "3600"),
        ("limit", "5"),
    ]
    assert stats.bucket_s == 3600
    got = stats.data[0]
    assert got.latency_ms == Percentiles(800.0, 1900.5, None)
    assert got.ttft_ms == Percentiles()
    assert got.tokens.p95 == 200
    assert (got.errors_by_type, got.cost_usd, got.error_rate) == ({"rate_limit": 2}, None, 0.2)
    Client(api.url).stats(bucket="1h")
    assert api.requests[-1].query == [("bucket", "1h")]


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (False, "false"),
        (True, "true"),
        (["latency_ms", "ttft_ms"], "latency_ms,ttft_ms"),
        ("latency_ms", "latency_ms"),
    ],
)
def test_stats_asks_for_the_chosen_percentiles(api: FakeQueryAPI, value: object, sent: str) -> None:
    api.reply("/api/v1/stats", {"object": "stats", "group_by": None, "bucket_s": None, "data": []})
    Client(api.url).stats(quantiles=value)  # type: ignore[arg-type]
    assert api.requests[-1].params("quantiles") == [sent]


def test_stats_refuses_an_empty_list_of_percentiles_before_sending(api: FakeQueryAPI) -> None:
    sent = len(api.requests)
    with pytest.raises(ValueError, match="quantiles"):
        Client(api.url).stats(quantiles=[])
    assert len(api.requests) == sent


def test_histogram_sends_field_and_filters_and_reads_the_bins(api: FakeQueryAPI) -> None:
    data = [{"lo": 0.0, "hi": 0.0, "count": 2}, {"lo": 100.0, "hi": 125.89254117941675, "count": 5}]
    api.reply("/api/v1/histogram", {"object": "histogram", "field": "ttft_ms", "count": 7, "data": data})
    got = Client(api.url).histogram(field="ttft_ms", model="gpt-4o", since="30d", tags={"team": "a"})
    assert api.requests[-1].path == "/api/v1/histogram"
    assert api.requests[-1].query == [
        ("field", "ttft_ms"),
        ("model", "gpt-4o"),
        ("since", "30d"),
        ("tag", "team:a"),
    ]
    assert (got.field, got.count) == ("ttft_ms", 7)
    assert [(b.lo, b.hi, b.count) for b in got.data] == [(0.0, 0.0, 2), (100.0, 125.89254117941675, 5)]
    assert got.raw["data"] == data
    Client(api.url).histogram()
    assert api.requests[-1].query == []  # the server's default field: latency_ms
    with pytest.raises(TypeError, match="group_by"):
        Client(api.url).histogram(group_by="model")  # type: ignore[call-arg]
    api.reply("/api/v1/histogram", {"object": "stats", "data": []})
    with pytest.raises(QueryError, match="unexpected answer"):
        Client(api.url).histogram()


def test_server_errors_keep_message_type_and_param(api: FakeQueryAPI) -> None:
    api.routes[CALLS] = error(400, "since must be RFC 3339 ...", "invalid_request_error", "since")
    with pytest.raises(QueryError) as caught:
        Client(api.url).calls(since="yesterday")
    exc = caught.value
    assert isinstance(exc, KansokuError)
    assert (exc.status, exc.type, exc.param) == (400, "invalid_request_error", "since")
    assert exc.message == "since must be RFC 3339 ..."
    assert "since must be RFC 3339" in str(exc)
    assert "400" in str(exc)


@pytest.mark.parametrize(
    ("call", "reply", "expected"),
    [
        (
            "calls",
            error(401, "missing or invalid API key", "authentication_error"),
            (401, "authentication_error"),
        ),
        ("trace", error(404, "no trace abc", "not_found_error"), (404, "not_found_error")),
        ("session", error(404, "no session abc", "not_found_error"), (404, "not_found_error")),
        ("calls", error(429, "slow down", "rate_limit_error"), (429, "rate_limit_error")),
        (
            "calls",
            Reply(raw=b"Internal Server Error", status=500, content_type="text/plain"),
            (500, "server_error"),
        ),
        (
            "calls",
            Reply(raw=b"404 page not found", status=404, content_type="text/plain"),
            (404, "not_found_error"),
        ),
    ],
)
def test_http_errors_map_to_query_error(
    api: FakeQueryAPI, call: str, reply: Reply, expected: tuple[int, str]
) -> None:
    path = {"calls": CALLS, "trace": "/api/v1/traces/abc", "session": "/api/v1/sessions/abc"}[call]
    api.routes[path] = reply
    client = Client(api.url)
    with pytest.raises(QueryError) as caught:
        client.calls() if call == "calls" else getattr(client, call)("abc")
    assert (caught.value.status, caught.value.type) == expected
    if reply.raw is not None:  # not the API's error object: say what answered, hint at the wrong server
        assert reply.raw.decode() in caught.value.message
        assert "is this a kansoku server?" in caught.value.message


def test_a_json_answer_of_another_shape_is_an_error(api: FakeQueryAPI) -> None:
    api.reply(CALLS, {"partialSuccess": {}})  # e.g. an OTLP receiver on 4318
    with pytest.raises(QueryError, match="is this a kansoku server"):
        Client(api.url).calls()


def test_gzip_answers_are_decoded(api: FakeQueryAPI) -> None:
    api.reply(CALLS, page([record(5)]), gzip=True)
    assert Client(api.url).calls().data == [record(5)]
    assert "gzip" in api.requests[-1].headers["Accept-Encoding"]


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(QueryError) as caught:
        Client(url, api_key=KEY).calls()
    exc = caught.value
    assert exc.status is None
    assert exc.type == "connection_error"
    assert url in str(exc)
    assert "is `kansoku server` running?" in str(exc)
    assert KEY not in str(exc)


def test_timeout(api: FakeQueryAPI) -> None:
    def slow(seen: Seen) -> Reply:
        time.sleep(0.6)  # blocks the fake's loop: fine, nothing else is waiting
        return Reply(page([]))

    api.answer(CALLS, slow)
    with pytest.raises(QueryError) as caught:
        Client(api.url, timeout_s=0.2).calls()
    assert caught.value.type == "timeout"
    assert "0.2 s" in str(caught.value)


def test_the_key_is_sent_but_never_shown(api: FakeQueryAPI) -> None:
    client = Client(api.url, api_key=KEY)
    assert KEY not in repr(client)
    assert "api_key=[secure]" in repr(client)
    # A proxy that echoes the header back must not carry the key into the exception.
    api.routes[CALLS] = error(401, f"bad header 'Bearer {KEY}'", "authentication_error", KEY)
    with pytest.raises(QueryError) as caught:
        client.calls()
    assert api.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(caught.value)
    assert KEY not in caught.value.message
    assert KEY not in repr(caught.value)
    assert KEY not in str(caught.value.param)
    with pytest.raises(ConfigError) as bad:
        Client(api.url, api_key=KEY + "\n")
    assert KEY not in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        Client(f"http://user:{KEY}@127.0.0.1:1")
    assert KEY not in str(bad.value)


def test_settings_argument_then_environment_then_default(
    api: FakeQueryAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Client().url == "http://127.0.0.1:4318"
    assert Client().timeout_s == 10.0
    assert "api_key=None" in repr(Client())
    monkeypatch.setenv("KANSOKU_URL", api.url + "/")
    monkeypatch.setenv("KANSOKU_API_KEY", KEY)
    api.reply(CALLS, page([]))
    client = Client()
    assert client.url == api.url
    client.calls()
    assert api.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    Client(api.url, api_key="other").calls()
    assert api.requests[-1].headers["Authorization"] == "Bearer other"
    assert Client("http://elsewhere:9").url == "http://elsewhere:9"


def test_a_path_prefix_is_kept(api: FakeQueryAPI) -> None:
    api.reply("/kansoku" + CALLS, page([]))
    Client(api.url + "/kansoku/").calls(limit=1)
    assert api.requests[-1].path == "/kansoku" + CALLS


@pytest.mark.parametrize(
    "url", ["localhost:4318", "ftp://host", "http://", "http://h:99999", "http://h/?x=1"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        Client(url)


def test_bad_timeout() -> None:
    with pytest.raises(ConfigError, match="timeout_s"):
        Client(timeout_s=0)

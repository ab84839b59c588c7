"""Acceptance tests of the collector's HTTP API, as its users meet it.

Each test runs a real collector (aiohttp on a loopback port, WAL, loader, DuckDB store in
``tmp_path``) and talks to it over HTTP only: the official OpenTelemetry OTLP exporter, the
OpenInference instrumentation of the real ``openai`` client, the kansoku SDK, and plain requests
for bad input, keys, injection attempts, the query API, metrics, health and back-pressure.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

import kansoku
from helpers.records import llm_record, llm_records
from helpers.sdk import started_sdk, wait_until
from helpers.server import Response, RunningServer, start_server
from kansoku.cli import main
from kansoku.errors import ConfigError
from kansoku.model import new_span_id, new_trace_id
from kansoku.server import ENV_VARS, KeyRing, ServerSettings, check_bind
from kansoku.store import DuckDBStore

HOUR_NS = 3600 * 10**9


# -- running a collector ---------------------------------------------------------------------------


@contextmanager
def serve(tmp_path: Path, store: DuckDBStore | None = None, **settings: Any) -> Iterator[RunningServer]:
    """A collector on 127.0.0.1 with a DuckDB store in ``tmp_path``; stopped afterwards."""
    settings.setdefault("load_interval_ms", 10)
    data_dir = tmp_path / "data"
    store = store if store is not None else DuckDBStore(str(tmp_path / "kansoku.duckdb"))
    srv = start_server(ServerSettings(port=0, data_dir=str(data_dir), **settings), store)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve(tmp_path) as srv:
        yield srv


def walk(srv: RunningServer, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every record of ``GET /api/v1/calls`` with ``params``, following ``next_cursor``."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        page = srv.get("/api/v1/calls", key=key, **params, **({"cursor": cursor} if cursor else {}))
        assert page.status == 200, page.body
        body = page.json()
        out.extend(body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("pagination did not end")


def error_of(resp: Response, status: int) -> dict[str, Any]:
    """The OpenAI-style error object of an error response with ``status``."""
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str)
    assert err["message"]
    return err


def span_ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["span_id"]) for r in records)


def rfc3339(ns: int, tz: timezone = UTC) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz).isoformat().replace("+00:00", "Z")


def post(srv: RunningServer, path: str, body: bytes, content_type: str, **headers: str) -> Response:
    return srv.request("POST", path, body, headers={"Content-Type": content_type, **headers})


# -- 1. the official OpenTelemetry OTLP exporter ---------------------------------------------------


@pytest.fixture
def tracer_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TracerProvider]]:
    """``make(endpoint, processor=BatchSpanProcessor, **exporter_options)``: an OTel SDK provider
    exporting OTLP/HTTP protobuf to ``endpoint``; not installed globally, shut down afterwards."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    providers: list[TracerProvider] = []

    def make(endpoint: str, processor: Any = BatchSpanProcessor, **options: Any) -> TracerProvider:
        provider = TracerProvider(resource=Resource.create({"service.name": "otel-app"}))
        provider.add_span_processor(processor(OTLPSpanExporter(endpoint=endpoint, timeout=10, **options)))
        providers.append(provider)
        return provider

    try:
        yield make
    finally:
        for provider in providers:
            provider.shutdown()


def genai_attributes(form: str, user: str, session: str) -> dict[str, Any]:
    """A chat call's attributes as GenAI instrumentations emit them, current or older form."""
    if form == "current":
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 21,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "Where is my parcel?"}]}]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "It ships tomorrow."}],
                        "finish_reason": "stop",
                    }
                ]
            ),
            "user.id": user,
            "gen_ai.conversation.id": session,
        }
    return {  # older semantic conventions / OpenLLMetry-era names
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 21,
        "gen_ai.usage.completion_tokens": 7,
        "gen_ai.prompt": json.dumps([{"role": "user", "content": "Where is my parcel?"}]),
        "gen_ai.completion": "It ships tomorrow.",
        "enduser.id": user,
        "session.id": session,
    }


@pytest.mark.parametrize("form", ["current", "legacy"])
@pytest.mark.parametrize("compression", [None, Compression.Gzip], ids=["protobuf", "protobuf+gzip"])
def test_otel_sdk_genai_spans_arrive_with_model_tokens_user_session_text_and_nesting(
    server, tracer_provider, form, compression
):
    provider = tracer_provider(server.url + "/v1/traces", compression=compression)
    tracer = provider.get_tracer("acceptance")
    user, session = f"otel-{form}-user", f"otel-{form}-session"
    with (
        tracer.start_as_current_span("handle_request", kind=SpanKind.SERVER) as root,
        tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as call,
    ):
        call.set_attributes(genai_attributes(form, user, session))
        call.set_status(Status(StatusCode.OK))
    assert provider.force_flush(10_000)
    server.wait_loaded()

    found = server.get("/api/v1/calls", user_id=user, since="1h").json()["data"]
    assert len(found) == 1
    rec = found[0]
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert rec["trace_id"] == trace_id
    assert rec["span_id"] == format(call.get_span_context().span_id, "016x")
    assert rec["parent_span_id"] == format(root.get_span_context().span_id, "016x")
    assert (rec["provider"], rec["request_model"]) == ("openai", "gpt-4o")
    assert rec["model"] == ("gpt-4o-2024-08-06" if form == "current" else "gpt-4o")
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (21, 7, 28)
    assert (rec["user_id"], rec["context_id"]) == (user, session)
    assert rec["input_text"] == "Where is my parcel?"
    assert rec["output_text"] == "It ships tomorrow."
    assert (rec["service"], rec["kind"], rec["status"]) == ("otel-app", "client", "ok")

    tree = server.get(f"/api/v1/traces/{trace_id}").json()
    assert tree["span_count"] == 2
    [top] = tree["spans"]
    assert (top["name"], top["type"], top["kind"]) == ("handle_request", "span", "server")
    [child] = top["children"]
    assert (child["span_id"], child["type"], child["children"]) == (rec["span_id"], "llm_call", [])

    session_body = server.get(f"/api/v1/sessions/{session}").json()
    assert [c["span_id"] for c in session_body["calls"]] == [rec["span_id"]]


def test_otlp_json_posted_directly_is_stored(server):
    trace_id, root_id, call_id = new_trace_id(), new_span_id(), new_span_id()
    start = time.time_ns() - 10**9

    def attr(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}  # int64 travels as a string
        return {"key": key, "value": {"stringValue": value}}

    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", "json-app")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-written"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": root_id,
                                "name": "agent",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 5 * 10**8),
                            },
                            {
                                "traceId": trace_id,
                                "spanId": call_id,
                                "parentSpanId": root_id,
                                "name": "chat claude-haiku",
                                "kind": 3,
                                "startTimeUnixNano": str(start + 10**8),
                                "endTimeUnixNano": str(start + 4 * 10**8),
                                "status": {"code": 1},
                                "attributes": [
                                    attr("gen_ai.operation.name", "chat"),
                                    attr("gen_ai.provider.name", "anthropic"),
                                    attr("gen_ai.request.model", "claude-haiku"),
                                    attr("gen_ai.usage.input_tokens", 40),
                                    attr("gen_ai.usage.output_tokens", 9),
                                    attr("user.id", "json-user"),
                                    attr("gen_ai.conversation.id", "json-session"),
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
    resp = post(server, "/v1/traces", json.dumps(body).encode(), "application/json")
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"partialSuccess": {}}
    server.wait_loaded()

    [rec] = server.get("/api/v1/calls", user_id="json-user", since="1h").json()["data"]
    assert (rec["provider"], rec["model"], rec["input_tokens"], rec["output_tokens"]) == (
        "anthropic", "claude-haiku", 40, 9,
    )  # fmt: skip
    assert (rec["context_id"], rec["service"], rec["latency_ms"]) == ("json-session", "json-app", 300.0)
    tree = server.get(f"/api/v1/traces/{trace_id}").json()
    assert [c["span_id"] for c in tree["spans"][0]["children"]] == [call_id]


# -- 2. OpenInference instrumentation of the real openai client -----------------------------------


def test_openinference_openai_instrumentation_reaches_the_collector(server, tracer_provider, upstream):
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider = tracer_provider(server.url + "/v1/traces", processor=SimpleSpanProcessor)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with (
            openai.OpenAI(base_url=upstream.openai_base_url, api_key="test", max_retries=0) as client,
            using_session("oi-session-7"),
            using_user("oi-user-7"),
        ):
            reply = client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "Track order 1234 please"}]
            )
    finally:
        instrumentor.uninstrument()
    assert provider.force_flush(10_000)
    server.wait_loaded()

    [rec] = server.get("/api/v1/calls", user_id="oi-user-7", since="1h").json()["data"]
    assert reply.usage is not None
    assert (rec["provider"], rec["model"]) == ("openai", "mock-gpt")
    assert (rec["input_tokens"], rec["output_tokens"], rec["total_tokens"]) == (
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens,
    )  # fmt: skip
    assert rec["context_id"] == "oi-session-7"
    assert rec["input_text"] == "Track order 1234 please"
    assert rec["output_text"] == reply.choices[0].message.content
    assert rec["status"] == "ok"


# -- 3. the kansoku SDK --------------------------------------------------------------------------


def test_sdk_exports_nested_spans_and_a_two_turn_session_to_the_collector(
    server, upstream, monkeypatch, tmp_path
):
    t0 = time.time_ns()
    replies = []
    with started_sdk(monkeypatch, tmp_path, service_name="support-bot") as start:
        start(server.url, instrument=["openai"])
        with (
            openai.OpenAI(base_url=upstream.openai_base_url, api_key="test", max_retries=0) as client,
            kansoku.context(user_id="sdk-user-1", session_id="sdk-session-1"),
        ):
            for turn in ("Hi, I need a refund", "Order 1234, thanks"):
                with kansoku.span("turn"), kansoku.span("generate"):
                    replies.append(
                        client.chat.completions.create(
                            model="mock-gpt", messages=[{"role": "user", "content": turn}]
                        )
                    )
        assert kansoku.flush(10.0)
    server.wait_loaded()

    calls = walk(server, user_id="sdk-user-1", since=rfc3339(t0 - 10**9))
    assert len(calls) == 2
    assert {c["service"] for c in calls} == {"support-bot"}
    for rec in calls:
        tree = server.get(f"/api/v1/traces/{rec['trace_id']}").json()
        assert tree["span_count"] == 3
        [turn] = tree["spans"]
        assert turn["name"] == "turn"
        [generate] = turn["children"]
        assert generate["name"] == "generate"
        [call] = generate["children"]
        assert (call["span_id"], call["type"], call["parent_span_id"]) == (
            rec["span_id"], "llm_call", generate["span_id"],
        )  # fmt: skip

    session = server.get("/api/v1/sessions/sdk-session-1").json()
    assert session["call_count"] == 2
    assert [c["input_text"] for c in session["calls"]] == ["Hi, I need a refund", "Order 1234, thanks"]
    assert [c["output_text"] for c in session["calls"]] == [r.choices[0].message.content for r in replies]
    usages = [r.usage for r in replies if r.usage is not None]
    assert len(usages) == 2
    assert session["input_tokens"] == sum(u.prompt_tokens for u in usages)
    assert session["output_tokens"] == sum(u.completion_tokens for u in usages)


# -- 4. bad input ---------------------------------------------------------------------------------


def native(records: list[Any]) -> bytes:
    return json.dumps({"schema": "kansoku.batch/v1", "records": records}).encode()


def test_bad_input_is_refused_with_a_4xx_and_never_loses_accepted_data(tmp_path):
    limit = 64 * 1024
    with serve(tmp_path, max_body_bytes=limit) as srv:
        kept = llm_records(30, user_id="kept")
        assert srv.ingest(kept[:15]).status == 200

        doomed = llm_records(4, user_id="doomed")
        doomed[2] = {**doomed[2], "trace_id": "not-hex"}
        err = error_of(srv.ingest(doomed), 400)
        assert err["param"] == "records[2]"
        assert "records[2]" in err["message"]
        assert "trace_id" in err["message"]

        gz = {"Content-Encoding": "gzip"}
        head = b'{"schema": "kansoku.batch/v1", "records": '
        bomb = gzip.compress(head + b"[" + b" " * (16 * 1024 * 1024))
        assert len(bomb) < limit
        cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
            ("invalid JSON", "/api/v1/ingest", b"{not json", {}, 400),
            ("a JSON array", "/api/v1/ingest", b"[1, 2]", {}, 400),
            ("wrong schema", "/api/v1/ingest", b'{"schema": "v9", "records": []}', {}, 400),
            ("records not a list", "/api/v1/ingest", head + b"3}", {}, 400),
            ("record not an object", "/api/v1/ingest", native([7]), {}, 400),
            ("empty body", "/api/v1/ingest", b"", {}, 400),
            ("body over the limit", "/api/v1/ingest", b" " * (limit + 1), {}, 413),
            ("gzip bomb", "/api/v1/ingest", bomb, gz, 413),
            ("gzip bomb over OTLP", "/v1/traces", bomb, gz, 413),
            ("broken gzip", "/api/v1/ingest", b"\x1f\x8b\x08\x00broken", gz, 400),
            ("cut gzip", "/api/v1/ingest", gzip.compress(native(kept[15:]))[:-20], gz, 400),
            ("OTLP protobuf garbage", "/v1/traces", b"\xff\xff\xff\xff garbage", {}, 400),
            ("OTLP JSON of the wrong shape", "/v1/traces", b'{"resourceSpans": 5}', {}, 400),
        ]  # fmt: skip
        for what, path, body, headers, status in cases:
            media = "application/x-protobuf" if what.startswith("OTLP protobuf") else "application/json"
            resp = post(srv, path, body, media, **headers)
            err = error_of(resp, status)
            assert err["type"] == "invalid_request_error", what

        err = error_of(post(srv, "/v1/traces", b"{}", "text/plain"), 415)
        assert "application/x-protobuf" in err["message"]
        assert srv.request("GET", "/api/v1/ingest").status == 405
        assert srv.request("GET", "/no/such/route").status == 404

        assert srv.get("/healthz").status == 200
        assert srv.ingest(kept[15:]).status == 200
        srv.wait_loaded()
        assert span_ids(walk(srv, type="all")) == span_ids(kept)
        assert walk(srv, user_id="doomed") == []


def test_native_ingest_refuses_a_body_that_is_not_json_by_content_type(server):
    err = error_of(post(server, "/api/v1/ingest", native(llm_records(1)), "text/plain"), 415)
    assert err["type"] == "invalid_request_error"


def test_a_long_non_ascii_session_id_within_the_limit_can_be_fetched(server):
    session = "\u4f1a\u8a71" * 500  # 1000 characters: 3000 bytes of UTF-8, 9000 percent-encoded
    assert server.ingest([llm_record(context_id=session)]).status == 200
    server.wait_loaded()
    resp = server.get(f"/api/v1/sessions/{urllib.parse.quote(session, safe='')}")
    assert resp.status == 200, resp.body[:200]
    assert resp.json()["call_count"] == 1


# -- 5. access control ----------------------------------------------------------------------------


def test_keys_scopes_and_projects_keep_tenants_apart(tmp_path):
    settings = ServerSettings(port=0, data_dir=str(tmp_path / "data"), load_interval_ms=10)
    ring = KeyRing(settings.keys_file)
    a_ingest, _ = ring.create("team-a", "ingest")
    a_read, _ = ring.create("team-a", "read")
    b_ingest, _ = ring.create("team-b", "ingest")
    b_read, _ = ring.create("team-b", "read")
    srv = start_server(settings, DuckDBStore(str(tmp_path / "kansoku.duckdb")))
    try:
        batch = native(llm_records(1))
        assert error_of(srv.ingest(llm_records(1)), 401)["type"] == "authentication_error"
        unknown = "ksk_ingest_" + "x" * 43
        assert error_of(srv.ingest(llm_records(1), key=unknown), 401)["code"] == "invalid_key"
        assert error_of(srv.ingest(llm_records(1), key=a_read), 403)["type"] == "permission_error"
        assert error_of(post(srv, "/v1/traces", batch, "application/json"), 401)
        assert error_of(srv.get("/api/v1/calls"), 401)
        assert error_of(srv.get("/api/v1/calls", key=a_ingest), 403)["type"] == "permission_error"
        assert error_of(srv.get("/api/v1/stats", key=a_ingest), 403)
        assert srv.get("/healthz").status == 200

        # The same trace and span ids land in both projects, with different content.
        shared_trace = new_trace_id()
        shared = [llm_record(trace_id=shared_trace, span_id=new_span_id()) for _ in range(3)]
        a_records = [{**r, "user_id": "alice", "context_id": "conv-a", "model": "model-a"} for r in shared]
        b_records = [{**r, "user_id": "bob", "context_id": "conv-b", "model": "model-b"} for r in shared]
        b_only = llm_records(4, user_id="bob", context_id="conv-b", model="model-b")
        assert srv.ingest(a_records, key=a_ingest).status == 200
        resp = srv.request(
            "POST", "/api/v1/ingest", native(b_records + b_only),
            headers={"Content-Type": "application/json", "x-api-key": b_ingest},
        )  # fmt: skip
        assert resp.status == 200, resp.body
        srv.wait_loaded()

        seen_a = walk(srv, key=a_read, type="all")
        assert span_ids(seen_a) == span_ids(a_records)
        assert {(r["user_id"], r["model"]) for r in seen_a} == {("alice", "model-a")}
        assert walk(srv, key=a_read, user_id="bob") == []
        assert span_ids(walk(srv, key=b_read)) == span_ids(b_records + b_only)

        trace_a = srv.get(f"/api/v1/traces/{shared_trace}", key=a_read).json()
        assert trace_a["span_count"] == 3
        assert {s["user_id"] for s in trace_a["spans"]} == {"alice"}
        assert srv.get(f"/api/v1/traces/{shared_trace}", key=b_read).json()["span_count"] == 3
        assert error_of(srv.get(f"/api/v1/traces/{b_only[0]['trace_id']}", key=a_read), 404)
        assert error_of(srv.get("/api/v1/sessions/conv-b", key=a_read), 404)
        assert srv.get("/api/v1/sessions/conv-a", key=a_read).json()["call_count"] == 3

        stats_a = srv.get("/api/v1/stats", key=a_read, group_by="model").json()["data"]
        assert [(row["group"], row["count"]) for row in stats_a] == [("model-a", 3)]
        stats_b = srv.get("/api/v1/stats", key=b_read, group_by="user_id").json()["data"]
        assert [(row["group"], row["count"]) for row in stats_b] == [("bob", 7)]
    finally:
        srv.stop()


def test_histogram_needs_a_read_key_and_sees_only_its_project(tmp_path):
    settings = ServerSettings(port=0, data_dir=str(tmp_path / "data"), load_interval_ms=10)
    ring = KeyRing(settings.keys_file)
    a_ingest, _ = ring.create("team-a", "ingest")
    a_read, _ = ring.create("team-a", "read")
    b_ingest, _ = ring.create("team-b", "ingest")
    b_read, _ = ring.create("team-b", "read")
    srv = start_server(settings, DuckDBStore(str(tmp_path / "kansoku.duckdb")))
    try:
        assert error_of(srv.get("/api/v1/histogram"), 401)["code"] == "missing_key"
        unknown = "ksk_read_" + "x" * 43
        assert error_of(srv.get("/api/v1/histogram", key=unknown), 401)["code"] == "invalid_key"
        assert error_of(srv.get("/api/v1/histogram", key=a_ingest), 403)["type"] == "permission_error"
        assert srv.ingest(llm_records(3, model="model-a"), key=a_ingest).status == 200
        assert srv.ingest(llm_records(7, model="model-b"), key=b_ingest).status == 200
        srv.wait_loaded()
        assert srv.get("/api/v1/histogram", key=a_read).json()["count"] == 3
        assert srv.get("/api/v1/histogram", key=b_read).json()["count"] == 7
        assert srv.get("/api/v1/histogram", key=a_read, model="model-b").json()["data"] == []
    finally:
        srv.stop()


def test_binding_beyond_loopback_without_keys_is_refused(tmp_path, monkeypatch, capsys):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    exposed = ServerSettings(host="0.0.0.0", port=0, data_dir=str(data))
    with pytest.raises(ConfigError, match="unauthenticated"):
        check_bind(exposed)
    check_bind(ServerSettings(host="0.0.0.0", port=0, data_dir=str(data), allow_unauthenticated=True))
    check_bind(ServerSettings(host="127.0.0.1", port=0, data_dir=str(data)))

    # Should the check ever let the server start, the port is taken (bound, never listening): it
    # then fails at once on the bind, with another message, instead of serving the network.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        assert main(["server", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data)]) == 2
    message = capsys.readouterr().err
    assert "--host" in message
    assert "keys create" in message

    KeyRing(exposed.keys_file).create("team-a", "ingest")
    check_bind(exposed)  # with keys, every request must authenticate: allowed


def test_sql_payloads_as_api_keys_are_plain_401s(tmp_path):
    """Keys are looked up by hash, never spliced into a query: payloads in either header are 401s."""
    settings = ServerSettings(port=0, data_dir=str(tmp_path / "data"))
    read_key, _ = KeyRing(settings.keys_file).create("team-a", "read")
    srv = start_server(settings, DuckDBStore(str(tmp_path / "kansoku.duckdb")))
    try:
        for payload in ("' OR 1=1 --", "x'; DROP TABLE spans; --", "\\", read_key + "' OR '1'='1"):
            for headers in ({"Authorization": f"Bearer {payload}"}, {"x-api-key": payload}):
                resp = srv.request("GET", "/api/v1/calls", headers=headers)
                assert error_of(resp, 401)["code"] == "invalid_key"
        assert srv.get("/api/v1/calls", key=read_key).status == 200
    finally:
        srv.stop()


# -- 6. SQL injection over HTTP -------------------------------------------------------------------


INJECTIONS = [
    "' OR 1=1 --",
    "x'; DROP TABLE spans; --",
    "%' OR '%'='",
    "1) OR (1=1",
    '" OR ""="',
    "\u2019 OR \u20181\u2019=\u20191",  # typographic quotes
    "\uff07 OR 1=1 --",  # full-width apostrophe
    "\\' OR 1=1 --",
    "\\",
    "a\x00b",
    "%",
    "_",
    "' UNION SELECT * FROM spans --",
    "department:' OR '1'='1",
    "'" * 999,
    "A" * 5000,
]
_CALLS_ONLY = ("sort", "order", "cursor")
_STATS_ONLY = ("group_by", "bucket", "quantiles")
_FILTERS = (
    "user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type", "status",
    "tag", "since", "until", "q", "min_latency_ms", "min_tokens", "min_cost", "type",
)  # fmt: skip
INJECTABLE = (*_FILTERS, "limit", *_CALLS_ONLY, *_STATS_ONLY)


def test_sql_injection_payloads_in_every_parameter_find_nothing_and_harm_nothing(server):
    records = [
        *llm_records(6, tags={"department": "support"}),
        *llm_records(4, user_id="u-2", context_id="conv-2", tags={"department": "sales"}),
    ]
    assert server.ingest(records).status == 200
    server.wait_loaded()

    def check(path: str, params: list[tuple[str, str]]) -> None:
        resp = server.request("GET", path, params=params)
        assert resp.status < 500, (path, params, resp.body[:200])
        if resp.status == 200:
            data = resp.json()["data"]
            empty = all(row["count"] == 0 for row in data) if path.endswith("stats") else data == []
            assert empty, (path, params, data[:1])
        else:
            assert 400 <= resp.status < 500
            error_of(resp, resp.status)

    for payload in INJECTIONS:
        for name in INJECTABLE:
            value = f"department:{payload}" if name == "tag" and ":" not in payload else payload
            if name not in _STATS_ONLY:
                check("/api/v1/calls", [(name, value)])
            if name not in _CALLS_ONLY:
                check("/api/v1/stats", [(name, value)])
            if name in _FILTERS:
                check("/api/v1/histogram", [(name, value)])
        check("/api/v1/histogram", [("field", payload)])
        check("/api/v1/stats", [("group_by", f"tag:{payload[:990]}"), ("user_id", payload[:1000])])
        quoted = urllib.parse.quote(payload[:1000], safe="")
        for route in ("traces", "sessions"):
            resp = server.request("GET", f"/api/v1/{route}/{quoted}")
            assert resp.status in (400, 404), (route, payload[:40], resp.status, resp.body[:200])
            error_of(resp, resp.status)

    assert span_ids(walk(server, type="all")) == span_ids(records)
    stats = server.get("/api/v1/stats", group_by="tag:department").json()["data"]
    assert {(row["group"], row["count"]) for row in stats} == {("support", 6), ("sales", 4)}
    assert server.get("/api/v1/histogram").json()["count"] == 10


# -- 7. the query API -----------------------------------------------------------------------------


@pytest.mark.parametrize(("sort", "order"), [("timestamp", "desc"), ("latency_ms", "asc")])
def test_cursor_pagination_walks_every_record_exactly_once(server, sort, order):
    records = llm_records(23, user_id="pager")
    for i, rec in enumerate(records):  # a few latency ties, so the tie-break is exercised
        rec["end_time_unix_nano"] = rec["start_time_unix_nano"] + (i % 4) * 10**6
    assert server.ingest(records).status == 200
    assert server.ingest(llm_records(3, user_id="someone-else")).status == 200
    server.wait_loaded()

    pages = 0
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"user_id": "pager", "sort": sort, "order": order, "limit": 5}
        body = server.get("/api/v1/calls", **params, **({"cursor": cursor} if cursor else {})).json()
        pages += 1
        seen.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            assert body["has_more"] is False
            break
    assert pages == 5
    assert len(seen) == 23
    assert span_ids(seen) == span_ids(records)
    keys = [(r[sort if sort != "timestamp" else "start_time_unix_nano"], r["span_id"]) for r in seen]
    assert keys == sorted(keys, reverse=order == "desc")


def test_since_and_until_take_durations_rfc3339_and_unix_seconds(server):
    now = time.time_ns()
    old = llm_records(3, t0_ns=now - 2 * HOUR_NS, user_id="tf")
    recent = llm_records(2, t0_ns=now - HOUR_NS // 6, user_id="tf")
    assert server.ingest(old + recent).status == 200
    server.wait_loaded()

    def found(**params: Any) -> list[str]:
        return span_ids(walk(server, user_id="tf", **params))

    assert found(since="1h") == span_ids(recent)
    assert found(since="90m") == span_ids(recent)
    assert found(since=rfc3339(now - HOUR_NS // 2)) == span_ids(recent)
    assert found(since=str((now - 3 * HOUR_NS) // 10**9)) == span_ids(old + recent)
    assert found(since=f"{(now - HOUR_NS) / 1e9:.3f}") == span_ids(recent)
    tokyo = timezone(timedelta(hours=9))
    assert found(until=rfc3339(now - HOUR_NS, tokyo)) == span_ids(old)
    assert found(since="3h", until="1h") == span_ids(old)


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/v1/calls", {"modle": "gpt-4o"}, "modle"),
        ("/api/v1/stats", {"sort": "latency_ms"}, "sort"),
        ("/api/v1/calls", {"limit": "0"}, "limit"),
        ("/api/v1/calls", {"limit": "1001"}, "limit"),
        ("/api/v1/calls", {"limit": "ten"}, "limit"),
        ("/api/v1/calls", {"limit": ["5", "6"]}, "limit"),
        ("/api/v1/calls", {"since": "yesterday"}, "since"),
        ("/api/v1/calls", {"since": "2026-01-01T00:00:00"}, "since"),
        ("/api/v1/calls", {"until": "-5"}, "until"),
        ("/api/v1/calls", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ("/api/v1/calls", {"sort": "price"}, "sort"),
        ("/api/v1/calls", {"type": "everything"}, "type"),
        ("/api/v1/calls", {"tag": "department"}, "tag"),
        ("/api/v1/calls", {"tag": "k" * 1001 + ":v"}, "tag"),
        ("/api/v1/calls", {"min_tokens": "-1"}, "min_tokens"),
        ("/api/v1/calls", {"q": "x" * 1001}, "q"),
        ("/api/v1/stats", {"bucket": "1h"}, "bucket"),
        ("/api/v1/stats", {"since": "1h", "bucket": "fortnight"}, "bucket"),
        ("/api/v1/stats", {"since": "1h", "bucket": "\u00b2"}, "bucket"),  # isdigit() but not int()
        ("/api/v1/stats", {"since": "1h", "bucket": "9" * 5000}, "bucket"),  # beyond int()'s digit limit
        ("/api/v1/stats", {"since": "7d", "bucket": "1s"}, "bucket"),  # too many buckets
        ("/api/v1/stats", {"group_by": "colour"}, "group_by"),
        ("/api/v1/stats", {"quantiles": "yes"}, "quantiles"),
        ("/api/v1/stats", {"quantiles": "latency_ms,p99"}, "quantiles"),
        ("/api/v1/stats", {"quantiles": ""}, "quantiles"),
        ("/api/v1/stats", {"quantiles": ["latency_ms", "ttft_ms"]}, "quantiles"),
        ("/api/v1/histogram", {"field": "colour"}, "field"),
        ("/api/v1/histogram", {"field": ["latency_ms", "ttft_ms"]}, "field"),
        ("/api/v1/histogram", {"group_by": "model"}, "group_by"),
        ("/api/v1/histogram", {"since": "yesterday"}, "since"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(server, path, params, param):
    err = error_of(server.get(path, **params), 400)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


def test_a_cursor_only_works_for_the_query_that_made_it(server):
    assert server.ingest(llm_records(4)).status == 200
    server.wait_loaded()
    cursor = server.get("/api/v1/calls", limit=2).json()["next_cursor"]
    assert cursor is not None
    assert server.get("/api/v1/calls", limit=2, cursor=cursor).status == 200
    other_order = server.get("/api/v1/calls", limit=2, cursor=cursor, order="asc")
    assert error_of(other_order, 400)["param"] == "cursor"


def test_stats_group_by_a_tag_in_hourly_buckets(server):
    now = time.time_ns()
    this_hour = now // HOUR_NS * HOUR_NS
    last_hour = this_hour - HOUR_NS
    plan = [  # (start, department, input tokens)
        (last_hour + 60 * 10**9, "support", 10),
        (last_hour + 120 * 10**9, "support", 20),
        (last_hour + 180 * 10**9, "sales", 40),
        (max(this_hour, now - 10**9), "support", 80),
        (max(this_hour, now - 10**9), None, 160),
    ]
    records = [
        llm_record(start_ns=start, tags={"department": dept} if dept else {}, input_tokens=tokens)
        for start, dept, tokens in plan
    ]
    assert server.ingest(records).status == 200
    server.wait_loaded()

    body = server.get("/api/v1/stats", group_by="tag:department", bucket="1h", since="3h").json()
    assert (body["group_by"], body["bucket_s"]) == ("tag:department", 3600)
    got = {
        (row["group"], int(datetime.fromisoformat(row["bucket_start"]).timestamp()) * 10**9): (
            row["count"], row["input_tokens"],
        )
        for row in body["data"]
    }  # fmt: skip
    assert got == {
        ("support", last_hour): (2, 30),
        ("sales", last_hour): (1, 40),
        ("support", this_hour): (1, 80),
        (None, this_hour): (1, 160),
    }


def test_stats_quantiles_lists_the_percentile_families_to_compute(server):
    records = llm_records(12, user_id="pq")
    for i, rec in enumerate(records):
        rec["end_time_unix_nano"] = rec["start_time_unix_nano"] + (50 + 10 * i) * 10**6
        rec["ttft_ms"] = 5.0 + i
        rec["input_tokens"], rec["total_tokens"] = 10 + i, 15 + i
    assert server.ingest(records).status == 200
    server.wait_loaded()

    full = server.get("/api/v1/stats", group_by="model").json()["data"]
    some = server.get("/api/v1/stats", group_by="model", quantiles="latency_ms,ttft_ms").json()["data"]
    assert len(full) == len(some) == 1
    assert full[0]["tokens"]["p50"] is not None
    assert full[0]["ttft_ms"]["p99"] is not None
    # Same shape, same counts and sums; only the family left out is null.
    assert some == [{**full[0], "tokens": {"p50": None, "p95": None}}]
    # The query string as a browser writes it (URLSearchParams escapes the comma).
    escaped = server.request("GET", "/api/v1/stats?group_by=model&quantiles=latency_ms%2Cttft_ms")
    assert escaped.json()["data"] == some


def test_stats_quantiles_names_the_allowed_values_when_refused(server):
    err = error_of(server.get("/api/v1/stats", quantiles="latency_ms,p99"), 400)
    assert (err["param"], err["code"]) == ("quantiles", "invalid_parameter")
    for allowed in ("true", "false", "latency_ms", "ttft_ms", "total_tokens"):
        assert allowed in err["message"]


def test_histogram_bins_every_matching_call_server_side(server):
    now = time.time_ns()
    plan = [  # (latency ms, model, department, hours ago)
        (1.5, "m-a", "support", 0), (2, "m-a", "support", 0), (15, "m-a", "sales", 0),
        (150, "m-a", "sales", 0), (150, "m-a", "support", 0), (0, "m-a", "support", 0),
        (1500, "m-b", "support", 0), (15, "m-a", "support", 5),
    ]  # fmt: skip
    records = [
        llm_record(
            start_ns=now - ago * HOUR_NS - 10**9, latency_ms=ms, model=model, tags={"department": dept},
            input_tokens=None if ms == 0 else 20,
        )
        for ms, model, dept, ago in plan
    ]  # fmt: skip
    assert server.ingest(records).status == 200
    server.wait_loaded()

    def edges(i: int) -> tuple[float, float]:
        return 10 ** (i / 10), 10 ** ((i + 1) / 10)

    body = server.get("/api/v1/histogram", model="m-a", since="1h").json()
    assert set(body) == {"object", "field", "count", "data"}
    assert (body["object"], body["field"], body["count"]) == ("histogram", "latency_ms", 6)
    assert body["data"] == [
        {"lo": 0.0, "hi": 0.0, "count": 1},
        {"lo": edges(1)[0], "hi": edges(1)[1], "count": 1},
        {"lo": edges(3)[0], "hi": edges(3)[1], "count": 1},
        {"lo": edges(11)[0], "hi": edges(11)[1], "count": 1},
        {"lo": edges(21)[0], "hi": edges(21)[1], "count": 2},
    ]

    def counts(**params: Any) -> list[int]:
        resp = server.get("/api/v1/histogram", **params)
        assert resp.status == 200, resp.body[:300]
        return [b["count"] for b in resp.json()["data"]]

    assert sum(counts()) == 8  # every matching call, no sample
    assert counts(model="m-b") == [1]
    assert counts(since="1h", tag="department:sales") == [1, 1]
    assert counts(until="1h") == [1]  # the call of five hours ago
    assert counts(model="m-c") == []
    tokens = server.get("/api/v1/histogram", field="input_tokens").json()
    assert (tokens["field"], tokens["count"]) == ("input_tokens", 7)  # the unknown count is left out
    assert [(b["lo"], b["count"]) for b in tokens["data"]] == [(edges(13)[0], 7)]  # log10(20) = 1.30

    err = error_of(server.get("/api/v1/histogram", field="price"), 400)
    assert (err["param"], err["type"], err["code"]) == ("field", "invalid_request_error", "invalid_parameter")
    assert "latency_ms" in err["message"]


@pytest.mark.parametrize("route", ["traces", "sessions"])
def test_unknown_trace_or_session_is_a_404_with_an_openai_style_error(server, route):
    err = error_of(server.get(f"/api/v1/{route}/{new_trace_id()}"), 404)
    assert err["type"] == "not_found_error"
    assert err["param"] == ("trace_id" if route == "traces" else "context_id")


def metric_label_values(text: str, metric: str, label: str) -> set[str]:
    values = set()
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            m = re.search(rf'{label}="([^"]*)"', line)
            assert m, line
            values.add(m.group(1))
    return values


def test_metrics_follow_the_genai_conventions_with_the_ingested_model(server):
    assert server.ingest(llm_records(3, model="gpt-4o-mini")).status == 200
    text = server.get("/metrics").body.decode()
    for metric in ("gen_ai_client_operation_duration_seconds_bucket", "gen_ai_client_token_usage_bucket"):
        assert metric_label_values(text, metric, "gen_ai_request_model") == {"gpt-4o-mini"}
    counts = re.findall(r"^gen_ai_client_operation_duration_seconds_count\{[^}]*\} (\d+)", text, re.M)
    assert counts == ["3"]
    assert metric_label_values(text, "gen_ai_client_token_usage_bucket", "gen_ai_token_type") == {
        "input", "output",
    }  # fmt: skip


def test_metric_labels_are_capped_and_the_overflow_is_counted(tmp_path):
    with serve(tmp_path, metrics_max_label_values=3) as srv:
        records = [llm_record(model=f"made-up-model-{i}") for i in range(10)]
        assert srv.ingest(records).status == 200
        text = srv.get("/metrics").body.decode()
        for metric in ("gen_ai_client_operation_duration_seconds_bucket", "gen_ai_client_token_usage_bucket"):
            models = metric_label_values(text, metric, "gen_ai_request_model")
            assert "__other__" in models
            assert len(models - {"__other__"}) <= 3
        m = re.search(r'^kansoku_metrics_label_overflow_total\{label="model"\} (\S+)$', text, re.M)
        assert m, "no overflow counter for the model label"
        assert float(m.group(1)) > 0
        srv.wait_loaded()  # the cap is on metric labels only: every record is stored
        stats = srv.get("/api/v1/stats", group_by="model").json()["data"]
        assert len(stats) == 10


class FlakyStore(DuckDBStore):
    """A DuckDB store whose bulk load fails while ``failing`` is set."""

    failing = False

    def load(self, rows: bytes, lo_ns: int, hi_ns: int) -> int:
        if self.failing:
            raise OSError("disk unplugged")
        return super().load(rows, lo_ns, hi_ns)


def test_health_and_readiness_follow_the_store(tmp_path):
    store = FlakyStore(str(tmp_path / "kansoku.duckdb"))
    with serve(tmp_path, store) as srv:
        assert srv.get("/healthz").json()["status"] == "ok"
        assert srv.get("/readyz").status == 200
        first = llm_records(5, user_id="ready")
        assert srv.ingest(first).status == 200
        srv.wait_loaded()

        store.failing = True
        during = llm_records(7, user_id="ready")
        assert srv.ingest(during).status == 200  # durable in the WAL: still acknowledged
        assert wait_until(lambda: srv.get("/readyz").status == 503, timeout=10)
        body = srv.get("/readyz").json()
        assert body["status"] == "not_ready"
        assert body["checks"]["store_loading"] is False
        assert srv.get("/healthz").status == 200  # alive, just not ready

        store.failing = False
        assert wait_until(lambda: srv.get("/readyz").status == 200, timeout=15)
        srv.wait_loaded()
        assert span_ids(walk(srv, user_id="ready")) == span_ids(first + during)


# -- 8. back-pressure -----------------------------------------------------------------------------


class GatedStore(DuckDBStore):
    """A DuckDB store whose bulk load waits until ``gate`` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def load(self, rows: bytes, lo_ns: int, hi_ns: int) -> int:
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        return super().load(rows, lo_ns, hi_ns)


def test_a_full_write_ahead_log_answers_429_and_keeps_everything_it_acknowledged(tmp_path):
    store = GatedStore(str(tmp_path / "kansoku.duckdb"))
    with serve(tmp_path, store, wal_max_bytes=48 * 1024) as srv:
        acked: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        try:
            for _ in range(200):
                batch = llm_records(5, user_id="bp")
                resp = srv.ingest(batch)
                if resp.status == 429:
                    refused.extend(batch)
                    break
                assert resp.status == 200, resp.body
                acked.extend(batch)
            else:
                pytest.fail("the write-ahead log never filled up")
            err = error_of(resp, 429)
            assert err["type"] == "rate_limit_error"
            assert int(resp.headers["retry-after"]) >= 1
            for _ in range(3):  # still full: every further batch is refused too
                batch = llm_records(5, user_id="bp")
                assert srv.ingest(batch).status == 429
                refused.extend(batch)
            assert len(acked) >= 10
            metrics = srv.get("/metrics").body.decode()
            rejected = re.search(r"^kansoku_wal_rejected_total (\S+)$", metrics, re.M)
            assert rejected, "no kansoku_wal_rejected_total"
            assert float(rejected.group(1)) == 4
        finally:
            store.gate.set()
        srv.wait_loaded(30)
        stored = walk(srv, user_id="bp")
        assert span_ids(stored) == span_ids(acked)
        assert srv.ingest(llm_records(5, user_id="bp")).status == 200  # room again


def test_sdk_records_made_while_the_collector_is_down_arrive_once_it_is_back(monkeypatch, tmp_path):
    """reliability.md 3: the SDK spools while the collector is away; nothing is lost or doubled."""
    from helpers.sdk import free_port

    port = free_port()
    settings = ServerSettings(port=port, data_dir=str(tmp_path / "data"), load_interval_ms=10)
    with started_sdk(monkeypatch, tmp_path, service_name="offline-bot") as start:
        start(f"http://127.0.0.1:{port}", retry_base_ms=20, retry_cap_ms=200, flush_interval_ms=20)
        with kansoku.context(user_id="u-offline", session_id="s-offline"):
            for i in range(300):
                with kansoku.span(f"step-{i}"):
                    pass
        assert kansoku.flush(timeout=10)  # exported or durably spooled: here, spooled
        srv = start_server(settings, DuckDBStore(str(tmp_path / "kansoku.duckdb")))
        try:
            assert wait_until(lambda: len(walk(srv, user_id="u-offline", type="span")) >= 300, timeout=30)
            records = walk(srv, user_id="u-offline", type="span")
            assert len(records) == len({r["span_id"] for r in records}) == 300
        finally:
            srv.stop()


def test_metrics_need_a_metrics_key_once_keys_exist(tmp_path):
    """/metrics labels name every project and model: with keys, only a metrics-scope key reads them."""
    settings = ServerSettings(port=0, data_dir=str(tmp_path / "data"))
    ring = KeyRing(settings.keys_file)
    read_key, _ = ring.create("team-a", "read")
    metrics_key, _ = ring.create("ops", "metrics")
    srv = start_server(settings, DuckDBStore(str(tmp_path / "kansoku.duckdb")))
    try:
        assert error_of(srv.get("/metrics"), 401)["code"] == "missing_key"
        assert error_of(srv.get("/metrics", key=read_key), 403)["type"] == "permission_error"
        resp = srv.get("/metrics", key=metrics_key)
        assert resp.status == 200
        assert b"kansoku_wal_unapplied_bytes" in resp.body
        assert error_of(srv.get("/api/v1/calls", key=metrics_key), 403)  # and nothing else
        assert srv.get("/healthz").status == 200
    finally:
        srv.stop()

"""OTLP encode/decode against the official protobuf classes, OTLP/JSON, and the OTLP/HTTP exporter."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from kansoku.errors import ExportError
from kansoku.export._base import ExportResult
from kansoku.export._otlp import OTLPHTTPExporter
from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.model._otlp import decode_request, encode_spans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000_000_000_000
PROTOBUF = "application/x-protobuf"


def make_span(
    n: int = 1, service: str = "checkout", environment: str | None = "prod", error: bool = False
) -> Span:
    llm = LLMCall(
        provider="openai",
        model="gpt-4o-mini-2024-07-18",
        request_model="gpt-4o-mini",
        temperature=0.5,
        input_messages=[{"role": "user", "content": f"question {n}"}],
        output_messages=[{"role": "assistant", "content": "answer"}],
        input_tokens=20,
        output_tokens=5,
        total_tokens=25,
        cost_usd=0.0001,
        finish_reasons=["stop"],
        stream=True,
    )
    return Span(
        trace_id=TRACE,
        span_id=f"{n:016x}",
        parent_span_id="00f067aa0ba902b7",
        name="chat gpt-4o-mini",
        kind="client",
        start_ns=T0 + n,
        end_ns=T0 + n + 900_000_000,
        status="error" if error else "ok",
        status_code=500 if error else 200,
        error_type="server_error" if error else None,
        error_message="upstream exploded" if error else None,
        service=service,
        environment=environment,
        user_id="u1",
        context_id="conv-1",
        tags={"team": "a"},
        attributes={"big": 2**70, "flags": [True, False], "meta": {"k": "v"}},
        events=[SpanEvent("first_token", T0 + n + 100, {"index": 0, "nested": {"a": [1, 2]}})],
        llm=llm,
    )


def attr(kvs: Any, key: str) -> AnyValue:
    found: AnyValue = next(kv.value for kv in kvs if kv.key == key)
    return found


def test_encode_is_a_valid_export_request_with_typed_genai_attributes() -> None:
    body = encode_spans([make_span(1), make_span(2, error=True)])
    request = ExportTraceServiceRequest.FromString(body)
    assert len(request.resource_spans) == 1
    rs = request.resource_spans[0]
    assert attr(rs.resource.attributes, "service.name").string_value == "checkout"
    assert attr(rs.resource.attributes, "deployment.environment.name").string_value == "prod"
    assert attr(rs.resource.attributes, "telemetry.sdk.name").string_value == "kansoku"
    assert attr(rs.resource.attributes, "telemetry.sdk.version").string_value
    assert rs.scope_spans[0].scope.name == "kansoku"
    ok, failed = rs.scope_spans[0].spans
    assert ok.trace_id == bytes.fromhex(TRACE)
    assert ok.span_id == bytes.fromhex(f"{1:016x}")
    assert ok.parent_span_id == bytes.fromhex("00f067aa0ba902b7")
    assert ok.kind == PbSpan.SPAN_KIND_CLIENT
    assert ok.status.code == PbStatus.STATUS_CODE_OK
    assert failed.status.code == PbStatus.STATUS_CODE_ERROR
    assert failed.status.message == "upstream exploded"
    assert attr(failed.attributes, "error.type").string_value == "server_error"
    assert attr(ok.attributes, "gen_ai.provider.name").string_value == "openai"
    assert attr(ok.attributes, "gen_ai.operation.name").string_value == "chat"
    assert attr(ok.attributes, "gen_ai.usage.input_tokens").int_value == 20
    assert attr(ok.attributes, "gen_ai.request.temperature").double_value == 0.5
    assert attr(ok.attributes, "gen_ai.request.stream").bool_value is True
    reasons = attr(ok.attributes, "gen_ai.response.finish_reasons").array_value.values
    assert [v.string_value for v in reasons] == ["stop"]
    assert attr(ok.attributes, "big").string_value == str(2**70)  # beyond int64: sent as text
    assert [v.bool_value for v in attr(ok.attributes, "flags").array_value.values] == [True, False]
    assert json.loads(attr(ok.attributes, "meta").string_value) == {"k": "v"}
    assert ok.events[0].name == "first_token"
    assert ok.events[0].time_unix_nano == T0 + 101
    assert attr(ok.events[0].attributes, "index").int_value == 0


def test_one_resource_per_service_and_environment() -> None:
    spans = [make_span(1), make_span(2, service="search"), make_span(3), make_span(4, environment=None)]
    request = ExportTraceServiceRequest.FromString(encode_spans(spans, resource={"host.name": "h1"}))
    seen = []
    for rs in request.resource_spans:
        names = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        assert names["host.name"] == "h1"
        seen.append(
            (names["service.name"], names.get("deployment.environment.name"), len(rs.scope_spans[0].spans))
        )
    assert sorted(seen, key=str) == sorted(
        [("checkout", "prod", 2), ("search", "prod", 1), ("checkout", None, 1)], key=str
    )


@pytest.mark.parametrize("convention", ["genai", "openinference"])
def test_encode_decode_round_trip(convention: str) -> None:
    spans = [make_span(1), make_span(2, error=True), Span(TRACE, "00000000000000ff", "plain", T0, T0 + 1)]
    decoded = decode_request(encode_spans(spans, convention), PROTOBUF + "; charset=binary")
    assert len(decoded) == 3
    for original, got in zip(spans, decoded, strict=True):
        expected = original.to_record()
        record = got.to_record()
        if original.llm is not None:
            # Attribute values OTLP cannot carry as such come back as text.
            expected["attributes"] = {**expected["attributes"], "big": str(2**70), "meta": '{"k":"v"}'}
            assert record == expected
        else:
            assert record["service"] == "unknown_service"
            assert got.llm is None


def test_openinference_encoding_uses_openinference_names() -> None:
    request = ExportTraceServiceRequest.FromString(encode_spans([make_span()], "openinference"))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    keys = {kv.key for kv in span.attributes}
    assert {"openinference.span.kind", "llm.model_name", "llm.token_count.prompt", "session.id"} <= keys
    assert not any(k.startswith("gen_ai.") for k in keys)


def test_unknown_convention_is_refused() -> None:
    with pytest.raises(ValueError, match="convention"):
        encode_spans([make_span()], "zipkin")


def test_otlp_json_decode() -> None:
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "bot"}},
                        {"key": "deployment.environment.name", "value": {"stringValue": "dev"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.instrumentation"},
                        "spans": [
                            {
                                "traceId": TRACE.upper(),
                                "spanId": "00f067aa0ba902b7",
                                "parentSpanId": "",
                                "name": "chat claude",
                                "kind": 3,
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": T0 + 2_000_000,
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "claude"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "31"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 7}},
                                    {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.7}},
                                    {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
                                    {
                                        "key": "gen_ai.response.finish_reasons",
                                        "value": {"arrayValue": {"values": [{"stringValue": "end_turn"}]}},
                                    },
                                    {
                                        "key": "custom.map",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [{"key": "a", "value": {"intValue": "1"}}]
                                            }
                                        },
                                    },
                                    {"key": "custom.bytes", "value": {"bytesValue": "AAE="}},
                                    {"key": "custom.empty", "value": {}},
                                ],
                                "events": [
                                    {"timeUnixNano": str(T0 + 1), "name": "exception", "attributes": []}
                                ],
                                "status": {"code": "STATUS_CODE_ERROR", "message": "overloaded"},
                                "unknownField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    [span] = decode_request(json.dumps(doc).encode(), "application/json; charset=utf-8")
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, "00f067aa0ba902b7", None)
    assert (span.service, span.environment, span.kind, span.status) == ("bot", "dev", "client", "error")
    assert span.error_message == "overloaded"
    assert span.start_ns == T0
    assert span.llm is not None
    assert (span.llm.provider, span.llm.model, span.llm.input_tokens, span.llm.output_tokens) == (
        "anthropic",
        "claude",
        31,
        7,
    )
    assert span.llm.total_tokens == 38
    assert span.llm.temperature == 0.7
    assert span.llm.stream is True
    assert span.llm.finish_reasons == ["end_turn"]
    assert span.attributes == {"custom.map": {"a": 1}, "custom.bytes": "AAE="}
    assert span.events[0].name == "exception"


def test_otlp_json_accepts_snake_case_field_names() -> None:
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE,
                                "span_id": "00f067aa0ba902b7",
                                "name": "n",
                                "start_time_unix_nano": 5,
                                "end_time_unix_nano": 9,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    [span] = decode_request(json.dumps(doc).encode(), "application/json")
    assert (span.name, span.start_ns, span.end_ns) == ("n", 5, 9)


def test_empty_requests_decode_to_nothing() -> None:
    assert decode_request(b"", PROTOBUF) == []
    assert decode_request(b"{}", "application/json") == []


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        pytest.param(b"\x0a\x05\x0a\x03", PROTOBUF, "malformed OTLP protobuf", id="truncated-protobuf"),
        pytest.param(b"{not json", "application/json", "malformed OTLP JSON", id="bad-json"),
        pytest.param(b"[]", "application/json", "request must be a JSON object", id="json-array"),
        pytest.param(
            b'{"resourceSpans": 3}', "application/json", "resourceSpans must be a JSON array", id="type"
        ),
        pytest.param(
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"00f067aa0ba902b7"}]}]}]}',
            "application/json",
            r"spans\[0\]: trace_id must be 32 hex",
            id="bad-trace-id",
        ),
        pytest.param(
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"'
            + TRACE.encode()
            + b'","spanId":"00f067aa0ba902b7",'
            b'"startTimeUnixNano":"-1"}]}]}]}',
            "application/json",
            "unsigned 64-bit",
            id="negative-time",
        ),
        pytest.param(b"", "text/plain", "unsupported content type", id="content-type"),
    ],
)
def test_malformed_input_is_a_value_error(body: bytes, content_type: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_request(body, content_type)


def test_bad_ids_in_protobuf_name_the_span() -> None:
    request = ExportTraceServiceRequest()
    pb = request.resource_spans.add().scope_spans.add().spans.add()
    pb.trace_id, pb.span_id = b"\x01" * 3, b"\x02" * 8
    with pytest.raises(ValueError, match=r"resource_spans\[0\]\.scope_spans\[0\]\.spans\[0\]: trace_id"):
        decode_request(request.SerializeToString(), PROTOBUF)


def test_deeply_nested_attribute_values_are_refused() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(100):
        value = {"arrayValue": {"values": [value]}}
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "deep", "value": value}]}}]}
    with pytest.raises(ValueError, match="nest deeper"):
        decode_request(json.dumps(doc).encode(), "application/json")


@settings(max_examples=300)
@given(body=st.binary(max_size=512), content_type=st.sampled_from([PROTOBUF, "application/json"]))
def test_random_bytes_only_ever_raise_value_error(body: bytes, content_type: str) -> None:
    with contextlib.suppress(ValueError):
        decode_request(body, content_type)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)
_field_names = st.sampled_from(
    [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "attributes",
        "key",
        "value",
        "traceId",
        "spanId",
        "events",
        "status",
        "code",
        "kind",
        "arrayValue",
        "kvlistValue",
        "values",
        "intValue",
        "doubleValue",
        "stringValue",
        "boolValue",
        "startTimeUnixNano",
        "resource",
        "name",
    ]
)
_otlp_like = st.recursive(
    _json_values,
    lambda inner: st.dictionaries(_field_names, inner, max_size=5) | st.lists(inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300)
@given(doc=_otlp_like)
def test_random_otlp_shaped_json_only_ever_raises_value_error(doc: Any) -> None:
    with contextlib.suppress(ValueError):
        decode_request(json.dumps(doc).encode(), "application/json")


# --- a span produced by the real OpenTelemetry SDK ----------------------------------------------------


def _sdk_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "otel-app", "deployment.environment.name": "qa"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test.instrumentation")
    with (
        tracer.start_as_current_span("workflow"),
        tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span,
    ):
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
        span.set_attribute("gen_ai.usage.input_tokens", 42)
        span.set_attribute("gen_ai.usage.output_tokens", 9)
        span.set_attribute("gen_ai.request.temperature", 0.1)
        span.set_attribute("gen_ai.response.finish_reasons", ["length"])
        span.set_attribute("gen_ai.conversation.id", "conv-99")
        span.set_attribute("server.address", "api.openai.com")
        span.add_event("gen_ai.choice", {"index": 0})
        span.set_status(Status(StatusCode.ERROR, "max tokens"))
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def _hand_encode(spans: list[ReadableSpan]) -> bytes:
    """The protobuf an OTLP exporter would send, built field by field from the SDK's spans."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in spans[0].resource.attributes.items():
        _set(rs.resource.attributes.add(), key, value)
    scope = rs.scope_spans.add()
    for span in spans:
        ctx = span.get_span_context()
        assert ctx is not None
        pb = scope.spans.add()
        pb.trace_id = ctx.trace_id.to_bytes(16, "big")
        pb.span_id = ctx.span_id.to_bytes(8, "big")
        if span.parent is not None:
            pb.parent_span_id = span.parent.span_id.to_bytes(8, "big")
        pb.name = span.name
        # The API enum starts at INTERNAL=0, OTLP at UNSPECIFIED=0.
        pb.kind = PbSpan.SpanKind.ValueType(span.kind.value + 1)
        pb.start_time_unix_nano = span.start_time or 0
        pb.end_time_unix_nano = span.end_time or 0
        for key, value in (span.attributes or {}).items():
            _set(pb.attributes.add(), key, value)
        for event in span.events:
            pb_event = pb.events.add()
            pb_event.name, pb_event.time_unix_nano = event.name, event.timestamp
            for key, value in (event.attributes or {}).items():
                _set(pb_event.attributes.add(), key, value)
        pb.status.code = PbStatus.StatusCode.ValueType(span.status.status_code.value)
        pb.status.message = span.status.description or ""
    return request.SerializeToString()


def _set(kv: Any, key: str, value: Any) -> None:
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, str):
        kv.value.string_value = value
    else:
        for item in value:
            kv.value.array_value.values.add().string_value = item


def _otel_encode(spans: list[ReadableSpan]) -> bytes:
    try:
        encoder = importlib.import_module("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    except ImportError:
        return _hand_encode(spans)
    encoded: bytes = encoder.encode_spans(spans).SerializeToString()
    return encoded


def test_span_from_the_opentelemetry_sdk_decodes() -> None:
    sdk_spans = _sdk_spans()
    decoded = {s.name: s for s in decode_request(_otel_encode(sdk_spans), PROTOBUF)}
    chat, workflow = decoded["chat gpt-4o"], decoded["workflow"]
    assert workflow.llm is None
    assert chat.parent_span_id == workflow.span_id
    assert chat.trace_id == workflow.trace_id
    assert (chat.service, chat.environment, chat.kind) == ("otel-app", "qa", "client")
    assert (chat.status, chat.error_message, chat.error_type) == ("error", "max tokens", "unknown")
    assert chat.context_id == "conv-99"
    assert chat.llm is not None
    llm = chat.llm
    assert (llm.provider, llm.operation, llm.request_model, llm.model) == (
        "openai",
        "chat",
        "gpt-4o",
        "gpt-4o-2024-08-06",
    )
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens) == (42, 9, 51)
    assert llm.temperature == 0.1
    assert llm.finish_reasons == ["length"]
    assert chat.attributes == {"server.address": "api.openai.com"}
    assert [e.name for e in chat.events] == ["gen_ai.choice"]
    assert chat.end_ns >= chat.start_ns > 0


# --- the exporter against a local OTLP/HTTP endpoint -------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[str, dict[str, str], bytes]] = []


CollectorFixture = tuple[str, _Collector]


@pytest.fixture
def collector() -> Iterator[tuple[str, _Collector]]:
    state = _Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_exporter_posts_decodable_protobuf(collector: CollectorFixture) -> None:
    url, state = collector
    sent = {"Authorization": "Bearer sk-canary-123", "content-type": "text/plain"}
    exporter = OTLPHTTPExporter(url, headers=sent)
    spans = [make_span(1), make_span(2)]
    assert exporter.export(spans) is ExportResult.SUCCESS
    [(path, headers, body)] = state.requests
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["authorization"] == "Bearer sk-canary-123"
    decoded = decode_request(body, headers["content-type"])
    assert [s.span_id for s in decoded] == [s.span_id for s in spans]
    assert decoded[0].llm is not None
    assert decoded[0].llm.input_tokens == 20
    assert exporter.force_flush() is True


def test_exporter_keeps_an_explicit_path_and_openinference(collector: CollectorFixture) -> None:
    url, state = collector
    exporter = OTLPHTTPExporter(url + "/api/public/otel/v1/traces?project=p1", convention="openinference")
    assert exporter.export([make_span()]) is ExportResult.SUCCESS
    path, _, body = state.requests[0]
    assert path == "/api/public/otel/v1/traces?project=p1"
    request = ExportTraceServiceRequest.FromString(body)
    keys = {kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert "openinference.span.kind" in keys
    assert "project" not in repr(exporter)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, ExportResult.RETRY),
        (503, ExportResult.RETRY),
        (429, ExportResult.RETRY),
        (400, ExportResult.REJECTED),
    ],
)
def test_exporter_maps_http_failures(
    collector: CollectorFixture, status: int, expected: ExportResult, caplog: pytest.LogCaptureFixture
) -> None:
    url, state = collector
    state.status = status
    exporter = OTLPHTTPExporter(url, headers={"x-api-key": "sk-canary-456"})
    with caplog.at_level(logging.DEBUG, logger="kansoku"):
        assert exporter.export([make_span()]) is expected
    assert f"HTTP {status}" in caplog.text
    assert "sk-canary-456" not in caplog.text


def test_exporter_connection_refused_is_retry(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exporter = OTLPHTTPExporter(
        f"http://127.0.0.1:{port}", headers={"authorization": "Bearer sk-canary-789"}, timeout=2
    )
    with caplog.at_level(logging.DEBUG, logger="kansoku"):
        assert exporter.export([make_span()]) is ExportResult.RETRY
    assert "sk-canary-789" not in caplog.text


def test_exporter_hides_headers_and_validates_its_arguments() -> None:
    exporter = OTLPHTTPExporter("https://otel.example.com", headers={"authorization": "Bearer sk-canary-000"})
    assert "sk-canary-000" not in repr(exporter)
    assert "sk-canary-000" not in str(exporter)
    assert "authorization" in repr(exporter)
    assert exporter.endpoint == "https://otel.example.com/v1/traces"
    assert exporter.name == "otlp"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("ftp://host", {}),
        ("localhost:4318", {}),
        ("http://host:notaport", {}),
        ("http://user:sk-canary-001@host", {}),
        ("http://host", {"convention": "zipkin"}),
        ("http://host", {"timeout": 0}),
        ("http://host", {"headers": {"x-api-key": "sk-canary-001\r\nX-Evil: 1"}}),
        ("http://host", {"headers": {"": "v"}}),
    ]
    for endpoint, kwargs in cases:
        with pytest.raises(ExportError) as info:
            OTLPHTTPExporter(endpoint, **kwargs)
        assert "sk-canary-001" not in str(info.value)


def test_exporter_edge_cases(collector: CollectorFixture) -> None:
    url, state = collector
    exporter = OTLPHTTPExporter(url)
    assert exporter.export([]) is ExportResult.SUCCESS
    bad = Span("not-hex", "also-not-hex", "x", T0, T0)
    assert exporter.export([bad]) is ExportResult.REJECTED
    exporter.shutdown()
    assert exporter.export([make_span()]) is ExportResult.RETRY
    assert state.requests == []

"""The collector's query API against its own OpenAPI document, fuzzed by schemathesis.

A collector on loopback with a DuckDB store, pre-loaded with records (so queries return real data,
traces and sessions exist), serves ``/openapi.json``; schemathesis generates requests for every
documented operation (valid and invalid parameters) and checks each answer: never a 5xx, a status
code the document lists, and a body matching the documented schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from helpers.records import llm_record, span_record
from helpers.server import start_server
from kansoku.model import new_trace_id
from kansoku.server import ServerSettings
from kansoku.store import GROUP_FIELDS, HISTOGRAM_FIELDS, DuckDBStore

EXAMPLES = 250  # per operation and run; the module stays well under a minute
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _preload() -> list[dict[str, Any]]:
    """Calls of several models, users, sessions and tags, some failed, some nested under spans."""
    records: list[dict[str, Any]] = []
    for i in range(30):
        trace_id = new_trace_id()
        root = span_record("handle_request", trace_id=trace_id)
        records.append(root)
        failed = i % 7 == 3
        records.append(
            llm_record(
                trace_id=trace_id,
                parent_span_id=str(root["span_id"]),
                model=("gpt-4o-mini", "claude-haiku", "mock-gpt")[i % 3],
                provider="anthropic" if i % 3 == 1 else "openai",
                user_id=f"user-{i % 4}",
                context_id=f"conv-{i % 5}",
                tags={"department": ("support", "sales")[i % 2]},
                status="error" if failed else "ok",
                error_type="rate_limit" if failed else None,
                output_tokens=None if failed else 5 + i,
            )
        )
    return records


@dataclass(frozen=True)
class Fuzzed:
    schema: schemathesis.BaseSchema
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    srv = start_server(
        ServerSettings(port=0, data_dir=str(tmp / "data"), load_interval_ms=10),
        DuckDBStore(str(tmp / "kansoku.duckdb")),
    )
    try:
        records = _preload()
        assert srv.ingest(records).status == 200
        srv.wait_loaded()
        yield Fuzzed(schemathesis.openapi.from_url(srv.url + "/openapi.json"), records)
    finally:
        srv.stop()


#: Every operation of the served document; a test below fails when one is added and not listed.
OPERATIONS = [
    ("GET", "/api/v1/calls"),
    ("GET", "/api/v1/traces/{trace_id}"),
    ("GET", "/api/v1/sessions/{context_id}"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/histogram"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]
_SINCE = ["24h", "90m", "7d", "2020-01-01T00:00:00Z", "1700000000"]
_GROUP_BY = [*GROUP_FIELDS, "tag:department"]
_BUCKETS = ["1h", "3600", "15m", "1d"]
_QUANTILES = ["true", "false", "latency_ms", "latency_ms,ttft_ms", "total_tokens,ttft_ms,latency_ms"]


def _realistic(
    operation: APIOperation[Any, Any, Any, Any], records: list[dict[str, Any]]
) -> st.SearchStrategy[Any]:
    """Valid values the generator would rarely hit (times, groupings, ids that exist)."""
    path = operation.path
    if path.startswith("/api/v1/traces/"):
        ids = sorted({str(r["trace_id"]) for r in records})
        return st.sampled_from(ids).flatmap(lambda i: operation.as_strategy(path_parameters={"trace_id": i}))
    if path.startswith("/api/v1/sessions/"):
        ids = sorted({str(r["context_id"]) for r in records if r.get("context_id")})
        return st.sampled_from(ids).flatmap(
            lambda i: operation.as_strategy(path_parameters={"context_id": i})
        )
    if path == "/api/v1/stats":
        query = st.fixed_dictionaries(
            {"since": st.sampled_from(_SINCE)},
            optional={
                "group_by": st.sampled_from(_GROUP_BY),
                "bucket": st.sampled_from(_BUCKETS),
                "quantiles": st.sampled_from(_QUANTILES),
            },
        )
        return query.flatmap(lambda q: operation.as_strategy(query=q))
    if path == "/api/v1/histogram":
        query = st.fixed_dictionaries(
            {"since": st.sampled_from(_SINCE)}, optional={"field": st.sampled_from(HISTOGRAM_FIELDS)}
        )
        return query.flatmap(lambda q: operation.as_strategy(query=q))
    if path == "/api/v1/calls":
        return st.sampled_from(_SINCE).flatmap(lambda s: operation.as_strategy(query={"since": s}))
    return operation.as_strategy()


def test_the_fuzzed_operations_are_all_the_documented_ones(api):
    documented = {(r.ok().method.upper(), r.ok().path) for r in api.schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented_and_never_with_a_server_error(api, method, path):
    operation = api.schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        _realistic(operation, api.records),
    )

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS)

    answers_as_documented()

"""The OpenAPI 3.1 document of the collector, served at ``/openapi.json``.

Hand-written beside the handlers (the API is small) and checked against the running server by a
schemathesis test, so it cannot drift from what the server answers.
"""

from __future__ import annotations

from typing import Any

from kansoku import __version__
from kansoku.model import ERROR_TYPES
from kansoku.store import GROUP_FIELDS, HISTOGRAM_FIELDS, MAX_LIMIT, QUANTILE_FIELDS, SORT_FIELDS


def _n(t: str | list[str], **kw: Any) -> dict[str, Any]:
    """A nullable schema of type ``t``."""
    types = [t] if isinstance(t, str) else list(t)
    return {"type": [*types, "null"], **kw}


_STR, _INT, _NUM = _n("string"), _n("integer"), _n("number")
_OBJ = {"type": "object"}
_QUANTILES = {"type": "object", "properties": dict.fromkeys(("p50", "p95", "p99"), _NUM)}

RECORD: dict[str, Any] = {
    "type": "object",
    "description": "One span; LLM calls carry the llm_call fields too (null when unknown, never 0).",
    "required": ["type", "trace_id", "span_id", "timestamp", "start_time_unix_nano", "latency_ms", "status"],
    "properties": {
        "type": {"enum": ["llm_call", "span"]},
        "timestamp": {"type": "string"},
        "trace_id": {"type": "string"},
        "span_id": {"type": "string"},
        "parent_span_id": _STR,
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "start_time_unix_nano": {"type": "integer"},
        "end_time_unix_nano": {"type": "integer"},
        "latency_ms": {"type": "number"},
        "status": {"enum": ["ok", "error", "unset"]},
        "status_code": _INT,
        "error_type": _n("string"),
        "error_message": _STR,
        **dict.fromkeys(("service", "environment", "region", "user_id", "context_id"), _STR),
        "prompt_id": _STR,
        "prompt_version": _STR,
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "attributes": _OBJ,
        "events": {"type": "array", "items": _OBJ},
        "provider": _STR,
        "operation": _STR,
        "model": _STR,
        "request_model": _STR,
        "temperature": _NUM,
        "parameters": _n("object"),
        "input_text": _STR,
        "output_text": _STR,
        "input_messages": _n("array"),
        "output_messages": _n("array"),
        **dict.fromkeys(
            ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "total_tokens"), _INT
        ),
        "usage_estimated": {"type": "boolean"},
        "cost_usd": _NUM,
        "ttft_ms": _NUM,
        "finish_reasons": _n("array", items={"type": "string"}),
        "response_id": _STR,
        "stream": {"type": "boolean"},
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": _STR,
                "code": _STR,
            },
        }
    },
}


def _param(name: str, desc: str, schema: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": desc, "schema": schema or {"type": "string"}, **kw}


_TIME = "RFC 3339 time, unix seconds, or a duration back from now (15m, 1h, 7d)"
FILTERS = [
    _param("user_id", "The end user."),
    _param("context_id", "The session / conversation."),
    _param("prompt_id", "The prompt template id."),
    _param("prompt_version", "The prompt template version."),
    _param("model", "The response model, or the requested one if the call failed before a response."),
    _param("provider", "openai, anthropic, ..."),
    _param("environment", "The deployment environment the record came from (prod, staging, ...)."),
    _param("service", "The service (application) that made the call."),
    _param("error_type", "Error class.", {"enum": sorted(ERROR_TYPES)}),
    _param("status", "Span status.", {"enum": ["ok", "error", "unset"]}),
    _param(
        "tag",
        "key:value, repeatable; all must match.",
        {"type": "array", "items": {"type": "string"}},
        style="form",
        explode=True,
    ),
    _param("since", f"Start time (inclusive): {_TIME}."),
    _param("until", f"End time (exclusive): {_TIME}."),
    _param("q", "Case-insensitive text search in input and output."),
    _param("min_latency_ms", "Minimum latency.", {"type": "number", "minimum": 0}),
    _param("min_tokens", "Minimum total tokens.", {"type": "integer", "minimum": 0}),
    _param("min_cost", "Minimum cost in USD.", {"type": "number", "minimum": 0}),
    _param("type", "Record type (default llm_call).", {"enum": ["llm_call", "span", "all"]}),
]

_ERRORS = {
    str(code): {
        "description": desc,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for code, desc in ((400, "Bad parameter"), (401, "Missing or unknown key"), (403, "Key of another scope"))
}


def _ok(schema: dict[str, Any], desc: str = "OK") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_REC = {"$ref": "#/components/schemas/Record"}
_NODE = {
    "allOf": [
        _REC,
        _obj(["children"], children={"type": "array", "items": {"$ref": "#/components/schemas/TraceNode"}}),
    ]
}
_STATS_ROW = _obj(
    ["count", "errors", "error_rate"],
    group=_STR, bucket_start=_STR, count={"type": "integer"}, errors={"type": "integer"},
    error_rate={"type": "number"},
    errors_by_type={"type": "object", "additionalProperties": {"type": "integer"}},
    latency_ms=_QUANTILES, ttft_ms=_QUANTILES, input_tokens=_INT, output_tokens=_INT, tokens=_QUANTILES,
    cost_usd=_NUM,
)  # fmt: skip
_HISTOGRAM_BIN = _obj(
    ["lo", "hi", "count"],
    lo={"type": "number", "minimum": 0}, hi={"type": "number", "minimum": 0},
    count={"type": "integer", "minimum": 1},
)  # fmt: skip


def _get(
    summary: str, params: list[dict[str, Any]], ok: dict[str, Any], *, not_found: bool = False
) -> dict[str, Any]:
    responses = {"200": ok, **_ERRORS}
    if not_found:
        responses["404"] = {"description": "Not found", "content": _ERRORS["400"]["content"]}
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": responses,
            "security": [{"key": []}, {}],
        }
    }


_FAMILY = "(" + "|".join(QUANTILE_FIELDS) + ")"
# true, false, or one or more families separated by commas (what _params._quantiles accepts).
_QUANTILES_PATTERN = f"^(true|false|{_FAMILY}(,{_FAMILY})*)$"


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 1000},
    }


def document() -> dict[str, Any]:
    calls_params = [
        *FILTERS,
        _param("sort", "Sort key.", {"enum": list(SORT_FIELDS)}),
        _param("order", "Sort order (default desc).", {"enum": ["asc", "desc"]}),
        _param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        _param("cursor", "next_cursor of the previous page of the same query."),
    ]
    stats_params = [
        *FILTERS,
        _param("group_by", f"One of {', '.join(GROUP_FIELDS)} or tag:<key>."),
        _param("bucket", "Time bucket: seconds or a duration (1h); needs since."),
        _param("limit", "Maximum rows.", {"type": "integer", "minimum": 1, "maximum": 10_000}),
        _param(
            "quantiles",
            "The percentile families to compute: true (default) for all, false for none, or a "
            f"comma-separated list of {', '.join(QUANTILE_FIELDS)}; the others are null "
            "(each family left out makes the query much cheaper over long ranges).",
            {"type": "string", "pattern": _QUANTILES_PATTERN},
        ),
    ]
    histogram_params = [
        *FILTERS,
        _param(
            "field",
            "The value to bin (default latency_ms): log-scale bins, 10 per power of ten; "
            "values <= 0 in one bin with lo = hi = 0; missing values left out.",
            {"enum": list(HISTOGRAM_FIELDS)},
        ),
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "kansoku collector", "version": __version__},
        "components": {
            "securitySchemes": {"key": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Record": RECORD, "Error": ERROR, "TraceNode": _NODE},
        },
        "paths": {
            "/api/v1/calls": _get(
                "LLM calls (or spans) matching filters, newest first, cursor-paginated.",
                calls_params,
                _ok(
                    _obj(
                        ["object", "data", "next_cursor", "has_more"],
                        object={"const": "list"},
                        data={"type": "array", "items": _REC},
                        next_cursor=_STR,
                        has_more={"type": "boolean"},
                    )
                ),
            ),
            "/api/v1/traces/{trace_id}": _get(
                "Every span of a trace, nested by parent.",
                [_path_id("trace_id")],
                _ok(
                    _obj(
                        ["object", "trace_id", "span_count", "spans"],
                        object={"const": "trace"},
                        trace_id={"type": "string"},
                        span_count={"type": "integer"},
                        start_time=_STR,
                        duration_ms={"type": "number"},
                        spans={"type": "array", "items": _NODE},
                    )
                ),
                not_found=True,
            ),
            "/api/v1/sessions/{context_id}": _get(
                "The LLM calls of one session / conversation, in order.",
                [_path_id("context_id")],
                _ok(
                    _obj(
                        ["object", "context_id", "call_count", "calls"],
                        object={"const": "session"},
                        context_id={"type": "string"},
                        call_count={"type": "integer"},
                        start_time=_STR,
                        end_time=_STR,
                        input_tokens=_INT,
                        output_tokens=_INT,
                        cost_usd=_NUM,
                        calls={"type": "array", "items": _REC},
                    )
                ),
                not_found=True,
            ),
            "/api/v1/stats": _get(
                "Aggregates grouped by a field or tag and bucketed in time.",
                stats_params,
                _ok(
                    _obj(
                        ["object", "data"],
                        object={"const": "stats"},
                        group_by=_STR,
                        bucket_s=_INT,
                        data={"type": "array", "items": _STATS_ROW},
                    )
                ),
            ),
            "/api/v1/histogram": _get(
                "How the values of one field are spread over every matching call (non-empty bins).",
                histogram_params,
                _ok(
                    _obj(
                        ["object", "field", "count", "data"],
                        object={"const": "histogram"},
                        field={"enum": list(HISTOGRAM_FIELDS)},
                        count={"type": "integer", "minimum": 0},
                        data={"type": "array", "items": _HISTOGRAM_BIN},
                    )
                ),
            ),
            "/healthz": {"get": {"summary": "Liveness.", "responses": {"200": _ok(_OBJ)}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: store reachable and WAL accepting.",
                    "responses": {"200": _ok(_OBJ), "503": _ok(_OBJ, "Not ready")},
                }
            },
        },
    }

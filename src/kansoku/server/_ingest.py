"""Ingest bodies to spans, and spans to write-ahead-log entries.

Both ingest routes end in the same place: a list of validated :class:`Span` objects, encoded once
into the store's row format (NDJSON, :func:`kansoku.store.rows_ndjson`). A WAL entry is that row
data behind a small header carrying the batch's start-time range, so the loader can bulk-load
entries as they are, without decoding them again.

A batch is all or nothing: one bad record rejects the request with a 400 naming it (the SDK's
exporter treats 400 as "drop, do not retry"), so a retried batch never half-lands.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import orjson

from kansoku.model import Span, decode_request
from kansoku.server._errors import APIError
from kansoku.server._records import fast_row
from kansoku.store import rows_ndjson

NATIVE_SCHEMA = "kansoku.batch/v1"
_ENTRY = struct.Struct("<QQI")  # lo start_ns, hi start_ns, row count
MAX_RECORDS = 100_000


def _records(body: bytes) -> list[Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise APIError(400, "body must be a JSON object with 'schema' and 'records'", param="schema")
    schema = doc.get("schema")
    if schema != NATIVE_SCHEMA:
        raise APIError(
            400, f"schema must be {NATIVE_SCHEMA!r}, got {schema!r}", param="schema", code="bad_schema"
        )
    records = doc.get("records")
    if not isinstance(records, list):
        raise APIError(400, "records must be a list of record objects", param="records")
    if len(records) > MAX_RECORDS:
        raise APIError(413, f"at most {MAX_RECORDS} records per batch, got {len(records)}", param="records")
    return records


def _exact(rec: Any, i: int) -> Span:
    try:
        return Span.from_record(rec)
    except ValueError as exc:
        where = f"records[{i}]"
        raise APIError(400, f"{where}: {exc}", param=where, code="invalid_record") from None


def native_entry(body: bytes, project: str) -> tuple[bytes, list[dict[str, Any]]]:
    """A native batch straight to a WAL entry (the fast path), and its rows for the metrics."""
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(_records(body)):
        row = fast_row(rec, project)
        if row is None:
            row = orjson.loads(rows_ndjson([_exact(rec, i)], project))
        rows.append(row)
    if not rows:
        return b"", rows
    lo = min(r["start_ns"] for r in rows)
    hi = max(r["start_ns"] for r in rows)
    data = b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows])
    return _ENTRY.pack(lo, hi, len(rows)) + data, rows


def decode_otlp(body: bytes, content_type: str) -> list[Span]:
    """Spans of an OTLP/HTTP trace export (protobuf or JSON), mapped onto the data model."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ("application/x-protobuf", "application/protobuf", "application/json"):
        raise APIError(
            415,
            f"unsupported content type {media or '(none)'!r}: "
            "send application/x-protobuf or application/json",
            code="unsupported_media_type",
        )
    try:
        spans = decode_request(body, media)
    except (ValueError, RecursionError) as exc:
        raise APIError(400, f"malformed OTLP request: {exc}", code="invalid_otlp") from None
    if len(spans) > MAX_RECORDS:
        raise APIError(413, f"at most {MAX_RECORDS} spans per request, got {len(spans)}")
    return spans


def encode_entry(spans: Sequence[Span], project: str) -> bytes:
    """A WAL entry: header (start-time range, row count) + the rows as NDJSON."""
    lo = min(s.start_ns for s in spans)
    hi = max(s.start_ns for s in spans)
    return _ENTRY.pack(lo, hi, len(spans)) + rows_ndjson(spans, project)


def decode_entry(entry: bytes) -> tuple[int, int, int, memoryview]:
    """``(lo_ns, hi_ns, rows, ndjson)`` of a WAL entry; raises ValueError if it is not one."""
    if len(entry) < _ENTRY.size:
        raise ValueError("WAL entry shorter than its header")
    lo, hi, n = _ENTRY.unpack_from(entry)
    if lo > hi:
        raise ValueError("WAL entry with an inverted time range")
    return lo, hi, n, memoryview(entry)[_ENTRY.size :]

"""Validation of model answers against a JSON Schema, and the re-ask that follows a failure.

Library, chosen by measuring (CPython 3.11, 2 cores; a 1.9 KB order answer against a 2020-12
schema with nested objects, enums, arrays, ``required``, ``additionalProperties: false``):

* jsonschema 4.26 (reference): compile 9 us, validate 454 us, every error with its path; a
  dangling ``$ref`` is found only while validating, not when the config loads.
* fastjsonschema 2.22: compile 4.5 ms, validate 26 us, but the first error only, and no 2020-12
  (``prefixItems`` and the like are silently ignored).
* jsonschema-rs 0.60, chosen: compile 40 us, validate 2.9 us (10 us listing 4 errors), every
  error with its path, every schema error (dangling ``$ref`` too) at compile, typed, no deps.

(``json.loads`` of the answer: 9 us.) Its regex engine bounds backtracking, which matters as
schemas can come from client requests; and it is built with ``offline=True``: by default it
fetches a remote ``$ref`` over HTTP, which from a client's schema is a request forgery.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

MAX_PROBLEMS = 5  # the first few problems are enough to fix an answer; more only cost tokens
MAX_PROBLEM_CHARS = 200
MAX_SCHEMA_CHARS = 4000  # past this the schema is cut in the re-ask (the model has it already)
MAX_ANSWER_CHARS = 16_000  # a runaway answer must not double the size of the re-ask
_MAX_STARTS = 32  # brackets tried as the start of the JSON span; bounds the work on odd prose
_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_REASK_HEAD = "Your previous answer is not valid JSON for the required schema."


class SchemaError(ValueError):
    """A schema that cannot be used; ``path`` locates the bad part inside it."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        super().__init__(f"{json_path(path)}: {reason}")
        self.path = path
        self.reason = reason


class ValidationFailure(ValueError):  # noqa: N818 -- an outcome of the model, not a bug of ours
    """The answer holds no usable JSON; ``reason`` says why and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    value: Any = None
    problems: tuple[str, ...] = ()


class Validator:
    """A compiled schema; the library stays behind this class so that it can be swapped."""

    __slots__ = ("_impl", "schema")

    def __init__(self, schema: dict[str, Any], impl: jsonschema_rs.Validator) -> None:
        self.schema = schema
        self._impl = impl

    def problems(self, value: Any, limit: int = MAX_PROBLEMS) -> list[str]:
        found: list[str] = []
        extra = 0
        for err in self._impl.iter_errors(value):
            if len(found) < limit:
                found.append(_shorten(f"{json_path(err.instance_path)}: {_reason(err)}"))
            else:
                extra += 1
        if extra:
            found.append(f"(and {extra} more problem{'s' if extra > 1 else ''})")
        return found


def compile_schema(schema: dict[str, Any]) -> Validator:
    """Check ``schema`` against its meta-schema and compile it; :class:`SchemaError` if unusable."""
    if not isinstance(schema, dict):
        raise SchemaError((), f"a JSON Schema must be an object, got {type(schema).__name__}")
    try:
        impl = jsonschema_rs.validator_for(schema, offline=True)
    except jsonschema_rs.ValidationError as err:
        path = tuple(err.instance_path)
        raise SchemaError(path, _schema_reason(schema, path, err.message)) from None
    return Validator(schema, impl)


def _schema_reason(schema: dict[str, Any], path: tuple[str | int, ...], message: str) -> str:
    # "not valid under any of the schemas listed in the 'anyOf' keyword" hides the usual
    # mistake, a misspelt type name: say that instead.
    if path and path[-1] == "type" and (len(path) < 2 or path[-2] not in _SUBSCHEMA_MAPS):
        node: Any = schema
        with contextlib.suppress(LookupError, TypeError):  # a path we cannot follow: keep the message
            for part in path:
                node = node[part]
            unknown = [n for n in (node if isinstance(node, list) else [node]) if n not in _TYPES]
            if unknown:
                return f"unknown type {_dump(unknown[0])}; known types: {', '.join(_TYPES)}"
    first = message.split("\n", 1)[0]
    if "Retrieval is disabled" in first:
        return f"{first.split(' is not present', 1)[0]}: only references inside the schema are allowed"
    return first


def json_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """``['items', 2, 'price']`` -> ``$.items[2].price`` (odd keys quoted: ``$["a.b"]``)."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def _reason(err: jsonschema_rs.ValidationError) -> str:
    kind = err.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        # the library names only two options ("or 5 other candidates"); the model needs them all
        options = [_dump(o) for o in kind.options[:12]]
        more = ", ..." if len(kind.options) > 12 else ""
        return f"{_dump(err.instance)} is not one of {', '.join(options)}{more}"
    return err.message


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _shorten(text: str, bound: int = MAX_PROBLEM_CHARS) -> str:
    # Cut the middle: messages start with the offending value and end with the reason.
    if len(text) <= bound:
        return text
    head = bound * 2 // 5
    return f"{text[:head]} ... {text[len(text) - (bound - head - 5) :]}"


# -- finding the JSON in an answer -----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _failure(text: str, err: ValueError) -> ValidationFailure:
    if isinstance(err, json.JSONDecodeError):
        line = text.count("\n", 0, err.pos) + 1
        column = err.pos - text.rfind("\n", 0, err.pos)
        return ValidationFailure(f"malformed JSON at line {line}, column {column}: {err.msg}")
    return ValidationFailure(f"malformed JSON: {err}")  # NaN / Infinity


def _decode_at(text: str, start: int, end: int) -> Any:
    """The JSON value filling ``text[start:end]`` (whitespace aside); positions in errors are
    those of the whole answer, so that they mean something to the model."""
    while start < end and text[start].isspace():
        start += 1
    try:
        value, stop = _DECODER.raw_decode(text[:end], start)
    except ValueError as err:
        raise _failure(text, err) from None
    rest = text[stop:end]
    if rest.strip():
        stop += len(rest) - len(rest.lstrip())
        raise _failure(text, json.JSONDecodeError("unexpected text after the JSON value", text, stop))
    return value


def extract_json(text: str) -> Any:
    """The answer's JSON: the whole text, else its single ```json block, else the outermost
    ``{...}`` / ``[...]`` span. Raises :class:`ValidationFailure` saying why there is none."""
    if not text.strip():
        raise ValidationFailure("the answer is empty; expected a JSON value")
    with contextlib.suppress(ValidationFailure):
        return _decode_at(text, 0, len(text))
    fences = list(_FENCE.finditer(text))
    tagged = [f for f in fences if f.group(1).lower() == "json"]
    if len(tagged) > 1:
        raise ValidationFailure(f"the answer has {len(tagged)} ```json blocks; expected exactly one")
    if tagged:  # the model said where its JSON is: its errors are the ones to report
        return _decode_at(text, tagged[0].start(2), tagged[0].end(2))
    if len(fences) == 1:
        with contextlib.suppress(ValidationFailure):
            return _decode_at(text, fences[0].start(2), fences[0].end(2))
    first: ValidationFailure | None = None
    skip_to = 0
    starts = (m.start() for m in re.finditer(r"[\[{]", text))
    for _, start in zip(range(_MAX_STARTS), starts, strict=False):
        if start < skip_to:  # inside a span that failed: an inner object is not the answer
            continue
        try:
            return _DECODER.raw_decode(text, start)[0]
        except ValueError as err:
            first = first or _failure(text, err)
        skip_to = _span_end(text, start)
    raise first or ValidationFailure("no JSON object or array found in the answer")


def _span_end(text: str, start: int) -> int:
    """Where the bracket opened at ``start`` closes (strings respected); the end of the text if
    it never does, as in an answer cut off by the token limit."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def validate_answer(text: str, validator: Validator) -> Outcome:
    try:
        value = extract_json(text)
    except ValidationFailure as failure:
        return Outcome(ok=False, problems=(failure.reason,))
    problems = validator.problems(value)
    return Outcome(ok=not problems, value=value, problems=tuple(problems))


# -- the re-ask ------------------------------------------------------------------------------------


def reask_messages(
    original_messages: list[dict[str, Any]], answer_text: str, problems: list[str], schema: dict[str, Any]
) -> list[dict[str, Any]]:
    """The conversation to send again: the original, the invalid answer, then what to fix."""
    if len(answer_text) > MAX_ANSWER_CHARS:
        cut = len(answer_text) - MAX_ANSWER_CHARS
        answer_text = f"{answer_text[:MAX_ANSWER_CHARS]}\n[... {cut} more characters]"
    lines = [_REASK_HEAD, "Problems:", *(f"- {p}" for p in problems)]
    asked_before = any(
        m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].startswith(_REASK_HEAD)
        for m in original_messages
    )
    if asked_before:  # a later round: the schema is already in the conversation once
        lines.append(
            "Reply with only the corrected JSON (no prose, no code fence), matching the schema above."
        )
    else:
        text = _dump(schema)
        if len(text) > MAX_SCHEMA_CHARS:
            cut = len(text) - MAX_SCHEMA_CHARS
            text = f"{text[:MAX_SCHEMA_CHARS]} ... [schema truncated, {cut} more characters]"
        lines += [
            "Reply with only the corrected JSON (no prose, no code fence), matching this JSON Schema:",
            text,
        ]
    return [
        *original_messages,
        {"role": "assistant", "content": answer_text},
        {"role": "user", "content": "\n".join(lines)},
    ]


def schema_from_request(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema of ``response_format: {type: json_schema, json_schema: {schema: ...}}``, if any.

    Raises ``ValueError`` when the format asks for a schema but the schema is not an object,
    so that the gateway answers 400 rather than silently skipping validation."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ValueError("response_format.json_schema must be an object")
    schema = spec.get("schema")
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise ValueError("response_format.json_schema.schema must be a JSON Schema object")
    return schema

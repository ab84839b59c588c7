"""The gateway's answer validation: finding the JSON, checking it, and the re-ask."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kansoku.gateway._validate import (
    MAX_PROBLEMS,
    MAX_SCHEMA_CHARS,
    SchemaError,
    ValidationFailure,
    compile_schema,
    extract_json,
    json_path,
    reask_messages,
    schema_from_request,
    validate_answer,
)

ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "customer", "items", "status"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
        "status": {"enum": ["pending", "paid", "shipped", "cancelled"]},
        "customer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "email"],
            "properties": {"name": {"type": "string", "minLength": 1}, "email": {"type": "string"}},
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {
                    "sku": {"type": "string"},
                    "price": {"type": "number", "minimum": 0},
                    "tags": {"type": "array", "items": {"enum": ["new", "sale"]}},
                },
            },
        },
    },
}

ORDER: dict[str, Any] = {
    "order_id": "ORD-000042",
    "status": "paid",
    "customer": {"name": "Aiko", "email": "aiko@example.com"},
    "items": [
        {"sku": "A", "price": 1.5},
        {"sku": "B", "price": 2, "tags": ["new"]},
        {"sku": "C", "price": 0},
    ],
}


def _problems(answer: Any) -> tuple[str, ...]:
    outcome = validate_answer(json.dumps(answer), compile_schema(ORDER_SCHEMA))
    assert not outcome.ok
    return outcome.problems


# -- extraction ------------------------------------------------------------------------------------


def test_valid_answer_passes_with_its_value() -> None:
    outcome = validate_answer(json.dumps(ORDER, indent=2), compile_schema(ORDER_SCHEMA))
    assert outcome.ok
    assert outcome.value == ORDER
    assert outcome.problems == ()


def test_fenced_block_with_prose_around() -> None:
    text = f"Sure, here is the order:\n\n```json\n{json.dumps(ORDER, indent=2)}\n```\n\nAnything else?"
    assert extract_json(text) == ORDER


def test_untagged_fence_and_uppercase_tag() -> None:
    assert extract_json('Result:\n```\n"just a string"\n```') == "just a string"
    assert extract_json("```JSON\n[1, 2]\n```") == [1, 2]


def test_trailing_and_leading_prose() -> None:
    assert extract_json('{"a": 1}\n\nI hope this helps!') == {"a": 1}
    assert extract_json('The answer [final] is: {"a": [1, {"b": 2}]} -- done.') == {"a": [1, {"b": 2}]}
    assert extract_json('Fill {name} in: {"name": "x"}') == {"name": "x"}


def test_whole_text_scalar() -> None:
    assert extract_json("  42\n") == 42
    assert extract_json("null") is None


def test_malformed_json_says_where() -> None:
    with pytest.raises(ValidationFailure, match=r"line 3, column 3: Expecting ',' delimiter"):
        extract_json('{\n  "a": 1\n  "b": 2\n}')


def test_malformed_fence_position_is_in_the_whole_answer() -> None:
    text = 'Here you go:\n```json\n{"a": 1,}\n```'
    with pytest.raises(ValidationFailure, match=r"line 3, column 9: Expecting property name"):
        extract_json(text)


def test_broken_outer_object_is_not_replaced_by_an_inner_one() -> None:
    # a missing comma must be reported, not "fixed" by validating {"b": 1} instead
    with pytest.raises(ValidationFailure, match="Expecting ',' delimiter"):
        extract_json('Here: {"a": {"b": 1} "c": 2}')


def test_truncated_answer() -> None:
    with pytest.raises(ValidationFailure, match="line 1, column 22: Expecting value"):
        extract_json('{"a": {"b": 1}, "c": ')


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot help with that.", "no JSON object or array"),
        ("[NaN]", "NaN is not valid JSON"),
        ('{"x": Infinity}', "Infinity is not valid JSON"),
        ("```json\n1\n```\nor\n```json\n2\n```", "2 ```json blocks"),
        ('```json\n{"a": 1} extra\n```', "line 2, column 10: unexpected text after the JSON value"),
    ],
)
def test_no_usable_json(text: str, reason: str) -> None:
    with pytest.raises(ValidationFailure, match=re.escape(reason)) as info:
        extract_json(text)
    assert info.value.reason == str(info.value)


def test_extraction_failure_becomes_one_problem() -> None:
    outcome = validate_answer("no json", compile_schema({"type": "object"}))
    assert not outcome.ok
    assert outcome.value is None
    assert outcome.problems == ("no JSON object or array found in the answer",)


def test_unicode() -> None:
    value = {"名前": "田中 愛子", "emoji": "🎌", "keys": {"a.b": "ü"}}
    text = f"結果です:\n```json\n{json.dumps(value, ensure_ascii=False)}\n```"
    assert extract_json(text) == value
    schema = {
        "type": "object",
        "properties": {"名前": {"type": "integer"}, "keys": {"properties": {"a.b": {"maxLength": 0}}}},
    }
    problems = validate_answer(text, compile_schema(schema)).problems
    assert set(problems) == {
        '$.名前: "田中 愛子" is not of type "integer"',
        '$.keys["a.b"]: "ü" is longer than 0 characters',
    }
    with pytest.raises(ValidationFailure, match="line 2, column 7: Expecting ':' delimiter"):
        extract_json('説明\n{"名前" "x"}')


# -- schema violations -----------------------------------------------------------------------------


def test_violations_listed_with_paths() -> None:
    bad = copy.deepcopy(ORDER)
    bad["items"][2]["price"] = -1
    bad["items"][1]["tags"] = ["new", "used"]
    bad["status"] = "lost"
    del bad["customer"]["email"]
    bad["coupon"] = "X"
    problems = _problems(bad)
    assert set(problems) == {
        '$.status: "lost" is not one of "pending", "paid", "shipped", "cancelled"',
        '$.customer: "email" is a required property',
        "$.items[2].price: -1 is less than the minimum of 0",
        '$.items[1].tags[1]: "used" is not one of "new", "sale"',
        "$: Additional properties are not allowed ('coupon' was unexpected)",
    }


def test_problems_are_capped() -> None:
    bad = copy.deepcopy(ORDER)
    bad["items"] = [{"sku": i, "price": -i - 1} for i in range(10)]
    problems = _problems(bad)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == f"(and {20 - MAX_PROBLEMS} more problems)"


def test_long_problem_keeps_its_start_and_reason() -> None:
    big = {f"key{i}": "v" * 30 for i in range(40)}
    (problem,) = validate_answer(
        json.dumps({"a": big}), compile_schema({"properties": {"a": {"type": "array"}}})
    ).problems
    assert len(problem) <= 200
    assert problem.startswith('$.a: {"key')
    assert problem.endswith('is not of type "array"')


def test_json_path_rendering() -> None:
    assert json_path([]) == "$"
    assert json_path(["items", 2, "price"]) == "$.items[2].price"
    assert json_path(["a b", 0, "x-y"]) == '$["a b"][0]["x-y"]'


# -- schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "path", "reason"),
    [
        ({"type": "strin"}, ("type",), 'unknown type "strin"'),
        ({"properties": {"a": {"type": ["string", "nope"]}}}, ("properties", "a", "type"), '"nope"'),
        ({"properties": {"a": {"minimum": "zero"}}}, ("properties", "a", "minimum"), "not of type"),
        ({"required": "name"}, ("required",), '"name" is not of type "array"'),
        ({"enum": 3}, ("enum",), "not of type"),
        ({"pattern": "([a-z"}, ("pattern",), 'is not a "regex"'),
        ({"$ref": "#/$defs/missing"}, (), "/$defs/missing"),
        ({"$ref": "https://schemas.example/order.json"}, (), "only references inside the schema"),
        ({"$schema": "https://example.com/mine"}, (), "Unknown meta-schema"),
    ],
)
def test_invalid_schema_rejected_at_compile(
    schema: dict[str, Any], path: tuple[Any, ...], reason: str
) -> None:
    with pytest.raises(SchemaError) as info:
        compile_schema(schema)
    assert info.value.path == path
    assert reason in info.value.reason
    assert str(info.value).startswith(json_path(path) + ": ")
    assert "\n" not in str(info.value)


def test_schema_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="must be an object, got list"):
        compile_schema([])  # type: ignore[arg-type]


def test_compiled_validator_keeps_its_schema() -> None:
    assert compile_schema(ORDER_SCHEMA).schema is ORDER_SCHEMA


# -- re-ask ----------------------------------------------------------------------------------------


def test_reask_message_shape() -> None:
    original = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Make an order."}]
    before = copy.deepcopy(original)
    problems = ["$.items[2].price: -1 is less than the minimum of 0"]
    msgs = reask_messages(original, '{"items": []}', problems, ORDER_SCHEMA)
    assert original == before  # the caller's list is not touched
    assert msgs[:2] == original
    assert msgs[2] == {"role": "assistant", "content": '{"items": []}'}
    assert msgs[3]["role"] == "user"
    content = msgs[3]["content"]
    assert "- $.items[2].price: -1 is less than the minimum of 0" in content
    assert "only the corrected JSON" in content
    assert json.dumps(ORDER_SCHEMA, separators=(",", ":")) in content
    assert len(msgs) == 4


def test_reask_truncates_a_huge_schema_and_answer() -> None:
    schema = {"properties": {f"field_{i}": {"type": "string", "description": "x" * 50} for i in range(500)}}
    msgs = reask_messages([], "y" * 50_000, ["$: bad"], schema)
    content = msgs[-1]["content"]
    assert len(content) < MAX_SCHEMA_CHARS + 500
    assert "[schema truncated," in content
    assert len(msgs[0]["content"]) < 17_000
    assert msgs[0]["content"].endswith("[... 34000 more characters]")


def test_second_reask_does_not_repeat_the_schema() -> None:
    first = reask_messages([{"role": "user", "content": "go"}], "oops", ["no JSON"], ORDER_SCHEMA)
    second = reask_messages(first, "{}", ['$: "order_id" is a required property'], ORDER_SCHEMA)
    schema_text = json.dumps(ORDER_SCHEMA, separators=(",", ":"))
    assert sum(schema_text in m["content"] for m in second) == 1
    assert "matching the schema above" in second[-1]["content"]


# -- schema from the request -----------------------------------------------------------------------


def test_schema_from_request() -> None:
    schema = {"type": "object"}
    body = {
        "model": "m",
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}},
    }
    assert schema_from_request(body) is schema
    assert schema_from_request({"model": "m"}) is None
    assert schema_from_request({"response_format": {"type": "json_object"}}) is None
    assert (
        schema_from_request({"response_format": {"type": "json_schema", "json_schema": {"name": "o"}}})
        is None
    )
    with pytest.raises(ValueError, match=r"json_schema\.schema must be a JSON Schema object"):
        schema_from_request({"response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}})
    with pytest.raises(ValueError, match="json_schema must be an object"):
        schema_from_request({"response_format": {"type": "json_schema"}})


# -- property --------------------------------------------------------------------------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_containers = st.lists(_json, max_size=4) | st.dictionaries(st.text(), _json, max_size=4)
# prose as a model writes it, without the characters that would make it part of the JSON
_prose = st.text(st.characters(exclude_characters='{}[]`"', codec="utf-8"), max_size=40)


@given(value=_containers, before=_prose, after=_prose, indent=st.sampled_from([None, 2]))
def test_any_valid_value_in_prose_is_extracted_equal(
    value: Any, before: str, after: str, indent: int | None
) -> None:
    text = f"{before}{json.dumps(value, indent=indent, ensure_ascii=False)}{after}"
    outcome = validate_answer(text, compile_schema({"type": ["object", "array"]}))
    assert outcome.ok, outcome.problems
    assert outcome.value == value


@given(value=_json, before=_prose, after=_prose, indent=st.sampled_from([None, 2]))
def test_any_valid_value_in_a_fence_is_extracted_equal(
    value: Any, before: str, after: str, indent: int | None
) -> None:
    text = f"{before}\n```json\n{json.dumps(value, indent=indent)}\n```\n{after}"
    outcome = validate_answer(text, compile_schema({}))
    assert outcome.ok, outcome.problems
    assert outcome.value == value

"""Shared pieces of the convention mappings: attribute value types and typed extraction.

Reverse mappings work on a private copy of the attributes (``rest``) and *take* each key they
understand: a key is removed only when its value has the expected type, so a value of a
surprising type stays in ``Span.attributes`` instead of crashing ingest or being lost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from kansoku.model._span import Span

#: A value OpenTelemetry accepts as a span attribute.
AttrValue = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class SpanFields:
    """What a reverse mapping recovered from a span's attributes.

    ``span`` and ``llm`` hold keyword arguments for :class:`Span` and :class:`LLMCall`;
    ``llm`` is ``None`` when the attributes do not describe a call to a model. ``attributes``
    holds what no mapping claimed. The first mapping to set a field wins.
    """

    span: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def set_span(self, name: str, value: Any) -> None:
        """Set a :class:`Span` field unless it is ``None`` or already set."""
        if value is not None:
            self.span.setdefault(name, value)

    def set_llm(self, name: str, value: Any) -> None:
        """Set an :class:`LLMCall` field unless it is ``None``, already set, or this is no LLM call."""
        if value is not None and self.llm is not None:
            self.llm.setdefault(name, value)


def dumps(value: Any) -> str:
    """Compact JSON text; unknown objects become their ``str`` so export never fails on them."""
    return orjson.dumps(value, default=str).decode()


def attr_value(value: Any) -> AttrValue | None:
    """Coerce an arbitrary value into something OTLP attributes can carry (``None``: drop it)."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    array = _array_value(value) if isinstance(value, list | tuple) else None
    return dumps(value) if array is None else array


def _array_value(items: list[Any] | tuple[Any, ...]) -> AttrValue | None:
    # OTel arrays are homogeneous; anything else travels as JSON text.
    if all(isinstance(v, str) for v in items):
        return [str(v) for v in items]
    if all(isinstance(v, bool) for v in items):
        return [bool(v) for v in items]
    if all(isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX for v in items):
        return [int(v) for v in items]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        return [float(v) for v in items]
    return None


def user_attributes(span: Span) -> dict[str, AttrValue]:
    """The span's own attributes, coerced; convention attributes are written over them."""
    out: dict[str, AttrValue] = {}
    for key, value in span.attributes.items():
        coerced = attr_value(value)
        if coerced is not None:
            out[str(key)] = coerced
    return out


def put(attrs: dict[str, AttrValue], key: str, value: AttrValue | None) -> None:
    """Set ``attrs[key]`` unless ``value`` is ``None`` (absent stays absent, never 0 or "")."""
    if value is not None:
        attrs[key] = value


# --- typed extraction ---------------------------------------------------------------------------


def take_str(rest: dict[str, Any], key: str) -> str | None:
    """Take a string attribute; a value of another type stays in ``rest``."""
    value = rest.get(key)
    if isinstance(value, str):
        del rest[key]
        return value
    return None


def as_count(value: Any) -> int | None:
    """A token count: a non-negative integer (integral floats and digit strings are accepted)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def take_count(rest: dict[str, Any], key: str) -> int | None:
    """Take a token count (see :func:`as_count`); anything else stays in ``rest``."""
    value = as_count(rest.get(key))
    if value is not None:
        del rest[key]
    return value


def as_number(value: Any) -> float | None:
    """A finite number (numeric strings accepted; booleans, NaN and infinities are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def take_number(rest: dict[str, Any], key: str) -> float | None:
    """Take a finite number (see :func:`as_number`); anything else stays in ``rest``."""
    value = as_number(rest.get(key))
    if value is not None:
        del rest[key]
    return value


def take_bool(rest: dict[str, Any], key: str) -> bool | None:
    """Take a boolean (``"true"``/``"false"`` strings accepted); anything else stays in ``rest``."""
    value = rest.get(key)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(value, bool):
        del rest[key]
        return value
    return None


def take_str_list(rest: dict[str, Any], key: str) -> list[str] | None:
    """Take a list of strings (a lone string counts as a list of one)."""
    value = rest.get(key)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        del rest[key]
        return list(value)
    return None


def take_json(rest: dict[str, Any], key: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """Take a JSON-text attribute that must decode to ``kind``; ``None`` leaves it in place."""
    value = rest.get(key)
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, kind):
        del rest[key]
        return value
    return None


@cache
def _indexed_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"(\d{1,6})\.(.+)", re.DOTALL)


def pop_indexed(rest: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """Take ``{prefix}{i}.{sub}`` keys (flattened lists) as ``{i: {sub: value}}``."""
    pattern = _indexed_pattern(prefix)
    found: dict[int, dict[str, Any]] = {}
    for key in [k for k in rest if k.startswith(prefix)]:
        match = pattern.fullmatch(key)
        if match is not None:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = rest.pop(key)
    return found

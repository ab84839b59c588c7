"""Readers that check one YAML node each, failing with the file, line, setting path and what is accepted
(``gateway.yaml:14: models[0].retry.attempts: must be a whole number from 1 to 10, got 0``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

from kansoku.gateway._yaml import ConfigFileError, Node

__all__ = ["read_bool", "read_choice", "read_fields", "read_int", "read_num", "read_opt", "read_str"]

_T = TypeVar("_T")


def read_fields(node: Node, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Node]:
    """A mapping's entries; an unknown key is an error with a "did you mean" hint, since a typo
    must not silently drop a policy."""
    items = node.mapping()
    for key, child in items.items():
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(allowed)}"
            raise ConfigFileError(child.file, child.line, f"{node.where}: unknown setting {key!r}{tip}")
    for key in required:
        if key not in items:
            raise node.fail(f"{key} is required")
    return items


def read_opt(items: dict[str, Node], key: str, read: Callable[[Node], _T], default: _T) -> _T:
    return read(items[key]) if key in items else default


def read_str(node: Node) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise node.fail("must be a non-empty string")
    return node.value


def read_choice(options: tuple[str, ...]) -> Callable[[Node], str]:
    def read(node: Node) -> str:
        if node.value not in options:
            raise node.fail(f"must be one of {', '.join(options)}, got {node.value!r}")
        return str(node.value)

    return read


def read_int(low: int, high: int) -> Callable[[Node], int]:
    def read(node: Node) -> int:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise node.fail(f"must be a whole number from {low} to {high}, got {v!r}")
        return v

    return read


def read_num(low: float, high: float, *, low_open: bool = False) -> Callable[[Node], float]:
    def read(node: Node) -> float:
        v = node.value
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not low <= v <= high
            or (low_open and v == low)
        ):
            bound = f"above {low:g}" if low_open else f"from {low:g}"
            raise node.fail(f"must be a number {bound} to {high:g}, got {v!r}")
        return float(v)

    return read


def read_bool(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise node.fail(f"must be true or false, got {node.value!r}")
    return node.value

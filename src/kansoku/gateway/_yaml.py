"""YAML with line numbers and ``${ENV}`` substitution, for configuration errors that say where.

The file is composed into PyYAML nodes (which keep their source marks) instead of loaded into
plain objects, so every value the validator reads carries its line. ``${VAR}`` and
``${VAR:-default}`` are substituted in scalar values only (never in keys), after parsing, so
an environment value cannot inject YAML structure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from kansoku.errors import ConfigError

_CONSTRUCT = yaml.constructor.SafeConstructor()  # resolves scalars to int/float/bool/None/str
_HIDDEN = re.compile(r"__kansoku_env_(\d+)__")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigFileError(ConfigError):
    """A configuration file problem at ``path:line``, with how to fix it."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(where, message)
        self.path = path
        self.line = line


@dataclass(frozen=True, slots=True)
class Node:
    """A value of the file with its 1-based line and dotted path (``models[0].retry.attempts``)."""

    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    line: int
    where: str
    file: str

    def fail(self, message: str) -> ConfigFileError:
        return ConfigFileError(self.file, self.line, f"{self.where}: {message}")

    def mapping(self) -> dict[str, Node]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping (key: value), got {_kind(self.value)}")
        return self.value

    def sequence(self) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_kind(self.value)}")
        return self.value

    def plain(self) -> Any:
        """The value as plain Python objects (for free-form parts such as a JSON schema)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"[:80]


def _substitute(text: str, env: Mapping[str, str], file: str, line: int, where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigFileError(
            file,
            line,
            f"{where}: environment variable {name} is not set (set it, or write ${{{name}:-default}})",
        )

    return _VAR.sub(repl, text)


def _convert(node: yaml.Node, env: Mapping[str, str], file: str, where: str, exprs: list[str]) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigFileError(
                    file, key_node.start_mark.line + 1, f"{where}: keys must be plain words"
                )
            key = str(key_node.value)
            if key in out:
                raise ConfigFileError(file, key_node.start_mark.line + 1, f"{where}: {key!r} is given twice")
            out[key] = _convert(value_node, env, file, f"{where}.{key}" if where else key, exprs)
        return Node(out, line, where or "(top)", file)
    if isinstance(node, yaml.SequenceNode):
        return Node(
            [_convert(item, env, file, f"{where}[{i}]", exprs) for i, item in enumerate(node.value)],
            line,
            where,
            file,
        )
    value = _CONSTRUCT.construct_object(node, deep=True)
    if isinstance(value, str) and _HIDDEN.search(value):
        text = _substitute(_HIDDEN.sub(lambda m: exprs[int(m.group(1))], value), env, file, line, where)
        value = _retype(text) if isinstance(node, yaml.ScalarNode) and node.style is None else text
    return Node(value, line, where, file)


def _retype(text: str) -> Any:
    """A plain (unquoted) scalar after substitution gets YAML's scalar types (``${PORT}`` → int)."""
    try:
        typed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return typed if isinstance(typed, int | float | bool) else text


def load_yaml(text: str, file: str = "<config>", environ: Mapping[str, str] | None = None) -> Node:
    """Parse ``text`` into :class:`Node` values; syntax errors name their line."""
    env = os.environ if environ is None else environ
    # ${VAR} is not valid inside a YAML flow mapping ({...}), yet that is how configs are
    # written: hide each one behind a plain-word placeholder, parse, then substitute in scalars.
    exprs: list[str] = []

    def hide(m: re.Match[str]) -> str:
        exprs.append(m.group(0))
        return f"__kansoku_env_{len(exprs) - 1}__"

    text = _VAR.sub(hide, text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigFileError(file, line, f"not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(file, None, f"not valid YAML: {exc}") from None
    if root is None:
        raise ConfigFileError(file, 1, "the file is empty: it needs at least a models: list")
    return _convert(root, env, file, "", exprs)


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (depth first), for checks that look at all values."""
    yield node
    if isinstance(node.value, dict):
        for child in node.value.values():
            yield from walk(child)
    elif isinstance(node.value, list):
        for child in node.value:
            yield from walk(child)

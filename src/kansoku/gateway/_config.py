"""The gateway's YAML configuration, validated into frozen values at start-up.

Every error names the file, the line, the setting's path and what would be accepted
(``gateway.yaml:14: models[0].retry.attempts: must be a whole number from 1 to 10, got 0``).
Unknown keys are errors with a "did you mean" hint: a typo must not silently drop a policy.
Provider keys are kept in :class:`Secret` values that never show in reprs or messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kansoku.gateway._yaml import ConfigFileError, Node, load_yaml

PROVIDERS = ("openai", "openai_compatible", "azure", "anthropic")
ROUTING = ("round_robin", "weighted", "least_latency", "least_busy")
_T = TypeVar("_T")


class Secret:
    """A credential: usable via :meth:`reveal`, shown as ``***`` everywhere else."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str
    model: str
    api_base: str | None = None
    api_key: Secret | None = None
    region: str = "default"
    weight: float = 1.0
    timeout_s: float = 30.0
    api_version: str | None = None  # Azure


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 2
    base_ms: int = 200
    cap_ms: int = 5000
    budget: float = 0.2


@dataclass(frozen=True, slots=True)
class Breaker:
    window: int = 100
    failure_rate: float = 0.5
    min_calls: int = 20
    open_s: float = 30.0
    half_open_calls: int = 3


@dataclass(frozen=True, slots=True)
class Validate:
    json_schema: dict[str, Any] | None = None
    reask: int = 1


@dataclass(frozen=True, slots=True)
class ModelRoute:
    name: str
    deployments: tuple[Deployment, ...]
    routing: str = "weighted"
    retry: Retry = field(default_factory=Retry)
    circuit_breaker: Breaker = field(default_factory=Breaker)
    fallbacks: tuple[str, ...] = ()
    fallback_response: str | None = None
    validate: Validate | None = None
    deadline_s: float = 60.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    models: tuple[ModelRoute, ...]
    dead_letter_retain_days: int = 7
    allow_api_base_override: bool = False
    max_body_bytes: int = 4 * 1024 * 1024

    def model(self, name: str) -> ModelRoute | None:
        return next((m for m in self.models if m.name == name), None)


# -- readers ---------------------------------------------------------------------------------------


def _fields(node: Node, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Node]:
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


def _get(items: dict[str, Node], key: str, read: Callable[[Node], _T], default: _T) -> _T:
    return read(items[key]) if key in items else default


def _str(node: Node) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise node.fail("must be a non-empty string")
    return node.value


def _choice(options: tuple[str, ...]) -> Callable[[Node], str]:
    def read(node: Node) -> str:
        if node.value not in options:
            raise node.fail(f"must be one of {', '.join(options)}, got {node.value!r}")
        return str(node.value)

    return read


def _int(low: int, high: int) -> Callable[[Node], int]:
    def read(node: Node) -> int:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise node.fail(f"must be a whole number from {low} to {high}, got {v!r}")
        return v

    return read


def _num(low: float, high: float, *, low_open: bool = False) -> Callable[[Node], float]:
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


def _bool(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise node.fail(f"must be true or false, got {node.value!r}")
    return node.value


def _deployment(node: Node) -> Deployment:
    f = _fields(
        node,
        ("provider", "model", "api_base", "api_key", "region", "weight", "timeout_s", "api_version"),
        ("provider", "model"),
    )
    provider = _choice(PROVIDERS)(f["provider"])
    api_base = _get(f, "api_base", _str, None)
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise f["api_base"].fail("must start with http:// or https://")
    if provider in ("openai_compatible", "azure") and api_base is None:
        raise node.fail(f"api_base is required for provider {provider}")
    key_node = f.get("api_key")
    api_key = Secret(_str(key_node)) if key_node is not None else None
    return Deployment(
        provider=provider,
        model=_str(f["model"]),
        api_base=api_base,
        api_key=api_key,
        region=_get(f, "region", _str, "default"),
        weight=_get(f, "weight", _num(0.0, 1e6, low_open=True), 1.0),
        timeout_s=_get(f, "timeout_s", _num(0.0, 3600.0, low_open=True), 30.0),
        api_version=_get(f, "api_version", _str, None),
    )


def _retry(node: Node) -> Retry:
    f = _fields(node, ("attempts", "backoff", "base_ms", "cap_ms", "budget"))
    _get(f, "backoff", _choice(("full_jitter",)), "full_jitter")
    r = Retry(
        attempts=_get(f, "attempts", _int(1, 10), 2),
        base_ms=_get(f, "base_ms", _int(1, 600_000), 200),
        cap_ms=_get(f, "cap_ms", _int(1, 600_000), 5000),
        budget=_get(f, "budget", _num(0.0, 1.0), 0.2),
    )
    if r.cap_ms < r.base_ms:
        raise node.fail(f"cap_ms ({r.cap_ms}) must not be below base_ms ({r.base_ms})")
    return r


def _breaker(node: Node) -> Breaker:
    f = _fields(node, ("window", "failure_rate", "min_calls", "open_s", "half_open_calls"))
    b = Breaker(
        window=_get(f, "window", _int(1, 100_000), 100),
        failure_rate=_get(f, "failure_rate", _num(0.0, 1.0, low_open=True), 0.5),
        min_calls=_get(f, "min_calls", _int(1, 100_000), 20),
        open_s=_get(f, "open_s", _num(0.0, 86_400.0, low_open=True), 30.0),
        half_open_calls=_get(f, "half_open_calls", _int(1, 1000), 3),
    )
    if b.min_calls > b.window:
        raise node.fail(f"min_calls ({b.min_calls}) cannot exceed window ({b.window})")
    return b


def _validate(node: Node) -> Validate:
    f = _fields(node, ("json_schema", "reask"))
    schema = f["json_schema"].plain() if "json_schema" in f else None
    if schema is not None and not isinstance(schema, dict):
        raise f["json_schema"].fail("must be a JSON Schema object")
    return Validate(json_schema=schema, reask=_get(f, "reask", _int(0, 5), 1))


def _model(node: Node) -> ModelRoute:
    f = _fields(
        node,
        ("name", "deployments", "routing", "retry", "circuit_breaker", "fallbacks", "fallback_response",
         "validate", "deadline_s"),
        ("name",),
    )  # fmt: skip
    deployments = tuple(_deployment(d) for d in f["deployments"].sequence()) if "deployments" in f else ()
    fallbacks = tuple(_str(n) for n in f["fallbacks"].sequence()) if "fallbacks" in f else ()
    fallback_response = _get(f, "fallback_response", _str, None)
    if not deployments and not fallbacks and fallback_response is None:
        raise node.fail("needs deployments (or fallbacks, or a fallback_response)")
    return ModelRoute(
        name=_str(f["name"]),
        deployments=deployments,
        routing=_get(f, "routing", _choice(ROUTING), "weighted"),
        retry=_get(f, "retry", _retry, Retry()),
        circuit_breaker=_get(f, "circuit_breaker", _breaker, Breaker()),
        fallbacks=fallbacks,
        fallback_response=fallback_response,
        validate=_get(f, "validate", _validate, None),
        deadline_s=_get(f, "deadline_s", _num(0.0, 3600.0, low_open=True), 60.0),
    )


def _check_fallbacks(models: tuple[ModelRoute, ...], nodes: list[Node]) -> None:
    names = {m.name: i for i, m in enumerate(models)}
    for i, m in enumerate(models):
        for fb in m.fallbacks:
            if fb not in names:
                hint = difflib.get_close_matches(fb, list(names), n=1)
                tip = f"; did you mean {hint[0]!r}?" if hint else ""
                raise nodes[i].fail(f"fallback {fb!r} is not a model name{tip}")
        seen, todo = {m.name}, list(m.fallbacks)
        while todo:  # a chain that comes back to itself would loop forever at request time
            nxt = todo.pop()
            if nxt == m.name:
                raise nodes[i].fail(f"fallbacks of {m.name!r} lead back to itself")
            if nxt not in seen:
                seen.add(nxt)
                todo.extend(models[names[nxt]].fallbacks)


def parse_config(
    text: str, file: str = "<config>", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate a gateway YAML document; raises :class:`ConfigFileError` naming the line."""
    root = load_yaml(text, file, environ)
    top = ("models", "keys", "limits", "dead_letter", "allow_api_base_override", "max_body_bytes")
    f = _fields(root, top, ("models",))
    for later in ("keys", "limits"):
        if later in f:  # parsed with the gateway's key store and limiter; refusing beats ignoring
            raise f[later].fail("is not supported by this version yet (virtual keys and limits come next)")
    model_nodes = f["models"].sequence()
    if not model_nodes:
        raise f["models"].fail("needs at least one model")
    models = tuple(_model(n) for n in model_nodes)
    seen: dict[str, Node] = {}
    for m, n in zip(models, model_nodes, strict=True):
        if m.name in seen:
            raise n.fail(f"model name {m.name!r} is used twice (first at line {seen[m.name].line})")
        seen[m.name] = n
    _check_fallbacks(models, model_nodes)
    retain = 7
    if "dead_letter" in f:
        dl = _fields(f["dead_letter"], ("retain_days",))
        retain = _get(dl, "retain_days", _int(1, 3650), 7)
    return GatewayConfig(
        models=models,
        dead_letter_retain_days=retain,
        allow_api_base_override=_get(f, "allow_api_base_override", _bool, False),
        max_body_bytes=_get(f, "max_body_bytes", _int(1024, 1 << 30), 4 * 1024 * 1024),
    )


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(str(p), None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(str(p), None, f"cannot read it: {exc}") from None
    return parse_config(text, str(p), environ)

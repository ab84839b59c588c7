"""The gateway's YAML configuration, validated into frozen values at start-up: the settings'
dataclasses, the ``models:`` readers and :func:`parse_config` (access settings: ``_config_access``)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kansoku.gateway._config_access import ALGORITHMS, read_access
from kansoku.gateway._config_read import (
    read_bool,
    read_choice,
    read_fields,
    read_int,
    read_num,
    read_opt,
    read_str,
)
from kansoku.gateway._keys import Budget, Limit, VirtualKey
from kansoku.gateway._yaml import ConfigFileError, Node, load_yaml

__all__ = [
    "ALGORITHMS",
    "PROVIDERS",
    "ROUTING",
    "Breaker",
    "Deployment",
    "GatewayConfig",
    "ModelRoute",
    "Retry",
    "Secret",
    "Validate",
    "load_config",
    "parse_config",
]

PROVIDERS = ("openai", "openai_compatible", "azure", "anthropic")
ROUTING = ("round_robin", "weighted", "least_latency", "least_busy")


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
    keys: tuple[VirtualKey, ...] = ()
    admin_key_hashes: frozenset[str] = field(default=frozenset(), repr=False)
    limits: tuple[Limit, ...] = ()
    budgets: tuple[Budget, ...] = ()

    def model(self, name: str) -> ModelRoute | None:
        return next((m for m in self.models if m.name == name), None)


# -- readers ---------------------------------------------------------------------------------------


def _deployment(node: Node) -> Deployment:
    f = read_fields(
        node,
        ("provider", "model", "api_base", "api_key", "region", "weight", "timeout_s", "api_version"),
        ("provider", "model"),
    )
    provider = read_choice(PROVIDERS)(f["provider"])
    api_base = read_opt(f, "api_base", read_str, None)
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise f["api_base"].fail("must start with http:// or https://")
    if provider in ("openai_compatible", "azure") and api_base is None:
        raise node.fail(f"api_base is required for provider {provider}")
    key_node = f.get("api_key")
    api_key = Secret(read_str(key_node)) if key_node is not None else None
    return Deployment(
        provider=provider,
        model=read_str(f["model"]),
        api_base=api_base,
        api_key=api_key,
        region=read_opt(f, "region", read_str, "default"),
        weight=read_opt(f, "weight", read_num(0.0, 1e6, low_open=True), 1.0),
        timeout_s=read_opt(f, "timeout_s", read_num(0.0, 3600.0, low_open=True), 30.0),
        api_version=read_opt(f, "api_version", read_str, None),
    )


def _retry(node: Node) -> Retry:
    f = read_fields(node, ("attempts", "backoff", "base_ms", "cap_ms", "budget"))
    read_opt(f, "backoff", read_choice(("full_jitter",)), "full_jitter")
    r = Retry(
        attempts=read_opt(f, "attempts", read_int(1, 10), 2),
        base_ms=read_opt(f, "base_ms", read_int(1, 600_000), 200),
        cap_ms=read_opt(f, "cap_ms", read_int(1, 600_000), 5000),
        budget=read_opt(f, "budget", read_num(0.0, 1.0), 0.2),
    )
    if r.cap_ms < r.base_ms:
        raise node.fail(f"cap_ms ({r.cap_ms}) must not be below base_ms ({r.base_ms})")
    return r


def _breaker(node: Node) -> Breaker:
    f = read_fields(node, ("window", "failure_rate", "min_calls", "open_s", "half_open_calls"))
    b = Breaker(
        window=read_opt(f, "window", read_int(1, 100_000), 100),
        failure_rate=read_opt(f, "failure_rate", read_num(0.0, 1.0, low_open=True), 0.5),
        min_calls=read_opt(f, "min_calls", read_int(1, 100_000), 20),
        open_s=read_opt(f, "open_s", read_num(0.0, 86_400.0, low_open=True), 30.0),
        half_open_calls=read_opt(f, "half_open_calls", read_int(1, 1000), 3),
    )
    if b.min_calls > b.window:
        raise node.fail(f"min_calls ({b.min_calls}) cannot exceed window ({b.window})")
    return b


def _validate(node: Node) -> Validate:
    f = read_fields(node, ("json_schema", "reask"))
    schema = f["json_schema"].plain() if "json_schema" in f else None
    if schema is not None and not isinstance(schema, dict):
        raise f["json_schema"].fail("must be a JSON Schema object")
    return Validate(json_schema=schema, reask=read_opt(f, "reask", read_int(0, 5), 1))


def _model(node: Node) -> ModelRoute:
    f = read_fields(
        node,
        ("name", "deployments", "routing", "retry", "circuit_breaker", "fallbacks", "fallback_response",
         "validate", "deadline_s"),
        ("name",),
    )  # fmt: skip
    deployments = tuple(_deployment(d) for d in f["deployments"].sequence()) if "deployments" in f else ()
    fallbacks = tuple(read_str(n) for n in f["fallbacks"].sequence()) if "fallbacks" in f else ()
    fallback_response = read_opt(f, "fallback_response", read_str, None)
    if not deployments and not fallbacks and fallback_response is None:
        raise node.fail("needs deployments (or fallbacks, or a fallback_response)")
    return ModelRoute(
        name=read_str(f["name"]),
        deployments=deployments,
        routing=read_opt(f, "routing", read_choice(ROUTING), "weighted"),
        retry=read_opt(f, "retry", _retry, Retry()),
        circuit_breaker=read_opt(f, "circuit_breaker", _breaker, Breaker()),
        fallbacks=fallbacks,
        fallback_response=fallback_response,
        validate=read_opt(f, "validate", _validate, None),
        deadline_s=read_opt(f, "deadline_s", read_num(0.0, 3600.0, low_open=True), 60.0),
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
    top = ("models", "keys", "admin_keys", "limits", "budgets", "dead_letter", "allow_api_base_override",
           "max_body_bytes")  # fmt: skip
    f = read_fields(root, top, ("models",))
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
    keys, admin, limits, budgets = read_access(f, seen)
    retain = 7
    if "dead_letter" in f:
        dl = read_fields(f["dead_letter"], ("retain_days",))
        retain = read_opt(dl, "retain_days", read_int(1, 3650), 7)
    return GatewayConfig(
        models=models,
        dead_letter_retain_days=retain,
        allow_api_base_override=read_opt(f, "allow_api_base_override", read_bool, False),
        max_body_bytes=read_opt(f, "max_body_bytes", read_int(1024, 1 << 30), 4 * 1024 * 1024),
        keys=keys,
        admin_key_hashes=admin,
        limits=limits,
        budgets=budgets,
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

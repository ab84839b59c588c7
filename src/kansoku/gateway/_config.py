"""The gateway's YAML configuration, validated into frozen values at start-up.

Every error names the file, the line, the setting's path and what would be accepted
(``gateway.yaml:14: models[0].retry.attempts: must be a whole number from 1 to 10, got 0``).
Unknown keys are errors with a "did you mean" hint: a typo must not silently drop a policy.
Provider keys are kept in :class:`Secret` values that never show in reprs or messages; virtual
and admin keys are hashed as they load and only their SHA-256 is kept (see ``_keys``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kansoku.gateway._keys import (
    BUDGET_PER,
    LIMIT_ON,
    LIMIT_PER,
    MIN_KEY_CHARS,
    Budget,
    Limit,
    VirtualKey,
    key_digest,
)
from kansoku.gateway._yaml import ConfigFileError, Node, load_yaml
from kansoku.policy import RateLimit, SlidingWindow, TokenBucket

PROVIDERS = ("openai", "openai_compatible", "azure", "anthropic")
ROUTING = ("round_robin", "weighted", "least_latency", "least_busy")
ALGORITHMS = ("token_bucket", "sliding_window")
# A sliding window folds takes closer than window_s / _WINDOW_SLOTS into one entry: its log (and
# its Redis value) stays bounded, and folding only ever refuses more, never admits more.
_WINDOW_SLOTS = 1000
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
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
    keys: tuple[VirtualKey, ...] = ()
    admin_key_hashes: frozenset[str] = field(default=frozenset(), repr=False)
    limits: tuple[Limit, ...] = ()
    budgets: tuple[Budget, ...] = ()

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


# -- keys, limits, budgets -------------------------------------------------------------------------


def _plain_key(node: Node) -> str:
    """The SHA-256 of a plain key; the key itself is dropped here and never echoed."""
    v = node.value
    if not isinstance(v, str):
        raise node.fail('must be a string (quote it, as in key: "${MY_KEY}", if the key is all digits)')
    if v != v.strip():
        raise node.fail("must not start or end with whitespace (HTTP clients strip it from headers)")
    if len(v) < MIN_KEY_CHARS:
        raise node.fail(
            f"is shorter than {MIN_KEY_CHARS} characters: keys are kept only as an unsalted SHA-256, "
            "which protects long random keys only (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key_digest(v)


def _key_material(node: Node, f: dict[str, Node]) -> str:
    if ("key" in f) == ("key_sha256" in f):
        raise node.fail("needs exactly one of key (the key, e.g. ${MY_KEY}) or key_sha256 (its SHA-256)")
    if "key" in f:
        return _plain_key(f["key"])
    v = f["key_sha256"].value
    if not isinstance(v, str) or not _HEX64.fullmatch(v.lower()):
        raise f["key_sha256"].fail('must be 64 hex digits, the key\'s SHA-256 (printf %s "$KEY" | sha256sum)')
    return v.lower()


def _admin_key(node: Node) -> str:
    if isinstance(node.value, dict):
        return _key_material(node, _fields(node, ("key", "key_sha256")))
    return _plain_key(node)


def _no_per(node: Node, section: str) -> None:
    if "per" in node.mapping():  # else "did you mean 'per_s'?" would mislead
        raise node.mapping()["per"].fail(
            f"is implied (key) inside a key; for another per, use the top {section}:"
        )


def _limit(node: Node, per: str | None = None) -> Limit:
    """A ``limits:`` entry; inside a key, ``per`` is implied (``key``) and not written."""
    if per:
        _no_per(node, "limits")
    names = ("on", "algorithm", "limit", "per_s", "window_s")
    f = _fields(
        node, names if per else ("per", *names), ("on", "algorithm", "limit", *(() if per else ("per",)))
    )
    algorithm = _choice(ALGORITHMS)(f["algorithm"])
    want, other = ("per_s", "window_s") if algorithm == "token_bucket" else ("window_s", "per_s")
    if other in f:
        raise f[other].fail(f"is not a setting of a {algorithm}; it takes {want}")
    if want not in f:
        what = "refill rate per second" if want == "per_s" else "window length in seconds"
        raise node.fail(f"{want} (the {what}) is required for a {algorithm}")
    amount = _num(1.0, 1e12)(f["limit"])
    rate: RateLimit
    if algorithm == "token_bucket":
        rate = TokenBucket(amount, _num(0.0, 1e12, low_open=True)(f["per_s"]))
    else:
        window_s = _num(0.0, 366 * 86_400.0, low_open=True)(f["window_s"])
        rate = SlidingWindow(amount, window_s, window_s / _WINDOW_SLOTS)
    return Limit(per or _choice(LIMIT_PER)(f["per"]), _choice(LIMIT_ON)(f["on"]), rate)


def _budget(node: Node, per: str | None = None) -> Budget:
    """A ``budgets:`` entry; inside a key, ``per`` is implied (``key``) and not written."""
    if per:
        _no_per(node, "budgets")
    money = ("daily_usd", "monthly_usd")
    f = _fields(node, money if per else ("per", *money), () if per else ("per",))
    if not any(m in f for m in money):
        raise node.fail("needs daily_usd or monthly_usd (or both)")
    usd = _num(0.0, 1e12, low_open=True)
    return Budget(
        per or _choice(BUDGET_PER)(f["per"]),
        _get(f, "daily_usd", usd, None),
        _get(f, "monthly_usd", usd, None),
    )


def _tag(node: Node) -> str:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, str | int | float) or str(v) == "":
        raise node.fail("must be a non-empty string")
    return str(v)


def _key(node: Node, model_names: dict[str, Node]) -> VirtualKey:
    f = _fields(node, ("name", "key", "key_sha256", "models", "tags", "budget", "limits"), ("name",))
    name = _str(f["name"])
    if not _KEY_NAME.fullmatch(name):
        raise f["name"].fail("use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    models = None
    if "models" in f:
        items = f["models"].sequence()
        if not items:
            raise f["models"].fail(
                "is empty, so the key could call nothing; list models or leave it out (all)"
            )
        models = frozenset(_str(n) for n in items)
        for n in items:
            if n.value not in model_names:
                hint = difflib.get_close_matches(n.value, list(model_names), n=1)
                raise n.fail(
                    f"{n.value!r} is not a model name" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
    return VirtualKey(
        name=name,
        sha256=_key_material(node, f),
        models=models,
        tags={k: _tag(v) for k, v in f["tags"].mapping().items()} if "tags" in f else {},
        budget=_get(f, "budget", lambda n: _budget(n, "key"), None),
        limits=tuple(_limit(n, "key") for n in f["limits"].sequence()) if "limits" in f else (),
    )


def _access(
    f: dict[str, Node], model_names: dict[str, Node]
) -> tuple[tuple[VirtualKey, ...], frozenset[str], tuple[Limit, ...], tuple[Budget, ...]]:
    """``keys:``, ``admin_keys:``, ``limits:`` and ``budgets:``, checked against each other."""
    key_nodes = f["keys"].sequence() if "keys" in f else []
    keys = tuple(_key(n, model_names) for n in key_nodes)
    names: dict[str, Node] = {}
    hashes: dict[str, str] = {}  # digest -> where it was first given
    for k, n in zip(keys, key_nodes, strict=True):
        if k.name in names:
            raise n.fail(f"key name {k.name!r} is used twice (first at line {names[k.name].line})")
        if k.sha256 in hashes:
            raise n.fail(
                f"the same key is given twice (first at {hashes[k.sha256]}); give each client its own"
            )
        names[k.name], hashes[k.sha256] = n, n.where
    admin: set[str] = set()
    for n in f["admin_keys"].sequence() if "admin_keys" in f else []:
        digest = _admin_key(n)
        if digest in hashes:
            raise n.fail(f"the same key is given twice (first at {hashes[digest]}); admin keys must differ")
        hashes[digest] = n.where
        admin.add(digest)
    limit_nodes = f["limits"].sequence() if "limits" in f else []
    budget_nodes = f["budgets"].sequence() if "budgets" in f else []
    limits = tuple(_limit(n) for n in limit_nodes)
    budgets = tuple(_budget(n) for n in budget_nodes)
    pers = [(x.per, n) for x, n in zip(limits, limit_nodes, strict=True)]
    pers += [(x.per, n) for x, n in zip(budgets, budget_nodes, strict=True)]
    for per, n in pers:  # a rule whose subject can never exist would silently never apply
        if per == "key" and not keys:
            raise n.fail(
                "per: key needs virtual keys, but no keys: are configured (add keys:, or change per)"
            )
        if per == "department" and not any(k.department for k in keys):
            raise n.fail("per: department needs keys with a department tag (keys[].tags.department)")
    return keys, frozenset(admin), limits, budgets


def parse_config(
    text: str, file: str = "<config>", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate a gateway YAML document; raises :class:`ConfigFileError` naming the line."""
    root = load_yaml(text, file, environ)
    top = ("models", "keys", "admin_keys", "limits", "budgets", "dead_letter", "allow_api_base_override",
           "max_body_bytes")  # fmt: skip
    f = _fields(root, top, ("models",))
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
    keys, admin, limits, budgets = _access(f, seen)
    retain = 7
    if "dead_letter" in f:
        dl = _fields(f["dead_letter"], ("retain_days",))
        retain = _get(dl, "retain_days", _int(1, 3650), 7)
    return GatewayConfig(
        models=models,
        dead_letter_retain_days=retain,
        allow_api_base_override=_get(f, "allow_api_base_override", _bool, False),
        max_body_bytes=_get(f, "max_body_bytes", _int(1024, 1 << 30), 4 * 1024 * 1024),
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

"""Readers for ``keys:``, ``admin_keys:``, ``limits:`` and ``budgets:``; virtual and admin keys are
hashed as they load and only their SHA-256 is kept (see ``_keys``)."""

from __future__ import annotations

import difflib
import re

from kansoku.gateway._config_read import read_choice, read_fields, read_num, read_opt, read_str
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
from kansoku.gateway._yaml import Node
from kansoku.policy import RateLimit, SlidingWindow, TokenBucket

__all__ = ["ALGORITHMS", "read_access"]

ALGORITHMS = ("token_bucket", "sliding_window")
# A sliding window folds takes closer than window_s / _WINDOW_SLOTS into one entry: its log (and
# its Redis value) stays bounded, and folding only ever refuses more, never admits more.
_WINDOW_SLOTS = 1000
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


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
        return _key_material(node, read_fields(node, ("key", "key_sha256")))
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
    f = read_fields(
        node, names if per else ("per", *names), ("on", "algorithm", "limit", *(() if per else ("per",)))
    )
    algorithm = read_choice(ALGORITHMS)(f["algorithm"])
    want, other = ("per_s", "window_s") if algorithm == "token_bucket" else ("window_s", "per_s")
    if other in f:
        raise f[other].fail(f"is not a setting of a {algorithm}; it takes {want}")
    if want not in f:
        what = "refill rate per second" if want == "per_s" else "window length in seconds"
        raise node.fail(f"{want} (the {what}) is required for a {algorithm}")
    amount = read_num(1.0, 1e12)(f["limit"])
    rate: RateLimit
    if algorithm == "token_bucket":
        rate = TokenBucket(amount, read_num(0.0, 1e12, low_open=True)(f["per_s"]))
    else:
        window_s = read_num(0.0, 366 * 86_400.0, low_open=True)(f["window_s"])
        rate = SlidingWindow(amount, window_s, window_s / _WINDOW_SLOTS)
    return Limit(per or read_choice(LIMIT_PER)(f["per"]), read_choice(LIMIT_ON)(f["on"]), rate)


def _budget(node: Node, per: str | None = None) -> Budget:
    """A ``budgets:`` entry; inside a key, ``per`` is implied (``key``) and not written."""
    if per:
        _no_per(node, "budgets")
    money = ("daily_usd", "monthly_usd")
    f = read_fields(node, money if per else ("per", *money), () if per else ("per",))
    if not any(m in f for m in money):
        raise node.fail("needs daily_usd or monthly_usd (or both)")
    usd = read_num(0.0, 1e12, low_open=True)
    return Budget(
        per or read_choice(BUDGET_PER)(f["per"]),
        read_opt(f, "daily_usd", usd, None),
        read_opt(f, "monthly_usd", usd, None),
    )


def _tag(node: Node) -> str:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, str | int | float) or str(v) == "":
        raise node.fail("must be a non-empty string")
    return str(v)


def _key(node: Node, model_names: dict[str, Node]) -> VirtualKey:
    f = read_fields(node, ("name", "key", "key_sha256", "models", "tags", "budget", "limits"), ("name",))
    name = read_str(f["name"])
    if not _KEY_NAME.fullmatch(name):
        raise f["name"].fail("use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    models = None
    if "models" in f:
        items = f["models"].sequence()
        if not items:
            raise f["models"].fail(
                "is empty, so the key could call nothing; list models or leave it out (all)"
            )
        models = frozenset(read_str(n) for n in items)
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
        budget=read_opt(f, "budget", lambda n: _budget(n, "key"), None),
        limits=tuple(_limit(n, "key") for n in f["limits"].sequence()) if "limits" in f else (),
    )


def read_access(
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

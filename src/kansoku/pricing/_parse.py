"""Reading and validating price documents (the packaged ``prices.json`` or a user's file).

Validation is strict and names the exact place of a mistake, because a typo in a price file
would otherwise surface weeks later as a silently wrong cost report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from kansoku.pricing._names import name_key
from kansoku.pricing._price import ModelPrice, PriceCatalogError

_TOP_FIELDS = frozenset({"version", "currency", "unit", "notes", "models"})
_ENTRY_FIELDS = frozenset(
    {
        "provider",
        "model",
        "aliases",
        "input",
        "cached_input",
        "output",
        "reasoning",
        "effective_from",
        "effective_until",
    }
)
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class PriceDocument:
    """A validated price document."""

    version: str | None
    prices: tuple[ModelPrice, ...]


def read_document(path: str | Path) -> PriceDocument:
    """Read and validate the JSON price file at ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceCatalogError(f"{source}: cannot read the price file: {exc}") from exc
    return parse_text(text, source)


def parse_text(text: str, source: str) -> PriceDocument:
    """Validate a JSON price document given as text; ``source`` names it in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceCatalogError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from exc
    return parse_document(data, source)


def parse_document(data: Any, source: str) -> PriceDocument:
    """Validate an already-decoded price document."""
    if not isinstance(data, dict):
        raise PriceCatalogError(f"{source}: the document must be a JSON object with a 'models' list")
    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        raise PriceCatalogError(f"{source}: unknown field {unknown[0]!r} (allowed: {sorted(_TOP_FIELDS)})")
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        raise PriceCatalogError(f"{source}: version must be a string")
    if data.get("currency", "USD") != "USD":
        raise PriceCatalogError(f"{source}: currency must be 'USD' (kansoku records cost_usd)")
    if data.get("unit", "per_million_tokens") != "per_million_tokens":
        raise PriceCatalogError(f"{source}: unit must be 'per_million_tokens'")
    models = data.get("models")
    if not isinstance(models, list):
        raise PriceCatalogError(f"{source}: models must be a list of price entries")
    prices = tuple(_entry(item, f"{source}: models[{i}]") for i, item in enumerate(models))
    check_prices(prices, source)
    return PriceDocument(version, prices)


def check_prices(prices: Sequence[ModelPrice], source: str) -> None:
    """Reject overlapping periods of one provider's model and names claimed by two models."""
    periods: dict[tuple[str, str], list[tuple[int, ModelPrice]]] = {}
    owners: dict[str, tuple[str, int]] = {}  # name key -> (model key, entry index)
    for i, price in enumerate(prices):
        where = f"{source}: models[{i}]"
        model = name_key(price.model)
        if price.effective_until is not None and price.effective_until <= price.effective_from:
            raise PriceCatalogError(f"{where}.effective_until must be after effective_from")
        for j, other in periods.setdefault((name_key(price.provider), model), []):
            if _overlap(price, other):
                raise PriceCatalogError(
                    f"{where}: its period overlaps models[{j}] ({price.provider} {price.model}); "
                    "give the earlier entry an effective_until"
                )
        periods[(name_key(price.provider), model)].append((i, price))
        for field, name in [("model", price.model)] + [("aliases", a) for a in price.aliases]:
            owner = owners.setdefault(name_key(name), (model, i))
            if owner[0] != model:
                raise PriceCatalogError(
                    f"{where}.{field}: {name!r} already names model {owner[0]!r} (models[{owner[1]}])"
                )


def _overlap(a: ModelPrice, b: ModelPrice) -> bool:
    a_ends_after_b_starts = a.effective_until is None or a.effective_until > b.effective_from
    b_ends_after_a_starts = b.effective_until is None or b.effective_until > a.effective_from
    return a_ends_after_b_starts and b_ends_after_a_starts


def _entry(item: Any, where: str) -> ModelPrice:
    if not isinstance(item, dict):
        raise PriceCatalogError(f"{where} must be an object")
    unknown = sorted(set(item) - _ENTRY_FIELDS)
    if unknown:
        raise PriceCatalogError(f"{where}: unknown field {unknown[0]!r} (allowed: {sorted(_ENTRY_FIELDS)})")
    aliases = item.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise PriceCatalogError(f"{where}.aliases must be a list of non-empty strings")
    start = _date(item, "effective_from", where)
    return ModelPrice(
        provider=_text(item, "provider", where),
        model=_text(item, "model", where),
        input=_price(item, "input", where),
        output=_price(item, "output", where),
        cached_input=_optional_price(item, "cached_input", where),
        reasoning=_optional_price(item, "reasoning", where),
        effective_from=_EPOCH if start is None else start,
        effective_until=_date(item, "effective_until", where),
        aliases=tuple(aliases),
    )


def _text(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PriceCatalogError(f"{where}.{name} must be a non-empty string")
    return value.strip()


def _optional_price(item: dict[str, Any], name: str, where: str) -> float | None:
    return None if item.get(name) is None else _price(item, name, where)


def _price(item: dict[str, Any], name: str, where: str) -> float:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PriceCatalogError(f"{where}.{name} must be a non-negative number (USD per million tokens)")
    return float(value)


def _date(item: dict[str, Any], name: str, where: str) -> date | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PriceCatalogError(f"{where}.{name} must be an ISO date such as '2025-01-31'")

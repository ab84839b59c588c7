"""The price catalog: model name + provider + time -> :class:`ModelPrice`, and call costs.

Cost is computed once per record on the export thread, so every lookup is a few dict reads:
names are resolved once and cached, prices are indexed by model and provider up front, and
only a model's few price periods are scanned per call.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from kansoku.model import LLMCall
from kansoku.pricing._names import name_key, provider_family, resolve
from kansoku.pricing._parse import check_prices, parse_document, parse_text, read_document
from kansoku.pricing._price import ModelPrice

log = logging.getLogger("kansoku.pricing")

_NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = date(1970, 1, 1)
# Both caps bound memory when a client sends endless made-up model names.
_RESOLVED_CACHE_MAX = 4096
_UNKNOWN_NAMES_MAX = 1024
_OTHER_NAMES = "(other)"
_NO_NAME = "(none)"

#: (start ns inclusive, end ns exclusive or None, price), sorted by start.
_Periods = tuple[tuple[int, int | None, ModelPrice], ...]


def _ns(day: date) -> int:
    return (day - _EPOCH).days * _NS_PER_DAY


@dataclass(slots=True)
class _Model:
    default: _Periods
    by_provider: dict[str, _Periods] = field(default_factory=dict)


class _Index:
    """Immutable lookup tables for a stack of price layers (later layers win)."""

    def __init__(self, layers: Sequence[Sequence[ModelPrice]]) -> None:
        names: dict[str, str] = {}
        groups: dict[str, dict[str, list[ModelPrice]]] = {}  # model key -> provider key -> periods
        for layer in layers:
            replaced: set[tuple[str, str]] = set()
            for price in layer:
                model, provider = name_key(price.model), name_key(price.provider)
                providers = groups.setdefault(model, {})
                if (model, provider) not in replaced:
                    # An override restates all periods of its provider's model.
                    providers[provider] = []
                    replaced.add((model, provider))
                providers[provider].append(price)
                # Aliases accumulate across layers; a later layer takes over a contested name.
                names[model] = model
                names.update(dict.fromkeys(map(name_key, price.aliases), model))
        self.names = names
        self.models: dict[str, _Model] = {}
        effective: list[ModelPrice] = []
        for model, providers in groups.items():
            entry: _Model | None = None
            for provider, prices in providers.items():
                ordered = sorted(prices, key=lambda p: p.effective_from)
                effective.extend(ordered)
                periods = tuple(
                    (_ns(p.effective_from), None if p.effective_until is None else _ns(p.effective_until), p)
                    for p in ordered
                )
                if entry is None:
                    entry = _Model(default=periods)  # the first provider listed is the default
                entry.by_provider[provider] = periods
                entry.by_provider.setdefault(provider_family(provider), periods)
            if entry is not None:
                self.models[model] = entry
        self.prices = tuple(effective)
        self._resolved: dict[str, str | None] = {}

    def resolve(self, model: str) -> str | None:
        if model in self._resolved:  # entries are never removed, so the read below cannot miss
            return self._resolved[model]
        found = resolve(model, self.names.get)
        # Plain dict writes are atomic under the GIL; a lost race only repeats the work.
        if len(self._resolved) < _RESOLVED_CACHE_MAX:
            self._resolved[model] = found
        return found


def _day(at_ns: int) -> str:
    try:
        return date.fromordinal(_EPOCH.toordinal() + at_ns // _NS_PER_DAY).isoformat()
    except (ValueError, OverflowError):
        return f"{at_ns} ns"


def _at(periods: _Periods, at_ns: int) -> ModelPrice | None:
    for i, (start, end, price) in enumerate(periods):
        if at_ns < start:
            # Before a model's first price a call cannot really have happened: it is a skewed
            # clock or synthetic data, and the first known price is the best answer. A gap
            # between two periods is a deliberate "no price".
            return price if i == 0 else None
        if end is None or at_ns < end:
            return price
    return None


class PriceCatalog:
    """Per-model prices with effective dates, and the cost of LLM calls.

    >>> catalog = PriceCatalog.default().merged(PriceCatalog.from_file("my-prices.json"))  # doctest: +SKIP
    >>> catalog.cost(span.llm, span.start_ns)  # doctest: +SKIP
    0.000435

    Model names match exactly (case-insensitive) or after dropping snapshot suffixes such as
    ``-2024-07-18`` or ``-20241022``; the provider only chooses between several providers of
    the same model and may be an alias (``azure.openai`` bills like ``openai``). Safe to share
    between threads.
    """

    def __init__(self, prices: Iterable[ModelPrice] = (), *, version: str | None = None) -> None:
        """A catalog of ``prices``; overlapping periods or contested names raise ``PriceCatalogError``."""
        layer = tuple(prices)
        check_prices(layer, "<prices>")
        self._setup((layer,), _Index((layer,)), version)

    def _setup(self, layers: tuple[tuple[ModelPrice, ...], ...], index: _Index, version: str | None) -> None:
        self._layers = layers
        self._index = index
        self._version = version
        self._lock = threading.Lock()
        self._unknown: Counter[str] = Counter()

    @classmethod
    def _build(
        cls, layers: tuple[tuple[ModelPrice, ...], ...], version: str | None, index: _Index | None = None
    ) -> PriceCatalog:
        catalog = cls.__new__(cls)
        catalog._setup(layers, _Index(layers) if index is None else index, version)
        return catalog

    @classmethod
    def default(cls) -> PriceCatalog:
        """The catalog packaged with kansoku.

        The file is read and indexed once per process; each call returns a catalog with its
        own :attr:`unknown_models` counter.
        """
        layers, index, version = _packaged()
        return cls._build(layers, version, index)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceCatalog:
        """A catalog from a JSON price file (same shape as the packaged ``prices.json``).

        Raises :class:`PriceCatalogError` naming the file, entry and field that are wrong.
        """
        document = read_document(path)
        return cls._build((document.prices,), document.version)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> PriceCatalog:
        """A catalog from an already-decoded price document (e.g. from application settings)."""
        document = parse_document(dict(data), source)
        return cls._build((document.prices,), document.version)

    @property
    def version(self) -> str | None:
        """The ``version`` of the price file(s), joined with ``+`` after :meth:`merged`."""
        return self._version

    def merged(self, other: PriceCatalog) -> PriceCatalog:
        """A new catalog where ``other`` wins.

        For each provider and model that ``other`` prices, its periods replace all of this
        catalog's periods; aliases from both are kept. Counters start at zero.
        """
        version = "+".join(v for v in (self.version, other.version) if v) or None
        return self._build(self._layers + other._layers, version)

    def price_for(self, provider: str | None, model: str, at_ns: int) -> ModelPrice | None:
        """The price of ``model`` at ``at_ns`` (Unix nanoseconds), or ``None`` if unknown."""
        key = self._index.resolve(model)
        if key is None:
            return None
        entry = self._index.models[key]
        periods = entry.default
        if provider:
            wanted = name_key(provider)
            periods = (
                entry.by_provider.get(wanted) or entry.by_provider.get(provider_family(wanted)) or periods
            )
        return _at(periods, at_ns)

    def cost(self, llm: LLMCall, at_ns: int) -> float | None:
        """USD cost of ``llm`` at ``at_ns``, or ``None`` when its tokens or price are unknown.

        Tries ``llm.model`` (what answered), then ``llm.request_model`` (what was asked for,
        e.g. when a proxy reports its own name). A model without a price is counted in
        :attr:`unknown_models` and logged once per name at WARNING; this never raises.
        """
        if llm.input_tokens is None and llm.output_tokens is None:
            return None
        price = None
        for name in (llm.model, llm.request_model):
            if name:
                price = self.price_for(llm.provider, name, at_ns)
                if price is not None:
                    break
        if price is None:
            self._note_unknown(llm.model or llm.request_model or _NO_NAME, llm.provider, at_ns)
            return None
        return price.cost(
            input_tokens=llm.input_tokens,
            output_tokens=llm.output_tokens,
            cached_input_tokens=llm.cached_input_tokens,
            reasoning_tokens=llm.reasoning_tokens,
        )

    @property
    def unknown_models(self) -> Counter[str]:
        """How many calls :meth:`cost` could not price, per model name (a snapshot copy).

        After 1,024 distinct names, further new names are counted under ``"(other)"``.
        """
        with self._lock:
            return self._unknown.copy()

    def _note_unknown(self, model: str, provider: str | None, at_ns: int) -> None:
        with self._lock:
            if model not in self._unknown and len(self._unknown) >= _UNKNOWN_NAMES_MAX:
                model = _OTHER_NAMES
            self._unknown[model] += 1
            first = self._unknown[model] == 1
        if first:
            known = model != _NO_NAME and self._index.resolve(model) is not None
            log.warning(
                "no price for model %r (provider %r)%s; cost_usd stays null. Add it to a price file "
                "and load it with PriceCatalog.default().merged(PriceCatalog.from_file(path)).",
                model,
                provider,
                f" on {_day(at_ns)}" if known else "",
            )

    def __iter__(self) -> Iterator[ModelPrice]:
        """Every price period in effect after overrides, grouped by model and provider."""
        return iter(self._index.prices)

    def __len__(self) -> int:
        return len(self._index.prices)

    def __repr__(self) -> str:
        return f"PriceCatalog(version={self.version!r}, prices={len(self)})"


@functools.cache
def _packaged() -> tuple[tuple[tuple[ModelPrice, ...], ...], _Index, str | None]:
    text = resources.files("kansoku.pricing").joinpath("prices.json").read_text(encoding="utf-8")
    document = parse_text(text, "kansoku/pricing/prices.json")
    layers = (document.prices,)
    return layers, _Index(layers), document.version

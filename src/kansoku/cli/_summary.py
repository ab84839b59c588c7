"""Summarise a JSON-lines file of kansoku records: calls, errors by type, tokens, cost, latency."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield records from a JSON-lines file, raising ``ValueError`` naming the bad line."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ValueError(f"{path}:{number}: not a JSON record") from None
            if isinstance(record, dict):
                yield record


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Group:
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)

    def add(self, rec: dict[str, Any]) -> None:
        self.calls += 1
        if rec.get("status") == "error":
            self.errors[str(rec.get("error_type") or "unknown")] += 1
        self.input_tokens += rec.get("input_tokens") or 0
        self.output_tokens += rec.get("output_tokens") or 0
        if rec.get("cost_usd") is None:
            self.unpriced += 1
        else:
            self.cost += rec["cost_usd"]
        self.latencies.append(float(rec.get("latency_ms") or 0.0))
        if rec.get("ttft_ms") is not None:
            self.ttfts.append(float(rec["ttft_ms"]))


def summarise(records: Iterable[dict[str, Any]]) -> tuple[Group, dict[str, Group], int]:
    """Overall and per-model groups of LLM-call records, and the number of other spans."""
    total, spans = Group(), 0
    by_model: defaultdict[str, Group] = defaultdict(Group)
    for rec in records:
        if rec.get("type") != "llm_call":
            spans += 1
            continue
        total.add(rec)
        by_model[str(rec.get("model") or rec.get("request_model") or "?")].add(rec)
    return total, dict(by_model), spans


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(total: Group, by_model: dict[str, Group], spans: int) -> str:
    """A readable plain-text report."""
    header = ("model", "calls", "errors", "in tok", "out tok", "cost USD", "p50 ms", "p95 ms", "ttft p50")
    rows = [header]
    for name, grp in [*sorted(by_model.items()), ("TOTAL", total)]:
        rows.append(
            (
                name,
                f"{grp.calls:,}",
                f"{sum(grp.errors.values()):,}",
                f"{grp.input_tokens:,}",
                f"{grp.output_tokens:,}",
                f"{grp.cost:.6f}",
                _ms(percentile(grp.latencies, 50)),
                _ms(percentile(grp.latencies, 95)),
                _ms(percentile(grp.ttfts, 50)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if total.errors:
        rate = sum(total.errors.values()) / total.calls
        lines.append(f"errors by type ({rate:.1%} of calls):")
        lines.extend(f"  {etype:<26}{n:>6,}" for etype, n in total.errors.most_common())
    else:
        lines.append("errors by type: none")
    if total.unpriced:
        lines.append(f"calls without a price (unknown model or no usage): {total.unpriced:,}")
    lines.append(f"other spans (retrieval, tools, steps): {spans:,}")
    return "\n".join(lines)

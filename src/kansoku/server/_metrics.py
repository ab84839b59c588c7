"""Prometheus metrics of the collector, with bounded label cardinality.

LLM traffic metrics follow the OpenTelemetry GenAI metric conventions, in Prometheus naming
(``gen_ai.client.operation.duration`` → ``gen_ai_client_operation_duration_seconds``, same bucket
advice). Label values come from ingested data (models, projects, error types), so each label keeps
at most ``max_label_values`` distinct values; later ones are reported as ``__other__`` and counted in
``kansoku_metrics_label_overflow_total`` — a flood of made-up model names cannot take the server's
memory or a Prometheus server down.

Small and dependency-free on purpose: observing is a dict lookup and a bisect (it runs per ingested
span), and the text exposition format is a few lines.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from kansoku.model import Span

OVERFLOW = "__other__"
_F = TypeVar("_F", "Counter", "Gauge", "Histogram")
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) else str(v)


class _Family:
    def __init__(self, name: str, help_: str, kind: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.kind, self.labels = name, help_, kind, tuple(labels)

    def _labels(self, key: tuple[str, ...], extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""


class Counter(_Family):
    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_, "counter", labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self._values[key] = self._values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        for key, v in sorted(self._values.items()):
            yield f"{self.name}{self._labels(key)} {_fmt(v)}"


class Gauge(_Family):
    """A gauge read from a callback when scraped (WAL bytes, loader lag, ...)."""

    def __init__(self, name: str, help_: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_, "gauge", ())
        self._read = read

    def render(self) -> Iterable[str]:
        yield f"{self.name} {_fmt(float(self._read()))}"


class Histogram(_Family):
    def __init__(self, name: str, help_: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_, "histogram", labels)
        self.buckets = tuple(float(b) for b in buckets)
        self._data: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, key: tuple[str, ...], value: float) -> None:
        d = self._data.get(key)
        if d is None:
            d = self._data[key] = [0.0] * (len(self.buckets) + 2)
        d[bisect.bisect_left(self.buckets, value)] += 1
        d[-1] += value

    def render(self) -> Iterable[str]:
        for key, d in sorted(self._data.items()):
            acc = 0.0
            for bound, n in zip((*self.buckets, float("inf")), d[:-1], strict=True):
                acc += n
                le = 'le="' + _fmt(bound) + '"'
                yield f"{self.name}_bucket{self._labels(key, le)} {_fmt(int(acc))}"
            yield f"{self.name}_count{self._labels(key)} {_fmt(int(acc))}"
            yield f"{self.name}_sum{self._labels(key)} {_fmt(d[-1])}"


class Registry:
    """The families of one server, with the label limiter they share."""

    def __init__(self, max_label_values: int = 100) -> None:
        self.max_label_values = max_label_values
        self._lock = threading.Lock()
        self._families: list[Counter | Gauge | Histogram] = []
        self._seen: dict[str, set[str]] = {}
        self.overflow = self.counter(
            "kansoku_metrics_label_overflow_total",
            "Label values replaced by __other__ because a label reached its value limit.",
            ["label"],
        )

    def counter(self, name: str, help_: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_, labels))

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> Gauge:
        return self._add(Gauge(name, help_, read))

    def histogram(
        self, name: str, help_: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return self._add(Histogram(name, help_, buckets, labels))

    def _add(self, family: _F) -> _F:
        self._families.append(family)
        return family

    def label(self, label: str, value: str | None) -> str:
        """``value`` if the label may still take it, else ``__other__`` (counted)."""
        v = "" if value is None else value
        seen = self._seen.setdefault(label, set())
        if v in seen:
            return v
        if len(seen) < self.max_label_values:
            seen.add(v)
            return v
        self.overflow.inc((label,))
        return OVERFLOW

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for f in self._families:
                lines.append(f"# HELP {f.name} {f.help}")
                lines.append(f"# TYPE {f.name} {f.kind}")
                lines.extend(f.render())
        return "\n".join(lines) + "\n"

    def locked(self) -> threading.Lock:
        """Held while observing a batch so a scrape never sees half of one."""
        return self._lock


class LLMMetrics:
    """The GenAI-convention families, observed from ingested spans."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        base = ["project", "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"]
        self.duration = reg.histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (gen_ai.client.operation.duration).",
            DURATION_BUCKETS,
            [*base, "error_type"],
        )
        self.ttft = reg.histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time to the first streamed chunk (gen_ai.client.operation.time_to_first_chunk).",
            DURATION_BUCKETS,
            base,
        )
        self.tokens = reg.histogram(
            "gen_ai_client_token_usage",
            "Tokens used per operation (gen_ai.client.token.usage), by gen_ai_token_type.",
            TOKEN_BUCKETS,
            [*base, "gen_ai_token_type"],
        )
        self.cost = reg.counter("kansoku_llm_cost_usd_total", "Cost of ingested LLM calls in USD.", base)
        self.errors = reg.counter(
            "kansoku_llm_errors_total",
            "Ingested LLM calls that failed, by error type.",
            [*base, "error_type"],
        )

    def observe(self, project: str, spans: Iterable[Span]) -> None:
        with self.reg.locked():
            p = self.reg.label("project", project)
            for s in spans:
                llm = s.llm
                if llm is not None:
                    self._one(
                        p, llm.operation, llm.provider, llm.model, s.status, s.error_type,
                        s.latency_ms / 1000, llm.ttft_ms, llm.input_tokens, llm.output_tokens, llm.cost_usd,
                    )  # fmt: skip

    def observe_rows(self, project: str, rows: Iterable[dict[str, Any]]) -> None:
        """The same, from store rows (the native-ingest fast path has no Span objects)."""
        with self.reg.locked():
            p = self.reg.label("project", project)
            for r in rows:
                if r["type"] == "llm_call":
                    g = r.get
                    self._one(
                        p, g("operation"), g("provider"), g("model"), g("status"), g("error_type"),
                        (r["end_ns"] - r["start_ns"]) / 1e9, g("ttft_ms"), g("input_tokens"),
                        g("output_tokens"), g("cost_usd"),
                    )  # fmt: skip

    def _one(  # noqa: PLR0917 -- one call per span on the hot path: positional on purpose
        self,
        p: str,
        operation: str | None,
        provider: str | None,
        model: str | None,
        status: str | None,
        error_type: str | None,
        latency_s: float,
        ttft_ms: float | None,
        tokens_in: int | None,
        tokens_out: int | None,
        cost: float | None,
    ) -> None:
        lab = self.reg.label
        key = (p, lab("operation", operation), lab("provider", provider), lab("model", model))
        err = lab("error_type", error_type or "unknown") if status == "error" else ""
        self.duration.observe((*key, err), latency_s)
        if err:
            self.errors.inc((*key, err))
        if ttft_ms is not None:
            self.ttft.observe(key, ttft_ms / 1000)
        if tokens_in is not None:
            self.tokens.observe((*key, "input"), tokens_in)
        if tokens_out is not None:
            self.tokens.observe((*key, "output"), tokens_out)
        if cost:
            self.cost.inc(key, cost)

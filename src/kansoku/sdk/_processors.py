"""Processors run in order on the pipeline thread: ``(Span) -> Span | None``.

Returning ``None`` drops the span on purpose; the pipeline counts it under the processor's
``reason``. A processor that raises drops its span too (counted as ``processor_error``):
a redaction failure must never let an unredacted record through.
"""

from __future__ import annotations

from collections.abc import Callable

from kansoku.model import Span

Processor = Callable[[Span], Span | None]


class ResourceProcessor:
    """Stamp service, environment and region on every span that does not carry its own."""

    reason = "resource"

    def __init__(self, service: str, environment: str | None, region: str | None) -> None:
        self._service, self._environment, self._region = service, environment, region

    def __call__(self, span: Span) -> Span:
        if span.service is None:
            span.service = self._service
        if span.environment is None:
            span.environment = self._environment
        if span.region is None:
            span.region = self._region
        return span


class Sampler:
    """Head sampling by trace id that always keeps errors and slow calls.

    The decision hashes the trace id, so every span of a kept trace is kept in every service
    that uses the same rate. Kept spans say why in ``kansoku.sampling`` and carry the rate so
    aggregates can be re-weighted.
    """

    reason = "sampled_out"

    def __init__(self, rate: float, slow_ms: float) -> None:
        self.rate = rate
        self.slow_ms = slow_ms
        self._threshold = int(rate * (1 << 64))

    def __call__(self, span: Span) -> Span | None:
        if self.rate >= 1.0:
            return span
        if span.is_error:
            why = "error"
        elif span.latency_ms >= self.slow_ms:
            why = "slow"
        elif int(span.trace_id[16:], 16) < self._threshold:
            why = "sampled"
        else:
            return None
        span.attributes["kansoku.sampling"] = why
        span.attributes["kansoku.sample_rate"] = self.rate
        return span


class ContentDropper:
    """Remove prompt and completion text when content capture is off (metadata only)."""

    reason = "content"

    def __call__(self, span: Span) -> Span:
        llm = span.llm
        if llm is not None:
            llm.input_text = llm.output_text = None
            llm.input_messages = llm.output_messages = None
        return span

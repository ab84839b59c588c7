"""The cost processor: fills ``cost_usd`` on LLM-call spans before export."""

from __future__ import annotations

import logging

from kansoku.model import Span
from kansoku.pricing._catalog import PriceCatalog

log = logging.getLogger("kansoku.pricing")


class CostProcessor:
    """A span processor that sets ``span.llm.cost_usd`` from a :class:`PriceCatalog`.

    Spans without an LLM call, and calls that already carry a cost (e.g. reported by a
    gateway), pass through unchanged. The call's start time picks the price period. It never
    raises: whatever goes wrong, the span is returned with its cost left ``None``.

    >>> processors = [redactor, sampler, CostProcessor(PriceCatalog.default())]  # doctest: +SKIP
    """

    def __init__(self, catalog: PriceCatalog | None = None) -> None:
        """Price with ``catalog``; the packaged catalog when it is ``None``."""
        self.catalog = PriceCatalog.default() if catalog is None else catalog
        self._warned = False

    def __call__(self, span: Span) -> Span:
        """Return ``span`` with its cost filled in where it can be."""
        llm = span.llm
        if llm is None or llm.cost_usd is not None:
            return span
        try:
            llm.cost_usd = self.catalog.cost(llm, span.start_ns)
        except Exception:
            # A processor runs on the export thread for every record: a pricing bug must cost
            # us one number, not the record. Say so loudly once, then quietly.
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "could not compute cost_usd for span %s", span.span_id, exc_info=True)
        return span

"""An exporter that keeps spans in memory, with switchable failure for tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kansoku.export import ExportResult
from kansoku.model import Span


class InMemoryExporter:
    """Collects exported spans. Set ``fail = True`` to answer RETRY (a destination that is down);
    set ``spool = True`` to give it a disk spool like a network exporter."""

    def __init__(self, name: str = "memory", *, spool: bool = False) -> None:
        self.name = name
        self.spool = spool
        self.fail = False
        self.attempts = 0
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Span]) -> ExportResult:
        with self._lock:
            self.attempts += 1
            if self.fail:
                return ExportResult.RETRY
            self._spans.extend(batch)
        return ExportResult.SUCCESS

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    @property
    def calls(self) -> list[Span]:
        """Only the LLM-call spans."""
        return [s for s in self.spans if s.llm is not None]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None

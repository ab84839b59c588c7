"""From the application's thread to the exporters, without blocking or silent loss.

The caller's thread only appends to a bounded deque (a few hundred nanoseconds). One
pipeline thread turns pending calls into spans, runs the processors, batches, and hands each
batch to every :class:`~kansoku.export.Channel`. A full queue drops the new item and counts it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any, Protocol

from kansoku.export._channel import Channel, FlushMarker
from kansoku.model import Span
from kansoku.sdk._processors import Processor

log = logging.getLogger("kansoku")


class Pending(Protocol):
    """A captured call whose record is built off the caller's thread."""

    def build(self) -> Span | None: ...


class Pipeline:
    def __init__(
        self,
        processors: list[Processor],
        channels: list[Channel],
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
    ) -> None:
        self.processors = processors
        self.channels = channels
        self._queue: deque[Any] = deque()
        self._cap = queue_size
        self._batch_size = batch_size
        self._interval = flush_interval
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="kansoku-pipeline", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        """Called on the application's thread: never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self._cap:
            self._drop("queue_full")
            return
        queue.append(item)
        # Set the event once: while the pipeline thread waits for the GIL, setting it again on
        # every call only costs the caller a lock round trip.
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is exported or durably spooled."""
        marker = FlushMarker(pending=max(1, len(self.channels)))
        if not self.channels:
            marker.pending = 1
        self._queue.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def process(self, span: Span) -> Span | None:
        """Run the processors over one span (for callers that build spans themselves)."""
        return self._process(span)

    def count_drop(self, reason: str) -> None:
        self._drop(reason)

    def _drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def dropped_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.dropped)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # the pipeline must outlive any bug in a builder or processor
                log.exception("kansoku pipeline error")
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        batch: list[Span] = []
        queue = self._queue
        while queue:
            item = queue.popleft()
            if isinstance(item, FlushMarker):
                self._deliver(batch)
                batch = []
                if not self.channels:
                    item.arrive()
                for ch in self.channels:
                    ch.mark(item)
                continue
            span = self._process(item)
            if span is not None:
                batch.append(span)
                if len(batch) >= self._batch_size:
                    self._deliver(batch)
                    batch = []
        self._deliver(batch)

    def _process(self, item: Any) -> Span | None:
        self.received += 1
        try:
            span = item if isinstance(item, Span) else item.build()
        except Exception:
            log.warning("kansoku could not build a record; dropped and counted", exc_info=True)
            self._drop("build_error")
            return None
        if span is None:
            return None
        for proc in self.processors:
            try:
                result = proc(span)
            except Exception:
                log.warning("kansoku processor %r failed; span dropped and counted", proc, exc_info=True)
                self._drop("processor_error")
                return None
            if result is None:
                self._drop(getattr(proc, "reason", "processor"))
                return None
            span = result
        self.processed += 1
        return span

    def _deliver(self, batch: list[Span]) -> None:
        if batch:
            for ch in self.channels:
                ch.offer(batch)

"""A channel feeds one exporter from its own thread: batching, retry, spool, counters.

The pipeline hands batches to :meth:`Channel.offer` and never waits. The channel's thread
exports them in order. When the exporter asks for a retry, the batch goes to the disk spool
(if the exporter wants one) and every later batch follows it there until the destination is
back, so delivery stays in order and memory stays bounded. Nothing is dropped silently: every
span that does not reach the destination is counted under a reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from kansoku.export._base import Exporter, ExportResult
from kansoku.export._spool import Spool
from kansoku.model import Span
from kansoku.policy import FullJitter

log = logging.getLogger("kansoku.export")


@dataclass(slots=True)
class ChannelStats:
    """Counters of one channel, in spans (not batches)."""

    queued: int = 0
    exported: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped_queue_full: int = 0
    dropped_spool_full: int = 0
    rejected: int = 0
    failures: int = 0
    spool_corrupt: int = 0  # records lost in spool files that failed their checksum
    spool_batches: int = 0
    spool_bytes: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_spool_full + self.rejected


@dataclass(slots=True)
class FlushMarker:
    """Passes through the queues behind everything submitted before it."""

    pending: int
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arrive(self) -> None:
        with self._lock:
            self.pending -= 1
            if self.pending <= 0:
                self.done.set()


def encode_batch(batch: Sequence[Span]) -> bytes:
    return orjson.dumps([s.to_record() for s in batch])


def decode_batch(payload: bytes) -> list[Span]:
    return [Span.from_record(r) for r in orjson.loads(payload)]


class Channel:
    """One exporter, its queue, its spool and its worker thread."""

    def __init__(
        self,
        exporter: Exporter,
        *,
        spool: Spool | None,
        max_queued_spans: int,
        backoff: FullJitter | None = None,
        export_timeout: float = 10.0,
    ) -> None:
        self.exporter = exporter
        self.spool = spool
        self._max_queued = max_queued_spans
        self._backoff = backoff or FullJitter(base=0.5, cap=30.0)
        self._export_timeout = export_timeout
        self._queue: deque[list[Span] | FlushMarker] = deque()
        self._queued_spans = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._attempt = 0
        self._retry_at = 0.0  # monotonic time before which the destination is not tried again
        self.stats = ChannelStats()
        self._thread = threading.Thread(target=self._run, name=f"kansoku-export-{exporter.name}", daemon=True)
        self._thread.start()

    # -- called from the pipeline thread -------------------------------------------------------
    def offer(self, batch: list[Span]) -> None:
        with self._lock:
            if self._queued_spans + len(batch) <= self._max_queued:
                self._queue.append(batch)
                self._queued_spans += len(batch)
                overflow: list[list[Span]] = []
            else:
                # The exporter is slower than production: keep the data on disk rather than in
                # memory, the queued batches first so that delivery stays in order.
                overflow = self._take_queued_batches()
                overflow.append(batch)
        for item in overflow:
            self._to_spool(item, reason_full="queue")
        self._wake.set()

    def _take_queued_batches(self) -> list[list[Span]]:
        """Remove the queued span batches (markers stay); the caller holds ``_lock``."""
        batches = [b for b in self._queue if not isinstance(b, FlushMarker)]
        markers = [m for m in self._queue if isinstance(m, FlushMarker)]
        self._queue.clear()
        self._queue.extend(markers)
        self._queued_spans = 0
        return batches

    def mark(self, marker: FlushMarker) -> None:
        with self._lock:
            self._queue.append(marker)
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            # The exporter is hung: keep what is still queued for the next start, or count it.
            with self._lock:
                left = self._take_queued_batches()
            for batch in left:
                self._to_spool(batch, reason_full="queue")
            # Release the spool for the next start; a batch the hung export later fails on is
            # counted as dropped instead of being written behind the next owner's back.
            self._closed = True
            if self.spool is not None:
                self.spool.close()
            return
        with contextlib.suppress(Exception):
            self.exporter.shutdown()
        if self.spool is not None:
            self.spool.close()

    def snapshot(self) -> dict[str, int]:
        s = self.stats
        with self._lock:
            s.queued = self._queued_spans
        if self.spool is not None:
            s.spool_batches = len(self.spool)
            s.spool_bytes = self.spool.bytes_used
            s.spool_corrupt = self.spool.corrupt_items
        dropped = s.dropped + s.spool_corrupt
        return {
            "queued": s.queued,
            "exported": s.exported,
            "spooled": s.spooled,
            "replayed": s.replayed,
            "spool_batches": s.spool_batches,
            "spool_bytes": s.spool_bytes,
            "spool_corrupt": s.spool_corrupt,
            "failures": s.failures,
            "rejected": s.rejected,
            "dropped": dropped,
            "dropped_queue_full": s.dropped_queue_full,
            "dropped_spool_full": s.dropped_spool_full,
        }

    # -- the worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            timeout = max(0.0, self._retry_at - time.monotonic()) if self._has_spooled() else None
            self._wake.wait(timeout if timeout is None else min(timeout, 1.0))
            self._wake.clear()
            try:
                self._drain_spool()
                self._drain_queue()
            except Exception:  # the worker must survive anything an exporter does
                log.exception("kansoku exporter %s failed unexpectedly", self.exporter.name)
            if self._stopping:
                with self._lock:
                    empty = not self._queue
                if empty:
                    return

    def _drain_queue(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
                if not isinstance(item, FlushMarker):
                    self._queued_spans -= len(item)
            if isinstance(item, FlushMarker):
                with contextlib.suppress(Exception):
                    self.exporter.force_flush(self._export_timeout)
                item.arrive()
            elif self.spool is not None and (self._has_spooled() or time.monotonic() < self._retry_at):
                self._to_spool(item, reason_full="spool")  # keep order behind the spooled backlog
            else:
                self._export_live(item)

    def _export_live(self, batch: list[Span]) -> None:
        result = self._export(batch)
        if result is ExportResult.SUCCESS:
            self._add("exported", len(batch))
        elif result is ExportResult.REJECTED:
            self._add("rejected", len(batch))
        else:
            self._to_spool(batch, reason_full="spool")

    def _drain_spool(self) -> None:
        spool = self.spool
        while spool is not None and not self._stopping and time.monotonic() >= self._retry_at:
            head = spool.peek()
            if head is None:
                return
            seq, payload = head
            try:
                batch = decode_batch(payload)
            except ValueError:
                spool.corrupt += 1
                spool.corrupt_items += spool.items(seq)
                spool.ack(seq)
                continue
            result = self._export(batch)
            if result is ExportResult.RETRY:
                return
            if result is ExportResult.SUCCESS:
                self._add("exported", len(batch))
                self._add("replayed", len(batch))
            else:
                self._add("rejected", len(batch))
            spool.ack(seq)

    def _export(self, batch: list[Span]) -> ExportResult:
        try:
            result = self.exporter.export(batch)
        except Exception:
            log.exception("kansoku exporter %s raised; treating as retryable", self.exporter.name)
            result = ExportResult.RETRY
        if result is ExportResult.RETRY:
            self._add("failures", 1)
            self._retry_at = time.monotonic() + self._backoff.delay(self._attempt)
            self._attempt += 1
        else:
            self._attempt = 0
            self._retry_at = 0.0
        return result

    def _to_spool(self, batch: list[Span], *, reason_full: str) -> None:
        if (
            self.spool is not None
            and not self._closed
            and self.spool.append(encode_batch(batch), items=len(batch))
        ):
            self._add("spooled", len(batch))
            return
        # No spool, or the spool is full: the loss is counted, never silent.
        if reason_full == "queue" or self.spool is None:
            self._add("dropped_queue_full", len(batch))
        else:
            self._add("dropped_spool_full", len(batch))

    def _add(self, counter: str, n: int) -> None:
        # Counters are bumped from two threads (overflow happens on the pipeline's); keep them exact.
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + n)

    def _has_spooled(self) -> bool:
        return self.spool is not None and len(self.spool) > 0

"""The loader: moves durable WAL entries into the store in big batches, then marks them applied.

Ingest handlers hand each entry over right after it is fsync'd (:meth:`Loader.submit`); at start-up
the entries the WAL still holds are replayed first. The loader thread gathers entries for up to
``interval_s`` or ``batch_rows`` rows, loads them with one :meth:`Store.load` call, and then advances
the WAL's applied mark to the highest sequence below which everything is loaded (entries can be
submitted out of order by concurrent handlers).

A store failure keeps the batch and retries it with capped backoff; meanwhile the WAL fills and
ingest answers 429, so nothing acknowledged is dropped. Loads are idempotent in the store, so a
crash between a load and the next checkpoint only replays rows the store then skips.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kansoku.server._ingest import decode_entry
from kansoku.server._wal import WriteAheadLog
from kansoku.store import Store

log = logging.getLogger("kansoku.loader")

_STOP = (-1, b"")


@dataclass(slots=True)
class LoaderStats:
    loaded_rows: int = 0
    loaded_batches: int = 0
    load_errors: int = 0
    bad_entries: int = 0
    pending_entries: int = 0
    last_load_s: float = 0.0
    last_error: str | None = None
    caught_up: bool = True


class Loader:
    """One background thread; :meth:`submit` is thread-safe and never blocks."""

    def __init__(
        self,
        wal: WriteAheadLog,
        store: Store,
        *,
        interval_s: float = 0.2,
        batch_rows: int = 50_000,
        on_load: Callable[[int, float], None] | None = None,
    ) -> None:
        self.wal = wal
        self.store = store
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.stats = LoaderStats()
        self._on_load = on_load
        self._q: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self._done: list[int] = []  # loaded seqs above the applied mark (a heap)
        self._applied = wal.stats().applied
        self._submitted = self._applied
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="kansoku-loader", daemon=True)
        self._stopping = False
        self._halt = threading.Event()

    def start(self) -> None:
        """Queue what the WAL still holds (from before a restart), then start loading."""
        seen: set[int] = set()
        for seq, payload in self.wal.replay():
            seen.add(seq)
            self.submit(seq, payload)
        # Entries the WAL lost to corruption (it counts them) must not hold the applied mark back.
        last = self.wal.stats().last_seq
        self._done = [s for s in range(self._applied + 1, last + 1) if s not in seen]
        heapq.heapify(self._done)
        self._submitted = max(self._submitted, last)
        self._thread.start()

    def submit(self, seq: int, payload: bytes) -> None:
        with self._idle:
            self._submitted = max(self._submitted, seq)
            self.stats.caught_up = False
        self._q.put((seq, payload))

    # -- the thread ----------------------------------------------------------------------------------
    def _gather(self) -> list[tuple[int, bytes]]:
        first = self._q.get()
        if first[0] < 0:  # the stop marker
            self._stopping = True
            return []
        batch, rows = [first], self._rows(first[1])
        deadline = time.monotonic() + self.interval_s
        while rows < self.batch_rows:
            left = deadline - time.monotonic()
            try:
                item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if item[0] < 0:
                self._stopping = True
                break
            batch.append(item)
            rows += self._rows(item[1])
        return batch

    @staticmethod
    def _rows(payload: bytes) -> int:
        try:
            return decode_entry(payload)[2]
        except ValueError:
            return 0

    def _run(self) -> None:
        while not self._stopping:
            batch = self._gather()
            if batch:
                self._load_until_done(batch)
        # drain what arrived before the stop marker
        rest: list[tuple[int, bytes]] = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item[0] >= 0:
                rest.append(item)
        if rest:
            self._load_until_done(rest, attempts=3)

    def _load_until_done(self, batch: list[tuple[int, bytes]], attempts: int | None = None) -> None:
        parts: list[memoryview] = []
        lo, hi, n = None, None, 0
        good: list[int] = []
        for seq, payload in batch:
            try:
                elo, ehi, en, rows = decode_entry(payload)
            except ValueError:
                self.stats.bad_entries += 1
                log.error(  # noqa: TRY400 -- no traceback: the entry is bad, not the code
                    "kansoku loader: WAL entry %d is not a row batch; skipped and counted", seq
                )
                good.append(seq)
                continue
            parts.append(rows)
            lo = elo if lo is None else min(lo, elo)
            hi = ehi if hi is None else max(hi, ehi)
            n += en
            good.append(seq)
        delay, tries = 0.1, 0
        while parts and lo is not None and hi is not None:
            t0 = time.perf_counter()
            try:
                self.store.load(b"".join(parts), lo, hi)
            except Exception as exc:  # noqa: BLE001 -- any store failure: keep the batch, retry
                tries += 1
                self.stats.load_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("kansoku loader: store load failed (%s); retrying in %.1f s", exc, delay)
                if (attempts is not None and tries >= attempts) or self._halt.is_set():
                    return  # shutting down: the WAL keeps the entries for the next start
                self._halt.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            took = time.perf_counter() - t0
            self.stats.loaded_rows += n
            self.stats.loaded_batches += 1
            self.stats.last_load_s = took
            self.stats.last_error = None
            if self._on_load is not None:
                self._on_load(n, took)
            break
        self._mark(good)

    def _mark(self, seqs: list[int]) -> None:
        for s in seqs:
            heapq.heappush(self._done, s)
        advanced = self._applied
        while self._done and self._done[0] <= advanced + 1:
            advanced = max(advanced, heapq.heappop(self._done))
        if advanced > self._applied:
            self._applied = advanced
            self.wal.mark_applied(advanced)
        with self._idle:
            self.stats.pending_entries = len(self._done)
            self.stats.caught_up = self._applied >= self._submitted
            self._idle.notify_all()

    # -- control -------------------------------------------------------------------------------------
    def wait_caught_up(self, timeout: float) -> bool:
        """Block until everything submitted so far is in the store (tests, shutdown, ``flush``)."""
        with self._idle:
            target = self._submitted
            return self._idle.wait_for(lambda: self._applied >= target, timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def submitted(self) -> int:
        return self._submitted

    def stop(self, timeout: float = 30.0) -> None:
        """Load what is queued (bounded), then end the thread; the WAL keeps anything left."""
        if self._thread.is_alive():
            self._halt.set()  # a failing store must not hold the shutdown: the WAL keeps its batch
            self._q.put(_STOP)
            self._thread.join(timeout)

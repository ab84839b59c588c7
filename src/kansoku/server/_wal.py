"""The collector's write-ahead log: an ingest batch is acknowledged only once it is fsync'd here.

Batches (already-encoded bytes) are appended to segment files ``wal-<first_seq:020d>.log`` of framed,
CRC-checked entries (see :mod:`kansoku.server._wal_format`), rolled at ``segment_bytes``.

* **Group commit.** :meth:`WriteAheadLog.append` returns only after its entry is fsync'd, but
  concurrent appenders share fsyncs: the first waiter becomes the writer and writes + fsyncs every
  entry pending at that moment while the others wait on a condition. Thread-safe; asyncio callers
  use ``loop.run_in_executor``.
* **Checkpoint.** The loader calls :meth:`~WriteAheadLog.mark_applied` with the highest sequence
  number whose batch and all before it are in the store; the value is persisted (tmp + fsync +
  rename + directory fsync) at most every ``checkpoint_interval_ms`` or on :meth:`checkpoint` and
  :meth:`close`, and segments wholly at or below it are deleted. Losing a not-yet-persisted mark only
  replays some batches twice (at-least-once), never loses one.
* **Recovery.** Opening scans every kept segment: a torn tail of the last one is truncated
  (``truncated_bytes``); damage elsewhere is skipped by resynchronising on the next valid frame
  (``corrupt_entries``, ``skipped_bytes``). Opening never fails on damaged data, and appends after a
  restart go to a fresh segment. :meth:`replay` yields the unapplied entries in order.
* **Back-pressure.** At most ``max_bytes`` of unapplied entries; beyond it :meth:`append` raises
  :class:`WALFullError` with ``retry_after_s`` (for a 429 + ``Retry-After``).
* **I/O failure.** A failed write or fsync leaves the file in an unknown state (and a failed fsync
  must not be retried), so the log refuses all further appends with :class:`WALError`; reopening it
  recovers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Condition, Lock

from kansoku._fsutil import fsync_dir, lock_dir, unlock
from kansoku.clock import SYSTEM_CLOCK, Clock
from kansoku.errors import KansokuError
from kansoku.server import _wal_format as fmt

log = logging.getLogger("kansoku.wal")

_sync = getattr(os, "fdatasync", os.fsync)


class WALError(KansokuError):
    """The write-ahead log cannot take the data: closed, failed I/O, in use, or a batch too large."""


class WALFullError(WALError):
    """Too many unapplied bytes: back off ``retry_after_s`` seconds (HTTP 429 + ``Retry-After``)."""

    def __init__(self, unapplied_bytes: int, max_bytes: int, retry_after_s: float) -> None:
        super().__init__(
            f"write-ahead log full ({unapplied_bytes} of {max_bytes} bytes unapplied); "
            f"retry after {retry_after_s:g} s"
        )
        self.unapplied_bytes = unapplied_bytes
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class WALStats:
    """Counters since this process opened the log, and its current state."""

    appended: int  # entries acknowledged by this process
    fsyncs: int
    bytes: int  # framed bytes written by this process
    unapplied_bytes: int
    segments: int
    corrupt_entries: int  # damaged stretches skipped (each may have held one or more entries)
    skipped_bytes: int
    truncated_bytes: int  # torn tail cut from the last segment at open
    rejected: int  # appends refused by WALFullError
    checkpoint: int  # persisted
    applied: int  # marked by mark_applied, persisted at the next checkpoint
    last_seq: int  # highest durable sequence number


class WriteAheadLog:
    """A durable, bounded, ordered log of opaque batches. Sequence numbers start at 1."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        max_bytes: int = 1024 * 1024 * 1024,
        checkpoint_interval_ms: int = 200,
        retry_after_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self._interval = checkpoint_interval_ms / 1000
        self._clock = clock
        self._cond = Condition(Lock())
        self._ckpt_lock = Lock()
        self._pending: list[tuple[int, bytes, bytes]] = []  # seq, header, payload
        self._unapplied: collections.deque[tuple[int, int]] = collections.deque()  # seq, framed size
        self._unapplied_bytes = 0
        self._segments: list[tuple[int, Path]] = []  # (first seq, path); the active one last
        self._fd: int | None = None
        self._seg_size = 0
        self._writing = False
        self._closed = False
        self._failed: BaseException | None = None
        self._appended = self._fsyncs = self._bytes = self._rejected = 0
        self._corrupt = self._skipped = self._truncated = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_dir(self.directory)
        if lock_fd is None:
            raise WALError(f"write-ahead log {self.directory} is in use by another process or instance")
        self._lock_fd = lock_fd
        try:
            ckpt = fmt.read_checkpoint(self.directory)
            if ckpt is None:
                log.warning("kansoku WAL: damaged checkpoint in %s; replaying every kept entry", directory)
                self._corrupt += 1
            rec = fmt.recover(self.directory, ckpt or 0)
        except BaseException:
            unlock(lock_fd)
            raise
        self._checkpoint = self._applied = ckpt or 0
        self._segments = rec.segments
        self._unapplied.extend(rec.unapplied)
        self._unapplied_bytes = sum(n for _, n in rec.unapplied)
        self._corrupt += rec.corrupt
        self._skipped, self._truncated = rec.skipped, rec.truncated
        self._durable = rec.last_seq
        self._next_seq = self._durable + 1
        self._last_persist = clock.monotonic()

    # -- appending ---------------------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Durably store one batch; its sequence number once fsync'd."""
        return self.append_many((payload,))[0]

    def append_many(self, payloads: Iterable[bytes]) -> list[int]:
        """Durably store batches (all or none admitted); their consecutive sequence numbers."""
        items = [(p, fmt.payload_crc(p)) for p in payloads]
        if not items:
            return []
        size = sum(len(p) for p, _ in items) + fmt.HEADER.size * len(items)
        if size > self.max_bytes or max(len(p) for p, _ in items) > fmt.MAX_PAYLOAD:
            raise WALError(f"batch of {size} bytes can never fit (max_bytes {self.max_bytes})")
        with self._cond:
            if self._closed or self._failed is not None:
                raise WALError("write-ahead log is closed" if self._closed else "write-ahead log failed")
            if self._unapplied_bytes + size > self.max_bytes:
                self._rejected += 1
                raise WALFullError(self._unapplied_bytes, self.max_bytes, self.retry_after_s)
            seqs = list(range(self._next_seq, self._next_seq + len(items)))
            self._next_seq += len(items)
            for seq, (payload, pcrc) in zip(seqs, items, strict=True):
                self._pending.append((seq, fmt.header(seq, len(payload), pcrc), payload))
                self._unapplied.append((seq, fmt.HEADER.size + len(payload)))
            self._unapplied_bytes += size
            self._wait_durable(seqs[-1])
            self._appended += len(seqs)
        return seqs

    def _wait_durable(self, target: int) -> None:
        """Block until ``target`` is fsync'd, writing everything pending if nobody else is. Holds the lock."""
        while self._durable < target:
            if self._failed is not None:
                raise WALError(f"write-ahead log failed: {self._failed}") from self._failed
            if self._writing:
                self._cond.wait()
                continue
            batch, self._pending = self._pending, []
            self._writing = True
            self._cond.release()
            try:
                self._write(batch)
            except BaseException as exc:
                self._cond.acquire()
                self._writing, self._failed = False, exc
                self._cond.notify_all()
                log.exception(
                    "kansoku WAL: write failed in %s; refusing appends until reopened", self.directory
                )
                if isinstance(exc, OSError):
                    raise WALError(f"write-ahead log write failed: {exc}") from exc
                raise
            self._cond.acquire()
            self._writing, self._durable = False, batch[-1][0]
            self._cond.notify_all()

    def _write(self, batch: list[tuple[int, bytes, bytes]]) -> None:
        """Write and fsync ``batch``, rolling segments as needed. Only the writer calls this, unlocked."""
        chunk: list[bytes] = []
        for seq, head, payload in batch:
            size = len(head) + len(payload)
            if self._fd is None or (self._seg_size and self._seg_size + size > self.segment_bytes):
                self._flush(chunk)
                chunk = []
                self._roll(seq)
            chunk += (head, payload)
            self._seg_size += size
        self._flush(chunk)

    def _flush(self, chunk: list[bytes]) -> None:
        if not chunk or self._fd is None:
            return
        data = b"".join(chunk)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        _sync(self._fd)
        self._fsyncs += 1
        self._bytes += len(data)

    def _roll(self, first_seq: int) -> None:
        path = self.directory / fmt.segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fsync_dir(self.directory)
        old, self._fd, self._seg_size = self._fd, fd, 0
        if old is not None:
            os.close(old)
        with self._cond:
            self._segments.append((first_seq, path))

    # -- checkpoint and replay -----------------------------------------------------------------------

    def mark_applied(self, seq: int) -> None:
        """``seq`` and every entry before it are in the store. Cheap; persisted at most every interval."""
        with self._cond:
            if seq > self._durable:
                raise ValueError(f"cannot mark {seq} applied: the last durable sequence is {self._durable}")
            if seq > self._applied:
                self._applied = seq
                while self._unapplied and self._unapplied[0][0] <= seq:
                    self._unapplied_bytes -= self._unapplied.popleft()[1]
            due = self._clock.monotonic() - self._last_persist >= self._interval
        if due:
            try:
                self._persist(block=False)
            except OSError:
                log.warning("kansoku WAL: checkpoint write failed in %s", self.directory, exc_info=True)

    def checkpoint(self) -> int:
        """Persist the applied mark now and delete the segments it covers; the persisted value."""
        try:
            self._persist(block=True)
        except OSError as exc:
            raise WALError(f"write-ahead log checkpoint failed: {exc}") from exc
        return self._checkpoint

    def _persist(self, *, block: bool) -> None:
        if not self._ckpt_lock.acquire(blocking=block):
            return  # another thread is persisting right now
        try:
            with self._cond:
                seq, self._last_persist = self._applied, self._clock.monotonic()
            if seq > self._checkpoint:
                fmt.write_checkpoint(self.directory, seq)
            with self._cond:
                self._checkpoint = seq
                segs = self._segments
                cut = 0
                while cut + 1 < len(segs) and segs[cut + 1][0] <= seq + 1:
                    cut += 1
                doomed, self._segments = segs[:cut], segs[cut:]
            for _, path in doomed:
                path.unlink(missing_ok=True)
        finally:
            self._ckpt_lock.release()

    def replay(self, after: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(seq, payload)`` of every durable entry above ``after`` (default: the applied mark), in order."""
        with self._cond:
            after = self._applied if after is None else after
            segs, upto = list(self._segments), self._durable
        return fmt.replay(segs, after, upto)

    # -- state and lifecycle -------------------------------------------------------------------------

    def stats(self) -> WALStats:
        with self._cond:
            return WALStats(
                appended=self._appended, fsyncs=self._fsyncs, bytes=self._bytes,
                unapplied_bytes=self._unapplied_bytes, segments=len(self._segments),
                corrupt_entries=self._corrupt, skipped_bytes=self._skipped, truncated_bytes=self._truncated,
                rejected=self._rejected, checkpoint=self._checkpoint, applied=self._applied,
                last_seq=self._durable,
            )  # fmt: skip

    def close(self) -> None:
        """Finish pending appends, persist the checkpoint, release the directory. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(WALError):
                self._wait_durable(self._next_seq - 1)
        with contextlib.suppress(OSError):
            self._persist(block=True)
        self._release()

    def _release(self) -> None:
        """Drop file handles and the directory lock without a checkpoint (what a crash leaves)."""
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd >= 0:
            unlock(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

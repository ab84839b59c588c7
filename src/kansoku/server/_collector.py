"""The collector service: store + write-ahead log + loader + keys + metrics, and their lifecycle.

:class:`Collector` owns the parts; ``_app`` exposes them over HTTP. Ingest is: decode and validate
(event loop) → encode rows → WAL append with group-commit fsync (a worker thread, so the loop keeps
serving) → acknowledge → the loader bulk-loads into the store. Queries read the store from worker
threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError
from kansoku.server._errors import APIError
from kansoku.server._ingest import decode_otlp, encode_entry, native_entry
from kansoku.server._keys import KeyRing
from kansoku.server._loader import Loader
from kansoku.server._metrics import SECONDS_BUCKETS, LLMMetrics, Registry
from kansoku.server._settings import ServerSettings
from kansoku.server._wal import WALError, WALFullError, WriteAheadLog
from kansoku.store import Store

log = logging.getLogger("kansoku.server")

_RETENTION_EVERY_S = 3600.0


def _open(settings: ServerSettings) -> Store:
    from kansoku.store import open_store

    try:
        return open_store(settings.store_url, retention_days=settings.retention_days)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any backend's failure to open becomes one clear message
        raise ConfigError(
            "--store", f"cannot open {settings.store_label}: {type(exc).__name__}: {exc}"
        ) from None


class Collector:
    """Everything behind the HTTP routes. ``store`` defaults to ``settings.store_url``."""

    def __init__(self, settings: ServerSettings, store: Store | None = None) -> None:
        self.settings = settings
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        if store is None:
            store = _open(settings)
        self.store = store
        try:
            self.wal = WriteAheadLog(settings.wal_dir, max_bytes=settings.wal_max_bytes)
        except BaseException:
            store.close()
            raise
        self.keys = KeyRing(settings.keys_file)
        self.gateway: Any = None  # kansoku up's gateway (kansoku.gateway.Gateway), for the UI
        self.metrics = Registry(settings.metrics_max_label_values)
        self.llm_metrics = LLMMetrics(self.metrics)
        self._init_metrics()
        self.loader = Loader(
            self.wal,
            store,
            interval_s=settings.load_interval_ms / 1000,
            batch_rows=settings.load_batch_rows,
            on_load=self._on_load,
        )
        self._retention_task: asyncio.Task[None] | None = None
        self.started = time.monotonic()

    def _init_metrics(self) -> None:
        m = self.metrics
        self.m_requests = m.counter(
            "kansoku_ingest_requests_total",
            "Ingest requests by protocol and HTTP status.",
            ["protocol", "code"],
        )
        self.m_spans = m.counter("kansoku_ingest_spans_total", "Spans accepted (durable).", ["protocol"])
        self.m_load = m.histogram(
            "kansoku_store_load_duration_seconds", "Duration of one bulk load.", SECONDS_BUCKETS
        )
        self.m_loaded = m.counter(
            "kansoku_store_rows_loaded_total", "Rows handed to the store by the loader."
        )
        wal = self.wal
        m.gauge(
            "kansoku_wal_unapplied_bytes",
            "WAL bytes not yet in the store.",
            lambda: wal.stats().unapplied_bytes,
        )
        m.gauge("kansoku_wal_max_bytes", "WAL bound; ingest answers 429 above it.", lambda: wal.max_bytes)
        m.gauge("kansoku_wal_fsyncs_total", "WAL fsync calls (group commit).", lambda: wal.stats().fsyncs)
        m.gauge(
            "kansoku_wal_rejected_total",
            "Appends refused because the WAL was full.",
            lambda: wal.stats().rejected,
        )
        m.gauge(
            "kansoku_wal_corrupt_entries_total",
            "Damaged WAL entries skipped at start-up (their spans are lost).",
            lambda: wal.stats().corrupt_entries,
        )
        m.gauge("kansoku_wal_segments", "WAL segment files kept.", lambda: wal.stats().segments)
        m.gauge(
            "kansoku_wal_truncated_bytes_total",
            "Bytes of a torn WAL tail cut at start-up (a crash mid-write: never acknowledged).",
            lambda: wal.stats().truncated_bytes,
        )
        m.gauge(
            "kansoku_wal_skipped_bytes_total",
            "Bytes of damaged WAL data skipped at start-up while resynchronising.",
            lambda: wal.stats().skipped_bytes,
        )
        m.gauge(
            "kansoku_store_load_errors_total",
            "Failed bulk loads (retried).",
            lambda: self.loader.stats.load_errors,
        )
        m.gauge(
            "kansoku_loader_pending_entries",
            "WAL entries acknowledged but not yet in the store.",
            lambda: self.loader.submitted - self.loader.applied,
        )
        m.gauge("kansoku_up", "1 while the collector runs.", lambda: 1)  # fmt: skip

    def _on_load(self, rows: int, seconds: float) -> None:
        with self.metrics.locked():
            self.m_loaded.inc((), rows)
            self.m_load.observe((), seconds)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loader.start()
        self._retention_task = asyncio.create_task(self._retention_loop())

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def close(self) -> None:
        """Load what is queued, checkpoint the WAL, close the store. Safe to call twice."""
        self.loader.stop()
        self.wal.close()
        self.store.close()

    async def _retention_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                deleted = await loop.run_in_executor(None, self.store.apply_retention, time.time_ns())
                if deleted:
                    log.info("kansoku: retention deleted %d rows", deleted)
            except Exception:
                log.warning("kansoku: retention failed", exc_info=True)
            await asyncio.sleep(_RETENTION_EVERY_S)

    # -- ingest --------------------------------------------------------------------------------------
    # Decoding, the WAL append and the metrics run in one worker-thread hop per request: the
    # event loop stays free to answer queries and health checks while a big batch is decoded.

    def _ingest_native(self, body: bytes, project: str) -> int:
        entry, rows = native_entry(body, project)
        if rows:
            self._append(entry)
            self.llm_metrics.observe_rows(project, rows)
            self._count_spans("native", len(rows))
        return len(rows)

    def _ingest_otlp(self, body: bytes, content_type: str, project: str) -> int:
        spans = decode_otlp(body, content_type)
        if spans:
            self._append(encode_entry(spans, project))
            self.llm_metrics.observe(project, spans)
            self._count_spans("otlp", len(spans))
        return len(spans)

    def _append(self, entry: bytes) -> None:
        try:
            seq = self.wal.append(entry)
        except WALFullError as exc:
            retry = max(1, round(exc.retry_after_s))
            raise APIError(
                429,
                f"the collector is behind (write-ahead log full); retry after {retry} s",
                code="backpressure",
                headers={"Retry-After": str(retry)},
            ) from None
        except WALError as exc:
            log.error("kansoku: ingest refused: %s", exc)  # noqa: TRY400 -- logged where it failed
            raise APIError(503, "the collector cannot store data right now", code="wal_unavailable") from None
        self.loader.submit(seq, entry)

    def _count_spans(self, protocol: str, n: int) -> None:
        with self.metrics.locked():
            self.m_spans.inc((protocol,), n)

    async def accept_native(self, body: bytes, project: str) -> int:
        """Validate a native batch and make it durable; the number of records (once fsync'd).

        Raises :class:`APIError`: 400 for bad input, 429 when the WAL is full, 503 when it failed.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._ingest_native, body, project)

    async def accept_otlp(self, body: bytes, content_type: str, project: str) -> int:
        """The same for an OTLP/HTTP trace export (protobuf or JSON)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._ingest_otlp, body, content_type, project)

    def count_request(self, protocol: str, status: int) -> None:
        with self.metrics.locked():
            self.m_requests.inc((protocol, str(status)))

    # -- health --------------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, object]]:
        wal = self.wal.stats()
        loader = self.loader.stats
        checks = {
            "wal_accepting": wal.unapplied_bytes < self.wal.max_bytes * 0.9,
            "store_loading": loader.last_error is None,
            "loader_running": self.loader.running,
        }
        detail: dict[str, object] = {
            "checks": checks,
            "wal": {"unapplied_bytes": wal.unapplied_bytes, "max_bytes": self.wal.max_bytes},
            "loader": {k: v for k, v in asdict(loader).items() if k != "last_error"},
        }
        if loader.last_error:
            detail["store_error"] = "the last bulk load failed; see the server log"  # may name hosts
        return all(checks.values()), detail

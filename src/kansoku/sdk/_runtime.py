"""``init``, ``flush``, ``shutdown``, ``stats``: the SDK's lifecycle, safe to call from anywhere."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError
from kansoku.export._base import Exporter
from kansoku.export._channel import Channel
from kansoku.export._registry import ExportOptions, create_exporter
from kansoku.export._spool import Spool
from kansoku.policy import FullJitter
from kansoku.sdk._context import install_thread_propagation
from kansoku.sdk._pipeline import Pipeline
from kansoku.sdk._processors import ContentDropper, Processor, ResourceProcessor, Sampler
from kansoku.sdk._settings import Settings, load_settings
from kansoku.sdk._state import HOLDER

log = logging.getLogger("kansoku")
_lock = threading.RLock()


class Runtime:
    """One initialised SDK: settings, pipeline, channels."""

    def __init__(
        self, settings: Settings, exporters: Sequence[Exporter], processors: list[Processor]
    ) -> None:
        self.settings = settings
        self.channels = [self._channel(e) for e in exporters]
        self.pipeline = Pipeline(
            processors,
            self.channels,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval_ms / 1000.0,
        )
        self.submit = self.pipeline.submit

    def _channel(self, exporter: Exporter) -> Channel:
        spool = None
        if getattr(exporter, "spool", False) and self.settings.spool_max_bytes > 0:
            key = hashlib.sha256(exporter.name.encode()).hexdigest()[:12]
            directory = Path(self.settings.spool_dir) / f"{_slug(self.settings.service_name)}-{key}"
            try:
                spool = Spool(directory, self.settings.spool_max_bytes)
            except OSError:
                log.warning(
                    "kansoku: spool at %s unavailable; export failures will drop", directory, exc_info=True
                )
        backoff = FullJitter(
            base=self.settings.retry_base_ms / 1000.0, cap=self.settings.retry_cap_ms / 1000.0
        )
        return Channel(exporter, spool=spool, max_queued_spans=self.settings.queue_size, backoff=backoff)

    def flush(self, timeout: float) -> bool:
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float) -> None:
        # One deadline for the whole shutdown, not one per stage.
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self.pipeline.stop(max(0.0, deadline - time.monotonic()))
        for ch in self.channels:
            ch.stop(max(0.05, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        dropped = self.pipeline.dropped_snapshot()
        exporters = {ch.exporter.name: ch.snapshot() for ch in self.channels}
        lost = sum(v for k, v in dropped.items() if k != "sampled_out")
        return {
            "queued": self.pipeline.queued,
            "received": self.pipeline.received,
            "processed": self.pipeline.processed,
            "dropped": dropped,
            # Records some destination will never get, for any reason but sampling.
            "dropped_total": lost + sum(e["dropped"] for e in exporters.values()),
            "exporters": exporters,
        }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40] or "service"


def _processors(settings: Settings) -> list[Processor]:
    from kansoku.pricing import CostProcessor, PriceCatalog

    procs: list[Processor] = [Sampler(settings.sample_rate, settings.slow_ms)]
    catalog = PriceCatalog.default()
    if settings.prices_file:
        catalog = catalog.merged(PriceCatalog.from_file(settings.prices_file))
    procs.append(CostProcessor(catalog))
    procs.append(ResourceProcessor(settings.service_name, settings.environment, settings.region))
    if not settings.capture_content:
        procs.append(ContentDropper())
    if settings.redact:
        from kansoku.redact import RedactionProcessor, Redactor

        redactor = Redactor(
            custom=dict(settings.redact_patterns),
            mode=settings.redact_mode,
            hash_key=settings.redact_key,
        )
        procs.append(RedactionProcessor(redactor))
    return procs


def init(
    *,
    export: str | Exporter | Sequence[str | Exporter] | None = None,
    processors: Sequence[Processor] = (),
    **options: Any,
) -> Settings:
    """Start recording. Arguments win over ``KANSOKU_*`` environment variables, which win over defaults.

    ``export`` takes URLs (``file:///path.jsonl``, ``stdout:``, ``logging:``, ``http(s)://collector``,
    ``otlp+http://host:4318?convention=genai|openinference``) and/or exporter objects. Extra
    ``processors`` run after the built-ins (sampling, cost, resource, redaction). Calling ``init``
    again replaces the previous configuration after flushing it. Raises :class:`ConfigError` for
    invalid settings — the only time the SDK raises.
    """
    given: list[str | Exporter] = [export] if isinstance(export, str | Exporter) else list(export or [])
    objects = [item for item in given if not isinstance(item, str)]
    if export is not None:
        options["export"] = [item for item in given if isinstance(item, str)]
    settings = load_settings(options)
    with _lock:
        if settings.disabled:
            _stop_current(timeout=5.0)
            return settings
        # Build everything that can fail before stopping the running configuration, so a bad
        # init() leaves the previous one recording.
        exporters = [create_exporter(t, ExportOptions(api_key=settings.api_key)) for t in settings.export]
        exporters.extend(objects)
        try:
            procs = _processors(settings) + list(processors)
        except ValueError as exc:
            raise ConfigError("redact_patterns", str(exc)) from None
        _stop_current(timeout=5.0)
        runtime = Runtime(settings, exporters, procs)
        HOLDER.sink = runtime
        _RUNTIME[0] = runtime
        install_thread_propagation()
        from kansoku.instrument import install, set_propagation

        set_propagation(True)
        install(settings.instrument)
    return settings


_RUNTIME: list[Runtime | None] = [None]


def _stop_current(timeout: float) -> None:
    runtime = _RUNTIME[0]
    if runtime is not None:
        HOLDER.sink = None
        _RUNTIME[0] = None
        runtime.shutdown(timeout)


def flush(timeout: float = 10.0) -> bool:
    """Block until every record so far is exported or durably spooled; ``False`` on timeout."""
    runtime = _RUNTIME[0]
    return True if runtime is None else runtime.flush(timeout)


def shutdown(timeout: float = 10.0) -> None:
    """Flush, stop the worker threads and remove instrumentation. Spooled data stays for the next start."""
    with _lock:
        _stop_current(timeout)
        from kansoku.instrument import uninstall

        uninstall()


def stats() -> dict[str, Any]:
    """Counters: queued, received, processed, dropped by reason, and per exporter
    (exported, spooled, replayed, spool size, failures, rejected, dropped)."""
    runtime = _RUNTIME[0]
    return {"enabled": False} if runtime is None else {"enabled": True, **runtime.stats()}


def _at_exit() -> None:
    runtime = _RUNTIME[0]
    if runtime is not None:
        runtime.shutdown(timeout=float(os.environ.get("KANSOKU_EXIT_TIMEOUT", "5")))


atexit.register(_at_exit)

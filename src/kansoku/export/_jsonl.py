"""JSON-lines exporters: a rotating file, standard output, and stdlib ``logging``.

Each line is one record (:meth:`kansoku.model.Span.to_record`), so log pipelines (Datadog,
CloudWatch, Elasticsearch, BigQuery) ingest it unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from kansoku.export._base import ExportResult
from kansoku.model import Span

log = logging.getLogger("kansoku.export")


def _line(span: Span) -> bytes:
    return orjson.dumps(span.to_record()) + b"\n"


class FileExporter:
    """Append records to ``path``; rotate at ``max_bytes`` keeping ``backups`` old files."""

    spool = False  # a local disk that refuses appends would refuse the spool too

    def __init__(
        self, path: str | os.PathLike[str], max_bytes: int = 100 * 1024 * 1024, backups: int = 5
    ) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._size = 0

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across batches on purpose
            self._size = self._fh.tell()
        return self._fh

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def export(self, batch: Sequence[Span]) -> ExportResult:
        data = b"".join(_line(s) for s in batch)
        with self._lock:
            try:
                fh = self._open()
                if self._size and self._size + len(data) > self.max_bytes:
                    self._rotate()
                    fh = self._open()
                fh.write(data)
                fh.flush()
                self._size += len(data)
            except OSError:
                log.warning("kansoku could not write %s", self.path, exc_info=True)
                return ExportResult.RETRY
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            if self._fh is None:
                return True
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError:
                return False
        return True

    def shutdown(self) -> None:
        self.force_flush()
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class StdoutExporter:
    """One JSON line per record on standard output."""

    name = "stdout"
    spool = False

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def export(self, batch: Sequence[Span]) -> ExportResult:
        stream = self._stream or sys.stdout
        try:
            stream.write("".join(_line(s).decode() for s in batch))
            stream.flush()
        except (OSError, ValueError):  # closed or broken stdout
            return ExportResult.RETRY
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None


class LoggingExporter:
    """One JSON line per record through stdlib ``logging`` (logger ``kansoku.calls`` by default).

    The record is also attached as ``extra={"kansoku": {...}}`` for structured log handlers.
    """

    spool = False

    def __init__(self, logger_name: str = "kansoku.calls", level: int = logging.INFO) -> None:
        self.name = f"logging:{logger_name}"
        self._logger = logging.getLogger(logger_name)
        self._level = level

    def export(self, batch: Sequence[Span]) -> ExportResult:
        for span in batch:
            record = span.to_record()
            level = logging.WARNING if span.is_error else self._level
            self._logger.log(level, orjson.dumps(record).decode(), extra={"kansoku": record})
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None

"""Where records go: the exporter contract, built-in exporters, channels with spooling."""

from kansoku.export._base import Exporter, ExportResult
from kansoku.export._channel import Channel, ChannelStats
from kansoku.export._jsonl import FileExporter, LoggingExporter, StdoutExporter
from kansoku.export._native import BATCH_SCHEMA, INGEST_PATH, NativeHTTPExporter, encode_native
from kansoku.export._otlp import OTLPHTTPExporter
from kansoku.export._registry import ExportOptions, create_exporter, register_exporter
from kansoku.export._spool import Spool

__all__ = [
    "BATCH_SCHEMA",
    "INGEST_PATH",
    "Channel",
    "ChannelStats",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "FileExporter",
    "LoggingExporter",
    "NativeHTTPExporter",
    "OTLPHTTPExporter",
    "Spool",
    "StdoutExporter",
    "create_exporter",
    "encode_native",
    "register_exporter",
]

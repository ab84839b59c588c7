"""Export targets by URL scheme. Built-ins register the same way third-party exporters do.

A third-party package adds a scheme with an entry point in the group ``kansoku.exporters``
whose value is a factory ``(target: str, options: ExportOptions) -> Exporter``, or at run
time with :func:`register_exporter`.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from kansoku.errors import ExportError
from kansoku.export._base import Exporter
from kansoku.export._jsonl import FileExporter, LoggingExporter, StdoutExporter
from kansoku.export._native import NativeHTTPExporter


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What factories may need besides the target URL."""

    api_key: str | None = field(default=None, repr=False)
    timeout: float = 10.0


ExporterFactory = Callable[[str, ExportOptions], Exporter]
_FACTORIES: dict[str, ExporterFactory] = {}
_lock = threading.Lock()


def register_exporter(scheme: str, factory: ExporterFactory) -> None:
    """Make ``scheme:...`` export targets build their exporter with ``factory``."""
    with _lock:
        _FACTORIES[scheme.lower()] = factory


def create_exporter(target: str, options: ExportOptions | None = None) -> Exporter:
    """Build the exporter for ``target``; :class:`ExportError` names what is wrong."""
    opts = options or ExportOptions()
    scheme = target.split(":", 1)[0].lower() if ":" in target else target.lower()
    with _lock:
        factory = _FACTORIES.get(scheme)
    if factory is None:
        for ep in entry_points(group="kansoku.exporters"):
            if ep.name.lower() == scheme:
                factory = ep.load()
                register_exporter(scheme, factory)
                break
    if factory is None:
        known = ", ".join(sorted(_FACTORIES))
        raise ExportError(_safe(target), f"unknown scheme {scheme!r}; known: {known}")
    try:
        return factory(target, opts)
    except ExportError:
        raise
    except (ValueError, ImportError, OSError) as exc:
        # Exporters' messages may quote the raw target; never repeat its credentials.
        message = str(exc).replace(target, _safe(target))
        raise ExportError(_safe(target), message) from None


def _safe(target: str) -> str:
    """The target without credentials or query values, for error messages."""
    parts = urllib.parse.urlsplit(target)
    netloc = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # a malformed port: show none rather than fail while reporting
        port = None
    if port:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _query(target: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))


def _size(text: str) -> int:
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3}
    lowered = text.strip().lower()
    for suffix, mult in units.items():
        if lowered.endswith(suffix):
            return int(float(lowered[: -len(suffix)]) * mult)
    return int(lowered)


def _file(target: str, _opts: ExportOptions) -> Exporter:
    parts = urllib.parse.urlsplit(target)
    path = urllib.parse.unquote(
        parts.path if parts.netloc in ("", "localhost") else parts.netloc + parts.path
    )
    if not path:
        raise ValueError("needs a path, e.g. file:///var/log/kansoku/calls.jsonl")
    q = _query(target)
    try:
        max_bytes = _size(q.get("max_bytes", "100mb"))
        backups = int(q.get("backups", "5"))
    except ValueError:
        raise ValueError("max_bytes must be a size such as 100mb and backups a whole number") from None
    return FileExporter(path, max_bytes=max_bytes, backups=backups)


def _stdout(_target: str, _opts: ExportOptions) -> Exporter:
    return StdoutExporter()


def _logging(target: str, _opts: ExportOptions) -> Exporter:
    name = target.split(":", 1)[1] if ":" in target else ""
    return LoggingExporter(name.strip("/") or "kansoku.calls")


def _http(target: str, opts: ExportOptions) -> Exporter:
    return NativeHTTPExporter(target, api_key=opts.api_key, timeout=opts.timeout)


def _otlp(target: str, opts: ExportOptions) -> Exporter:
    from kansoku.export._otlp import OTLPHTTPExporter

    parts = urllib.parse.urlsplit(target)
    scheme = "https" if parts.scheme.endswith("https") else "http"
    q = _query(target)
    convention = q.pop("convention", "genai")
    if convention not in ("genai", "openinference"):
        raise ValueError(f"convention must be genai or openinference, got {convention!r}")
    endpoint = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else None
    return OTLPHTTPExporter(endpoint, convention=convention, headers=headers, timeout=opts.timeout)


for _scheme, _factory in (
    ("file", _file),
    ("stdout", _stdout),
    ("logging", _logging),
    ("http", _http),
    ("https", _http),
    ("otlp+http", _otlp),
    ("otlp+https", _otlp),
    ("otlp", _otlp),
):
    register_exporter(_scheme, _factory)

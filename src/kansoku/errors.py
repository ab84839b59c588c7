"""kansoku's exception tree. Every exception carries its data as attributes.

::

    KansokuError
    ├── ConfigError          bad setting: names the setting and how to fix it
    ├── ExportError          an exporter could not be built (bad URL, missing extra)
    ├── SpoolCorruptError    a spool file failed its checksum (counted, then skipped)
    └── QueryError           the query API answered with an error, or could not be reached

The SDK never raises these into application code from an instrumented call: they surface
only from explicit calls such as :func:`kansoku.init` with invalid arguments.
"""

from __future__ import annotations


class KansokuError(Exception):
    """Base class of every kansoku error."""


class ConfigError(KansokuError, ValueError):
    """A setting is invalid. ``setting`` is the argument or environment variable name."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class ExportError(KansokuError):
    """An exporter could not be created for ``target``."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"export target {target!r}: {message}")
        self.target = target
        self.message = message


class SpoolCorruptError(KansokuError):
    """A spooled batch failed its integrity check."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"spool file {path}: {reason}")
        self.path = path
        self.reason = reason


class QueryError(KansokuError):
    """A query to a kansoku server failed (:mod:`kansoku.client`).

    ``status`` is the HTTP status, or ``None`` when no answer came (``type`` is then
    ``"connection_error"`` or ``"timeout"``). ``type``, ``message``, ``param`` and ``code`` are the
    server's error object. The message never contains the API key.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str = "server_error",  # named like the field of the API's error object
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message if status is None else f"HTTP {status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code

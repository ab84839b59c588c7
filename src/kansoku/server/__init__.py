"""The collector: durable OTLP and native ingest, the query API, metrics and health.

``kansoku server`` runs it; :func:`serve` embeds it in an asyncio program and :class:`Collector`
/ :func:`make_app` give tests and ``kansoku up`` the parts.
"""

from kansoku.server._app import make_app
from kansoku.server._collector import Collector
from kansoku.server._errors import APIError
from kansoku.server._keys import SCOPES, KeyInfo, KeyRing
from kansoku.server._run import check_bind, run, serve
from kansoku.server._settings import DEFAULT_PORT, ENV_VARS, ServerSettings, load_server_settings
from kansoku.server._wal import WALError, WALFullError, WALStats, WriteAheadLog

__all__ = [
    "DEFAULT_PORT",
    "ENV_VARS",
    "SCOPES",
    "APIError",
    "Collector",
    "KeyInfo",
    "KeyRing",
    "ServerSettings",
    "WALError",
    "WALFullError",
    "WALStats",
    "WriteAheadLog",
    "check_bind",
    "load_server_settings",
    "make_app",
    "run",
    "serve",
]

"""``clickhouse://[user[:password]@]host[:port][/database][?cluster=NAME[&nodes=h:p,h:p]]``.

``port`` is the HTTP port (8123 by default). ``cluster`` names a cluster of the server's
``remote_servers``; ``nodes`` lists the HTTP addresses of that cluster's servers when they do
not all listen on the same port as the first (several servers on one host, as in CI).
Errors are :class:`~kansoku.errors.ConfigError` for the setting ``url`` and never contain the
password.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from kansoku.errors import ConfigError
from kansoku.store._clickhouse_http import Endpoint
from kansoku.store._clickhouse_sql import identifier

DEFAULT_PORT = 8123
_OPTIONS = ("cluster", "nodes")


@dataclass(frozen=True, slots=True)
class ClickHouseConfig:
    """What a ``clickhouse://`` URL says (the password stays out of the repr)."""

    endpoint: Endpoint
    database: str = "default"
    cluster: str | None = None
    nodes: tuple[tuple[str, int], ...] | None = None

    def safe_url(self) -> str:
        """The URL without the password, for reprs and messages."""
        e = self.endpoint
        host = f"[{e.host}]" if ":" in e.host else e.host
        url = f"clickhouse://{urllib.parse.quote(e.user, safe='')}@{host}:{e.port}/{self.database}"
        if self.cluster is not None:
            url += f"?cluster={self.cluster}"
        return url


def _fail(message: str) -> ConfigError:
    return ConfigError("url", message)


def _address(text: str, what: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit("//" + text.strip())
    try:
        port = parts.port
    except ValueError:
        raise _fail(f"{what}: the port must be a number from 1 to 65535") from None
    if not parts.hostname or parts.username is not None or parts.path or parts.query:
        raise _fail(f"{what} must be host:port")
    return parts.hostname, port or DEFAULT_PORT


def parse_clickhouse_url(url: str) -> ClickHouseConfig:
    """Parse a ``clickhouse://`` URL; :class:`ConfigError` names what is wrong."""
    if not isinstance(url, str):
        raise _fail("must be a string")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() != "clickhouse":
        raise _fail(f"scheme must be clickhouse://, got {parts.scheme + '://' if parts.scheme else 'none'}")
    if parts.fragment:
        raise _fail("a clickhouse:// URL takes no #fragment")
    try:
        port = parts.port
    except ValueError:
        raise _fail("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise _fail("needs a host, e.g. clickhouse://127.0.0.1:8123/default")
    user = urllib.parse.unquote(parts.username) if parts.username else "default"
    password = urllib.parse.unquote(parts.password) if parts.password else ""
    database = urllib.parse.unquote(parts.path.strip("/")) or "default"
    try:
        identifier(database, "database")
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _fail("the query string must be key=value pairs") from None
    for key, values in query.items():
        if key not in _OPTIONS:
            raise _fail(f"unknown option {key!r}; known: {', '.join(_OPTIONS)}")
        if len(values) != 1 or not values[0]:
            raise _fail(f"option {key!r} needs exactly one non-empty value")
    cluster = query.get("cluster", [None])[0]
    if cluster is not None:
        try:
            identifier(cluster, "cluster")
        except ValueError as exc:
            raise _fail(str(exc)) from None
    nodes = None
    if "nodes" in query:
        if cluster is None:
            raise _fail("nodes needs cluster")
        nodes = tuple(_address(n, "each of nodes") for n in query["nodes"][0].split(","))
    endpoint = Endpoint(parts.hostname, port or DEFAULT_PORT, user, password)
    return ClickHouseConfig(endpoint, database, cluster, nodes)

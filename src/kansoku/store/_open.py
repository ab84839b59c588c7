"""Stores by URL scheme. Built-ins register the same way third-party backends do.

* ``duckdb:///abs/path.duckdb`` — a file at an absolute path (three slashes, as in ``file:``);
* ``duckdb://rel/path.duckdb`` — a path relative to the working directory;
* ``duckdb:///:memory:`` (or ``duckdb://:memory:``) — in memory, gone on close;
* ``clickhouse://[user[:password]@]host[:port][/database][?cluster=NAME[&nodes=h:p,...]]`` —
  see :mod:`kansoku.store._clickhouse_url`.

A third-party package adds a scheme with an entry point in the group ``kansoku.stores`` whose
value is a factory ``(url: str, retention_days: int | None) -> Store``, or at run time with
:func:`register_store`. Errors in the URL are :class:`~kansoku.errors.ConfigError` for the
setting ``url``; they never repeat a password.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Callable
from importlib.metadata import entry_points

from kansoku.errors import ConfigError
from kansoku.store._protocol import Store

StoreFactory = Callable[[str, int | None], Store]
_FACTORIES: dict[str, StoreFactory] = {}
_lock = threading.Lock()


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``scheme://...`` store URLs open their store with ``factory``."""
    with _lock:
        _FACTORIES[scheme.lower()] = factory


def _factory(scheme: str) -> StoreFactory | None:
    with _lock:
        factory = _FACTORIES.get(scheme)
    if factory is None:
        for ep in entry_points(group="kansoku.stores"):
            if ep.name.lower() == scheme:
                factory = ep.load()
                register_store(scheme, factory)
                break
    return factory


def open_store(url: str, *, retention_days: int | None = 30) -> Store:
    """Open the store ``url`` names, keeping ``retention_days`` of data (``None``: everything)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("url", "must look like scheme://..., e.g. duckdb:///var/lib/kansoku/spans.duckdb")
    if retention_days is not None and (
        isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days <= 0
    ):
        raise ConfigError("retention_days", "must be a positive whole number of days or None")
    scheme = url.split("://", 1)[0].lower()
    factory = _factory(scheme)
    if factory is None:
        known = ", ".join(sorted(_FACTORIES))
        raise ConfigError("url", f"unknown store scheme {scheme!r}; known: {known}")
    try:
        return factory(url, retention_days)
    except ConfigError:
        raise
    except ValueError as exc:
        # A factory's message may quote the raw URL; never repeat its credentials.
        raise ConfigError("url", str(exc).replace(url, safe_url(url))) from None


def safe_url(url: str) -> str:
    """``url`` without credentials or query values, for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_DUCKDB_OPTIONS = ("memory_limit", "threads")
_MEMORY = re.compile(r"^\d{1,6}(\.\d{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def _duckdb(url: str, retention_days: int | None) -> Store:
    from kansoku.store._duckdb import DuckDBStore

    rest = url.split("://", 1)[1]
    if "#" in rest:
        raise ConfigError("url", "a duckdb:// URL takes no #fragment")
    rest, _, query = rest.partition("?")
    options = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
    unknown = sorted(set(options) - set(_DUCKDB_OPTIONS))
    if unknown:
        raise ConfigError("url", f"unknown duckdb option(s) {unknown}; known: {list(_DUCKDB_OPTIONS)}")
    memory = options.get("memory_limit", [None])[-1]
    if memory is not None and not _MEMORY.match(memory):
        raise ConfigError("url", f"memory_limit must look like 512MB or 2GiB, got {memory[:20]!r}")
    threads_raw = options.get("threads", [None])[-1]
    threads = None
    if threads_raw is not None:
        ok = threads_raw.isascii() and threads_raw.isdigit() and len(threads_raw) <= 3
        if not ok or not 1 <= int(threads_raw) <= 256:
            raise ConfigError("url", f"threads must be a number from 1 to 256, got {threads_raw[:20]!r}")
        threads = int(threads_raw)
    path = urllib.parse.unquote(rest)
    if path in ("/:memory:", ":memory:"):
        path = ":memory:"
    elif not path or path.endswith("/"):
        raise ConfigError("url", "needs a file path, e.g. duckdb:///var/lib/kansoku/spans.duckdb")
    return DuckDBStore(path, retention_days=retention_days, memory_limit=memory, threads=threads)


def _clickhouse(url: str, retention_days: int | None) -> Store:
    from kansoku.store._clickhouse import ClickHouseStore

    return ClickHouseStore(url, retention_days=retention_days)


for _scheme, _fn in (("duckdb", _duckdb), ("clickhouse", _clickhouse)):
    register_store(_scheme, _fn)

"""Collector settings: argument > environment variable > config file > default, parsed once.

The config file is TOML (``--config kansoku.toml``), with the same keys as the arguments under a
``[server]`` table. Every value is validated here; a bad one raises :class:`ConfigError` naming the
setting (argument or ``KANSOKU_*`` variable) and what would be accepted.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError

#: Environment variables read by ``kansoku server`` / ``kansoku up``. Documented in the README.
ENV_VARS: dict[str, str] = {
    "host": "KANSOKU_HOST",
    "port": "KANSOKU_PORT",
    "store": "KANSOKU_STORE",
    "data_dir": "KANSOKU_DATA_DIR",
    "retention_days": "KANSOKU_RETENTION_DAYS",
    "allow_unauthenticated": "KANSOKU_ALLOW_UNAUTHENTICATED",
    "max_body_bytes": "KANSOKU_MAX_BODY_BYTES",
    "wal_max_bytes": "KANSOKU_WAL_MAX_BYTES",
    "load_interval_ms": "KANSOKU_LOAD_INTERVAL_MS",
    "load_batch_rows": "KANSOKU_LOAD_BATCH_ROWS",
    "metrics_max_label_values": "KANSOKU_METRICS_MAX_LABEL_VALUES",
}

DEFAULT_PORT = 4318  # the OTLP/HTTP port: OpenTelemetry exporters reach us with their defaults


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "kansoku")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything the collector needs, validated. The store URL may hold a password: hidden."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    store: str | None = None  # None: duckdb:///<data_dir>/kansoku.duckdb
    data_dir: str = ""
    retention_days: int | None = 30
    allow_unauthenticated: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    wal_max_bytes: int = 256 * 1024 * 1024  # replayed into memory at start-up: keep it modest
    load_interval_ms: int = 200
    load_batch_rows: int = 50_000
    metrics_max_label_values: int = 100

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'<url>' if f.name == 'store' and self.store else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"ServerSettings({shown})"

    @property
    def store_url(self) -> str:
        return self.store or f"duckdb:///{Path(self.data_dir).resolve() / 'kansoku.duckdb'}"

    @property
    def store_label(self) -> str:
        """The store URL without credentials (for logs and messages)."""
        scheme, _, rest = self.store_url.partition("://")
        return f"{scheme}://{rest.rsplit('@', 1)[-1]}"

    @property
    def wal_dir(self) -> Path:
        return Path(self.data_dir) / "wal"

    @property
    def keys_file(self) -> Path:
        return Path(self.data_dir) / "keys.json"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _int(name: str, raw: Any, low: int, high: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if isinstance(raw, bool) or not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {raw!r}")
    return value


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``[server]`` table of a TOML config file."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"no such file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    table = doc.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError("--config", f"{path}: [server] must be a table")
    unknown = sorted(set(table) - set(ENV_VARS))
    if unknown:
        raise ConfigError("--config", f"{path}: unknown setting(s) {unknown}; known: {sorted(ENV_VARS)}")
    return table


def load_server_settings(
    args: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> ServerSettings:
    """Resolve each setting: ``args`` (None = unset) > ``KANSOKU_*`` > ``config`` > default."""
    env = os.environ if environ is None else environ
    raw: dict[str, tuple[str, Any]] = {}
    for name, var in ENV_VARS.items():
        if args.get(name) is not None:
            raw[name] = ("--" + name.replace("_", "-"), args[name])
        elif env.get(var) not in (None, ""):
            raw[name] = (var, env[var])
        elif config and name in config:
            raw[name] = (f"config {name}", config[name])
    out: dict[str, Any] = {}
    for name, (label, value) in raw.items():
        if name in ("host", "store", "data_dir"):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(label, "must be a non-empty string")
            out[name] = value.strip()
        elif name == "port":
            out[name] = _int(label, value, 0, 65535)
        elif name == "retention_days":
            out[name] = None if str(value).lower() in {"0", "none", "off"} else _int(label, value, 1, 36500)
        elif name == "allow_unauthenticated":
            out[name] = _bool(label, value)
        elif name == "max_body_bytes":
            out[name] = _int(label, value, 1024, 1 << 30)
        elif name == "wal_max_bytes":
            out[name] = _int(label, value, 1 << 20, 1 << 40)
        elif name == "load_interval_ms":
            out[name] = _int(label, value, 1, 60_000)
        elif name == "load_batch_rows":
            out[name] = _int(label, value, 1, 10_000_000)
        elif name == "metrics_max_label_values":
            out[name] = _int(label, value, 1, 100_000)
    out.setdefault("data_dir", _default_data_dir())
    return ServerSettings(**out)

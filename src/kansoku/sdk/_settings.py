"""SDK settings: argument > environment variable > default, parsed once into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError

#: Environment variables read by :func:`kansoku.init`. Documented in the README.
ENV_VARS: dict[str, str] = {
    "service_name": "KANSOKU_SERVICE_NAME",
    "environment": "KANSOKU_ENVIRONMENT",
    "region": "KANSOKU_REGION",
    "export": "KANSOKU_EXPORT",
    "api_key": "KANSOKU_API_KEY",
    "sample_rate": "KANSOKU_SAMPLE_RATE",
    "slow_ms": "KANSOKU_SLOW_MS",
    "redact": "KANSOKU_REDACT",
    "redact_mode": "KANSOKU_REDACT_MODE",
    "redact_key": "KANSOKU_REDACT_KEY",
    "capture_content": "KANSOKU_CAPTURE_CONTENT",
    "queue_size": "KANSOKU_QUEUE_SIZE",
    "batch_size": "KANSOKU_BATCH_SIZE",
    "flush_interval_ms": "KANSOKU_FLUSH_INTERVAL_MS",
    "retry_base_ms": "KANSOKU_RETRY_BASE_MS",
    "retry_cap_ms": "KANSOKU_RETRY_CAP_MS",
    "spool_dir": "KANSOKU_SPOOL_DIR",
    "spool_max_bytes": "KANSOKU_SPOOL_MAX_BYTES",
    "prices_file": "KANSOKU_PRICES_FILE",
    "instrument": "KANSOKU_INSTRUMENT",
    "disabled": "KANSOKU_DISABLED",
}

_SECRET = frozenset({"api_key", "redact_key"})


def _default_spool_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "kansoku" / "spool")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything :func:`kansoku.init` needs, validated. Secrets are hidden from ``repr``."""

    service_name: str = "unknown_service"
    environment: str | None = None
    region: str | None = None
    export: tuple[str, ...] = ("logging:",)
    api_key: str | None = field(default=None, repr=False)
    sample_rate: float = 1.0
    slow_ms: float = 10_000.0
    redact: bool = True
    redact_mode: str = "mask"
    redact_key: str | None = field(default=None, repr=False)
    redact_patterns: Mapping[str, str] = field(default_factory=dict)
    capture_content: bool = True
    queue_size: int = 10_000
    batch_size: int = 512
    flush_interval_ms: int = 1_000
    retry_base_ms: int = 500
    retry_cap_ms: int = 30_000
    spool_dir: str = field(default_factory=_default_spool_dir)
    spool_max_bytes: int = 256 * 1024 * 1024
    prices_file: str | None = None
    instrument: tuple[str, ...] = ("openai", "anthropic")
    disabled: bool = False

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET:
                value = None if value is None else "[secure]"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _number(name: str, raw: Any, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value}")
    return value


def _list(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, Sequence):
        return tuple(str(p).strip() for p in raw if str(p).strip())
    raise TypeError


def load_settings(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge explicit arguments (``None`` = not given) over ``KANSOKU_*`` variables over defaults."""
    env = os.environ if environ is None else environ
    unknown = set(args) - {f.name for f in fields(Settings)}
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown setting; known: {', '.join(sorted(ENV_VARS))}")
    raw: dict[str, tuple[str, Any]] = {}
    for name, var in ENV_VARS.items():
        if args.get(name) is not None:
            raw[name] = (name, args[name])
        elif var in env:
            raw[name] = (var, env[var])
    if args.get("redact_patterns") is not None:
        raw["redact_patterns"] = ("redact_patterns", args["redact_patterns"])

    values: dict[str, Any] = {}
    for name, (label, value) in raw.items():
        if name in ("redact", "capture_content", "disabled"):
            values[name] = _bool(label, value)
        elif name == "sample_rate":
            values[name] = _number(label, value, float, 0.0, 1.0)
        elif name == "slow_ms":
            values[name] = _number(label, value, float, 0.0, 86_400_000.0)
        elif name in ("queue_size", "batch_size"):
            values[name] = _number(label, value, int, 1, 10_000_000)
        elif name in ("retry_base_ms", "retry_cap_ms") or name == "flush_interval_ms":
            values[name] = _number(label, value, int, 1, 3_600_000)
        elif name == "spool_max_bytes":
            values[name] = _number(label, value, int, 0, 1 << 50)
        elif name in ("export", "instrument"):
            try:
                values[name] = _list(value)
            except TypeError:
                raise ConfigError(label, "expected a comma-separated string or a list of strings") from None
        elif name == "redact_mode":
            if value not in ("mask", "hash"):
                raise ConfigError(label, f"must be 'mask' or 'hash', got {value!r}")
            values[name] = value
        elif name == "redact_patterns":
            if not isinstance(value, Mapping):
                raise ConfigError(label, "expected a mapping of entity name to regular expression")
            values[name] = dict(value)
        else:
            values[name] = None if value is None else str(value)
    settings = Settings(**values)
    if settings.redact and settings.redact_mode == "hash" and not settings.redact_key:
        raise ConfigError(
            "redact_key",
            "redact_mode='hash' needs a secret key: pass redact_key=... or set KANSOKU_REDACT_KEY",
        )
    if settings.batch_size > settings.queue_size:
        raise ConfigError("batch_size", "must not exceed queue_size")
    return settings

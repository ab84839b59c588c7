"""``kansoku gateway`` settings: argument > ``KANSOKU_GATEWAY_*`` variable > default, parsed once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError

__all__ = ["DEFAULT_PORT", "ENV_VARS", "GatewaySettings", "load_gateway_settings"]

DEFAULT_PORT = 4000  # what OpenAI-compatible proxies commonly use; clients change only base_url
ENV_VARS = {
    "config": "KANSOKU_GATEWAY_CONFIG",
    "host": "KANSOKU_GATEWAY_HOST",
    "port": "KANSOKU_GATEWAY_PORT",
    "state": "KANSOKU_GATEWAY_STATE",
    "record": "KANSOKU_GATEWAY_RECORD",
    "data_dir": "KANSOKU_DATA_DIR",
    "allow_unauthenticated": "KANSOKU_ALLOW_UNAUTHENTICATED",
}


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    config: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    state: str = "memory"
    record: tuple[str, ...] = ("http://127.0.0.1:4318",)  # the collector's default address
    data_dir: str = ""
    allow_unauthenticated: bool = False

    def __repr__(self) -> str:
        # --state may be a Redis URL with a password.
        state = self.state if "@" not in self.state else self.state.split("://", 1)[0] + "://***"
        return (
            f"GatewaySettings(config={self.config!r}, host={self.host!r}, port={self.port}, state={state!r}, "
            f"record={self.record!r}, data_dir={self.data_dir!r})"
        )

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def dead_letter_path(self) -> str:
        return str(Path(self.data_dir) / "dead_letters.sqlite")


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "kansoku")


def load_gateway_settings(
    args: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    env = os.environ if environ is None else environ
    raw: dict[str, tuple[str, Any]] = {}
    for name, var in ENV_VARS.items():
        if args.get(name) is not None:
            raw[name] = (f"--{name.replace('_', '-')}", args[name])
        elif env.get(var):
            raw[name] = (var, env[var])
    if "config" not in raw:
        raise ConfigError("--config", "the gateway needs a configuration file: --config gateway.yaml")
    out: dict[str, Any] = {"data_dir": _default_data_dir()}
    for name, (label, value) in raw.items():
        if name == "port":
            try:
                port = int(value)
            except (TypeError, ValueError):
                raise ConfigError(label, f"must be a port number, got {value!r}") from None
            if not 0 <= port <= 65535:
                raise ConfigError(label, f"must be from 0 to 65535, got {port}")
            out[name] = port
        elif name == "allow_unauthenticated":
            out[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        elif name == "record":
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            targets = tuple(str(t).strip() for t in items if str(t).strip())
            out[name] = () if targets in ((), ("off",), ("none",)) else targets
        else:
            out[name] = str(value)
    return GatewaySettings(**out)

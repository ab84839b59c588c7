"""Starting kansoku for a test, and small waits and probes around it (durability and export tests)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import kansoku
from kansoku.export import Exporter
from kansoku.sdk import ENV_VARS

Start = Callable[..., kansoku.Settings]


@contextmanager
def started_sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, service_name: str) -> Iterator[Start]:
    """``start(*exporters, **settings)``: kansoku with test defaults (spool under ``tmp_path``, no
    redaction, no instrumentation, ``KANSOKU_*`` cleared); ``kansoku.shutdown()`` always runs after."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    kansoku.shutdown()

    def start(*exporters: str | Exporter, **settings: Any) -> kansoku.Settings:
        settings.setdefault("spool_dir", str(tmp_path / "spool"))
        settings.setdefault("service_name", service_name)
        settings.setdefault("redact", False)
        settings.setdefault("instrument", [])
        return kansoku.init(export=list(exporters), **settings)

    try:
        yield start
    finally:
        kansoku.shutdown()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.01)
    return True


def channel(name: str) -> dict[str, int]:
    """``kansoku.stats()`` counters of the exporter channel ``name``."""
    counters: dict[str, int] = kansoku.stats()["exporters"][name]
    return counters


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

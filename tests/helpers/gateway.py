"""Run a real gateway (aiohttp on a loopback port) in a background thread for tests.

Records go to an :class:`~kansoku.testing.InMemoryExporter` (``running.exporter.spans``);
``running.flush()`` waits until every record submitted so far was exported.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kansoku.clock import SYSTEM_CLOCK, Clock
from kansoku.gateway._proxy import Gateway
from kansoku.gateway._serve import serve_gateway
from kansoku.gateway._settings import GatewaySettings
from kansoku.model import Span
from kansoku.testing import InMemoryExporter


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    exporter: InMemoryExporter
    config_path: Path
    _stop: asyncio.Event
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def chat(self, model: str = "chat", content: str = "hi", **extra: Any) -> Reply:
        headers = extra.pop("headers", None)
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return self.request("POST", "/v1/chat/completions", body, headers=headers)

    def flush(self, timeout: float = 10.0) -> list[Span]:
        """Every record submitted so far, exported; returns all exported spans."""
        recorder = self.gateway.recorder
        assert recorder is not None
        assert recorder.flush(timeout), "recorder did not flush"
        return self.exporter.spans

    def records(self) -> list[Span]:
        """The request-level LLM-call records (kind server) exported so far."""
        return [s for s in self.flush() if s.kind == "server"]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "gateway did not stop"


def write_config(directory: Path, text: str) -> Path:
    path = directory / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


Launch = Callable[[str], RunningGateway]
"""The ``launch`` fixture (conftest): start a gateway with this configuration text."""


def start_gateway(
    config_path: Path,
    data_dir: Path,
    *,
    state: str = "memory",
    host: str = "127.0.0.1",
    clock: Clock = SYSTEM_CLOCK,
) -> RunningGateway:
    """Start a gateway on a free port with ``config_path`` and wait until it listens.

    ``clock`` (a :class:`~kansoku.testing.FakeClock`) drives limits, breakers and budgets.
    """
    settings = GatewaySettings(
        config=str(config_path), host=host, port=0, state=state, record=(), data_dir=str(data_dir)
    )
    exporter = InMemoryExporter()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def on_ready(url: str, gw: Gateway) -> None:
        box["url"], box["gateway"] = url, gw
        ready.set()

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        box["stop"] = stop = asyncio.Event()
        try:
            loop.run_until_complete(
                serve_gateway(settings, on_ready=on_ready, stop=stop, exporters=[exporter], clock=clock)
            )
        except BaseException as exc:
            box["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="kansoku-test-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.05):
        assert time.monotonic() < deadline, "gateway did not start"
    if "error" in box:
        raise box["error"]
    return RunningGateway(box["url"], box["gateway"], exporter, config_path, box["stop"], box["loop"], thread)

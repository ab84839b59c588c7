"""Run a real collector (aiohttp on a loopback port) in a background thread for tests."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from kansoku.server import Collector, ServerSettings, serve
from kansoku.store import Store


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningServer:
    url: str
    collector: Collector
    _stop: asyncio.Event
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
        key: str | None = None,
    ) -> Response:
        if params:
            path += "?" + urllib.parse.urlencode(params, doseq=True)
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, key: str | None = None, **params: Any) -> Response:
        return self.request("GET", path, params=params or None, key=key)

    def ingest(
        self, records: list[dict[str, Any]], key: str | None = None, *, compress: bool = True
    ) -> Response:
        body = json.dumps({"schema": "kansoku.batch/v1", "records": records}).encode()
        headers = {"Content-Type": "application/json"}
        if compress:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.request("POST", "/api/v1/ingest", body, headers=headers, key=key)

    def wait_loaded(self, timeout: float = 10.0) -> None:
        """Until everything acknowledged so far is queryable."""
        assert self.collector.loader.wait_caught_up(timeout), "loader did not catch up"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "server did not stop"


def start_server(settings: ServerSettings, store: Store | None = None) -> RunningServer:
    """Start a collector with ``settings`` (port 0 is fine) and wait until it listens."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def on_ready(url: str, collector: Collector) -> None:
        box["url"], box["collector"] = url, collector
        ready.set()

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        box["stop"] = stop = asyncio.Event()
        try:
            collector = Collector(settings, store) if store is not None else None
            loop.run_until_complete(serve(settings, on_ready=on_ready, stop=stop, collector=collector))
        except BaseException as exc:
            box["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="kansoku-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.05):
        assert time.monotonic() < deadline, "server did not start"
    if "error" in box:
        raise box["error"]
    return RunningServer(box["url"], box["collector"], box["stop"], box["loop"], thread)

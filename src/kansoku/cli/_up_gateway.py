"""The gateway inside ``kansoku up``: same process and loop as the collector, records written
straight into the collector's write-ahead log (no HTTP hop, nothing lost at shutdown).

With ``--demo`` and no configuration of its own, it routes to a mock provider (two regions,
a fallback model, a template answer) with a global requests limit and a per-model tokens
limit sized well above the demo's traffic, and a small client sends it traffic with occasional
provider faults, so retries and fallbacks show up in the data and the limits show their use.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kansoku.testing import MockUpstream

DEMO_CONFIG = """\
# Written by `kansoku up --demo`: the gateway's demo routes, all to a local mock provider.
models:
  - name: chat
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: "{oai}"
        api_key: sk-demo-0000000000000000
        region: us-east
        weight: 3
      - provider: anthropic
        model: claude-haiku-4-5
        api_base: "{ant}"
        api_key: sk-ant-demo-000000000000
        region: eu-west
    routing: weighted
    retry: {{attempts: 3, base_ms: 50, cap_ms: 500}}
    fallbacks: [chat-backup]
    fallback_response: "We are busy right now; please try again in a minute."
  - name: chat-backup
    deployments:
      - {{provider: openai_compatible, model: gpt-4o, api_base: "{oai}", region: us-west}}
  - name: embed
    deployments:
      - {{provider: openai_compatible, model: text-embedding-3-small, api_base: "{oai}"}}
    retry: {{attempts: 4, base_ms: 50, cap_ms: 500}}
# Limits sized from the demo's own traffic, measured: about 0.9 requests a second, at most 63 in
# any minute; the chat route's answers use about 9 tokens a second (at most 18 a request). They
# are generous, so the demo is never refused, yet its use shows on the gateway page.
limits:
  # The whole gateway: about 5 times the demo's busiest minute, room for your own calls too.
  - {{per: global, on: requests, algorithm: sliding_window, limit: 300, window_s: 60}}
  # Each model route: a burst of 10,000 tokens (a request takes an estimate first, its prompt's
  # characters / 4 plus max_tokens or 256, then the real count), refilled at 25 a second: about
  # 3 times the chat route's use, so a bar shows each answer's tokens for a moment.
  - {{per: model, on: tokens, algorithm: token_bucket, limit: 10000, per_s: 25}}
# No budgets: they count per virtual key, user or department (a key's tag), and this gateway has
# no keys, so that the demo's client, curl and the OpenAI SDK call it without one; a per-user
# budget would be enforced but is not listed on the status page.
"""
_FAULTS = ("rate_limit", "server_error", "overloaded", "malformed_json")


class _Weather:
    """The demo provider's faults: calm spells where about 1 upstream call in 12 fails, and now
    and then an incident of 15-25 s where most do, so that retries, fallbacks, dead letters and
    breakers opening and closing again all show up. Faults hit a share of upstream calls (not
    a queue per client request): while breakers are open nothing piles up, and their half-open
    trials meet the weather of the moment, so they close once an incident is over.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.until: float | None = None
        self.incident = False

    def change(self, now: float) -> tuple[str, float] | None:
        """The next (fault, share of calls) when the weather changes, else None."""
        if self.until is None:  # start with an incident: a newcomer sees the gateway at work
            self.incident, self.until = True, now + 20.0
            return "server_error", 0.9
        if now < self.until:
            return None
        self.incident = not self.incident
        if self.incident:
            self.until = now + self.rng.uniform(15.0, 25.0)
            return self.rng.choice(_FAULTS), 0.9
        self.until = now + self.rng.uniform(60.0, 120.0)
        return self.rng.choice(_FAULTS), 0.08


class UpGateway:
    """Starts with the collector (``start`` from its on_ready), stops before it (``stop``)."""

    def __init__(self, config: str | None, port: int, data_dir: str, *, demo: bool) -> None:
        self.config, self.port, self.data_dir, self.demo = config, port, data_dir, demo
        self.url: str | None = None
        self.mock: MockUpstream | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._traffic_stop = threading.Event()
        self._traffic: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.config is not None or self.demo

    def _demo_config(self) -> str:
        self.mock = MockUpstream(delay_ms=20, stream_interval_ms=3, seed=11).start()
        path = Path(self.data_dir) / "demo-gateway.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEMO_CONFIG.format(oai=self.mock.openai_base_url, ant=self.mock.anthropic_base_url))
        return str(path)

    async def start(self, collector: Any) -> str:
        from kansoku.gateway._record import CollectorExporter
        from kansoku.gateway._serve import serve_gateway
        from kansoku.gateway._settings import GatewaySettings

        config = self.config if self.config is not None else await asyncio.to_thread(self._demo_config)
        settings = GatewaySettings(config=config, port=self.port, record=(), data_dir=self.data_dir)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_ready(url: str, gw: Any) -> None:
            collector.gateway = gw  # the collector's /api/v1/gateway/* routes (the UI's gateway page)
            ready.set_result(url)

        exporter = CollectorExporter(collector._ingest_native)
        self._task = asyncio.create_task(
            serve_gateway(settings, on_ready=on_ready, stop=self._stop, exporters=[exporter])
        )
        waiting: set[asyncio.Future[Any]] = {ready, self._task}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            self._task.result()  # raises the start-up error (bad config, port in use)
            raise RuntimeError("the gateway stopped during start-up")
        self.url = ready.result()
        if self.demo and self.config is None:
            self._traffic = threading.Thread(target=self._send, name="kansoku-gateway-demo", daemon=True)
            self._traffic.start()
        return self.url

    async def stop(self) -> None:
        self._traffic_stop.set()
        if self._traffic is not None:
            await asyncio.to_thread(self._traffic.join, 10)
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.mock is not None:
            await asyncio.to_thread(self.mock.stop)

    def _send(self) -> None:
        """About one request a second through the gateway, under changing provider weather."""
        rng = random.Random(5)
        mock = self.mock
        weather = _Weather(rng)
        while not self._traffic_stop.is_set():
            if mock is not None:
                change = weather.change(time.monotonic())
                if change is not None:
                    mock.set_fault(change[0], rate=change[1])
            user = f"u-{rng.randint(1, 12)}"
            if rng.random() < 0.15:
                body: dict[str, Any] = {"model": "embed", "input": "refund policy", "user": user}
                path = "/v1/embeddings"
            else:
                question = rng.choice(("Where is my order?", "How do I reset my password?", "Refund please"))
                body = {"model": "chat", "user": user, "messages": [{"role": "user", "content": question}]}
                body["stream"] = rng.random() < 0.3
                path = "/v1/chat/completions"
            req = urllib.request.Request(  # noqa: S310 - our own loopback gateway
                f"{self.url}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                    resp.read()
            except (urllib.error.URLError, OSError):
                pass  # errors are what the demo shows; they are in the records
            self._traffic_stop.wait(rng.uniform(0.5, 1.5))

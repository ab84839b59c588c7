"""Shared fixtures: a mock LLM upstream on loopback and an SDK that records into memory.

``mock_upstream`` is one :class:`MockUpstream` per test module; ``upstream`` is the same server
with its request log, faults and tunables (delay, cached tokens, ...) reset around each test,
so a test may change them freely. Per-request faults are best chosen with the
``x-mock-fault`` header (``extra_headers={"x-mock-fault": "rate_limit"}``).

``recorder`` starts kansoku with an :class:`InMemoryExporter` (redaction off unless the test is
parametrised ``indirect`` with ``True``) and always shuts it down; ``start_recorder`` does the
same with extra exporters, processors or settings. Call ``kansoku.flush()`` before asserting.

``launch(config_text)`` starts a gateway (in-memory state) with that configuration on a free
port; every gateway it started is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import kansoku
from helpers.gateway import Launch, RunningGateway, start_gateway, write_config
from kansoku.export import Exporter
from kansoku.sdk import ENV_VARS, Processor
from kansoku.testing import InMemoryExporter, MockUpstream

# MockUpstream settings a test may change on the shared server; restored after each test.
_TUNABLES = (
    "reply",
    "delay_ms",
    "slow_ms",
    "stream_interval_ms",
    "retry_after",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "embedding_dim",
)


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[MockUpstream]:
    """A mock OpenAI + Anthropic server on 127.0.0.1, shared by one test module."""
    with MockUpstream() as up:
        yield up


@pytest.fixture
def upstream(mock_upstream: MockUpstream) -> Iterator[MockUpstream]:
    """The module's mock server with a clean request log and no faults; tunables restored afterwards."""
    saved = {name: getattr(mock_upstream, name) for name in _TUNABLES}
    mock_upstream.set_fault(None)
    mock_upstream.reset()
    yield mock_upstream
    for name, value in saved.items():
        setattr(mock_upstream, name, value)
    mock_upstream.set_fault(None)
    mock_upstream.reset()


StartRecorder = Callable[..., InMemoryExporter]


@pytest.fixture
def start_recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StartRecorder]:
    """``start(redact=False, exporters=(), processors=(), **settings) -> InMemoryExporter``.

    Settings from the environment (``KANSOKU_*``) are cleared so the test sees defaults;
    ``kansoku.shutdown()`` always runs afterwards, which also removes the instrumentation.
    """
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)

    def start(
        *,
        redact: bool = False,
        exporters: Sequence[Exporter] = (),
        processors: Sequence[Processor] = (),
        **settings: Any,
    ) -> InMemoryExporter:
        memory = InMemoryExporter()
        settings.setdefault("spool_dir", str(tmp_path / "spool"))
        kansoku.init(
            export=[memory, *exporters],
            processors=processors,
            redact=redact,
            service_name="test",
            **settings,
        )
        return memory

    try:
        yield start
    finally:
        kansoku.shutdown()


@pytest.fixture
def recorder(request: pytest.FixtureRequest, start_recorder: StartRecorder) -> InMemoryExporter:
    """kansoku recording into memory; ``@pytest.mark.parametrize("recorder", [True], indirect=True)``
    turns redaction on."""
    redact = bool(getattr(request, "param", False))
    return start_recorder(redact=redact)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[RunningGateway] = []

    def go(text: str) -> RunningGateway:
        running = start_gateway(write_config(tmp_path, text), tmp_path / "data")
        started.append(running)
        return running

    yield go
    for running in started:
        running.stop()

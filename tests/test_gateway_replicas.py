"""Three `kansoku gateway` processes sharing Redis enforce one limit exactly.

The issue's "done when": limits hold exactly across 3 gateway processes sharing Redis. Each
test starts three real gateway processes (``--state redis://...``) in front of one mock
provider and sends them requests concurrently, round robin.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.sdk import free_port
from helpers.services import redis_url
from kansoku.testing import MockUpstream


def _post(port: int, body: Mapping[str, object]) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gateway exited with {proc.returncode}: {log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    pytest.fail(f"gateway on port {port} did not start")


@contextmanager
def replicas(tmp_path: Path, config: str, n: int = 3) -> Iterator[list[int]]:
    """``n`` gateway processes with ``config`` sharing a fresh Redis key space; their ports."""
    url = redis_url()
    path = tmp_path / "gateway.yaml"
    path.write_text(config, encoding="utf-8")
    ports = [free_port() for _ in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"gateway{i}.log" for i in range(n)]
    # A fresh Redis database number is not available everywhere; a unique key space per test is:
    # every limit's key includes its parameters, and the test's limits are made unique below.
    try:
        for i, port in enumerate(ports):
            cmd = [sys.executable, "-m", "kansoku", "gateway", "--config", str(path), "--port", str(port),
                   "--state", url, "--record", "off", "--data-dir", str(tmp_path / f"data{i}")]  # fmt: skip
            with logs[i].open("wb") as out:  # the child keeps its own descriptor
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))  # noqa: S603
        deadline = time.monotonic() + 30
        for port, proc, log in zip(ports, procs, logs, strict=True):
            _wait_healthy(port, proc, log, deadline)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _config(up: MockUpstream, limit: str) -> str:
    return f"""
models:
  - name: chat
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: "{up.openai_base_url}"
        api_key: sk-replica-test-0000
limits:
  - {limit}
"""


def test_a_sliding_window_admits_exactly_its_limit_across_three_gateways(tmp_path: Path) -> None:
    # A limit no other test uses (its parameters are part of its Redis key): fresh state.
    window_s = 600 + uuid.uuid4().int % 1000
    with MockUpstream() as up:
        config = _config(
            up, f"{{per: global, on: requests, algorithm: sliding_window, limit: 30, window_s: {window_s}}}"
        )
        with replicas(tmp_path, config) as ports:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            with ThreadPoolExecutor(12) as pool:
                results = list(pool.map(lambda i: _post(ports[i % 3], body), range(90)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 30, statuses
    assert statuses.count(429) == 60, statuses
    assert up.request_count == 30
    # Every gateway admitted some of them: the limit is one, not three.
    refused = [h for s, h in results if s == 429]
    assert all(float(h["retry-after"]) >= 1 for h in refused)


def test_a_token_bucket_holds_across_three_gateways_over_time(tmp_path: Path) -> None:
    capacity, rate = 10, 5.0 + (uuid.uuid4().int % 1000) / 1000  # unique parameters: fresh state
    with MockUpstream() as up:
        config = _config(
            up, f"{{per: global, on: requests, algorithm: token_bucket, limit: {capacity}, per_s: {rate}}}"
        )
        with replicas(tmp_path, config) as ports:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            stop_at = time.monotonic() + 3.0
            admitted: list[tuple[float, float]] = []  # (sent, answered) of each 200

            def worker(i: int) -> None:
                while time.monotonic() < stop_at:
                    sent = time.monotonic()
                    status, _ = _post(ports[i % 3], body)
                    if status == 200:
                        admitted.append((sent, time.monotonic()))

            with ThreadPoolExecutor(9) as pool:
                list(pool.map(worker, range(9)))
    admitted.sort()
    first, last = admitted[0][0], admitted[-1][1]
    span = last - first
    # Over the run, never more than capacity + rate * T (T bounded above by the answer times).
    assert len(admitted) <= capacity + rate * span + 1e-9, (len(admitted), span)
    # And the three processes really shared one bucket: three separate buckets would admit
    # about three times as much; one shared bucket comes close to its bound.
    assert len(admitted) >= 0.8 * (capacity + rate * 3.0 * 0.9), (len(admitted), span)
    assert up.request_count == len(admitted)

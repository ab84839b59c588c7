"""A Redis outage after start-up does not take the gateway down: it fails open, visibly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers.gateway import start_gateway, write_config
from kansoku.testing import MockUpstream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: CI must run the Redis tests (.ci/services.sh)")
        pytest.skip("redis-server is not installed")
    return path


def test_requests_are_served_while_redis_is_down_and_the_failures_are_counted(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        with MockUpstream() as up:
            config = f"""
models:
  - name: chat
    deployments:
      - {{provider: openai_compatible, model: gpt-4o-mini, api_base: "{up.openai_base_url}"}}
limits:
  - {{per: global, on: requests, algorithm: token_bucket, limit: 100, per_s: 10}}
"""
            gw = start_gateway(
                write_config(tmp_path, config), tmp_path / "data", state=f"redis://127.0.0.1:{port}/0"
            )
            try:
                assert gw.chat().status == 200  # with Redis
                redis.terminate()
                redis.wait(10)
                replies = [gw.chat() for _ in range(3)]
                assert [r.status for r in replies] == [200, 200, 200]  # failing open
                metrics = gw.request("GET", "/metrics").body.decode()
                errors = next(
                    line
                    for line in metrics.splitlines()
                    if line.startswith("kansoku_gateway_state_errors_total")
                )
                assert int(errors.split()[1]) >= 3
                assert up.request_count == 4
            finally:
                gw.stop()
    finally:
        if redis.poll() is None:
            redis.terminate()
            redis.wait(10)

"""The collector's view of `kansoku up`'s gateway, for the UI: status, and who may replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.gateway import RunningGateway, start_gateway, write_config
from helpers.server import RunningServer, start_server
from kansoku.server import ServerSettings
from kansoku.testing import MockUpstream

ADMIN = "admin-key-0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    s = start_server(ServerSettings(port=0, data_dir=str(tmp_path / "collector")))
    try:
        yield s
    finally:
        s.stop()


def _gateway(tmp_path: Path, up: MockUpstream, *, admin: bool) -> RunningGateway:
    config = f"""
models:
  - name: chat
    deployments:
      - {{provider: openai_compatible, model: gpt-4o-mini, api_base: "{up.openai_base_url}"}}
{"admin_keys: [" + ADMIN + "]" if admin else ""}
"""
    return start_gateway(write_config(tmp_path, config), tmp_path / "gw")


def test_without_a_gateway_the_routes_say_how_to_start_one(server: RunningServer) -> None:
    reply = server.get("/api/v1/gateway/status")
    assert reply.status == 404
    error = reply.json()["error"]
    assert error["code"] == "no_gateway"
    assert "kansoku up" in error["message"]


def test_status_shows_the_gateways_deployments_and_traffic(server: RunningServer, tmp_path: Path) -> None:
    with MockUpstream() as up:
        gw = _gateway(tmp_path, up, admin=False)
        try:
            up.set_fault("server_error", count=1)
            assert gw.chat().status == 200  # the retry answers
            server.collector.gateway = gw.gateway
            status = server.get("/api/v1/gateway/status").json()
        finally:
            gw.stop()
    (model,) = status["models"]
    (dep,) = model["deployments"]
    assert (dep["calls"], dep["errors"], dep["breaker"]) == (2, 1, "closed")
    assert status["requests"] == {"ok": 1}


@pytest.mark.parametrize(
    ("admin", "header", "status", "code"),
    [
        pytest.param(True, None, 401, "admin_key_required", id="admin-keys-no-header"),
        pytest.param(True, "wrong-key-0123456789", 401, "admin_key_required", id="admin-keys-wrong"),
        pytest.param(True, ADMIN, 404, "not_found", id="admin-key-ok-unknown-letter"),
        pytest.param(False, None, 404, "not_found", id="local-mode-no-admin-keys"),
    ],
)
def test_a_replay_needs_the_admin_key_when_the_gateway_has_one(  # noqa: PLR0917 - parametrized
    server: RunningServer, tmp_path: Path, admin: bool, header: str | None, status: int, code: str
) -> None:
    with MockUpstream() as up:
        gw = _gateway(tmp_path, up, admin=admin)
        try:
            server.collector.gateway = gw.gateway
            headers = {"X-Kansoku-Admin-Key": header} if header else None
            reply = server.request(
                "POST", "/api/v1/gateway/dead-letters/dl_nope/replay", b"{}", headers=headers
            )
        finally:
            gw.stop()
    assert reply.status == status
    assert reply.json()["error"]["code"] == code
    assert up.request_count == 0

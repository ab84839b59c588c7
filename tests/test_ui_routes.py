"""The UI's files: served by the collector at / and /ui/..., with a strict CSP, nothing else."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from helpers.server import start_server
from kansoku.server import ServerSettings
from kansoku.ui import CSP


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture
def port(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = start_server(ServerSettings(port=0, data_dir=str(tmp_path)))
    try:
        yield server.port
    finally:
        server.stop()


def test_the_page_is_served_at_the_root_with_a_strict_csp(port: int) -> None:
    status, headers, body = _get(port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert b'<script type="module" src="/ui/app.js">' in body
    # No inline script or style: the CSP would block it, and nothing may depend on it.
    assert b"<script>" not in body
    assert b"style=" not in body


def test_assets_are_served_with_their_types_and_the_csp(port: int) -> None:
    status, headers, _ = _get(port, "/ui/app.js")
    assert status == 200
    assert headers["content-type"].startswith("text/javascript")
    assert headers["content-security-policy"] == CSP
    status, headers, _ = _get(port, "/ui/app.css")
    assert status == 200
    assert headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    ["/ui/../_routes.py", "/ui/%2e%2e/_routes.py", "/ui/..%2f__init__.py", "/ui/nope.js", "/ui//etc/passwd"],
)
def test_nothing_outside_the_static_directory_is_served(port: int, path: str) -> None:
    status, _, body = _get(port, path)
    assert status == 404
    assert b"import" not in body
    assert b"root:" not in body

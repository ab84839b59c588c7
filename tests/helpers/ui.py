"""Browser tests of the web UI: Debian's chromium driven by Playwright against ``kansoku up --demo``.

:func:`chromium_path` finds the browser (``KANSOKU_TEST_CHROMIUM`` or ``chromium`` on the PATH):
missing, the tests skip locally and fail under CI (``.ci/run`` installs it). Playwright's own
browser downloads are never used.

:class:`UpDemo` runs ``python -m kansoku up --demo`` on free loopback ports with its output in a
log file, waits until the query API has data, and stops only the process it started, by PID.

:class:`PageWatch` records what must not happen on a page: console errors, uncaught exceptions,
failed requests and HTTP errors, dialogs (``alert`` from an injected script).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, Response

from helpers.sdk import free_port

#: Where screenshots go (CI keeps the directory as test artifacts; it is in .gitignore).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
#: The pages of the UI, as ``main#page[data-page]`` names them.
PAGES = ("overview", "calls", "trace", "session", "gateway")


def chromium_path() -> str:
    """The chromium executable; skips the test (locally) or fails it (CI) when there is none."""
    path = os.environ.get("KANSOKU_TEST_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        why = f"KANSOKU_TEST_CHROMIUM={path} is not executable" if path else "no chromium on the PATH"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs Debian's chromium)")
        pytest.skip(f"{why} (apt-get install chromium, or set KANSOKU_TEST_CHROMIUM)")
    return path


def http_json(
    base: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


@dataclass
class UpDemo:
    """``kansoku up --demo`` as a subprocess over ``data_dir``, output in ``log_path``."""

    data_dir: Path
    log_path: Path
    port: int = 0
    gateway_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, min_rows: int = 10, timeout: float = 30.0) -> UpDemo:
        self.port = self.port or free_port()
        self.gateway_port = self.gateway_port or free_port()
        cmd = [
            sys.executable, "-m", "kansoku", "up", "--demo",
            "--port", str(self.port), "--gateway-port", str(self.gateway_port),
            "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("KANSOKU_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 -- our own CLI with this interpreter
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kansoku up --demo exited with {self.proc.returncode}:\n{self.log()}")
            if len(self.calls(since="1h", limit="200")) >= min_rows:
                return self
            time.sleep(0.25)
        self.stop()
        raise AssertionError(
            f"kansoku up --demo: fewer than {min_rows} calls after {timeout} s:\n{self.log()}"
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def calls(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v1/calls`` with ``params``; [] while the server is not answering yet."""
        try:
            status, body = http_json(self.url, "GET", "/api/v1/calls?" + urllib.parse.urlencode(params))
        except OSError:
            return []
        assert status == 200, body
        return list(body["data"])

    def get(self, path: str) -> Any:
        status, body = http_json(self.url, "GET", path)
        assert status == 200, (path, body)
        return body

    def ingest(self, records: list[dict[str, Any]]) -> None:
        body = gzip.compress(json.dumps({"schema": "kansoku.batch/v1", "records": records}).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        status, answer = http_json(self.url, "POST", "/api/v1/ingest", body, headers)
        assert status in (200, 202), answer

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"kansoku up did not stop within {timeout} s of SIGTERM") from None


@dataclass
class PageWatch:
    """Everything that went wrong on one page, as readable lines."""

    base: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> PageWatch:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(f"{exc.name}: {exc.message}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("dialog", self._dialog)
        return self

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def _failed(self, request: Request) -> None:
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed_requests.append(f"{response.request.method} {response.url}: HTTP {response.status}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def problems(self) -> list[str]:
        return [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"request: {m}" for m in self.failed_requests),
            *(f"dialog: {m}" for m in self.dialogs),
        ]

    def clear(self) -> None:
        for bucket in (self.console_errors, self.page_errors, self.failed_requests, self.dialogs):
            bucket.clear()


def settled(name: str) -> str:
    """The selector of ``main#page`` showing page ``name`` done loading (with data or empty)."""
    return f'main#page[data-page="{name}"]:is([data-state="ready"], [data-state="empty"])'


def wait_page(page: Page, name: str, timeout: float = 10_000) -> str:
    """Wait until page ``name`` has settled; its ``data-state``. An error state fails with its text."""
    page.wait_for_selector(
        f'{settled(name)}, main#page[data-page="{name}"][data-state="error"]', timeout=timeout
    )
    main = page.locator("main#page")
    state = main.get_attribute("data-state") or ""
    if state == "error":
        raise AssertionError(f"page {name} is in the error state: {main.inner_text()[:500]!r}")
    return state


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

"""No planted secret or personal datum appears in any exported byte, whatever the exporter."""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

import kansoku
from kansoku.testing import MockUpstream

PLANTED = {
    "email": "hanako.suzuki@example.co.jp",
    "phone_jp": "090-8765-4321",
    "phone_intl": "+1 (415) 555-0132",
    "card": "4242 4242 4242 4242",
    "openai_key": "sk-proj-Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNbVcXz",
    "anthropic_key": "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLXZhbHVl",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "iban": "DE89 3704 0044 0532 0130 00",
}
# The bearer token's secret part is what must not leak; "Bearer" alone is harmless.
NEEDLES = [v.removeprefix("Bearer ") for v in PLANTED.values()]


class _Sink(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def sink() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _text() -> str:
    return " | ".join(f"{k}: {v}" for k, v in PLANTED.items())


def test_no_planted_value_reaches_files_logs_stdout_otlp_or_http(
    tmp_path: Path,
    sink: ThreadingHTTPServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = sink.server_address[1]
    out = tmp_path / "calls.jsonl"
    kansoku.init(
        service_name="pii-test",
        export=[
            f"file://{out}",
            "stdout:",
            "logging:",
            f"http://127.0.0.1:{port}",
            f"otlp+http://127.0.0.1:{port}?convention=genai",
            f"otlp+http://127.0.0.1:{port}/oi/v1/traces?convention=openinference",
        ],
        spool_dir=str(tmp_path / "spool"),
    )
    caplog.set_level(logging.INFO, logger="kansoku.calls")
    text = _text()
    try:
        with (
            MockUpstream() as up,
            openai.OpenAI(base_url=up.openai_base_url, api_key="sk-test", max_retries=0) as client,
            kansoku.context(user_id=PLANTED["email"], tags={"note": text}),
        ):
            with kansoku.span("retrieve", attributes={"query": text, "nested": {"list": [text]}}):
                pass
            messages: list[Any] = [{"role": "system", "content": text}, {"role": "user", "content": text}]
            client.chat.completions.create(model="mock-gpt", messages=messages)
            for _ in client.chat.completions.create(model="mock-gpt", messages=messages, stream=True):
                pass
            with pytest.raises(ValueError, match="could not parse"), kansoku.span("post-process"):
                raise ValueError(f"could not parse answer for {text}")
        assert kansoku.flush(timeout=10)
    finally:
        kansoku.shutdown()
    stdout = capfd.readouterr().out
    exported = {
        "file": out.read_bytes(),
        "stdout": stdout.encode(),
        "logging": "\n".join(r.getMessage() for r in caplog.records).encode(),
        "http+otlp": b"\n".join(sink.bodies),  # type: ignore[attr-defined]
    }
    for where, data in exported.items():
        assert data, f"{where} received nothing: the test would prove nothing"
        for needle in NEEDLES:
            assert needle.encode() not in data, f"{needle!r} leaked into {where}"
    # The masks are there instead, so the records are still useful.
    assert b"[EMAIL]" in exported["file"]
    assert b"[CREDIT_CARD]" in exported["file"]
    assert len(sink.bodies) >= 3  # type: ignore[attr-defined]

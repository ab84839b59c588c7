"""Dead letters over the admin API and the ``kansoku dead-letters`` CLI, and configuration reload.

A request that exhausts retries and fallbacks answers 5xx with an ``x-kansoku-dead-letter``
id; the letter is listed (newest first, paged with ``before``, filtered by model), shown, and
replayed once the upstream recovers. The gateway reloads its YAML when the file changes: new
models serve, an invalid file keeps the running configuration, requests in flight complete.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kansoku.gateway._serve as serve
from helpers.gateway import Reply, RunningGateway, start_gateway, write_config
from helpers.sdk import free_port
from kansoku.cli import main
from kansoku.testing import MockUpstream

ADMIN_KEY = "ak-admin-for-tests-0123456789ab"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def config(up: MockUpstream, extra_models: str = "") -> str:
    return f"""
admin_keys: ["{ADMIN_KEY}"]
models:
  - name: chat
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
    fallbacks: [backup]
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {up.openai_base_url}
  - name: backup
    retry: {{attempts: 1}}
    deployments:
      - provider: anthropic
        model: claude-3-5-haiku-20241022
        api_base: {up.anthropic_base_url}
  - name: other
    retry: {{attempts: 1}}
    deployments:
      - provider: openai_compatible
        model: gpt-4o
        api_base: {up.openai_base_url}
{extra_models}"""


@pytest.fixture
def gw(tmp_path: Path, upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    monkeypatch.setattr(serve, "_RELOAD_EVERY_S", 0.05)  # the file watcher, fast for tests
    running = start_gateway(write_config(tmp_path, config(upstream)), tmp_path / "data")
    yield running
    running.stop()


def admin(gw: RunningGateway, method: str, path: str) -> Reply:
    return gw.request(method, path, headers=ADMIN)


def dead_letter(gw: RunningGateway, model: str = "chat", content: str = "hi", **extra: Any) -> str:
    reply = gw.chat(model, content, **extra)
    assert reply.status >= 500, reply.body
    return reply.headers["x-kansoku-dead-letter"]


# -- the admin API ------------------------------------------------------------------------------


def test_exhausted_request_becomes_a_dead_letter_and_replays(
    gw: RunningGateway, upstream: MockUpstream
) -> None:
    upstream.set_fault("server_error")
    reply = gw.chat("chat", "please answer")
    assert reply.status in (500, 502, 503)
    assert reply.json()["error"]["type"] == "server_error"
    assert reply.headers["x-kansoku-attempts"] == "3"  # two tries, then the fallback model
    letter_id = reply.headers["x-kansoku-dead-letter"]
    assert upstream.request_count == 3

    listed = admin(gw, "GET", "/admin/dead-letters").json()
    assert [d["id"] for d in listed["data"]] == [letter_id]
    letter = admin(gw, "GET", f"/admin/dead-letters/{letter_id}").json()
    assert letter["model"] == "chat"
    assert letter["request"]["messages"] == [{"role": "user", "content": "please answer"}]
    assert [a["deployment"] for a in letter["attempts"]] == [
        "openai_compatible/gpt-4o-mini@default#0",
        "openai_compatible/gpt-4o-mini@default#0",
        "anthropic/claude-3-5-haiku-20241022@default#0",
    ]
    assert {a["error_type"] for a in letter["attempts"]} == {"server_error"}
    assert letter["replays"] == []
    [record] = gw.records()
    assert record.attributes["kansoku.gateway.dead_letter_id"] == letter_id
    assert record.attributes["kansoku.gateway.outcome"] == "dead_letter"

    # Still failing: the replay says so and the letter stays.
    again = admin(gw, "POST", f"/admin/dead-letters/{letter_id}/replay")
    assert again.status == 502
    assert again.json()["outcome"] == "dead_letter"
    assert again.json()["response"] is None
    # Recovered: the replay answers.
    upstream.set_fault(None)
    replayed = admin(gw, "POST", f"/admin/dead-letters/{letter_id}/replay")
    assert replayed.status == 200
    body = replayed.json()
    assert body["outcome"] == "ok"
    assert body["response"]["choices"][0]["message"]["content"] == "Mock reply to: please answer"
    history = admin(gw, "GET", f"/admin/dead-letters/{letter_id}").json()["replays"]
    assert [h["outcome"] for h in history] == ["dead_letter", "ok"]
    assert history[0]["error"]["type"] == "server_error"
    assert history[1]["trace_id"] == body["trace_id"]
    assert history[0]["at_ns"] < history[1]["at_ns"]
    # The replay is recorded like any request.
    assert body["trace_id"] in {r.trace_id for r in gw.records()}


def test_a_streamed_request_replays_as_a_plain_one(gw: RunningGateway, upstream: MockUpstream) -> None:
    upstream.set_fault("overloaded")
    letter_id = dead_letter(gw, stream=True)
    upstream.set_fault(None)
    replayed = admin(gw, "POST", f"/admin/dead-letters/{letter_id}/replay")
    assert replayed.status == 200
    assert replayed.json()["response"]["object"] == "chat.completion"
    assert "stream" not in upstream.requests[-1].json


def test_listing_pages_filters_and_checks_its_parameters(gw: RunningGateway, upstream: MockUpstream) -> None:
    upstream.set_fault("server_error")
    ids = [dead_letter(gw, "chat", "one"), dead_letter(gw, "other", "two"), dead_letter(gw, "chat", "three")]

    page = admin(gw, "GET", "/admin/dead-letters?limit=2").json()
    assert [d["id"] for d in page["data"]] == [ids[2], ids[1]]  # newest first
    rest = admin(gw, "GET", f"/admin/dead-letters?limit=2&before={page['next_before']}").json()
    assert [d["id"] for d in rest["data"]] == [ids[0]]
    empty = admin(gw, "GET", f"/admin/dead-letters?before={rest['next_before']}").json()
    assert empty == {"object": "list", "data": [], "next_before": None}
    chat = admin(gw, "GET", "/admin/dead-letters?model=chat").json()
    assert [d["id"] for d in chat["data"]] == [ids[2], ids[0]]
    assert admin(gw, "GET", "/admin/dead-letters?model=nope").json()["data"] == []
    for query in ("limit=0", "limit=1001", "limit=two", "before=yesterday", "before=-5", "page=2"):
        reply = admin(gw, "GET", f"/admin/dead-letters?{query}")
        assert reply.status == 400, query
        assert reply.json()["error"]["param"] == query.split("=")[0]
    assert admin(gw, "GET", "/admin/dead-letters/dl_0000000000000000").status == 404
    assert admin(gw, "POST", "/admin/dead-letters/dl_0000000000000000/replay").status == 404


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_lists_and_replays(
    gw: RunningGateway,
    upstream: MockUpstream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KANSOKU_ADMIN_KEY", ADMIN_KEY)
    assert main(["dead-letters", "list", "--url", gw.url]) == 0
    assert "no dead letters" in capsys.readouterr().out
    upstream.set_fault("server_error")
    letter_id = dead_letter(gw)
    capsys.readouterr()

    assert main(["dead-letters", "list", "--url", gw.url]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith(letter_id)]
    assert " chat " in row
    assert "500 server_error" in row
    assert main(["dead-letters", "list", "--url", gw.url, "--json", "--model", "other"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == []

    assert main(["dead-letters", "replay", letter_id, "--url", gw.url]) == 1
    assert "HTTP 502" in capsys.readouterr().err
    upstream.set_fault(None)
    assert main(["dead-letters", "replay", letter_id, "--url", gw.url]) == 0
    assert capsys.readouterr().out.startswith(f"{letter_id}: ok after 1 attempt(s), trace ")
    assert main(["dead-letters", "list", "--url", gw.url]) == 0
    assert "(replayed 2x)" in capsys.readouterr().out


def test_cli_failures_have_exit_codes_and_messages(
    gw: RunningGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KANSOKU_ADMIN_KEY", raising=False)
    assert main(["dead-letters", "list", "--url", gw.url]) == 2
    assert "set KANSOKU_ADMIN_KEY" in capsys.readouterr().err

    monkeypatch.setenv("KANSOKU_ADMIN_KEY", "not-the-admin-key-0123456789")
    assert main(["dead-letters", "list", "--url", gw.url]) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err
    assert "not-the-admin-key" not in err

    monkeypatch.setenv("KANSOKU_ADMIN_KEY", ADMIN_KEY)
    assert main(["dead-letters", "replay", "dl_missing", "--url", gw.url]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["dead-letters", "list", "--url", "ftp://example.com"]) == 2
    assert "--url must be an http(s) URL" in capsys.readouterr().err
    stopped = f"http://127.0.0.1:{free_port()}"
    assert main(["dead-letters", "list", "--url", stopped]) == 1
    assert "cannot reach" in capsys.readouterr().err


# -- configuration reload -----------------------------------------------------------------------


def rewrite(path: Path, text: str) -> None:
    mtime = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))  # a change the watcher must see


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def model_names(gw: RunningGateway) -> list[str]:
    return [m["id"] for m in gw.request("GET", "/v1/models").json()["data"]]


NEW_MODEL = """  - name: added
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {base}
"""


def test_a_changed_file_is_reloaded(gw: RunningGateway, upstream: MockUpstream) -> None:
    assert gw.chat("added").status == 404
    rewrite(gw.config_path, config(upstream, NEW_MODEL.format(base=upstream.openai_base_url)))
    wait_for(lambda: "added" in model_names(gw))
    assert model_names(gw) == ["chat", "backup", "other", "added"]
    reply = gw.chat("added", "new model")
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Mock reply to: new model"


def test_an_invalid_file_keeps_the_running_configuration(
    gw: RunningGateway, upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kansoku.gateway")
    good = config(upstream)
    rewrite(gw.config_path, good.replace("retry:", "retyr:", 1))  # an unknown setting
    wait_for(lambda: "configuration not reloaded" in caplog.text)
    assert "retyr" in caplog.text
    assert model_names(gw) == ["chat", "backup", "other"]
    assert gw.chat("chat").status == 200
    rewrite(gw.config_path, "models: [\n")  # not even YAML
    wait_for(lambda: caplog.text.count("configuration not reloaded") >= 2)
    assert gw.chat("chat").status == 200
    # A valid file afterwards is taken.
    rewrite(gw.config_path, config(upstream, NEW_MODEL.format(base=upstream.openai_base_url)))
    wait_for(lambda: "added" in model_names(gw))


def test_requests_in_flight_finish_across_a_reload(gw: RunningGateway, upstream: MockUpstream) -> None:
    upstream.delay_ms = 500
    box: dict[str, Reply] = {}
    worker = threading.Thread(target=lambda: box.setdefault("reply", gw.chat("chat", "slow one")))
    worker.start()
    try:
        wait_for(lambda: upstream.request_count == 1)  # the request is at the upstream now
        renamed = config(upstream).replace("name: chat\n", "name: renamed\n").replace("[backup]", "[]")
        rewrite(gw.config_path, renamed)
        wait_for(lambda: "renamed" in model_names(gw))
        assert worker.is_alive()  # reloaded while the request was still in flight
    finally:
        worker.join(10)
    reply = box["reply"]
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Mock reply to: slow one"
    upstream.delay_ms = 0
    assert gw.chat("chat").status == 404
    assert gw.chat("renamed").status == 200

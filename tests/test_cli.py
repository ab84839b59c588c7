"""The command line: the README's main job (``kansoku demo``) and ``kansoku summary``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import kansoku
from kansoku.cli import main


@pytest.fixture(autouse=True)
def _no_leftover_sdk():
    yield
    kansoku.shutdown()


def test_demo_records_every_call_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "calls.jsonl"
    assert main(["demo", "--calls", "12", "--out", str(out), "--fault-rate", "0.5", "--seed", "3"]) == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    calls = [r for r in records if r["type"] == "llm_call"]
    assert len(calls) == 12
    assert {r["service"] for r in records} == {"kansoku-demo"}
    assert all(r["user_id"] and r["context_id"] and r["tags"]["department"] for r in calls)
    assert any(r["status"] == "error" and r["error_type"] for r in calls)
    ok = [r for r in calls if r["status"] == "ok"]
    assert ok
    assert all(r["input_tokens"] and r["output_tokens"] and r["cost_usd"] for r in ok)
    # Every call is a child of the ticket span, in the same trace.
    spans = {r["span_id"]: r for r in records}
    assert all(spans[r["parent_span_id"]]["name"] == "handle_ticket" for r in calls)
    # The demo's prompts carry an email, a phone and a card number: none reaches the file.
    raw = out.read_text()
    for planted in (
        "taro.yamada@example.co.jp",
        "090-1234-5678",
        "4111 1111 1111 1111",
        "sk-demo-not-a-real-key",
    ):
        assert planted not in raw
    printed = capsys.readouterr().out
    for expected in ("TOTAL", "errors by type", "mock-gpt"):
        assert expected in printed


def test_summary_reads_a_file_written_by_the_sdk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "calls.jsonl"
    main(["demo", "--calls", "5", "--out", str(out), "--fault-rate", "0"])
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "TOTAL" in printed
    assert "errors by type: none" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["summary", "/nonexistent/calls.jsonl"], "no such file", id="missing-file"),
        pytest.param(["demo", "--calls", "0"], "must be at least 1", id="zero-calls"),
        pytest.param(["demo", "--fault-rate", "2"], "between 0 and 1", id="bad-rate"),
    ],
)
def test_bad_input_gets_a_message_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_summary_names_the_line_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "llm_call"}\nnot json\n')
    assert main(["summary", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err

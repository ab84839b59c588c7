"""``kansoku calls | trace | session | stats`` against a canned stand-in of the query API."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.query_api import FakeQueryAPI, Reply, Seen, error, page, record
from kansoku.cli._query import register
from kansoku.cli._tables import NULL, cell_width, clean, clip

KEY = "sk-kansoku-canary-cli-91"
CALLS = "/api/v1/calls"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeQueryAPI]:
    with FakeQueryAPI() as api:
        yield api


@pytest.fixture
def api(server: FakeQueryAPI, monkeypatch: pytest.MonkeyPatch) -> FakeQueryAPI:
    monkeypatch.setenv("KANSOKU_URL", server.url)
    monkeypatch.delenv("KANSOKU_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    server.routes.clear()
    server.requests.clear()
    return server


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="kansoku")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.run(args)
    assert isinstance(code, int)
    return code


def output(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    out, err = capsys.readouterr()
    return out.splitlines(), err


def test_flags_become_query_parameters(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.reply(CALLS, page([record(1)]))
    code = run(
        "calls", "--user", "u-42", "--session", "conv-9", "--prompt", "answer", "--prompt-version", "v4",
        "--model", "gpt-4o-mini", "--provider", "openai", "--error-type", "rate_limit", "--status", "error",
        "--tag", "department:support", "--tag", "feature:search", "--since", "1h", "--until", "5m",
        "--search", "password", "--min-latency", "500", "--min-tokens", "100", "--min-cost", "0.5",
        "--type", "all", "--sort", "latency", "--asc", "--limit", "20", "--cursor", "c0",
    )  # fmt: skip
    assert code == 0
    assert api.requests[-1].query == [
        ("user_id", "u-42"),
        ("context_id", "conv-9"),
        ("prompt_id", "answer"),
        ("prompt_version", "v4"),
        ("model", "gpt-4o-mini"),
        ("provider", "openai"),
        ("error_type", "rate_limit"),
        ("status", "error"),
        ("tag", "department:support"),
        ("tag", "feature:search"),
        ("since", "1h"),
        ("until", "5m"),
        ("q", "password"),
        ("type", "all"),
        ("min_latency_ms", "500.0"),
        ("min_tokens", "100"),
        ("min_cost", "0.5"),
        ("sort", "latency_ms"),
        ("order", "asc"),
        ("cursor", "c0"),
        ("limit", "20"),
    ]
    run("calls")
    assert api.requests[-1].query == []  # the server's defaults


def test_calls_table_is_aligned_clipped_and_shows_nulls(
    api: FakeQueryAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "150")
    records = [
        record(1, input_messages=None, input_text="why is the sky blue? " * 20),
        record(2, cost_usd=None, output_tokens=None, model="claude-3-5-sonnet-20241022-with-a-long-suffix"),
        record(
            3,
            status="error",
            error_type="rate_limit",
            input_messages=[{"role": "user", "content": "日本語の質問です"}],
        ),
        record(4, input_messages=None, input_text="line one\nline two\x1b[31m red"),
    ]
    api.reply(CALLS, page(records, "next=="))
    assert run("calls") == 0
    lines, err = output(capsys)
    assert err == ""
    header, rule, *rows = lines[:6]
    assert header.split() == ["time", "UTC", "trace_id", "model", "status", "ms", "tokens", "cost", "input"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert all(cell_width(line) <= 150 for line in lines)
    # Right-aligned numbers end in the same column on every row, wide characters included.
    cost_end = cell_width(header[: header.index("cost") + len("cost")])
    for row in rows:
        assert cell_width(row[:cost_end].rstrip()) == cost_end
    assert rows[0].endswith("…")
    assert "12:00:01" in rows[0]
    assert f"{1 + 1:032x}" in rows[0]
    assert f"120→{NULL}" in rows[1]
    assert f"  {NULL}  " in rows[1]  # unpriced
    assert "claude-3-5-sonnet-202…" in rows[1]
    assert "rate_limit" in rows[2]
    assert "日本語の質問です" in rows[2]
    assert "\x1b" not in rows[3]
    assert "line one line two" in rows[3]
    assert lines[-1] == "4 calls; more: --all, a higher --limit, or --cursor next=="

    # At 120 columns the text gives way to the ids and numbers when the other columns are wide...
    monkeypatch.setenv("COLUMNS", "120")
    assert run("calls") == 0
    lines, _ = output(capsys)
    assert lines[0].split()[-1] == "cost"
    assert all(cell_width(line) <= 120 for line in lines)
    # ... and has a little room when they are not.
    api.reply(CALLS, page([record(1, input_messages=None, input_text="why is the sky blue? " * 20)]))
    assert run("calls") == 0
    lines, _ = output(capsys)
    assert lines[0].split()[-1] == "input"
    assert lines[2].endswith("why is the sky blue? why …")
    assert cell_width(lines[2]) == 120


def test_calls_json_is_the_servers_answer(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    body = page([record(1, input_text="データ")], "c1")
    api.reply(CALLS, body)
    assert run("calls", "--json") == 0
    out = capsys.readouterr().out
    assert json.loads(out) == body
    assert "データ" in out  # readable, not \\u escapes
    assert out.startswith("{\n  ")


def test_all_follows_cursors_up_to_the_bound(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(seen: Seen) -> Reply:
        start = int((seen.params("cursor") or ["0"])[0])
        n = int(seen.params("limit")[0])
        return Reply(page([record(i) for i in range(start, start + n)], str(start + n)))  # endless

    api.answer(CALLS, answer)
    assert run("calls", "--all", "--limit", "2500", "--json", "--model", "m") == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["data"]) == 2500
    assert got["has_more"] is True
    assert got["next_cursor"] == "2500"
    assert [s.params("limit") for s in api.requests] == [["1000"], ["1000"], ["500"]]
    assert all(s.params("model") == ["m"] for s in api.requests)

    api.requests.clear()
    api.reply(CALLS, page([record(1), record(2)]))
    assert run("calls", "--all") == 0
    lines, _ = output(capsys)
    assert lines[-1] == "2 calls"
    assert api.requests[-1].params("limit") == ["1000"]


def test_limit_above_a_page_needs_all(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "--limit", "5000") == 2
    assert capsys.readouterr().err == "kansoku calls: --limit above 1000 needs --all\n"
    assert api.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        ["calls", "--tag", "nocolon"],
        ["calls", "--min-tokens", "many"],
        ["calls", "--min-cost", "-1"],
        ["calls", "--status", "bad"],
        ["calls", "--sort", "name"],
        ["calls", "--limit", "0"],
        ["trace"],
    ],
)
def test_bad_flags_exit_2(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        run(*argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert api.requests == []


def test_server_errors_are_one_line_with_exit_codes(
    api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = "since must be RFC 3339 (2026-11-23T14:05:00Z), unix seconds or 1h-style, got 'yesterday'"
    api.routes[CALLS] = error(400, msg, "invalid_request_error", "since")
    assert run("calls", "--since", "yesterday") == 2
    assert capsys.readouterr().err == f"kansoku calls: {msg} (HTTP 400)\n"

    api.routes[CALLS] = error(401, "missing or invalid API key", "authentication_error")
    assert run("calls", "--key", KEY) == 1
    err = capsys.readouterr().err
    assert err == "kansoku calls: missing or invalid API key (HTTP 401); pass --key or set KANSOKU_API_KEY\n"
    assert api.requests[-1].headers["Authorization"] == f"Bearer {KEY}"

    api.routes["/api/v1/traces/abc"] = error(404, "trace abc not found", "not_found_error", "trace_id")
    assert run("trace", "abc") == 1
    assert capsys.readouterr().err == "kansoku trace: trace abc not found (HTTP 404)\n"

    api.routes["/api/v1/stats"] = Reply(raw=b"boom", status=500, content_type="text/plain")
    assert run("stats") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "500" in err


def test_connection_refused_and_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert run("session", "conv-1", "--url", url, "--key", KEY) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"kansoku session: cannot connect to {url}: connection refused (is `kansoku server` running?)\n"
    )
    assert run("calls", "--url", "localhost:4318") == 2
    assert "url: must be an http:// or https:// URL" in capsys.readouterr().err
    assert run("calls", "--url", url, "--key", KEY + " \n") == 2
    assert KEY not in capsys.readouterr().err


def trace_body() -> dict[str, Any]:
    chat = record(
        2,
        name="chat gpt-4o-mini",
        input_messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "how do I reset? " * 30},
        ],
        output_text="Open settings.\nThen click reset.",
        children=[],
    )
    failed = record(
        3,
        name="chat retry",
        status="error",
        error_type="timeout",
        error_message="timed out after 30s",
        output_text=None,
        cost_usd=None,
        children=[],
    )
    retrieve = record(1, type="span", name="retrieve", model=None, children=[])
    root = record(
        0, type="span", name="handle_ticket", model=None, latency_ms=1234.5, children=[retrieve, chat, failed]
    )
    return {
        "object": "trace",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_count": 4,
        "start_time": "2026-05-01T12:00:00.250000Z",
        "duration_ms": 1234.5,
        "spans": [root],
    }


def test_trace_tree(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.reply("/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736", trace_body())
    assert run("trace", "4bf92f3577b34da6a3ce929d0e0e4736") == 0
    lines, _ = output(capsys)
    assert lines[0] == (
        "trace 4bf92f3577b34da6a3ce929d0e0e4736  ·  4 spans  ·  started 2026-05-01 12:00:00 UTC  ·  1,234 ms"
    )
    text = "\n".join(lines)
    assert all(cell_width(line) <= 120 for line in lines)
    names = [line.split("  ")[0] for line in lines[4:]]
    assert names[0] == "handle_ticket"
    assert "├─ retrieve" in text
    assert "├─ chat gpt-4o-mini" in text
    assert "└─ chat retry" in text
    # The call's question (the last user message, not the system prompt), shortened; the answer on one line.
    in_line = next(line for line in lines if "in:" in line)
    assert in_line.startswith("│  ")
    assert "how do I reset?" in in_line
    assert in_line.endswith("…")
    assert "out: Open settings. Then click reset." in text
    assert "error: timed out after 30s" in text
    assert "timeout" in next(line for line in lines if "chat retry" in line)

    assert run("trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--full") == 0
    full = capsys.readouterr().out
    assert ("how do I reset? " * 30).strip() in full
    assert "Then click reset." in full

    assert run("trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--json") == 0
    assert json.loads(capsys.readouterr().out) == trace_body()


def test_session_conversation(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    calls = [
        record(
            0,
            input_messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
            output_text="hi!",
        ),
        record(1, status="error", error_type="rate_limit", error_message="429 slow down", output_text=None),
        record(
            2,
            input_messages=[
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi!"},
                {"role": "user", "content": "what is kansoku?"},
            ],
            output_text="an observability tool",
        ),
    ]
    body = {
        "object": "session",
        "context_id": "conv-1",
        "call_count": 3,
        "start_time": "2026-05-01T12:00:00Z",
        "end_time": "2026-05-01T12:00:02Z",
        "input_tokens": 360,
        "output_tokens": 90,
        "cost_usd": None,
        "calls": calls,
    }
    api.reply("/api/v1/sessions/conv-1", body)
    assert run("session", "conv-1") == 0
    lines, _ = output(capsys)
    assert lines[0] == "session conv-1  ·  3 calls  ·  2026-05-01 12:00:00 → 2026-05-01 12:00:02 UTC"
    text = "\n".join(lines)
    assert lines[2].split()[:3] == ["#1", "12:00:00", "gpt-4o-mini"]
    assert "    user:      hello" in text
    assert "    assistant: hi!" in text
    assert "    error:     rate_limit: 429 slow down" in text
    assert "    user:      what is kansoku?" in text
    assert lines[-1].startswith(f"total: 3 calls  ·  360 input + 90 output tokens  ·  cost {NULL} USD")

    assert run("session", "conv-1", "--json") == 0
    assert json.loads(capsys.readouterr().out) == body


def stats_row(group: str | None, **over: Any) -> dict[str, Any]:
    row = {
        "group": group,
        "bucket_start": None,
        "count": 1200,
        "errors": 30,
        "error_rate": 0.025,
        "errors_by_type": {"rate_limit": 20, "timeout": 10},
        "latency_ms": {"p50": 812.25, "p95": 2400.0, "p99": None},
        "ttft_ms": {"p50": None, "p95": None, "p99": None},
        "input_tokens": 1_234_567,
        "output_tokens": 45_678,
        "tokens": {"p50": 160.0, "p95": 900.0},
        "cost_usd": 1.234567,
    }
    row.update(over)
    return row


def test_stats_table(api: FakeQueryAPI, capsys: pytest.CaptureFixture[str]) -> None:
    data = [stats_row("gpt-4o-mini"), stats_row(None, errors_by_type={"rate_limit": 1}, cost_usd=None)]
    api.reply("/api/v1/stats", {"object": "stats", "group_by": "prompt_id", "bucket_s": None, "data": data})
    assert run("stats", "--by", "prompt", "--since", "24h", "--model", "m") == 0
    assert api.requests[-1].query == [("model", "m"), ("since", "24h"), ("group_by", "prompt_id")]
    lines, _ = output(capsys)
    assert (
        lines[0] == "prompt_id    calls  errors  err %  p50 ms  p95 ms  p99 ms     in tok  out tok      cost"
    )
    assert lines[2].split() == [
        "gpt-4o-mini",
        "1,200",
        "30",
        "2.5%",
        "812",
        "2,400",
        NULL,
        "1,234,567",
        "45,678",
        "1.234567",
    ]
    assert lines[3].split()[0] == NULL
    assert lines[3].split()[-1] == NULL
    assert lines[-1] == "errors by type: rate_limit 21, timeout 10"
    assert len({len(line) for line in lines[:4]}) == 1  # right-aligned to one width

    bucketed = [
        stats_row("a", bucket_start="2026-05-01T12:00:00Z"),
        stats_row("a", bucket_start="2026-05-01T13:00:00Z"),
    ]
    api.reply("/api/v1/stats", {"object": "stats", "group_by": "model", "bucket_s": 3600, "data": bucketed})
    assert run("stats", "--by", "model", "--since", "24h", "--bucket", "1h", "--limit", "7") == 0
    assert api.requests[-1].params("bucket") == ["1h"]
    assert api.requests[-1].params("limit") == ["7"]
    lines, _ = output(capsys)
    assert "bucket UTC" in lines[0]
    assert "2026-05-01 13:00" in lines[3]
    assert all(cell_width(line) <= 120 for line in lines)

    api.reply("/api/v1/stats", {"object": "stats", "group_by": None, "bucket_s": None, "data": []})
    assert run("stats") == 0
    assert capsys.readouterr().out == "no calls match\n"
    assert run("stats", "--json") == 0
    assert json.loads(capsys.readouterr().out)["object"] == "stats"


def test_text_helpers() -> None:
    assert clip("abcdef", 4) == "abc…"
    assert clip("abc", 3) == "abc"
    assert clip("日本語です", 5) == "日本…"
    assert cell_width(clip("日本語です", 6)) <= 6
    assert clean("a\n\tb\x07c\u202ed") == "a b\N{REPLACEMENT CHARACTER}c\N{REPLACEMENT CHARACTER}d"
    assert clean(None) == ""

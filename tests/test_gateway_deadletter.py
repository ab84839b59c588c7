"""The dead-letter queue keeps what a replay needs and nothing secret."""

from __future__ import annotations

import json
import time

import pytest

from kansoku.gateway._deadletter import Attempt, SQLiteDeadLetters

CANARY_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def _request() -> dict[str, object]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": "My email is taro@example.com; summarise my order"}],
        "api_key": CANARY_KEY,
        "metadata": {"Authorization": BEARER, "note": f"key {CANARY_KEY} leaked in text"},
    }


def test_letters_keep_the_request_and_chain_but_no_secrets(tmp_path):
    store = SQLiteDeadLetters(tmp_path / "dl.sqlite")
    attempts = [
        Attempt("openai/gpt-4o-mini@us-east", 429, "rate_limit", "Rate limit reached"),
        Attempt("anthropic/claude@eu-west", 500, "server_error", f"upstream said: invalid key {CANARY_KEY}"),
    ]
    letter_id = store.add("chat", _request(), attempts, key_name="support-bot")
    store.close()
    raw = (tmp_path / "dl.sqlite").read_bytes()
    assert CANARY_KEY.encode() not in raw
    assert b"eyJhbGciOiJIUzI1NiJ9" not in raw
    store = SQLiteDeadLetters(tmp_path / "dl.sqlite")  # survives a restart
    letter = store.get(letter_id)
    assert letter is not None
    assert letter.request["messages"][0]["content"].startswith("My email is taro@example.com")  # replayable
    assert "api_key" not in letter.request
    assert "Authorization" not in letter.request["metadata"]
    assert [a.status for a in letter.attempts] == [429, 500]
    assert CANARY_KEY not in json.dumps(letter.public())
    store.close()


def test_list_newest_first_filter_and_replays(tmp_path):
    store = SQLiteDeadLetters(":memory:")
    ids = [store.add(m, {"model": m}, [Attempt("d", 503, "server_error", "x")], None) for m in "aba"]
    assert [d.id for d in store.list()] == ids[::-1]
    assert [d.model for d in store.list(model="a")] == ["a", "a"]
    assert len(store.list(limit=1)) == 1
    store.record_replay(ids[0], {"status": 200, "deployment": "d", "error": None})
    (replay,) = store.get(ids[0]).replays  # type: ignore[union-attr]
    assert replay["status"] == 200
    with pytest.raises(KeyError):
        store.record_replay("dl_nope", {"status": 200})
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=0)


def test_purge_drops_letters_older_than_the_retention():
    store = SQLiteDeadLetters(":memory:", retain_days=7)
    store.add("a", {}, [], None)
    assert store.purge(time.time_ns()) == 0
    assert store.purge(time.time_ns() + 8 * 86_400 * 10**9) == 1
    assert store.list() == []

"""The dead-letter queue: requests that exhausted retries and fallbacks, kept for replay.

A letter keeps the client's request and the chain of attempts that failed, with secrets taken
out before anything is written: credential-like keys are dropped from the request and every
string of the request and the error chain goes through the secret detectors (API keys, bearer
tokens, JWTs, ...). Personal data in prompts stays — a replay must send the same question.

In-process state lives in one SQLite file (stdlib, transactional, fine for the volumes a
dead-letter queue sees); a Redis-backed store for several replicas implements the same
:class:`DeadLetterStore` protocol. Letters older than ``retain_days`` are purged.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from kansoku.redact import Redactor, redact_value

_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "x-api-key", "api-key", "password", "secret"})
_SCRUB = Redactor(entities=("BEARER_TOKEN", "API_KEY"))
_NS_PER_DAY = 86_400 * 10**9


def scrub(value: Any) -> Any:
    """``value`` without credential-like keys and with secrets in strings masked."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if str(k).lower() not in _SECRET_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return redact_value(value, _SCRUB)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed try: which deployment, what came back."""

    deployment: str
    status: int | None
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    created_ns: int
    model: str
    request: dict[str, Any]
    attempts: tuple[Attempt, ...]
    key_name: str | None = None
    replays: tuple[dict[str, Any], ...] = field(default=())

    def public(self) -> dict[str, Any]:
        """The JSON shape of the admin API."""
        return {
            "id": self.id,
            "created_ns": self.created_ns,
            "model": self.model,
            "key_name": self.key_name,
            "request": self.request,
            "attempts": [_attempt_dict(a) for a in self.attempts],
            "replays": list(self.replays),
        }


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return {"deployment": a.deployment, "status": a.status, "error_type": a.error_type, "message": a.message}


@runtime_checkable
class DeadLetterStore(Protocol):
    def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str: ...

    def get(self, letter_id: str) -> DeadLetter | None: ...

    def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]: ...

    def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None: ...

    def purge(self, now_ns: int) -> int: ...

    def close(self) -> None: ...


class SQLiteDeadLetters:
    """A :class:`DeadLetterStore` in one SQLite file (``:memory:`` for tests). Thread-safe."""

    def __init__(self, path: str | Path = ":memory:", retain_days: int = 7) -> None:
        if isinstance(retain_days, bool) or not isinstance(retain_days, int) or retain_days < 1:
            raise ValueError("retain_days must be a positive whole number")
        self.retain_days = retain_days
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, "
            "model TEXT NOT NULL, key_name TEXT, request BLOB NOT NULL, attempts BLOB NOT NULL, "
            "replays BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS dead_letters_created ON dead_letters (created_ns)")

    def add(self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None) -> str:
        letter_id = "dl_" + secrets.token_hex(8)
        chain = [scrub(_attempt_dict(a)) for a in attempts]
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    letter_id,
                    time.time_ns(),
                    model,
                    key_name,
                    orjson.dumps(scrub(request)),
                    orjson.dumps(chain),
                    b"[]",
                ),
            )
        return letter_id

    def _row(self, row: tuple[Any, ...]) -> DeadLetter:
        letter_id, created, model, key_name, request, attempts, replays = row
        return DeadLetter(
            id=letter_id,
            created_ns=created,
            model=model,
            key_name=key_name,
            request=orjson.loads(request),
            attempts=tuple(Attempt(**a) for a in orjson.loads(attempts)),
            replays=tuple(orjson.loads(replays)),
        )

    def get(self, letter_id: str) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
        return None if row is None else self._row(row)

    def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit must be a whole number from 1 to 1000")
        sql = "SELECT * FROM dead_letters WHERE 1 = 1"
        args: list[str | int] = []
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        if before_ns is not None:
            sql += " AND created_ns < ?"
            args.append(before_ns)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_ns DESC, id LIMIT ?", [*args, limit]).fetchall()
        return [self._row(r) for r in rows]

    def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None:
        entry = {"at_ns": time.time_ns(), **scrub(outcome)}
        with self._lock:
            row = self._db.execute("SELECT replays FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
            if row is None:
                raise KeyError(letter_id)
            replays = [*orjson.loads(row[0]), entry]
            self._db.execute(
                "UPDATE dead_letters SET replays = ? WHERE id = ?", (orjson.dumps(replays), letter_id)
            )

    def purge(self, now_ns: int) -> int:
        cutoff = now_ns - self.retain_days * _NS_PER_DAY
        with self._lock:
            return self._db.execute("DELETE FROM dead_letters WHERE created_ns < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

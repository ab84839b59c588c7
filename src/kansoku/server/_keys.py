"""Projects and their API keys, stored hashed in ``<data-dir>/keys.json``.

A key is ``ksk_<scope>_<43 random url-safe chars>`` (256 bits), shown once at creation. Only its
SHA-256 is stored: keys are random, so a slow password hash would add latency without adding
safety. Lookup is by hash, so no key is compared byte by byte in Python. The running server
re-reads the file when it changes, so ``kansoku keys create`` takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from kansoku._fsutil import fsync_dir
from kansoku.errors import ConfigError

#: ``metrics`` keys read ``/metrics`` (all projects' label values), for a Prometheus scraper.
SCOPES: tuple[str, ...] = ("ingest", "read", "metrics")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is kept about a key (never the key itself)."""

    key_id: str
    project: str
    scope: str
    name: str | None
    created: str
    sha256: str

    def public(self) -> dict[str, str | None]:
        return {
            "id": self.key_id, "project": self.project, "scope": self.scope,
            "name": self.name, "created": self.created,
        }  # fmt: skip


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_project(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        raise ConfigError(
            "--project", "use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return project


class KeyRing:
    """The key file of one data directory. Thread-safe; cheap to consult on every request."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._by_hash: dict[str, KeyInfo] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._reload()

    # -- reading -------------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp and self._stamp is not None:
            return
        keys: dict[str, KeyInfo] = {}
        if stamp is not None:
            try:
                doc = orjson.loads(self.path.read_bytes())
                for k in doc.get("keys", []):
                    info = KeyInfo(
                        k["id"], k["project"], k["scope"], k.get("name"), k["created"], k["sha256"]
                    )
                    keys[info.sha256] = info
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                problem = f"{self.path} is damaged ({type(exc).__name__}); fix or remove it"
                raise ConfigError("keys", problem) from None
        self._by_hash, self._stamp = keys, stamp

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_S:
            return
        with self._lock:
            self._checked = now
            with contextlib.suppress(ConfigError):  # keep the last good set while a write is under way
                self._reload()

    @property
    def enabled(self) -> bool:
        """Whether any key exists (then every ingest and query needs one)."""
        self._maybe_reload()
        return bool(self._by_hash)

    def lookup(self, key: str) -> KeyInfo | None:
        self._maybe_reload()
        return self._by_hash.get(_digest(key))

    def list(self) -> list[KeyInfo]:
        with self._lock:
            self._reload()
            return sorted(self._by_hash.values(), key=lambda k: (k.project, k.created, k.key_id))

    # -- writing -------------------------------------------------------------------------------------
    def create(self, project: str, scope: str, name: str | None = None) -> tuple[str, KeyInfo]:
        """Make a key; returns ``(key, info)``. The key is not stored and cannot be shown again."""
        check_project(project)
        if scope not in SCOPES:
            raise ConfigError("--scope", f"must be one of {list(SCOPES)}, got {scope!r}")
        key = f"ksk_{scope}_{secrets.token_urlsafe(32)}"
        info = KeyInfo(
            key_id="key_" + secrets.token_hex(6),
            project=project,
            scope=scope,
            name=name,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            sha256=_digest(key),
        )
        with self._lock:
            self._reload()
            self._by_hash[info.sha256] = info
            self._save()
        return key, info

    def revoke(self, key_id: str) -> KeyInfo:
        with self._lock:
            self._reload()
            for digest, info in self._by_hash.items():
                if info.key_id == key_id:
                    del self._by_hash[digest]
                    self._save()
                    return info
        raise ConfigError("key id", f"no key with id {key_id!r} in {self.path}")

    def _save(self) -> None:
        doc = {
            "keys": [
                {**k.public(), "sha256": k.sha256}
                for k in sorted(self._by_hash.values(), key=lambda k: k.created)
            ]
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        fsync_dir(self.path.parent)
        self._stamp = self._file_stamp()

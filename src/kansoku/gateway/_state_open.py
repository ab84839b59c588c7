"""``--state``: which :class:`GatewayState` a gateway runs on, from one string.

``memory`` keeps limits, spend, breakers in the process and dead letters in SQLite (one
replica); ``redis://...`` or ``rediss://...`` (TLS) shares all of them through Redis, so that
several replicas enforce one limit. The Redis client is an optional extra, imported only here.
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from kansoku.clock import Clock
from kansoku.errors import ConfigError
from kansoku.gateway._state import GatewayState, MemoryState

__all__ = ["open_state", "redis_address"]

_ACCEPTED = "'memory' or a Redis URL (redis://[:password@]host:port/db, rediss:// for TLS)"


async def open_state(spec: str, *, clock: Clock, dead_letter_path: str, retain_days: int) -> GatewayState:
    """The state backend ``spec`` names; :class:`ConfigError` (setting ``--state``) otherwise.

    ``dead_letter_path`` is the SQLite file of the ``memory`` backend; Redis keeps letters itself.
    An unreachable Redis is reported at start-up with its host:port (never its password).
    """
    if spec == "memory":
        # MemoryState's attributes are typed as its concrete classes, which the protocol's
        # mutable (so invariant) attributes do not accept; it does implement every method.
        return cast(GatewayState, MemoryState(clock, dead_letter_path, retain_days))
    scheme = spec.partition("://")[0].lower() if "://" in spec else ""
    if scheme not in ("redis", "rediss"):
        # Only the scheme is echoed: a mistyped URL may still carry a password.
        shown = f"a {scheme}:// URL" if scheme else repr(spec) if "@" not in spec else "that value"
        raise ConfigError("--state", f"expected {_ACCEPTED}, got {shown}")
    try:
        from kansoku.gateway._state_redis import RedisState
    except ImportError:
        raise ConfigError(
            "--state", "the Redis state needs the redis client: pip install 'kansoku[redis]'"
        ) from None
    from kansoku.gateway._state_guard import GuardedState

    # Reachable at start-up (connect fails loudly otherwise); an outage later fails open.
    return GuardedState(await RedisState.connect(spec, clock=clock, retain_days=retain_days), clock=clock)


def redis_address(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages: never the user name or password."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:  # the parser's message may quote parts of the URL: say what is expected
        raise ConfigError(
            "--state", "not a valid Redis URL; expected redis://[:password@]host:port/db"
        ) from None
    host = parts.hostname or "localhost"
    return f"{host}:{port}{parts.path if parts.path not in ('', '/') else ''}"

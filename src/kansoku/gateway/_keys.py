"""Virtual keys: who may call the gateway, with which models, rate limits, budget and tags.

Clients present a key as ``Authorization: Bearer <key>``, or in an ``api-key`` / ``x-api-key``
header as Azure and Anthropic clients do. Only the key's SHA-256 is kept (the configuration
hashes a plain key as it loads and drops it), and a presented key is found by its digest, so no
key is compared character by character and none can leak from a config object or a repr.
Virtual keys are random strings, so a fast unsalted hash suffices; that is why the
configuration refuses plain keys shorter than :data:`MIN_KEY_CHARS`.

Admin keys (for the admin API: dead letters, replays) are a separate set: a virtual key never
opens the admin API, and with no admin key configured the admin API stays closed.

>>> ring = KeyRing([VirtualKey("bot", key_digest("kk-0123456789abcdef"))])
>>> ring.authenticate("Bearer kk-0123456789abcdef", None).name
'bot'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kansoku.gateway._errors import AuthError
from kansoku.policy import RateLimit

if TYPE_CHECKING:
    from kansoku.gateway._config import GatewayConfig

__all__ = [
    "BUDGET_PER",
    "LIMIT_ON",
    "LIMIT_PER",
    "MIN_KEY_CHARS",
    "Budget",
    "KeyRing",
    "Limit",
    "VirtualKey",
    "key_digest",
]

MIN_KEY_CHARS = 16
LIMIT_PER = ("key", "user", "model", "global")
LIMIT_ON = ("requests", "tokens")
BUDGET_PER = ("key", "user", "department")

_MISSING = (
    "no API key: send 'Authorization: Bearer <key>' (or an 'api-key' / 'x-api-key' header) "
    "with a virtual key of this gateway"
)
_INVALID = "invalid API key: it is not one of this gateway's virtual keys (see keys: in its configuration)"


def key_digest(key: str) -> str:
    """The lowercase SHA-256 hex of ``key``: what the gateway stores and looks keys up by."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Limit:
    """A rate limit ``rate`` on ``on`` (requests or tokens), counted separately per ``per``.

    ``per`` is ``key``, ``user`` (the request's ``user`` field), ``model`` (the requested model
    name) or ``global`` (one count for the whole gateway).
    """

    per: str
    on: str
    rate: RateLimit


@dataclass(frozen=True, slots=True)
class Budget:
    """Spend caps in USD per UTC day and month, counted separately per ``per``.

    ``per`` is ``key``, ``user`` or ``department`` (the key's ``department`` tag).
    """

    per: str
    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One client's key, known by its SHA-256 only (never shown in the repr).

    ``models`` None allows every model; ``budget`` and ``limits`` apply to this key alone, on top
    of the configuration's ``budgets:`` and ``limits:``.
    """

    name: str
    sha256: str = field(repr=False)
    models: frozenset[str] | None = None
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    budget: Budget | None = None
    limits: tuple[Limit, ...] = ()

    @property
    def department(self) -> str | None:
        return self.tags.get("department")

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


def _presented(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization is not None and authorization.strip():
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("the Authorization header must be 'Bearer <key>'")
        return token.strip() or None
    if x_api_key is not None and x_api_key.strip():
        return x_api_key.strip()
    return None


class KeyRing:
    """The configured virtual and admin keys, looked up by digest. Immutable; cheap per request."""

    def __init__(self, keys: Iterable[VirtualKey] = (), admin_sha256: Iterable[str] = ()) -> None:
        self._by_hash = {k.sha256: k for k in keys}
        self._admin = frozenset(admin_sha256)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> KeyRing:
        return cls(config.keys, config.admin_key_hashes)

    @property
    def open(self) -> bool:
        """No virtual keys are configured: every request is let in without a key."""
        return not self._by_hash

    def __repr__(self) -> str:
        return f"KeyRing({len(self._by_hash)} keys, {len(self._admin)} admin keys)"

    def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> VirtualKey | None:
        """The caller's key; None when the gateway is open. Raises :class:`AuthError` otherwise.

        The error never repeats the presented key, not even a prefix of it.
        """
        if not self._by_hash:
            return None
        presented = _presented(authorization, x_api_key)
        if presented is None:
            raise AuthError(_MISSING)
        key = self._by_hash.get(key_digest(presented))
        if key is None:
            raise AuthError(_INVALID)
        return key

    @property
    def has_admin(self) -> bool:
        """Admin keys are configured (the admin API is open to their holders)."""
        return bool(self._admin)

    def admin(self, authorization: str | None, x_api_key: str | None = None) -> bool:
        """Is the presented key an admin key? Raises :class:`AuthError` if none is configured."""
        if not self._admin:
            raise AuthError(
                "the admin API is closed: no admin key is configured (add admin_keys: "
                "[${KANSOKU_ADMIN_KEY}] to the gateway configuration, with a random key of "
                f"at least {MIN_KEY_CHARS} characters in that environment variable)",
                code="admin_api_closed",
            )
        presented = _presented(authorization, x_api_key)
        return presented is not None and key_digest(presented) in self._admin

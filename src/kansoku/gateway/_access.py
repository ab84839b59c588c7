"""Who may call and how much: virtual keys, admin keys, limits and budgets behind one object.

The HTTP handlers see only :class:`Access`; with no keys, limits or budgets configured,
``admit`` and ``settle`` return at once (no state round trip on the hot path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kansoku.gateway._admission import Admission, Ticket
from kansoku.gateway._config import GatewayConfig
from kansoku.gateway._errors import AuthError
from kansoku.gateway._keys import KeyRing, VirtualKey
from kansoku.gateway._record import RequestFacts, request_cost
from kansoku.gateway._state import GatewayState
from kansoku.pricing import PriceCatalog

__all__ = ["Access"]


def _usage_sum(facts: RequestFacts, name: str) -> int:
    total = 0
    for a in facts.attempts:
        value = a.usage.get(name) if a.usage else None
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


class Access:
    def __init__(self, config: GatewayConfig, state: GatewayState, clock: Any, catalog: PriceCatalog) -> None:
        self.keys = KeyRing.from_config(config)
        self.admission = Admission(config, state, clock)
        self._active = self.admission.active
        self._catalog = catalog

    def authenticate(self, headers: Mapping[str, str]) -> VirtualKey | None:
        if self.keys.open:
            return None
        return self.keys.authenticate(
            headers.get("Authorization"), headers.get("x-api-key") or headers.get("api-key")
        )

    def require_admin(self, headers: Mapping[str, str]) -> None:
        if not self.keys.admin(headers.get("Authorization"), headers.get("x-api-key")):
            raise AuthError("the admin API needs an admin key", code="invalid_admin_key")

    async def admit(
        self, key: VirtualKey | None, user: str | None, model: str, body: dict[str, Any]
    ) -> Ticket | None:
        if not self._active:
            return None
        return await self.admission.admit(key, user, model, body)

    async def settle(self, ticket: Ticket, facts: RequestFacts) -> None:
        """Reconcile token limits with the real usage and charge the budgets the request's cost."""
        prompt, completion = _usage_sum(facts, "prompt_tokens"), _usage_sum(facts, "completion_tokens")
        if prompt == 0 and completion == 0:
            await self.admission.release(ticket)
            return
        cost = request_cost(self._catalog, facts) or 0.0
        await self.admission.settle(ticket, prompt, completion, cost)

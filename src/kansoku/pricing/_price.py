"""One price period of one model, and the cost formula."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

#: Prices are quoted per this many tokens.
TOKENS_PER_UNIT = 1_000_000
#: Costs are rounded so sums of many records do not drift on float noise.
COST_DECIMALS = 10


class PriceCatalogError(ValueError):
    """A price file or mapping is invalid; the message names the source, entry and field."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices of one model from one provider over one period, in USD per million tokens.

    ``cached_input`` prices the cached part of the input and ``reasoning`` the reasoning part
    of the output; when they are ``None`` the plain ``input`` / ``output`` price applies.
    The period runs from ``effective_from`` (inclusive) to ``effective_until`` (exclusive,
    ``None`` means still current), as UTC dates.
    """

    provider: str
    model: str
    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    effective_from: date = date(1970, 1, 1)
    effective_until: date | None = None
    aliases: tuple[str, ...] = ()

    def cost(
        self,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> float | None:
        """USD cost of a call with these token counts, rounded to 10 decimal places.

        Follows kansoku's record convention: ``input_tokens`` includes the cached tokens and
        ``output_tokens`` includes the reasoning tokens. ``None`` means "not reported": when
        both sides are unknown the cost is unknown (``None``); when one side is known the cost
        covers that side (an embedding call has no output).

        >>> ModelPrice("openai", "m", input=1.0, output=2.0).cost(input_tokens=1000, output_tokens=500)
        0.002
        """
        if input_tokens is None and output_tokens is None:
            return None
        total = 0.0
        if input_tokens is not None:
            tokens = max(input_tokens, 0)
            # A subset can never exceed its whole; clamp so a bad count cannot make cost negative.
            cached = min(max(cached_input_tokens or 0, 0), tokens)
            cached_price = self.input if self.cached_input is None else self.cached_input
            total += (tokens - cached) * self.input + cached * cached_price
        if output_tokens is not None:
            tokens = max(output_tokens, 0)
            reasoning = min(max(reasoning_tokens or 0, 0), tokens)
            reasoning_price = self.output if self.reasoning is None else self.reasoning
            total += (tokens - reasoning) * self.output + reasoning * reasoning_price
        return round(total / TOKENS_PER_UNIT, COST_DECIMALS)

"""Trace and span identifiers and the W3C ``traceparent`` header."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16

# random.getrandbits is ~10x cheaper than os.urandom and what the OTel SDK uses for ids too.
_bits = random.getrandbits


def new_trace_id() -> str:
    """A random 128-bit trace id as 32 lowercase hex characters (never all zeros)."""
    return f"{_bits(128) or 1:032x}"


def new_span_id() -> str:
    """A random 64-bit span id as 16 lowercase hex characters (never all zeros)."""
    return f"{_bits(64) or 1:016x}"


@dataclass(frozen=True, slots=True)
class SpanContext:
    """The part of a span that crosses process boundaries."""

    trace_id: str
    span_id: str
    sampled: bool = True
    remote: bool = False

    def to_traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """Parse a W3C ``traceparent`` header; ``None`` for anything invalid (the spec says: ignore it)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())  # W3C: upper-case hex is invalid, not to be lowered
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    if version == "00" and len(value.strip()) != 55:
        return None
    return SpanContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1), remote=True)

"""Reliability policies as small values: backoff (more arrive with the gateway)."""

from kansoku.policy._backoff import FullJitter

__all__ = ["FullJitter"]

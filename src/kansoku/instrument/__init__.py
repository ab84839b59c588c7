"""Automatic instrumentation of LLM client libraries (``openai``, ``anthropic``)."""

from __future__ import annotations

from collections.abc import Iterable

from kansoku.instrument import _anthropic, _openai
from kansoku.instrument._patch import unpatch_all
from kansoku.instrument._wrap import OPTIONS

_INSTALLERS = {"openai": _openai.install, "anthropic": _anthropic.install}

__all__ = ["install", "set_propagation", "uninstall"]


def install(names: Iterable[str] = ("openai", "anthropic")) -> dict[str, bool]:
    """Instrument each named library that is installed; returns which ones were."""
    return {name: _INSTALLERS[name]() for name in names if name in _INSTALLERS}


def uninstall() -> None:
    """Restore the original client methods."""
    unpatch_all()


def set_propagation(enabled: bool) -> None:
    """Whether instrumented calls send ``traceparent`` to the server they call."""
    OPTIONS.propagate = enabled

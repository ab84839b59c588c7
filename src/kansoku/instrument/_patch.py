"""Replace methods on third-party classes reversibly and idempotently."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_PATCHED: list[tuple[type, str, Any]] = []
_lock = threading.Lock()
_MARK = "__kansoku_original__"


def patch(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Wrap ``cls.name`` with ``make(original)`` unless already wrapped."""
    with _lock:
        original = cls.__dict__.get(name)
        if original is None or getattr(original, _MARK, None) is not None:
            return
        wrapper = functools.wraps(original)(make(original))
        setattr(wrapper, _MARK, original)
        setattr(cls, name, wrapper)
        _PATCHED.append((cls, name, original))


def unpatch_all() -> None:
    """Restore every method patched by kansoku (used by ``shutdown()`` and tests)."""
    with _lock:
        while _PATCHED:
            cls, name, original = _PATCHED.pop()
            setattr(cls, name, original)

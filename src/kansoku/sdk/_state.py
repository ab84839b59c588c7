"""The one process-wide link from instrumentation to the running pipeline."""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    def submit(self, item: Any) -> None: ...


class _Holder:
    __slots__ = ("sink",)

    def __init__(self) -> None:
        self.sink: Sink | None = None


HOLDER = _Holder()


def submit(item: Any) -> None:
    """Hand a finished span (or a pending call) to the pipeline; a no-op before ``init()``."""
    sink = HOLDER.sink
    if sink is not None:
        sink.submit(item)

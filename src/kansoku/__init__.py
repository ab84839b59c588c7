"""kansoku (観測): observability and reliability for LLM applications.

Quick start::

    import kansoku
    kansoku.init(service_name="support-bot", export="file:///var/log/kansoku/calls.jsonl")
    with kansoku.context(user_id="u-42", session_id="s-1", tags={"feature": "search"}):
        client.chat.completions.create(...)   # recorded, redacted, costed, exported
"""

from kansoku.errors import ConfigError, ExportError, KansokuError
from kansoku.model import ErrorType, LLMCall, Span
from kansoku.sdk import (
    ActiveSpan,
    Settings,
    context,
    current_context,
    extract,
    flush,
    init,
    inject,
    observe,
    shutdown,
    span,
    stats,
)

__version__ = "0.1.0"

__all__ = [
    "ActiveSpan",
    "ConfigError",
    "ErrorType",
    "ExportError",
    "KansokuError",
    "LLMCall",
    "Settings",
    "Span",
    "__version__",
    "context",
    "current_context",
    "extract",
    "flush",
    "init",
    "inject",
    "observe",
    "shutdown",
    "span",
    "stats",
]

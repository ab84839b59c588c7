"""The kansoku SDK: record every LLM call and user step as spans and LLM-call records."""

from kansoku.sdk._context import CallContext, context, current_context
from kansoku.sdk._processors import Processor, Sampler
from kansoku.sdk._runtime import flush, init, shutdown, stats
from kansoku.sdk._settings import ENV_VARS, Settings, load_settings
from kansoku.sdk._tracer import ActiveSpan, RemoteParent, extract, inject, observe, span

__all__ = [
    "ENV_VARS",
    "ActiveSpan",
    "CallContext",
    "Processor",
    "RemoteParent",
    "Sampler",
    "Settings",
    "context",
    "current_context",
    "extract",
    "flush",
    "init",
    "inject",
    "load_settings",
    "observe",
    "shutdown",
    "span",
    "stats",
]

"""Instrument the official ``openai`` client: chat completions (create, parse, stream helper),
responses, embeddings; sync and async; streaming; ``with_raw_response``."""

from __future__ import annotations

from typing import Any

from kansoku.instrument._capture import Extractor, g
from kansoku.instrument._openai_extract import ChatExtractor, EmbeddingsExtractor, ResponsesExtractor
from kansoku.instrument._patch import patch
from kansoku.instrument._wrap import wrap_async, wrap_sync

_EXTRACTORS: dict[tuple[type, type], Extractor] = {}


def _provider(resource: Any) -> str:
    client_name = type(getattr(resource, "_client", None)).__name__
    return "azure.openai" if "Azure" in client_name else "openai"


def _extractor_for(cls: type) -> Any:
    def get(resource: Any) -> Extractor:
        key = (cls, type(getattr(resource, "_client", None)))
        ext = _EXTRACTORS.get(key)
        if ext is None:
            ext = _EXTRACTORS[key] = cls(_provider(resource))
        return ext

    return get


def _is_usage_only(chunk: Any) -> bool:
    if getattr(chunk, "choices", None):  # the common case, decided with one attribute read
        return False
    return not g(chunk, "choices") and g(chunk, "usage") is not None


def _ask_stream_usage(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Ask for usage on streams the user did not ask it for, and hide the extra chunk from them."""
    if kwargs.get("stream") is not True:
        return kwargs, None
    options = kwargs.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return kwargs, None
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return {**kwargs, "stream_options": merged}, _is_usage_only


def install() -> bool:
    """Patch the installed ``openai`` package; ``False`` when it is not installed."""
    try:
        from openai.resources import embeddings, responses
        from openai.resources.chat import completions
    except ImportError:
        return False
    chat = _extractor_for(ChatExtractor)
    for name in ("create", "parse"):
        patch(completions.Completions, name, wrap_sync(chat, _ask_stream_usage))
        patch(completions.AsyncCompletions, name, wrap_async(chat, _ask_stream_usage))
    resp = _extractor_for(ResponsesExtractor)
    patch(responses.Responses, "create", wrap_sync(resp))
    patch(responses.AsyncResponses, "create", wrap_async(resp))
    emb = _extractor_for(EmbeddingsExtractor)
    patch(embeddings.Embeddings, "create", wrap_sync(emb))
    patch(embeddings.AsyncEmbeddings, "create", wrap_async(emb))
    return True

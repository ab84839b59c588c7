"""Reading OpenAI chat completions, responses and embeddings (objects or raw JSON)."""

from __future__ import annotations

import operator
from typing import Any

import orjson

from kansoku.instrument._capture import as_int, common_params, g
from kansoku.instrument._messages import content_text, normalise, tool_call
from kansoku.model import LLMCall

_CHAT_PARAMS = (
    "max_tokens", "max_completion_tokens", "top_p", "seed", "stop", "n", "frequency_penalty",
    "presence_penalty", "reasoning_effort", "service_tier", "parallel_tool_calls", "logprobs",
)  # fmt: skip
_RESPONSES_PARAMS = ("max_output_tokens", "top_p", "service_tier", "truncation", "parallel_tool_calls")


def unwrap(result: Any) -> Any:
    """The parsed body of a ``with_raw_response`` result, or the result itself."""
    http = getattr(result, "http_response", None)
    if http is None or not hasattr(result, "parse"):
        return result
    try:
        return orjson.loads(http.content)
    except Exception:  # body not read (with_streaming_response) or not JSON: usage stays unknown
        return None


def _given(value: Any) -> bool:
    # The SDKs' "not given" sentinels (omit, NOT_GIVEN) are objects, not None.
    return value is not None and type(value).__name__ not in ("Omit", "NotGiven")


def _params(kwargs: dict[str, Any], names: tuple[str, ...], llm: LLMCall) -> None:
    for name in names:
        value = kwargs.get(name)
        if value is not None and _given(value):  # most are not passed: no call for those
            llm.parameters[name] = value if isinstance(value, str | int | float | bool | list) else str(value)
    common_params(kwargs, llm)
    fmt = kwargs.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type"):
        llm.parameters["response_format"] = fmt["type"]
    elif isinstance(fmt, type):
        llm.parameters["response_format"] = fmt.__name__


def _usage(usage: Any, llm: LLMCall, inp: str, out: str) -> None:
    if usage is None:
        return
    llm.input_tokens = as_int(g(usage, inp))
    llm.output_tokens = as_int(g(usage, out))
    llm.total_tokens = as_int(g(usage, "total_tokens"))
    in_details = g(usage, "prompt_tokens_details") or g(usage, "input_tokens_details")
    out_details = g(usage, "completion_tokens_details") or g(usage, "output_tokens_details")
    llm.cached_input_tokens = as_int(g(in_details, "cached_tokens"))
    llm.reasoning_tokens = as_int(g(out_details, "reasoning_tokens"))


class ChatExtractor:
    operation = "chat"

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def request(self, kwargs: dict[str, Any], llm: LLMCall) -> None:
        llm.request_model = str(kwargs.get("model") or "") or None
        llm.input_messages = normalise(kwargs.get("messages"))
        _params(kwargs, _CHAT_PARAMS, llm)

    def response(self, result: Any, llm: LLMCall) -> None:
        body = unwrap(result)
        if body is None:
            return
        llm.model = g(body, "model")
        llm.response_id = g(body, "id")
        outputs, reasons = [], []
        for choice in g(body, "choices") or []:
            msg = g(choice, "message")
            item: dict[str, Any] = {
                "role": g(msg, "role") or "assistant",
                "content": content_text(g(msg, "content")),
            }
            calls = g(msg, "tool_calls")
            if calls:
                item["tool_calls"] = [tool_call(c) for c in calls]
            refusal = g(msg, "refusal")
            if refusal:
                item["refusal"] = refusal
            outputs.append(item)
            if g(choice, "finish_reason"):
                reasons.append(str(g(choice, "finish_reason")))
        llm.output_messages = outputs or None
        llm.finish_reasons = reasons or None
        _usage(g(body, "usage"), llm, "prompt_tokens", "completion_tokens")

    def stream(self, chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
        if chunks and not isinstance(chunks[0][1], dict):
            # The SDK's typed chunks: plain attribute access. Anything unexpected in them (a
            # missing attribute, None where a list belongs) falls back to the generic reader,
            # which starts from scratch: the fast paths write to ``llm`` only once they are done.
            try:
                if _chat_stream_simple(chunks, start_pc, llm):
                    return
            except (AttributeError, TypeError):
                pass
            try:
                _chat_stream_objects(chunks, start_pc, llm)
            except (AttributeError, TypeError):
                pass
            else:
                return
        _chat_stream_generic(chunks, start_pc, llm)


# Fields of the SDK's ChatCompletionChunk and of its choices, read in C (map) for every chunk.
_CHUNK = operator.itemgetter(1)
_CHOICES = operator.attrgetter("choices")
_DELTA = operator.attrgetter("delta")
_CONTENT = operator.attrgetter("content")
_TOOL_CALLS = operator.attrgetter("tool_calls")
_INDEX = operator.attrgetter("index")
_FINISH = operator.attrgetter("finish_reason")
_USAGE = operator.attrgetter("usage")
_MODEL = operator.attrgetter("model")
_ID = operator.attrgetter("id")


class _NoDelta:
    content = None
    tool_calls = None


class _NoChoice:
    """Stands in for the first choice of a chunk that has none (the usage-only chunk)."""

    delta = _NoDelta
    index = None
    finish_reason = None


class _Several:
    """Stands in for the choices of a chunk that has more than one (no attributes at all)."""


def _chat_stream_simple(chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> bool:
    """The usual stream (one choice, text only) in a few C-level passes; ``False`` if it is not one.

    Every chunk's choice index, content and tool calls are read (they decide what the stream
    is); model, id, usage and finish reason are wanted from the last chunk that has them, as the
    generic reader keeps them, so they are looked for from the end and found at once.
    """
    objs = list(map(_CHUNK, chunks))
    # A chunk with several choices becomes _Several, which has no index: reading it raises
    # AttributeError and the caller moves on to the general reader.
    firsts = [
        (choices[0] if len(choices) == 1 else _Several) if choices else _NoChoice
        for choices in map(_CHOICES, objs)
    ]
    if any(map(_INDEX, firsts)):
        return False
    deltas = list(map(_DELTA, firsts))
    if any(map(_TOOL_CALLS, deltas)):
        return False
    contents = list(map(_CONTENT, deltas))
    text = "".join(filter(None, contents)) if any(contents) else None
    model = _last(map(_MODEL, reversed(objs)))
    response_id = _last(map(_ID, reversed(objs)))
    usage = next((u for u in map(_USAGE, reversed(objs)) if u is not None), None)
    reason = _last(map(_FINISH, reversed(firsts)))
    if text is not None and llm.ttft_ms is None:
        first = next(i for i, content in enumerate(contents) if content)
        llm.ttft_ms = round((chunks[first][0] - start_pc) / 1e6, 3)
    llm.model = model or llm.model
    llm.response_id = response_id or llm.response_id
    if usage is not None:
        _usage(usage, llm, "prompt_tokens", "completion_tokens")
    llm.output_messages = [{"role": "assistant", "content": text}] if text is not None else None
    llm.finish_reasons = [str(reason)] if reason else None
    return True


def _last(values: Any) -> Any:
    """The first truthy value of ``values`` (an iterator read from the end), else None."""
    return next(filter(None, values), None)


def _chat_stream_objects(chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
    """Any stream of typed chunks (several choices, tool calls), with direct attribute access."""
    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    reasons: dict[int, str] = {}
    model = response_id = usage = ttft = None
    for t, chunk in chunks:
        model = chunk.model or model
        response_id = chunk.id or response_id
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices or ():
            idx = choice.index or 0
            delta = choice.delta
            text = delta.content if delta is not None else None
            deltas = delta.tool_calls if delta is not None else None
            if text:
                texts.setdefault(idx, []).append(text)
            for call in deltas or ():
                slot = calls.setdefault(idx, {}).setdefault(call.index or 0, {"arguments": ""})
                fn = call.function
                slot["id"] = call.id or slot.get("id")
                slot["name"] = (fn.name if fn is not None else None) or slot.get("name")
                slot["arguments"] += (fn.arguments if fn is not None else None) or ""
            if (text or deltas) and ttft is None:
                ttft = t
            if choice.finish_reason:
                reasons[idx] = str(choice.finish_reason)
    llm.model = model or llm.model
    llm.response_id = response_id or llm.response_id
    if usage is not None:
        _usage(usage, llm, "prompt_tokens", "completion_tokens")
    if ttft is not None and llm.ttft_ms is None:
        llm.ttft_ms = round((ttft - start_pc) / 1e6, 3)
    _chat_outputs(texts, calls, reasons, llm)


def _chat_stream_generic(chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
    """Chunks of any shape (decoded JSON dicts, objects), each field read with :func:`g`."""
    texts: dict[int, list[str]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    reasons: dict[int, str] = {}
    for t, chunk in chunks:
        llm.model = g(chunk, "model") or llm.model
        llm.response_id = g(chunk, "id") or llm.response_id
        usage = g(chunk, "usage")
        if usage is not None:
            _usage(usage, llm, "prompt_tokens", "completion_tokens")
        for choice in g(chunk, "choices") or []:
            idx = g(choice, "index") or 0
            delta = g(choice, "delta")
            text = g(delta, "content")
            if text:
                texts.setdefault(idx, []).append(text)
            for call in g(delta, "tool_calls") or []:
                slot = calls.setdefault(idx, {}).setdefault(g(call, "index") or 0, {"arguments": ""})
                fn = g(call, "function")
                slot["id"] = g(call, "id") or slot.get("id")
                slot["name"] = g(fn, "name") or slot.get("name")
                slot["arguments"] += g(fn, "arguments") or ""
            if (text or g(delta, "tool_calls")) and llm.ttft_ms is None:
                llm.ttft_ms = round((t - start_pc) / 1e6, 3)
            if g(choice, "finish_reason"):
                reasons[idx] = str(g(choice, "finish_reason"))
    _chat_outputs(texts, calls, reasons, llm)


def _chat_outputs(
    texts: dict[int, list[str]],
    calls: dict[int, dict[int, dict[str, Any]]],
    reasons: dict[int, str],
    llm: LLMCall,
) -> None:
    outputs = []
    for idx in sorted(set(texts) | set(calls)):
        item: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts[idx]) if idx in texts else None,
        }
        if idx in calls:
            item["tool_calls"] = [calls[idx][k] for k in sorted(calls[idx])]
        outputs.append(item)
    llm.output_messages = outputs or None
    llm.finish_reasons = [reasons[k] for k in sorted(reasons)] or None


class ResponsesExtractor:
    operation = "chat"

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def request(self, kwargs: dict[str, Any], llm: LLMCall) -> None:
        llm.request_model = str(kwargs.get("model") or "") or None
        messages: list[dict[str, Any]] = []
        instructions = kwargs.get("instructions")
        if isinstance(instructions, str):
            messages.append({"role": "system", "content": instructions})
        given = kwargs.get("input")
        if isinstance(given, str):
            messages.append({"role": "user", "content": given})
        else:
            messages.extend(normalise(given) or [])
        llm.input_messages = messages or None
        _params(kwargs, _RESPONSES_PARAMS, llm)
        reasoning = kwargs.get("reasoning")
        if isinstance(reasoning, dict) and reasoning.get("effort"):
            llm.parameters["reasoning_effort"] = reasoning["effort"]

    def response(self, result: Any, llm: LLMCall) -> None:
        body = unwrap(result)
        if body is None:
            return
        llm.model = g(body, "model")
        llm.response_id = g(body, "id")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for item in g(body, "output") or []:
            kind = g(item, "type")
            if kind == "message":
                text = content_text(g(item, "content"))
                if text:
                    texts.append(text)
            elif kind == "function_call":
                calls.append(
                    {"id": g(item, "call_id"), "name": g(item, "name"), "arguments": g(item, "arguments")}
                )
        out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            out["tool_calls"] = calls
        llm.output_messages = [out] if texts or calls else None
        status = g(body, "status")
        if status:
            details = g(body, "incomplete_details")
            reason = g(details, "reason") if details is not None else None
            llm.finish_reasons = [str(reason or status)]
        _usage(g(body, "usage"), llm, "input_tokens", "output_tokens")

    def stream(self, chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
        deltas: list[str] = []
        final = None
        for t, event in chunks:
            kind = g(event, "type")
            if kind == "response.output_text.delta":
                if llm.ttft_ms is None:
                    llm.ttft_ms = round((t - start_pc) / 1e6, 3)
                deltas.append(g(event, "delta") or "")
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                final = g(event, "response")
        if final is not None:
            ttft = llm.ttft_ms
            self.response(final, llm)
            llm.ttft_ms = ttft
        if llm.output_messages is None and deltas:
            llm.output_messages = [{"role": "assistant", "content": "".join(deltas)}]


class EmbeddingsExtractor:
    operation = "embeddings"

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def request(self, kwargs: dict[str, Any], llm: LLMCall) -> None:
        llm.request_model = str(kwargs.get("model") or "") or None
        given = kwargs.get("input")
        if isinstance(given, str):
            llm.input_text = given
        elif isinstance(given, list | tuple) and given and all(isinstance(x, str) for x in given):
            llm.input_text = "\n".join(given)
            llm.parameters["inputs"] = len(given)
        for name in ("dimensions", "encoding_format"):
            value = kwargs.get(name)
            if isinstance(value, int | str) and not isinstance(value, bool):
                llm.parameters[name] = value

    def response(self, result: Any, llm: LLMCall) -> None:
        body = unwrap(result)
        if body is None:
            return
        llm.model = g(body, "model")
        usage = g(body, "usage")
        llm.input_tokens = as_int(g(usage, "prompt_tokens"))
        llm.total_tokens = as_int(g(usage, "total_tokens"))
        data = g(body, "data") or []
        if data:
            llm.parameters["vectors"] = len(data)

    def stream(self, chunks: list[tuple[int, Any]], start_pc: int, llm: LLMCall) -> None:
        return None

"""OpenAI Chat Completions request → Anthropic Messages request (pure, no networking).

The gateway answers in OpenAI's format whatever the deployment is; this module builds the
body for an Anthropic deployment. The response side (bodies, streams, errors) is in
:mod:`kansoku.gateway._anthropic_stream`.

Choices made where the two APIs differ:

* ``system`` and ``developer`` messages, wherever they appear, are joined (blank line
  between) into the top-level ``system``: Anthropic has no mid-conversation system turn.
* Consecutive turns of one role are merged (``tool`` messages become ``tool_result`` blocks of
  a user turn), and ``tool_result`` blocks are put first in their turn, as Anthropic requires.
  Empty text is dropped (Anthropic rejects empty text blocks), and so is a turn left empty.
* ``max_tokens`` is required by Anthropic: ``max_completion_tokens``, else ``max_tokens``,
  else :data:`DEFAULT_MAX_TOKENS`.
* A parameter that would change the answer and has no Anthropic equivalent (``n`` > 1,
  ``logprobs``, penalties, ``response_format`` other than text, ``temperature`` above 1, …)
  raises :class:`TranslationError` rather than being dropped silently; so does any parameter
  this module does not know, as OpenAI itself rejects unknown parameters. ``null`` always
  means "not set". Parameters without effect on the answer (``seed``, ``store``, …) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from kansoku.errors import KansokuError

__all__ = ["DEFAULT_MAX_TOKENS", "TranslationError", "to_anthropic_request"]

DEFAULT_MAX_TOKENS = 4096

# Accepted and ignored: they steer OpenAI's storage, billing or determinism, not the answer.
_IGNORED = frozenset({"model", "seed", "store", "metadata", "service_tier", "stream_options"})
_HANDLED = frozenset(
    {"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools"}
    | {"tool_choice", "parallel_tool_calls", "stream", "user"}
)
# Accepted only at their no-op value; anything else would need a feature Anthropic lacks.
_NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v == 1 and v is not True,
    "logprobs": lambda v: v is False,
    "top_logprobs": lambda v: v == 0 and v is not False,
    "presence_penalty": lambda v: v == 0 and v is not False,
    "frequency_penalty": lambda v: v == 0 and v is not False,
    "logit_bias": lambda v: v == {},
    "response_format": lambda v: v == {"type": "text"},
    "modalities": lambda v: v == ["text"],
}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.DOTALL)


class TranslationError(KansokuError, ValueError):
    """The request cannot be expressed for the provider; the gateway answers 400.

    ``param`` names the offending parameter the way OpenAI's error ``param`` does
    (``"n"``, ``"messages[2].content[0]"``).
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def to_anthropic_request(openai_body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic Messages body for an OpenAI chat request, sent to deployment ``model``."""
    for key, value in openai_body.items():
        if value is None or key in _IGNORED or key in _HANDLED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is None:
            raise TranslationError(key, "unknown parameter, or not supported by Anthropic deployments")
        if not neutral(value):
            raise TranslationError(key, f"{value!r} is not supported by Anthropic deployments")

    system, messages = _messages(openai_body.get("messages"))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(openai_body), "messages": messages}
    if system is not None:
        out["system"] = system
    temperature = openai_body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 1:
            raise TranslationError("temperature", f"Anthropic accepts 0 to 1, got {temperature!r}")
        out["temperature"] = temperature
    top_p = openai_body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p):
            raise TranslationError("top_p", f"must be a number, got {top_p!r}")
        out["top_p"] = top_p
    stop = _stop(openai_body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    out.update(_tools(openai_body))
    if openai_body.get("stream") is True:
        out["stream"] = True
    user = openai_body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise TranslationError("user", "must be a string")
        out["metadata"] = {"user_id": user}
    return out


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]…``, or None where a level is missing or not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):  # the newer name wins when both are sent
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TranslationError(key, f"must be a positive whole number, got {value!r}")
            return value
    return DEFAULT_MAX_TOKENS


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise TranslationError("stop", "must be a string or a list of strings")


# -- messages ---------------------------------------------------------------------------------


def _messages(messages: Any) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(top-level system, Anthropic messages) of OpenAI ``messages``."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages", "must be a non-empty list of messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise TranslationError(where, "must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(msg.get("content"), where, images=False))
            continue
        if role == "user":
            blocks = _parts(msg.get("content"), where, images=True)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg, where)]
        else:
            raise TranslationError(f"{where}.role", f"unsupported role {role!r}")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise TranslationError("messages", "needs at least one user or assistant message")
    for turn in turns:
        if turn["role"] == "user":  # a stable sort: tool results first, the rest in order
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
        turn["content"] = _collapse(turn["content"])
    if not system:
        return None, turns
    if any("cache_control" in block for block in system):
        return system, turns  # blocks keep the caller's cache breakpoints
    return "\n\n".join(block["text"] for block in system), turns


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block becomes a string, the form most Anthropic requests use."""
    if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
        text: str = blocks[0]["text"]
        return text
    return blocks


def _parts(content: Any, where: str, *, images: bool) -> list[dict[str, Any]]:
    """Anthropic blocks of an OpenAI ``content`` (a string or a list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content", "must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal") and isinstance(part, dict):
            text = part.get(kind)
            if not isinstance(text, str):
                raise TranslationError(at, f"a {kind} part needs a string {kind!r}")
            if text:
                block: dict[str, Any] = {"type": "text", "text": text}
                if isinstance(part.get("cache_control"), dict):  # clients written for Anthropic send it
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url" and images and isinstance(part, dict):
            blocks.append(_image(part.get("image_url"), at))
        else:
            raise TranslationError(at, f"content part type {kind!r} is not supported here")
    return blocks


def _image(image_url: Any, at: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise TranslationError(at, "an image_url part needs image_url.url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    found = _DATA_URL.fullmatch(url)
    if found is None:
        raise TranslationError(at, "image URLs must be http(s) or base64 data: URLs")
    media_type, data = found.groups()
    if media_type not in _IMAGE_TYPES:
        raise TranslationError(at, f"image type {media_type} is not supported; use {sorted(_IMAGE_TYPES)}")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(msg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _parts(msg.get("content"), where, images=False)
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls", "must be a list")
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(_dig(call, "id"), str)
        ):
            raise TranslationError(at, "needs an id and a function with a name")
        arguments = fn.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments)
        except (orjson.JSONDecodeError, TypeError):
            tool_input = None
        if not isinstance(tool_input, dict):  # Anthropic's tool input must be an object
            raise TranslationError(f"{at}.function.arguments", "must be a JSON object in a string")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn["name"], "input": tool_input})
    return blocks


def _tool_result(msg: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str):
        raise TranslationError(f"{where}.tool_call_id", "a tool message needs the tool_call_id it answers")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif content is not None:
        blocks = _parts(content, where, images=True)
        if blocks:
            result["content"] = blocks
    return result


# -- tools ------------------------------------------------------------------------------------


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` for the Anthropic body (empty when there are no tools)."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not isinstance(tools, list):
        raise TranslationError("tools", "must be a list")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise TranslationError("tool_choice", "needs tools")
        return {}
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise TranslationError(f"tools[{i}]", "only function tools are supported")
        if not isinstance(fn.get("name"), str):
            raise TranslationError(f"tools[{i}].function.name", "is required")
        entry: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(entry)

    anthropic_choice: dict[str, Any] | None
    if choice is None:
        anthropic_choice = None
    elif choice in ("auto", "none"):
        anthropic_choice = {"type": choice}
    elif choice == "required":
        anthropic_choice = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(name := _dig(choice, "function", "name"), str):
        anthropic_choice = {"type": "tool", "name": name}
    else:
        raise TranslationError("tool_choice", f"unsupported value {choice!r}")
    if body.get("parallel_tool_calls") is False:
        anthropic_choice = anthropic_choice or {"type": "auto"}
        if anthropic_choice["type"] != "none":
            anthropic_choice["disable_parallel_tool_use"] = True
    result: dict[str, Any] = {"tools": out}
    if anthropic_choice is not None:
        result["tool_choice"] = anthropic_choice
    return result

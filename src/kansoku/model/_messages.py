"""Chat messages between kansoku's form and the conventions' forms.

Kansoku records messages in the OpenAI chat shape (``role``, ``content`` as text or a list of
parts, ``tool_calls``, ``tool_call_id``, ``name``); Anthropic-shaped content parts are also
understood on the way out. The GenAI conventions use ``{"role", "parts": [{"type": ...}]}``;
OpenInference flattens messages into indexed attributes. GenAI parts are the pivot: every
conversion goes through them, so the two conventions agree on what a message means.
"""

from __future__ import annotations

from typing import Any

import orjson

from kansoku.model._attrs import AttrValue, dumps, pop_indexed


def to_genai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kansoku messages as GenAI structured messages."""
    return [_to_genai_message(m) for m in messages if isinstance(m, dict)]


def _to_genai_message(msg: dict[str, Any]) -> dict[str, Any]:
    role = msg.get("role") if isinstance(msg.get("role"), str) else "user"
    content = msg.get("content")
    if "tool_call_id" in msg:
        parts: list[dict[str, Any]] = [
            {"type": "tool_call_response", "id": msg["tool_call_id"], "response": content}
        ]
    else:
        parts = _content_parts(content)
    calls = msg.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": fn.get("name"),
                    "arguments": fn.get("arguments"),
                }
            )
    out: dict[str, Any] = {"role": role, "parts": parts}
    if isinstance(msg.get("name"), str):
        out["name"] = msg["name"]
    return out


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, list):
        return [{"type": "text", "content": dumps(content)}]
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, str):
            parts.append({"type": "text", "content": item})
        elif not isinstance(item, dict) or not isinstance(item.get("type"), str):
            parts.append({"type": "text", "content": dumps(item)})
        else:
            parts.append(_part(item))
    return parts


def _part(item: dict[str, Any]) -> dict[str, Any]:
    kind = item["type"]
    if kind == "text":
        return {"type": "text", "content": item.get("text")}
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "uri", "modality": "image", "uri": url}
    if kind == "tool_use":  # Anthropic
        return {
            "type": "tool_call",
            "id": item.get("id"),
            "name": item.get("name"),
            "arguments": item.get("input"),
        }
    if kind == "tool_result":  # Anthropic
        return {"type": "tool_call_response", "id": item.get("tool_use_id"), "response": item.get("content")}
    if kind == "thinking":  # Anthropic
        return {"type": "reasoning", "content": item.get("thinking")}
    return dict(item)


def from_genai(messages: list[Any]) -> list[dict[str, Any]]:
    """GenAI structured messages (or already OpenAI-shaped ones) as kansoku messages."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if not isinstance(msg.get("parts"), list):
            # Older emitters wrote OpenAI-shaped messages; keep them as they are.
            out.append({k: v for k, v in msg.items() if k != "finish_reason"})
            continue
        out.extend(_from_genai_message(msg))
    return out


def _from_genai_message(msg: dict[str, Any]) -> list[dict[str, Any]]:
    role = msg.get("role") if isinstance(msg.get("role"), str) else "user"
    items: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    replies: list[dict[str, Any]] = []
    for part in msg["parts"]:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            items.append({"type": "text", "text": part.get("content")})
        elif kind == "tool_call":
            args = part.get("arguments")
            fn = {
                "name": part.get("name"),
                "arguments": args if isinstance(args, str) or args is None else dumps(args),
            }
            calls.append({"id": part.get("id"), "type": "function", "function": fn})
        elif kind == "tool_call_response":
            reply = part.get("response")
            text = reply if isinstance(reply, str) or reply is None else dumps(reply)
            replies.append({"role": "tool", "tool_call_id": part.get("id"), "content": text})
        elif kind == "uri" and part.get("modality") == "image":
            items.append({"type": "image_url", "image_url": {"url": part.get("uri")}})
        else:
            items.append(dict(part))
    if replies and not items and not calls:
        return replies
    content: Any = None
    if len(items) == 1 and items[0].get("type") == "text" and set(items[0]) == {"type", "text"}:
        content = items[0]["text"]
    elif items:
        content = items
    out: dict[str, Any] = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = calls
    if isinstance(msg.get("name"), str):
        out["name"] = msg["name"]
    return [out, *replies]


# --- OpenInference flattening ---------------------------------------------------------------------


def to_openinference(prefix: str, messages: list[dict[str, Any]]) -> dict[str, AttrValue]:
    """Flatten kansoku messages under ``{prefix}.{i}.message.*`` (OpenAI shape, via GenAI parts)."""
    attrs: dict[str, AttrValue] = {}
    for i, msg in enumerate(from_genai(to_genai(messages))):
        base = f"{prefix}.{i}.message."
        if isinstance(msg.get("role"), str):
            attrs[base + "role"] = msg["role"]
        for key in ("name", "tool_call_id"):
            if isinstance(msg.get(key), str):
                attrs[base + key] = msg[key]
        content = msg.get("content")
        if isinstance(content, str):
            attrs[base + "content"] = content
        elif isinstance(content, list):
            for j, item in enumerate(content):
                attrs.update(_oi_content(f"{base}contents.{j}.message_content.", item))
        for j, call in enumerate(msg.get("tool_calls") or []):
            fn = call.get("function") or {}
            cbase = f"{base}tool_calls.{j}.tool_call."
            for key, value in (
                ("id", call.get("id")),
                ("function.name", fn.get("name")),
                ("function.arguments", fn.get("arguments")),
            ):
                if isinstance(value, str):
                    attrs[cbase + key] = value
    return attrs


def _oi_content(base: str, item: Any) -> dict[str, AttrValue]:
    if not isinstance(item, dict):
        return {base + "type": "text", base + "text": dumps(item)}
    kind = item.get("type")
    if kind == "text" and isinstance(item.get("text"), str):
        return {base + "type": "text", base + "text": item["text"]}
    if kind == "image_url" and isinstance(item.get("image_url"), dict):
        url = item["image_url"].get("url")
        if isinstance(url, str):
            return {base + "type": "image", base + "image.image.url": url}
    # No OpenInference home for this part: its JSON rides in the text so nothing is lost.
    return {base + "type": str(kind), base + "text": dumps(item)}


def from_openinference(rest: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """Take ``{prefix}.{i}.message.*`` keys out of ``rest`` as kansoku messages."""
    indexed = pop_indexed(rest, prefix + ".")
    if not indexed:
        return None
    out: list[dict[str, Any]] = []
    for _, sub in sorted(indexed.items()):
        msg: dict[str, Any] = {
            "role": _s(sub.get("message.role")) or "user",
            "content": _s(sub.get("message.content")),
        }
        contents = pop_indexed(sub, "message.contents.")
        if contents and msg["content"] is None:
            msg["content"] = [_content_item(c) for _, c in sorted(contents.items())]
        calls = pop_indexed(sub, "message.tool_calls.")
        if calls:
            msg["tool_calls"] = [
                {
                    "id": _s(c.get("tool_call.id")),
                    "type": "function",
                    "function": {
                        "name": _s(c.get("tool_call.function.name")),
                        "arguments": _s(c.get("tool_call.function.arguments")),
                    },
                }
                for _, c in sorted(calls.items())
            ]
        for key in ("name", "tool_call_id"):
            if isinstance(sub.get("message." + key), str):
                msg[key] = sub["message." + key]
        out.append(msg)
    return out


def _content_item(sub: dict[str, Any]) -> dict[str, Any]:
    kind = _s(sub.get("message_content.type")) or "text"
    text = sub.get("message_content.text")
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _s(sub.get("message_content.image.image.url"))}}
    if kind == "text" or not isinstance(text, str):
        return {"type": "text", "text": _s(text)}
    try:
        original = orjson.loads(text)
    except orjson.JSONDecodeError:
        original = None
    if isinstance(original, dict) and original.get("type") == kind:
        return original  # a part kansoku wrote as JSON (see _oi_content)
    return {"type": kind, "text": text}


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None

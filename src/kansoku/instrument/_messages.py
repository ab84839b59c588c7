"""Normalise provider message shapes into kansoku's ``[{"role", "content", ...}]`` form."""

from __future__ import annotations

from typing import Any

from kansoku.instrument._capture import g


def content_text(content: Any) -> str | None:
    """Text of a message content: a string, or the text parts of a list of content blocks."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = g(part, "type")
            text = g(part, "text")
            if text is None and kind in ("tool_result", "input_text", "output_text"):
                inner = g(part, "content")
                text = content_text(inner) if inner is not None else None
            if isinstance(text, str):
                texts.append(text)
        return "\n".join(texts) if texts else None
    return str(content)


def normalise(messages: Any) -> list[dict[str, Any]] | None:
    """Request messages (dicts or SDK objects) as plain dicts; unknown shapes are skipped."""
    if not isinstance(messages, list | tuple):
        return None
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = g(msg, "role")
        if role is None:
            continue
        item: dict[str, Any] = {"role": str(role), "content": content_text(g(msg, "content"))}
        calls = g(msg, "tool_calls")
        if calls:
            item["tool_calls"] = [tool_call(c) for c in calls]
        call_id = g(msg, "tool_call_id")
        if call_id:
            item["tool_call_id"] = call_id
        out.append(item)
    return out


def tool_call(call: Any) -> dict[str, Any]:
    fn = g(call, "function")
    return {"id": g(call, "id"), "name": g(fn, "name"), "arguments": g(fn, "arguments")}

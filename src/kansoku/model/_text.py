"""One searchable text for a conversation, derived from its messages.

The record's ``input_text`` / ``output_text`` are rendered from ``input_messages`` /
``output_messages`` when a record is serialised, not stored beside them: the prompt is then
held, redacted and scanned once, and the text can never disagree with the messages.
"""

from __future__ import annotations

from typing import Any


def _call_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls") or []
    return " ".join(f"{c.get('name')}({c.get('arguments')})" for c in calls if isinstance(c, dict))


def render_input(messages: list[dict[str, Any]] | None) -> str | None:
    """``role: content`` lines; just the text when there is a single message."""
    if not messages:
        return None
    if len(messages) == 1 and messages[0].get("content") is not None:
        return str(messages[0]["content"])
    lines = []
    for m in messages:
        text = m.get("content")
        if text is None:
            text = _call_text(m)
        lines.append(f"{m.get('role', '?')}: {text}")
    return "\n".join(lines)


def render_output(messages: list[dict[str, Any]] | None) -> str | None:
    """The reply text; several choices are separated by ``---``; tool calls when there is no text."""
    if not messages:
        return None
    texts = [str(m["content"]) for m in messages if m.get("content")]
    if texts:
        return texts[0] if len(texts) == 1 else "\n---\n".join(texts)
    return "\n".join(t for t in (_call_text(m) for m in messages) if t) or None

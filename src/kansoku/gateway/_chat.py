"""Chat completions through the router: validated answers with re-asks, and streams.

Validation (the model's ``validate.json_schema``, else the request's own
``response_format`` schema) happens inside one routed attempt: an invalid answer is re-asked
on the same deployment with the validation error, up to ``reask`` times; still invalid, the
attempt fails as ``invalid_output`` (retryable), so the router moves on to the next
deployment, the fallback models and finally the template answer.

Streams are routed up to their first chunk (``stream()`` returns once it came), so a
deployment that fails before answering is retried or failed over like any other; once bytes
have reached the client, a broken stream ends with an SSE error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson

from kansoku.gateway._anthropic import TranslationError
from kansoku.gateway._config import Deployment
from kansoku.gateway._proxy import Exchange, translation_error
from kansoku.gateway._record import AttemptFacts
from kansoku.gateway._router import Routed
from kansoku.gateway._upstream import UpstreamError, UpstreamResult, complete
from kansoku.gateway._upstream_stream import UpstreamStream, stream
from kansoku.gateway._validate import Validator, reask_messages, validate_answer
from kansoku.model._errors import ErrorType

__all__ = ["answer_text", "run_chat", "run_stream", "template_chunks"]

T = TypeVar("T")


def answer_text(body: dict[str, Any]) -> str:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


async def _tracked(ex: Exchange, a: AttemptFacts, call: Awaitable[T]) -> T:
    """Await one upstream call, writing its failure into the attempt's record; a request the
    provider cannot take (``TranslationError``) becomes the client's 400, never retried."""
    try:
        return await call
    except UpstreamError as err:
        ex.failed(a, err)
        raise
    except TranslationError as exc:
        refused = translation_error(exc)
        ex.failed(a, refused)
        raise refused from None


def _invalid(dep: Deployment, problems: tuple[str, ...], reasks: int) -> UpstreamError:
    message = (
        f"{dep.provider} deployment {dep.model!r}: the answer failed validation after {reasks} re-ask(s): "
        + "; ".join(problems[:3])
    )
    return UpstreamError(
        message,
        status=None,
        error_type=ErrorType.INVALID_OUTPUT,
        retryable=True,
        body={"error": {"message": message, "type": "server_error", "param": None, "code": "invalid_output"}},
    )


async def _validated(  # noqa: PLR0917 - private, one caller
    ex: Exchange, dep: Deployment, result: UpstreamResult, validator: Validator, reasks: int, until: float
) -> UpstreamResult:
    loop = asyncio.get_running_loop()
    messages = ex.facts.request.get("messages")
    messages = list(messages) if isinstance(messages, list) else []
    attempt = ex.facts.attempts[-1]
    text = answer_text(result.body)
    outcome = validate_answer(text, validator)
    n = 0
    while not outcome.ok:
        attempt.validation = f"invalid: {outcome.problems[0] if outcome.problems else 'unknown'}"
        if n >= reasks or loop.time() >= until:
            raise _invalid(dep, outcome.problems, n)
        n += 1
        messages = reask_messages(messages, text, list(outcome.problems), validator.schema)
        attempt, headers = ex.attempt(dep, reask=n)
        body = {**ex.payload("stream"), "messages": messages}
        try:
            result = await complete(
                ex.gw.session, dep, body, timeout_s=max(0.001, until - loop.time()), headers=headers
            )
        except UpstreamError as err:
            ex.failed(attempt, err)
            raise
        ex.succeeded(attempt, result)
        text = answer_text(result.body)
        outcome = validate_answer(text, validator)
    attempt.validation = "valid"
    ex.facts.validation = "valid" if n == 0 else f"valid after {n} re-ask(s)"
    return result


async def run_chat(ex: Exchange, validator: Validator | None, reasks: int) -> Routed[UpstreamResult]:
    gw = ex.gw
    payload = ex.payload("stream")
    loop = asyncio.get_running_loop()

    async def call(dep: Deployment, timeout_s: float) -> UpstreamResult:
        until = loop.time() + timeout_s
        a, headers = ex.attempt(dep)
        result = await _tracked(
            ex, a, complete(gw.session, dep, payload, timeout_s=timeout_s, headers=headers)
        )
        ex.succeeded(a, result)
        if validator is not None:
            try:
                return await _validated(ex, dep, result, validator, reasks, until)
            except UpstreamError as err:
                if ex.facts.validation is None:
                    ex.facts.validation = "invalid"
                ex.failed(ex.facts.attempts[-1], err)
                raise
        return result

    routed = await ex.live.router.run(ex.facts.model, call, active=gw.inflight)
    ex.settle_routed(routed)
    if routed.result is not None:
        body = routed.result.body
        choices = body.get("choices")
        if isinstance(choices, list):
            ex.facts.output_messages = [
                c["message"] for c in choices if isinstance(c, dict) and "message" in c
            ]
            ex.facts.finish_reasons = [str(c.get("finish_reason")) for c in choices if isinstance(c, dict)]
        rid = body.get("id")
        ex.facts.response_id = rid if isinstance(rid, str) else None
    elif routed.template_body is not None:
        ex.facts.output_messages = [routed.template_body["choices"][0]["message"]]
        ex.facts.finish_reasons = ["stop"]
    return routed


async def run_stream(ex: Exchange) -> tuple[Routed[UpstreamStream], bool]:
    """Route a streamed request up to its first chunk. The bool: strip the usage-only chunk
    (the gateway asked for usage the client did not want)."""
    gw = ex.gw
    body = ex.payload()
    options = body.get("stream_options")
    wanted = isinstance(options, dict) and options.get("include_usage") is True
    # Ask for usage even when the client did not, so that tokens and cost are recorded.
    payload = {
        **body,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }

    async def call(dep: Deployment, timeout_s: float) -> UpstreamStream:
        a, headers = ex.attempt(dep)
        # Between chunks, the deployment's own timeout bounds a silence (the default is 60 s).
        opened = stream(
            gw.session, dep, payload, timeout_s=timeout_s, headers=headers, idle_timeout_s=dep.timeout_s
        )
        it = await _tracked(ex, a, opened)
        a.status_code = it.status
        a.ttft_ms = None if it.ttft_s is None else it.ttft_s * 1000
        return it

    routed = await ex.live.router.run(ex.facts.model, call, active=gw.inflight, defer_success=True)
    ex.settle_routed(routed)
    if routed.result is not None and ex.facts.answered_by is not None:
        ex.facts.ttft_ms = (gw.clock.now_ns() - ex.facts.start_ns) / 1e6
    return routed, not wanted


def sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def template_chunks(body: dict[str, Any]) -> list[bytes]:
    """A template answer as a stream: the role and text, then the finish, then ``[DONE]``."""
    base = {k: body[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    text = body["choices"][0]["message"]["content"]
    first = {
        **base,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
    }
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [sse(first), sse(last), b"data: [DONE]\n\n"]

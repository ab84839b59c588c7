"""What the gateway records: one LLM-call record per client request, one span per attempt.

The request's span (kind ``server``) is the LLM-call record: the model asked for, what
answered, tokens and cost summed over every upstream call it took (re-asks included), the
outcome (``ok``, ``template``, ``dead_letter``, ``client_error``, ``rejected``) and the
fallback path. Each upstream attempt is a child span (kind ``client``) naming its deployment,
region, attempt number, breaker state and error — not an LLM-call record itself, so that
tokens and cost are counted once.

The handler only fills a :class:`RequestFacts` and hands it over; spans are built, priced
and redacted on the recorder's pipeline thread (the SDK's pipeline: bounded queue, spool,
drop counters), so recording costs the request path a deque append.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kansoku.export import ExportResult, encode_native
from kansoku.model import LLMCall, Span
from kansoku.pricing import PriceCatalog

__all__ = ["AttemptFacts", "CollectorExporter", "RenderedSpan", "RequestFacts", "build_spans"]

log = logging.getLogger("kansoku.gateway")
SERVICE = "kansoku-gateway"
_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "n")


@dataclass(slots=True)
class AttemptFacts:
    span_id: str
    number: int  # 1-based, over the whole request (fallback models included)
    route: str  # the model name this attempt served
    deployment: str  # kansoku's deployment name: provider/model@region#index
    provider: str
    model: str
    region: str
    start_ns: int
    end_ns: int = 0
    status_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    usage: dict[str, Any] | None = None
    response_model: str | None = None
    ttft_ms: float | None = None
    validation: str | None = None  # "valid", "invalid: <reason>"
    reask: int = 0  # 0 for the first call, n for the n-th re-ask


@dataclass(slots=True)
class RequestFacts:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    operation: str  # "chat" or "embeddings"
    model: str
    request: dict[str, Any]
    stream: bool = False
    end_ns: int = 0
    key_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    session: str | None = None
    attempts: list[AttemptFacts] = field(default_factory=list)
    outcome: str = "ok"
    status_code: int = 200
    error_type: str | None = None
    error_message: str | None = None
    answered_by: AttemptFacts | None = None
    answered_model: str | None = None  # the route that answered (a fallback model, maybe)
    fallback_used: bool = False
    template: bool = False
    dead_letter_id: str | None = None
    breaker_states: dict[str, dict[str, str]] = field(default_factory=dict)
    output_messages: list[dict[str, Any]] | None = None
    finish_reasons: list[str] | None = None
    response_id: str | None = None
    ttft_ms: float | None = None
    validation: str | None = None


def _tokens(usage: dict[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if usage else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sum(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _attempt_span(req: RequestFacts, a: AttemptFacts, cls: type[Span]) -> Span:
    attrs: dict[str, Any] = {
        "kansoku.gateway.attempt": a.number,
        "kansoku.gateway.route": a.route,
        "kansoku.gateway.deployment": a.deployment,
        "gen_ai.provider.name": a.provider,
        "gen_ai.request.model": a.model,
    }
    if a.reask:
        attrs["kansoku.gateway.reask"] = a.reask
    if a.validation is not None:
        attrs["kansoku.gateway.validation"] = a.validation
    state = req.breaker_states.get(a.route, {}).get(a.deployment)
    if state is not None:
        attrs["kansoku.gateway.breaker_state"] = state
    for name in ("prompt_tokens", "completion_tokens"):
        if (n := _tokens(a.usage, name)) is not None:
            attrs[f"gen_ai.usage.{'input' if name == 'prompt_tokens' else 'output'}_tokens"] = n
    return cls(
        trace_id=req.trace_id,
        span_id=a.span_id,
        parent_span_id=req.span_id,
        name=f"attempt {a.number} {a.deployment}",
        start_ns=a.start_ns,
        end_ns=a.end_ns or a.start_ns,
        kind="client",
        status="error" if a.error_type else "ok",
        status_code=a.status_code,
        error_type=a.error_type,
        error_message=a.error_message,
        service=SERVICE,
        region=a.region,
        user_id=req.user,
        context_id=req.session,
        tags=dict(req.tags),
        attributes=attrs,
    )


def request_cost(catalog: PriceCatalog, req: RequestFacts) -> float | None:
    """USD over every upstream call the request made (re-asks and calls before a template
    answer included: the provider bills them); 0 when none used tokens, None if unpriced."""
    total, known = 0.0, not any(a.usage for a in req.attempts)
    for a in req.attempts:
        if a.usage is None:
            continue
        call = LLMCall(
            provider=a.provider,
            operation=req.operation,
            model=a.response_model or a.model,
            request_model=a.model,
            input_tokens=_tokens(a.usage, "prompt_tokens"),
            output_tokens=_tokens(a.usage, "completion_tokens"),
        )
        cost = catalog.cost(call, a.start_ns)
        if cost is not None:
            total, known = total + cost, True
    return total if known else None


def _request_span(req: RequestFacts, catalog: PriceCatalog, cls: type[Span]) -> Span:
    answered = req.answered_by
    body = req.request
    messages = body.get("messages") if req.operation == "chat" else None
    llm = LLMCall(
        provider=answered.provider if answered else "kansoku",
        operation=req.operation,
        model=(answered.response_model or answered.model) if answered else None,
        request_model=req.model,
        temperature=t if isinstance(t := body.get("temperature"), int | float) else None,
        parameters={k: body[k] for k in _PARAMS if k in body},
        input_messages=messages if isinstance(messages, list) else None,
        output_messages=req.output_messages,
        input_tokens=_sum([_tokens(a.usage, "prompt_tokens") for a in req.attempts]),
        output_tokens=_sum([_tokens(a.usage, "completion_tokens") for a in req.attempts]),
        ttft_ms=req.ttft_ms,
        finish_reasons=req.finish_reasons,
        response_id=req.response_id,
        stream=req.stream,
    )
    if req.template and llm.input_tokens is None and llm.output_tokens is None:
        llm.input_tokens = llm.output_tokens = 0  # no call used tokens: zero, not unknown
    if req.operation == "embeddings" and isinstance(body.get("input"), str):
        llm.input_text = body["input"]
    llm.fill_total()
    llm.cost_usd = request_cost(catalog, req)
    attrs: dict[str, Any] = {
        "kansoku.gateway.outcome": req.outcome,
        "kansoku.gateway.attempts": sum(1 for a in req.attempts if a.reask == 0),
        "kansoku.gateway.fallback_used": req.fallback_used,
        "kansoku.gateway.template": req.template,
    }
    if answered is not None:
        attrs["kansoku.gateway.deployment"] = answered.deployment
        attrs["kansoku.gateway.region"] = answered.region
        state = req.breaker_states.get(answered.route, {}).get(answered.deployment)
        if state is not None:
            attrs["kansoku.gateway.breaker_state"] = state
    if req.answered_model is not None:
        attrs["kansoku.gateway.answered_model"] = req.answered_model
    if req.validation is not None:
        attrs["kansoku.gateway.validation"] = req.validation
    if req.dead_letter_id is not None:
        attrs["kansoku.gateway.dead_letter_id"] = req.dead_letter_id
    if req.key_name is not None:
        attrs["kansoku.gateway.key"] = req.key_name
    failed = req.outcome not in ("ok", "template")
    return cls(
        trace_id=req.trace_id,
        span_id=req.span_id,
        parent_span_id=req.parent_span_id,
        name=f"{req.operation} {req.model}",
        start_ns=req.start_ns,
        end_ns=req.end_ns or req.start_ns,
        kind="server",
        status="error" if failed else "ok",
        status_code=req.status_code,
        error_type=req.error_type if failed else None,
        error_message=req.error_message if failed else None,
        service=SERVICE,
        region=answered.region if answered else None,
        user_id=req.user,
        context_id=req.session,
        tags=dict(req.tags),
        attributes=attrs,
        llm=llm,
    )


def build_spans(req: RequestFacts, catalog: PriceCatalog, cls: type[Span] = Span) -> list[Span]:
    """The request's span (the LLM-call record) followed by one span per attempt."""
    return [_request_span(req, catalog, cls), *(_attempt_span(req, a, cls) for a in req.attempts)]


class RenderedSpan(Span):
    """A span whose record (:meth:`to_record`) is rendered once, ahead of export: on the
    gateway's event loop, between requests, rather than on an export thread competing with the
    loop for the GIL. Redaction returns copies of the same class, rendered afterwards."""

    __slots__ = ("_record",)

    def render(self) -> None:
        self._record = Span.to_record(self)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] | None = getattr(self, "_record", None)
        return record if record is not None else Span.to_record(self)


class CollectorExporter:
    """Writes batches straight into an in-process collector (``kansoku up``): same WAL, no HTTP."""

    spool = False
    name = "collector"

    def __init__(self, ingest: Any, project: str = "default") -> None:
        self._ingest = ingest  # Collector._ingest_native: decode, WAL append (fsync), metrics
        self._project = project

    def export(self, batch: Sequence[Span]) -> ExportResult:
        try:
            self._ingest(encode_native(batch), self._project)
        except Exception:  # a full or failing WAL: the channel keeps the batch and retries
            log.warning("kansoku gateway: the collector refused a batch; retrying", exc_info=True)
            return ExportResult.RETRY
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None

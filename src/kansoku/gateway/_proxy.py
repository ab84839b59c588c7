"""One client request through the gateway, independent of the web framework's routing.

:class:`Gateway` holds what every request shares (the live configuration, the state, the
upstream session, the recorder); :class:`Exchange` is one request's bookkeeping — its trace,
its attempts (each with its own span id, forwarded upstream in ``traceparent``), and the
record that is handed to the recorder whatever the outcome. Chat is in ``_chat``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from kansoku.clock import Clock
from kansoku.gateway._admission import LimitId
from kansoku.gateway._anthropic import TranslationError
from kansoku.gateway._config import Deployment, GatewayConfig
from kansoku.gateway._embed import embed
from kansoku.gateway._errors import ModelNotFound, PermissionDenied
from kansoku.gateway._record import AttemptFacts, RequestFacts
from kansoku.gateway._recorder_loop import Recorder
from kansoku.gateway._router import Routed, Router, deployment_name
from kansoku.gateway._state import GatewayState
from kansoku.gateway._upstream import FORWARDED, UpstreamError, UpstreamResult
from kansoku.gateway._validate import Validator, compile_schema
from kansoku.model import new_span_id, new_trace_id, parse_traceparent
from kansoku.model._errors import ErrorType

__all__ = ["Exchange", "Gateway", "Live"]

# Fields some clients send for the proxy itself (LiteLLM style): never forwarded to a provider.
_CLIENT_ONLY = frozenset({"api_key", "api_base", "base_url", "api_version"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Live:
    """Everything a configuration determines; replaced as a whole on reload, so a request in
    flight finishes with the configuration it started with."""

    config: GatewayConfig
    router: Router
    names: dict[int, tuple[str, str]]  # id(deployment) -> (model name, deployment name)
    validators: dict[str, Validator]  # model name -> its configured schema
    access: Any  # keys + limits + budgets (kansoku.gateway._access.Access)

    @classmethod
    def build(
        cls, config: GatewayConfig, state: GatewayState, clock: Clock, rng: random.Random, access: Any
    ) -> Live:
        router = Router(config, clock=clock, sleep=_sleeper(clock), rng=rng, breakers=state.breakers)
        names = {
            id(d): (m.name, deployment_name(d, i)) for m in config.models for i, d in enumerate(m.deployments)
        }
        validators = {
            m.name: compile_schema(m.validate.json_schema)
            for m in config.models
            if m.validate is not None and m.validate.json_schema is not None
        }
        return cls(config, router, names, validators, access)


def _sleeper(clock: Clock) -> Callable[[float], Awaitable[None]]:
    import asyncio

    from kansoku.clock import SYSTEM_CLOCK

    if clock is SYSTEM_CLOCK:
        return asyncio.sleep

    async def sleep(seconds: float) -> None:  # a fake clock: advance it, yield once
        clock.sleep(seconds)
        await asyncio.sleep(0)

    return sleep


class Gateway:
    """Shared by every request. ``live`` is swapped by a configuration reload."""

    def __init__(
        self,
        live: Live,
        state: GatewayState,
        session: aiohttp.ClientSession,
        clock: Clock,
        recorder: Recorder | None,
    ) -> None:
        self.live = live
        self.state = state
        self.session = session
        self.clock = clock
        self.recorder = recorder
        self.inflight = 0
        self.counts: dict[str, int] = {}  # outcome -> requests, for /metrics and tests
        # configured limit -> requests it refused since start, for the status page; kept across
        # reloads, so an unchanged limit keeps its count
        self.refusals: dict[LimitId, int] = {}
        # deployment -> [calls, errors, latency ms summed], for the status page
        self.deployments: dict[str, list[float]] = {}

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def refused(self, limits: Iterable[LimitId]) -> None:
        for lim in limits:
            self.refusals[lim] = self.refusals.get(lim, 0) + 1


class Exchange:
    """One client request: its trace, attempts and record."""

    def __init__(
        self,
        gw: Gateway,
        live: Live,
        *,
        operation: str,
        model: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        self.gw = gw
        self.live = live
        parent = parse_traceparent(headers.get("traceparent"))
        self.forward = {
            k: v for k, v in headers.items() if k.lower() in FORWARDED and k.lower() != "traceparent"
        }
        self.sampled = parent.sampled if parent is not None else True
        user = body.get("user")
        self.facts = RequestFacts(
            trace_id=parent.trace_id if parent else new_trace_id(),
            span_id=new_span_id(),
            parent_span_id=parent.span_id if parent else None,
            start_ns=gw.clock.now_ns(),
            operation=operation,
            model=model,
            request=body,
            stream=body.get("stream") is True,
            user=user if isinstance(user, str) else None,
            session=_session_id(headers, body),
        )

    def payload(self, *drop: str) -> dict[str, Any]:
        """The body to send upstream: without the client's own credentials and targets."""
        return {k: v for k, v in self.facts.request.items() if k not in _CLIENT_ONLY and k not in drop}

    def attempt(self, dep: Deployment, reask: int = 0) -> tuple[AttemptFacts, dict[str, str]]:
        """Start an attempt: its facts (appended to the record) and the headers to send."""
        route, name = self.live.names.get(id(dep), ("", f"{dep.provider}/{dep.model}@{dep.region}"))
        a = AttemptFacts(
            span_id=new_span_id(),
            number=sum(1 for x in self.facts.attempts if x.reask == 0) + (0 if reask else 1),
            route=route,
            deployment=name,
            provider=dep.provider,
            model=dep.model,
            region=dep.region,
            start_ns=self.gw.clock.now_ns(),
            reask=reask,
        )
        self.facts.attempts.append(a)
        flags = "01" if self.sampled else "00"
        headers = {**self.forward, "traceparent": f"00-{self.facts.trace_id}-{a.span_id}-{flags}"}
        return a, headers

    def failed(self, a: AttemptFacts, err: UpstreamError) -> None:
        a.end_ns = self.gw.clock.now_ns()
        self._tally(a, error=True)
        a.status_code, a.error_type, a.error_message = err.status, err.error_type.value, err.message

    def succeeded(self, a: AttemptFacts, result: UpstreamResult) -> None:
        a.end_ns = self.gw.clock.now_ns()
        self._tally(a, error=False)
        a.status_code, a.usage = result.status, result.usage
        model = result.body.get("model")
        a.response_model = model if isinstance(model, str) else None

    def _tally(self, a: AttemptFacts, *, error: bool) -> None:
        row = self.gw.deployments.get(a.deployment)
        if row is None:
            row = self.gw.deployments[a.deployment] = [0, 0, 0.0]
        row[0] += 1
        row[1] += error
        row[2] += (a.end_ns - a.start_ns) / 1e6

    def response_headers(self, routed: Routed[Any]) -> dict[str, str]:
        h = {
            "x-kansoku-trace-id": self.facts.trace_id,
            "x-kansoku-attempts": str(routed.tries),
        }
        if routed.template:
            h["x-kansoku-deployment"] = "template"
            h["x-kansoku-fallback"] = "template"
        elif routed.deployment_name is not None:
            h["x-kansoku-deployment"] = routed.deployment_name
            if routed.fallback_used and routed.model is not None:
                h["x-kansoku-fallback"] = f"model:{routed.model}"
        return h

    def settle_routed(self, routed: Routed[Any]) -> None:
        """Copy the router's outcome into the record."""
        f = self.facts
        f.fallback_used, f.template, f.answered_model = routed.fallback_used, routed.template, routed.model
        f.breaker_states = routed.breaker_states
        if routed.deployment_name is not None:
            f.answered_by = next(
                (
                    a
                    for a in reversed(f.attempts)
                    if a.deployment == routed.deployment_name and not a.error_type
                ),
                None,
            )
        if routed.template:
            f.outcome = "template"
        elif routed.result is None and routed.error is not None:
            f.outcome = "dead_letter" if routed.exhausted else "client_error"
            f.status_code = routed.error.client_status
            f.error_type, f.error_message = routed.error.error_type.value, routed.error.message

    async def dead_letter(self, routed: Routed[Any], key_name: str | None) -> str:
        attempts = [a for a in routed.attempts if a.error_type != "ok"]
        letter = await self.gw.state.dead_letters.add(
            self.facts.model, self.facts.request, attempts, key_name
        )
        self.facts.dead_letter_id = letter
        return letter

    def finish(self, status: int | None = None) -> None:
        """Close the record and hand it to the recorder; once per request (later calls no-op)."""
        f = self.facts
        if f.end_ns:
            return
        f.end_ns = self.gw.clock.now_ns()
        if status is not None:
            f.status_code = status
        self.gw.count(f.outcome)
        if self.gw.recorder is not None:
            self.gw.recorder.submit(f)


def _session_id(headers: Mapping[str, str], body: dict[str, Any]) -> str | None:
    value = headers.get("x-kansoku-session-id")
    if value:
        return value[:256]
    meta = body.get("metadata")
    sid = meta.get("session_id") if isinstance(meta, dict) else None
    return sid[:256] if isinstance(sid, str) else None


def translation_error(exc: TranslationError) -> UpstreamError:
    """A request one provider cannot take: the client's 400, never retried elsewhere."""
    return UpstreamError(
        exc.message,
        status=400,
        error_type=ErrorType.BAD_REQUEST,
        retryable=False,
        body={
            "error": {"message": str(exc), "type": "invalid_request_error", "param": exc.param, "code": None}
        },
    )


def check_model(live: Live, model: str, allowed: frozenset[str] | None) -> None:
    if live.config.model(model) is None:
        names = [m.name for m in live.config.models if allowed is None or m.name in allowed]
        raise ModelNotFound(
            f"The model {model!r} does not exist on this gateway; available: {', '.join(names) or 'none'}",
            param="model",
        )
    if allowed is not None and model not in allowed:
        raise PermissionDenied(f"This key may not use the model {model!r}", param="model")


async def run_embeddings(ex: Exchange) -> tuple[Routed[UpstreamResult], dict[str, Any] | None]:
    """Route an embeddings request; the answer body, or None when the routed outcome failed."""
    gw = ex.gw

    async def call(dep: Deployment, timeout_s: float) -> UpstreamResult:
        a, headers = ex.attempt(dep)
        try:
            result = await embed(gw.session, dep, ex.payload(), timeout_s=timeout_s, headers=headers)
        except UpstreamError as err:
            ex.failed(a, err)
            raise
        ex.succeeded(a, result)
        return result

    routed = await ex.live.router.run(ex.facts.model, call, active=gw.inflight)
    if routed.template:  # a chat template is no embedding: the request failed
        routed.template, routed.template_body, routed.exhausted = False, None, True
        if routed.error is None:
            routed.error = _no_answer(ex.facts.model)
    ex.settle_routed(routed)
    return routed, routed.result.body if routed.result is not None else None


def _no_answer(model: str) -> UpstreamError:
    message = f"{model}: no deployment answered"
    return UpstreamError(
        message,
        status=503,
        error_type=ErrorType.SERVER_ERROR,
        retryable=True,
        body={"error": {"message": message, "type": "server_error", "param": None, "code": "no_answer"}},
    )

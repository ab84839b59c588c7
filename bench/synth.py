"""Realistic synthetic LLM-call traffic for the store benchmarks, deterministic from a seed.

Import it from another benchmark (scripts run as ``python bench/x.py``, so ``bench/`` is on
``sys.path``)::

    from synth import Synth
    gen = Synth(seed=1, start_ns=t0, end_ns=t1, calls=1_000_000)
    for spans in gen.spans(batch_calls=10_000): ...          # kansoku.model.Span objects
    for batch in gen.ndjson(batch_calls=20_000): store.load(batch.rows, batch.lo_ns, batch.hi_ns)

``ndjson`` is the fast path for bulk loading: it builds the store's rows as dicts and encodes
them with orjson, skipping the ``Span`` objects; the bytes equal
``kansoku.store.rows_ndjson(spans, project)`` for the same spans (``check_equivalence``).

What the traffic looks like (the shape the queries are tuned against):

* Traces of 1-6 spans: 45 % are a lone LLM call; the others have a server root span, 0-2
  retrieval/tool spans and 1-3 LLM calls run one after the other.
* Sessions (``context_id``) of several turns (geometric, mean 4) by one user; users are drawn
  from a Zipf-like law (s = 1.05) over a few thousand users, each in one department.
* 10 chat models across OpenAI, Anthropic, Google and Mistral with market-like shares; token
  counts log-normal; latency = model overhead + output tokens x per-token time, with
  log-normal noise (so it correlates with output tokens); TTFT on the 40 % streamed calls.
* ~3 % errors spread over the :class:`kansoku.model.ErrorType` taxonomy, each with its HTTP
  status, message, latency profile and an ``exception`` event.
* Tags ``department`` / ``feature``, ``prompt_id`` / ``prompt_version``, costs from the
  packaged price catalog, prompts and replies of a few hundred bytes to a few KB (mean record
  ~2 KB as NDJSON), start times over the window with a day/night cycle.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from kansoku.model import LLMCall, Span, SpanEvent
from kansoku.pricing import PriceCatalog

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# (provider, model, share, overhead ms, ms per output token, reasoning model)
MODELS: tuple[tuple[str, str, float, float, float, bool], ...] = (
    ("openai", "gpt-4o-mini", 0.22, 280.0, 9.0, False),
    ("openai", "gpt-4o", 0.10, 380.0, 14.0, False),
    ("openai", "gpt-4.1-mini", 0.10, 300.0, 8.0, False),
    ("openai", "gpt-5-mini", 0.08, 600.0, 11.0, True),
    ("openai", "o4-mini", 0.04, 900.0, 10.0, True),
    ("anthropic", "claude-sonnet-4-5", 0.13, 520.0, 16.0, False),
    ("anthropic", "claude-haiku-4-5", 0.11, 330.0, 7.0, False),
    ("google", "gemini-2.5-flash", 0.12, 350.0, 5.0, False),
    ("google", "gemini-2.5-pro", 0.05, 800.0, 12.0, True),
    ("mistral", "mistral-small", 0.05, 250.0, 6.0, False),
)

# (error type, share of errors, HTTP status, message, latency profile: "fast" | "normal" | "slow")
ERRORS: tuple[tuple[str, float, int | None, str, str], ...] = (
    ("rate_limit", 0.34, 429, "Rate limit reached for requests per minute. Please try again in 20s.", "fast"),
    ("timeout", 0.18, None, "Request timed out after 60.0 seconds.", "slow"),
    ("server_error", 0.17, 500, "The server had an error while processing your request.", "normal"),
    ("connection", 0.07, None, "Connection reset by peer.", "fast"),
    ("context_length_exceeded", 0.06, 400, "This model's maximum context length is 128000 tokens.", "fast"),
    ("content_policy", 0.04, 400, "The response was filtered: the prompt triggered our policy.", "fast"),
    ("bad_request", 0.04, 400, "Invalid value for 'temperature': must be between 0 and 2.", "fast"),
    ("invalid_output", 0.04, 200, "Reply did not match the JSON schema: missing 'answer'.", "normal"),
    ("auth", 0.02, 401, "Incorrect API key provided.", "fast"),
    ("cancelled", 0.02, None, "The client closed the connection.", "normal"),
    ("circuit_open", 0.01, None, "Circuit open for provider after 5 consecutive failures.", "fast"),
    ("unknown", 0.01, None, "Unexpected end of stream.", "normal"),
)  # fmt: skip

DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "support": ("ticket-triage", "reply-draft", "refund-assistant", "kb-search"),
    "sales": ("lead-scoring", "email-writer", "call-summary"),
    "engineering": ("code-review", "incident-summary", "sql-helper", "test-writer"),
    "marketing": ("copywriter", "seo-brief"),
    "legal": ("contract-review", "clause-search"),
    "finance": ("invoice-extract", "expense-audit"),
}
DEPARTMENT_SHARES = (0.38, 0.18, 0.22, 0.1, 0.05, 0.07)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1")
TOOLS = ("search_orders", "lookup_customer", "get_weather", "run_sql", "fetch_url", "create_ticket")

_WORDS_TEXT = (
    "order refund delivery invoice account password shipping warranty contract clause payment "
    "customer ticket priority escalation summary report incident outage latency database query index "
    "deploy rollback release feature request bug regression test coverage review branch merge policy "
    "renewal discount pricing quote lead pipeline forecast meeting agenda follow-up email draft tone "
    "translation japanese english french german tokyo osaka berlin paris london weekend monday friday "
    "budget expense receipt audit compliance privacy security token model prompt answer question "
    "context window retrieval document section paragraph table chart metric dashboard alert threshold "
    "kubernetes cluster node pod memory cpu disk network timeout retry backoff queue worker batch "
    "schedule cron migration schema column row partition shard replica backup restore snapshot "
    "the a an of to in for on with by from about as at into over after before under between "
    "please could you would should can will may must not also only very more most less best "
    "check update explain summarize list compare find write rewrite fix improve suggest describe"
)
_WORDS = tuple(_WORDS_TEXT.split(" "))

_SYSTEM_TEMPLATES = (
    (
        "You are the {feature} assistant of the {department} team. Answer concisely, cite the source "
        "document when you use one, and say so when you do not know."
    ),
    (
        "You help {department} staff with {feature}. Reply in the user's language. Never reveal "
        "internal notes, credentials or other customers' data. Keep answers under 200 words."
    ),
    (
        "Role: {feature} for {department}. Output valid JSON with keys 'answer' and 'confidence' "
        "(0 to 1). Use the retrieved context below when it is relevant; otherwise answer from general "
        "knowledge and lower the confidence."
    ),
    (
        "You are a careful reviewer working for {department}. Task: {feature}. Think step by step, list "
        "the risks first, then give a short recommendation. Quote exact figures from the input."
    ),
)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _cumulative(weights: list[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return [c / acc for c in out]


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded rows for :meth:`kansoku.store.DuckDBStore.load` and what they hold."""

    rows: bytes
    lo_ns: int
    hi_ns: int
    spans: int
    calls: int


class Synth:
    """A deterministic stream of traces: ``calls`` LLM calls spread over [start_ns, end_ns)."""

    def __init__(
        self,
        *,
        seed: int,
        start_ns: int,
        end_ns: int,
        calls: int,
        users: int = 3000,
        project: str = "default",
        error_rate: float = 0.03,
        zipf_s: float = 1.05,
    ) -> None:
        if end_ns <= start_ns or calls <= 0:
            raise ValueError("need start_ns < end_ns and calls > 0")
        self.seed = seed
        self.start_ns, self.end_ns, self.calls = start_ns, end_ns, calls
        self.project = project
        self.error_rate = error_rate
        self.users = users
        rng = random.Random(seed)
        self._user_cum = _cumulative([1.0 / (rank**zipf_s) for rank in range(1, users + 1)])
        depts = list(DEPARTMENTS)
        dept_cum = _cumulative(list(DEPARTMENT_SHARES))
        self._user_dept = [depts[bisect.bisect(dept_cum, rng.random())] for _ in range(users)]
        self._model_cum = _cumulative([m[2] for m in MODELS])
        self._error_cum = _cumulative([e[1] for e in ERRORS])
        catalog = PriceCatalog.default()
        self._prices = [catalog.price_for(m[0], m[1], end_ns) for m in MODELS]
        # A pool of sentences reused across texts keeps generation cheap; ~4k distinct ones make
        # every word common enough to search for and no text repeat another.
        self._sentences = [self._sentence(rng) for _ in range(4096)]
        # prompt_id -> (version, system prompt) per feature; a feature's prompt moves from v3 to
        # v4 one third into the window, as prompts do.
        self._prompts: dict[str, list[tuple[str, str]]] = {}
        for dept, features in DEPARTMENTS.items():
            for i, feature in enumerate(features):
                tpl = _SYSTEM_TEMPLATES[(i + len(dept)) % len(_SYSTEM_TEMPLATES)]
                text = tpl.format(feature=feature.replace("-", " "), department=dept)
                self._prompts[feature] = [
                    (f"v{v}", text + (" " + self._sentences[v] if v > 3 else "")) for v in (3, 4)
                ]
        # Day/night cycle: hourly weights (UTC), traffic peaks in the working day.
        hourly = [0.35, 0.3, 0.3, 0.35, 0.45, 0.6, 0.8, 1.0, 1.2, 1.35, 1.4, 1.4,
                  1.35, 1.4, 1.4, 1.35, 1.25, 1.1, 0.95, 0.8, 0.7, 0.6, 0.5, 0.4]  # fmt: skip
        self._hour_cum = [0.0, *_cumulative(hourly)]

    # -- building blocks -------------------------------------------------------------------------
    @staticmethod
    def _sentence(rng: random.Random) -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 18))]
        words[0] = words[0].capitalize()
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), f"#{rng.randint(1000, 99999)}")
        return " ".join(words) + rng.choice((".", ".", ".", "?", "!"))

    def _text(self, rng: random.Random, median_chars: float, sigma: float, cap: int) -> str:
        want = min(cap, max(20, int(_lognormal(rng, median_chars, sigma))))
        parts: list[str] = []
        size = 0
        sentences = self._sentences
        while size < want:
            s = sentences[int(rng.random() * 4096)]
            parts.append(s)
            size += len(s) + 1
        return " ".join(parts)

    def _time(self, u: float) -> int:
        """Maps u in [0, 1) to a start time: uniform across days, weighted by hour of day."""
        span = self.end_ns - self.start_ns
        days = span / (86_400 * NS_PER_S)
        d = u * days
        day, frac = int(d), d - int(d)
        hour = bisect.bisect(self._hour_cum, frac) - 1
        lo, hi = self._hour_cum[hour], self._hour_cum[min(hour + 1, 24)]
        within = (frac - lo) / (hi - lo) if hi > lo else 0.0
        t = self.start_ns + int((day * 24 + hour + within) * 3600 * NS_PER_S)
        return min(max(t, self.start_ns), self.end_ns - 1)

    # -- rows ------------------------------------------------------------------------------------
    def rows(self) -> Iterator[list[dict[str, Any]]]:
        """Traces in start-time order, each a list of store rows (dicts in ``rows_ndjson`` key order)."""
        rng = random.Random(self.seed * 1_000_003 + 17)
        traces = int(self.calls / 1.33) + 1  # ~1.33 calls per trace; the last trace trims the count
        sessions: list[list[Any]] = []  # [context_id, user index, turns left]
        emitted = 0
        i = 0
        while emitted < self.calls:
            u = min((i + rng.random()) / traces, 0.999_999_999)
            i += 1
            start = self._time(u)
            # Continue an open session (several turns per user) or open one; ~256 open at a time.
            if sessions and rng.random() < 0.75:
                k = int(rng.random() * len(sessions))
                sess = sessions[k]
                sess[2] -= 1
                if sess[2] <= 0:
                    sessions[k] = sessions[-1]
                    sessions.pop()
            else:
                user = bisect.bisect(self._user_cum, rng.random())
                turns = 1 + int(math.log(1.0 - rng.random()) / math.log(0.75))  # geometric, mean 4
                sess = [f"{rng.getrandbits(96):024x}", min(user, self.users - 1), turns]
                if turns > 1 and len(sessions) < 256:
                    sessions.append(sess)
            trace = self._trace(rng, start, sess[0], sess[1], self.calls - emitted)
            emitted += sum(1 for r in trace if r["type"] == "llm_call")
            yield trace

    def _trace(
        self, rng: random.Random, start: int, context_id: str, user: int, calls_left: int
    ) -> list[dict[str, Any]]:
        trace_id = f"{rng.getrandbits(128):032x}"
        dept = self._user_dept[user]
        features = DEPARTMENTS[dept]
        feature = features[int(rng.random() * len(features))]
        common = {
            "service": f"{dept}-{feature.split('-')[0]}-svc",
            "environment": "production" if rng.random() < 0.94 else "staging",
            "region": REGIONS[user % len(REGIONS)],
            "user_id": f"user-{user:05d}",
            "context_id": context_id,
        }
        tags = {"department": dept, "feature": feature}
        lone = rng.random() < 0.45 or calls_left == 1
        n_calls = 1 if lone else min(calls_left, 1 + (rng.random() < 0.45) + (rng.random() < 0.15))
        n_tools = 0 if lone else (rng.random() < 0.55) + (rng.random() < 0.25)
        out: list[dict[str, Any]] = []
        root_id = None if lone else f"{rng.getrandbits(64):016x}"
        t = start + (0 if lone else int(_lognormal(rng, 3, 0.5) * NS_PER_MS))
        failed = False
        for _ in range(n_tools):
            kind = "retrieval" if rng.random() < 0.6 else "tool"
            dur = int(_lognormal(rng, 60 if kind == "retrieval" else 140, 0.7) * NS_PER_MS)
            out.append(self._child_span(rng, trace_id, root_id, kind, t, t + dur, common, tags))
            t += dur + int(rng.random() * 2 * NS_PER_MS)
        for _ in range(n_calls):
            row = self._call(rng, trace_id, root_id, t, common, tags, feature)
            out.append(row)
            t = row["end_ns"] + int(rng.random() * 3 * NS_PER_MS)
            failed = row["status"] == "error"
        if root_id is not None:
            route = f"POST /api/{feature}"
            root = {
                "project": self.project, "trace_id": trace_id, "span_id": root_id, "parent_span_id": None,
                "name": route, "kind": "server", "start_ns": start, "end_ns": t + NS_PER_MS,
                "status": "error" if failed else "ok", "status_code": 502 if failed else 200,
                "error_type": None, "error_message": None, **common, "prompt_id": None,
                "prompt_version": None, "tags": tags, "attributes": {"http.route": route}, "events": [],
                "type": "span",
            }  # fmt: skip
            out.insert(0, root)
        return out

    def _child_span(  # noqa: PLR0917
        self,
        rng: random.Random,
        trace_id: str,
        parent: str | None,
        kind: str,
        t0: int,
        t1: int,
        common: dict[str, Any],
        tags: dict[str, str],
    ) -> dict[str, Any]:
        if kind == "retrieval":
            name = "retrieve"
            attrs: dict[str, Any] = {"retrieval.k": 5 + int(rng.random() * 16), "db.system": "pgvector"}
        else:
            tool = TOOLS[int(rng.random() * len(TOOLS))]
            name = f"tool {tool}"
            attrs = {"tool.name": tool}
        return {
            "project": self.project, "trace_id": trace_id, "span_id": f"{rng.getrandbits(64):016x}",
            "parent_span_id": parent, "name": name, "kind": "internal", "start_ns": t0, "end_ns": t1,
            "status": "ok", "status_code": None, "error_type": None, "error_message": None, **common,
            "prompt_id": None, "prompt_version": None, "tags": tags, "attributes": attrs, "events": [],
            "type": "span",
        }  # fmt: skip

    def _call(  # noqa: PLR0917
        self,
        rng: random.Random,
        trace_id: str,
        parent: str | None,
        t0: int,
        common: dict[str, Any],
        tags: dict[str, str],
        feature: str,
    ) -> dict[str, Any]:
        m = bisect.bisect(self._model_cum, rng.random())
        provider, model, _share, overhead, per_token, reasoning_model = MODELS[min(m, len(MODELS) - 1)]
        versions = self._prompts[feature]
        version, system = versions[0] if t0 < self.start_ns + (self.end_ns - self.start_ns) // 3 else (
            versions[1] if rng.random() < 0.9 else versions[0]
        )  # fmt: skip
        user_text = self._text(rng, 170, 0.8, 3000)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user_text}]
        input_text = f"system: {system}\nuser: {user_text}"
        input_tokens = int(len(input_text) / 4 + _lognormal(rng, 250, 1.0))  # + retrieved context
        stream = rng.random() < 0.4
        error = None
        if rng.random() < self.error_rate:
            error = ERRORS[min(bisect.bisect(self._error_cum, rng.random()), len(ERRORS) - 1)]
        temperature = (None, 0.0, 0.2, 0.7, 1.0)[int(rng.random() * 5)]
        parameters: dict[str, Any] = {"max_tokens": (512, 1024, 2048, 4096)[int(rng.random() * 4)]}
        if rng.random() < 0.3:
            parameters["top_p"] = 0.9
        row: dict[str, Any] = {
            "project": self.project, "trace_id": trace_id, "span_id": f"{rng.getrandbits(64):016x}",
            "parent_span_id": parent, "name": f"chat {model}", "kind": "client", "start_ns": t0,
        }  # fmt: skip
        events: list[dict[str, Any]] = []
        if error is None:
            out_text = self._text(rng, 200, 0.9, 4000)
            output_tokens = max(1, int(len(out_text) / 4 * _lognormal(rng, 1.0, 0.25)))
            reasoning = int(output_tokens * _lognormal(rng, 1.5, 0.6)) if reasoning_model else None
            if reasoning is not None:
                output_tokens += reasoning
            latency_ms = (overhead + output_tokens * per_token) * _lognormal(rng, 1.0, 0.35)
            ttft = min(latency_ms * 0.9, _lognormal(rng, overhead * 1.1, 0.4)) if stream else None
            finish = "length" if rng.random() < 0.02 else "stop"
            row.update(end_ns=t0 + int(latency_ms * NS_PER_MS), status="ok", status_code=200, error_type=None,
                       error_message=None)  # fmt: skip
            output_messages: list[dict[str, Any]] | None = [{"role": "assistant", "content": out_text}]
        else:
            etype, _w, code, message, profile = error
            out_text = output_tokens = reasoning = ttft = finish = output_messages = None
            if profile == "fast":
                latency_ms = _lognormal(rng, 120, 0.6)
            elif profile == "slow":
                latency_ms = 60_000 + rng.random() * 500
            else:
                latency_ms = _lognormal(rng, overhead * 2, 0.6)
            row.update(end_ns=t0 + int(latency_ms * NS_PER_MS), status="error", status_code=code,
                       error_type=etype, error_message=message)  # fmt: skip
            attrs = {"exception.type": etype, "exception.message": message}
            events.append({"name": "exception", "time_unix_nano": row["end_ns"], "attributes": attrs})
        if error is not None and error[0] in ("rate_limit", "auth", "connection", "circuit_open"):
            input_tokens_out: int | None = None  # rejected before the model read the prompt
        else:
            input_tokens_out = input_tokens
        cached = None
        if input_tokens_out is not None and provider in ("openai", "anthropic") and rng.random() < 0.35:
            cached = min(input_tokens_out, len(system) // 4 + int(rng.random() * 1024))
        total = None
        if input_tokens_out is not None or output_tokens is not None:
            total = (input_tokens_out or 0) + (output_tokens or 0)
        price = self._prices[m] if m < len(self._prices) else None
        cost = None
        if price is not None:
            cost = price.cost(input_tokens=input_tokens_out, output_tokens=output_tokens,
                              cached_input_tokens=cached, reasoning_tokens=reasoning)  # fmt: skip
        row.update(common)
        row.update(
            prompt_id=f"{feature}-main", prompt_version=version, tags=tags,
            attributes={"app.version": "2.14.3", "gen_ai.system": provider}, events=events, type="llm_call",
            provider=provider, operation="chat", model=model, request_model=model, temperature=temperature,
            parameters=parameters, input_text=input_text, output_text=out_text, input_messages=messages,
            output_messages=output_messages, input_tokens=input_tokens_out, output_tokens=output_tokens,
            cached_input_tokens=cached, reasoning_tokens=reasoning, total_tokens=total,
            usage_estimated=False, cost_usd=cost, ttft_ms=None if ttft is None else round(ttft, 3),
            finish_reasons=None if finish is None else [finish],
            response_id=None if error is not None else f"resp_{rng.getrandbits(80):020x}", stream=stream,
        )  # fmt: skip
        return row

    # -- public outputs --------------------------------------------------------------------------
    def ndjson(self, batch_calls: int = 20_000) -> Iterator[Batch]:
        """Encoded batches of about ``batch_calls`` LLM calls (whole traces) for ``Store.load``."""
        dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        lines: list[bytes] = []
        lo, hi, calls = None, 0, 0
        for trace in self.rows():
            for r in trace:
                lines.append(dumps(r, option=opt))
                s = r["start_ns"]
                lo = s if lo is None or s < lo else lo
                hi = max(hi, s)
                calls += r["type"] == "llm_call"
            if calls >= batch_calls:
                yield Batch(b"".join(lines), lo or 0, hi, len(lines), calls)
                lines, lo, hi, calls = [], None, 0, 0
        if lines:
            yield Batch(b"".join(lines), lo or 0, hi, len(lines), calls)

    def spans(self, batch_calls: int = 10_000) -> Iterator[list[Span]]:
        """The same traffic as :class:`kansoku.model.Span` objects, in batches of whole traces."""
        out: list[Span] = []
        calls = 0
        for trace in self.rows():
            for r in trace:
                out.append(to_span(r))
                calls += r["type"] == "llm_call"
            if calls >= batch_calls:
                yield out
                out, calls = [], 0
        if out:
            yield out


def to_span(r: dict[str, Any]) -> Span:
    """A generated row as the span the SDK would have produced (texts come from the messages)."""
    span = Span(
        trace_id=r["trace_id"], span_id=r["span_id"], name=r["name"], start_ns=r["start_ns"],
        end_ns=r["end_ns"], parent_span_id=r["parent_span_id"], kind=r["kind"], status=r["status"],
        status_code=r["status_code"], error_type=r["error_type"], error_message=r["error_message"],
        service=r["service"], environment=r["environment"], region=r["region"], user_id=r["user_id"],
        context_id=r["context_id"], prompt_id=r["prompt_id"], prompt_version=r["prompt_version"],
        tags=dict(r["tags"]), attributes=dict(r["attributes"]),
        events=[SpanEvent(e["name"], e["time_unix_nano"], dict(e["attributes"])) for e in r["events"]],
    )  # fmt: skip
    if r["type"] == "llm_call":
        span.llm = LLMCall(
            provider=r["provider"], operation=r["operation"], model=r["model"],
            request_model=r["request_model"], temperature=r["temperature"], parameters=dict(r["parameters"]),
            input_messages=r["input_messages"], output_messages=r["output_messages"],
            input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
            cached_input_tokens=r["cached_input_tokens"], reasoning_tokens=r["reasoning_tokens"],
            total_tokens=r["total_tokens"], usage_estimated=r["usage_estimated"], cost_usd=r["cost_usd"],
            ttft_ms=r["ttft_ms"], finish_reasons=r["finish_reasons"], response_id=r["response_id"],
            stream=r["stream"],
        )  # fmt: skip
    return span


def check_equivalence(n_calls: int = 2000, seed: int = 3) -> None:
    """The fast NDJSON path must produce exactly what ``rows_ndjson`` makes of the spans."""
    from kansoku.store import rows_ndjson

    kw: dict[str, Any] = {"seed": seed, "start_ns": 1_800_000_000 * NS_PER_S, "calls": n_calls}
    kw["end_ns"] = kw["start_ns"] + 86_400 * NS_PER_S
    fast = b"".join(b.rows for b in Synth(**kw).ndjson(500))
    slow = b"".join(rows_ndjson(spans, "default") for spans in Synth(**kw).spans(500))
    if fast != slow:
        a, b = fast.splitlines(), slow.splitlines()
        bad = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        raise AssertionError(f"fast path differs at line {bad}:\n{a[bad]!r}\n{b[bad]!r}")


if __name__ == "__main__":  # a quick look at what is generated
    import statistics
    import sys
    import time

    check_equivalence()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    t0 = 1_800_000_000 * NS_PER_S
    gen = Synth(seed=1, start_ns=t0, end_ns=t0 + 30 * 86_400 * NS_PER_S, calls=n)
    began = time.perf_counter()
    batches = list(gen.ndjson(10_000))
    took = time.perf_counter() - began
    lines = [line for b in batches for line in b.rows.splitlines()]
    recs = [orjson.loads(line) for line in lines]
    llm = [r for r in recs if r["type"] == "llm_call"]
    sizes = [len(line) + 1 for line, r in zip(lines, recs, strict=True) if r["type"] == "llm_call"]
    print(f"{len(llm)} calls, {len(recs)} spans in {took:.2f} s ({len(recs) / took:,.0f} spans/s)")
    mean_all = sum(map(len, lines)) / len(lines)
    print(f"call record bytes: mean {statistics.mean(sizes):.0f}, median {statistics.median(sizes):.0f}, "
          f"min {min(sizes)}, max {max(sizes)}; all spans mean {mean_all:.0f}")  # fmt: skip
    errs = [r for r in llm if r["status"] == "error"]
    by_type: dict[str, int] = {}
    for r in errs:
        by_type[r["error_type"]] = by_type.get(r["error_type"], 0) + 1
    print(f"errors {len(errs) / len(llm):.2%}:", dict(sorted(by_type.items())))
    users = sorted({r["user_id"] for r in llm})
    print(f"users {len(users)}, sessions {len({r['context_id'] for r in llm})}, "
          f"traces {len({r['trace_id'] for r in recs})}")  # fmt: skip

"""Attribution (``kansoku.context``), span nesting, and trace propagation across threads, tasks,
``traceparent`` headers and OpenTelemetry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import kansoku
from kansoku.model import Span
from kansoku.sdk import CallContext
from kansoku.testing import InMemoryExporter, MockUpstream

MODEL = "mock-gpt"
REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN = "b7ad6b7169203331"
REMOTE = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"


# -- helpers ----------------------------------------------------------------------------------


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def records(memory: InMemoryExporter) -> list[Span]:
    """Every record so far (spans and LLM calls), after a flush."""
    assert kansoku.flush(5.0)
    return memory.spans


def by_name(memory: InMemoryExporter) -> dict[str, Span]:
    """User-span records (not LLM calls) keyed by name (each test uses distinct names)."""
    found = [s for s in records(memory) if s.llm is None]
    named = {s.name: s for s in found}
    assert len(named) == len(found), [s.name for s in found]
    return named


def calls_by_prompt(memory: InMemoryExporter) -> dict[str, Span]:
    """LLM-call records keyed by the prompt text (each test uses distinct prompts)."""
    assert kansoku.flush(5.0)
    out: dict[str, Span] = {}
    for span in memory.calls:
        prompt = span.to_record()["input_text"]
        assert isinstance(prompt, str)
        out[prompt] = span
    return out


def attribution(span: Span) -> tuple[Any, ...]:
    return (span.user_id, span.context_id, span.prompt_id, span.prompt_version, span.tags)


NONE: tuple[Any, ...] = (None, None, None, None, {})


@pytest.fixture
def client(upstream: MockUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.openai_base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def ask(client: openai.OpenAI) -> Callable[[str], str]:
    """Make one chat call with ``prompt``; returns the prompt so records can be matched to it."""

    def run(prompt: str) -> str:
        client.chat.completions.create(model=MODEL, messages=user(prompt))
        return prompt

    return run


# -- kansoku.context --------------------------------------------------------------------------


def test_context_reaches_llm_call_and_span_records(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    with (
        kansoku.context(
            user_id="u-42",
            session_id="s-1",
            prompt_id="greeter",
            prompt_version=3,
            tags={"feature": "search", "tier": 2},
        ),
        kansoku.span("handle"),
    ):
        ask("inside")
    ask("after")

    found = by_name(recorder)
    calls = calls_by_prompt(recorder)
    expected = ("u-42", "s-1", "greeter", "3", {"feature": "search", "tier": "2"})
    assert attribution(found["handle"]) == expected
    assert attribution(calls["inside"]) == expected
    assert attribution(calls["after"]) == NONE


def test_contexts_nest_inner_values_win_and_tags_merge(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    with kansoku.context(user_id="outer-user", session_id="s-1", tags={"a": "1", "b": "1"}):
        with kansoku.context(user_id="inner-user", prompt_id="p", tags={"b": "2", "c": "3"}) as inner:
            ask("inner")
            assert inner == kansoku.current_context()
        ask("outer again")
    assert kansoku.current_context() == CallContext()

    calls = calls_by_prompt(recorder)
    assert attribution(calls["inner"]) == ("inner-user", "s-1", "p", None, {"a": "1", "b": "2", "c": "3"})
    assert attribution(calls["outer again"]) == ("outer-user", "s-1", None, None, {"a": "1", "b": "1"})


def test_context_is_restored_when_the_block_raises(recorder: InMemoryExporter) -> None:
    def fail() -> None:
        with kansoku.context(user_id="u"):
            raise KeyError("x")

    with pytest.raises(KeyError):
        fail()
    assert kansoku.current_context().user_id is None


def test_context_as_async_context_manager_and_sync_decorator(
    recorder: InMemoryExporter, upstream: MockUpstream, ask: Callable[[str], str]
) -> None:
    @kansoku.context(user_id="decorated", tags={"via": "decorator"})
    def handler() -> str:
        return ask("decorated call")

    async def main() -> None:
        async with (
            openai.AsyncOpenAI(base_url=upstream.openai_base_url, api_key="t", max_retries=0) as aclient,
            kansoku.context(user_id="async-user"),
        ):
            await aclient.chat.completions.create(model=MODEL, messages=user("async call"))

    assert handler() == "decorated call"
    asyncio.run(main())

    calls = calls_by_prompt(recorder)
    assert calls["decorated call"].user_id == "decorated"
    assert calls["decorated call"].tags == {"via": "decorator"}
    assert calls["async call"].user_id == "async-user"


def test_context_as_decorator_of_an_async_function(recorder: InMemoryExporter) -> None:
    @kansoku.context(user_id="async-decorated")
    async def handler() -> str | None:
        await asyncio.sleep(0)
        return kansoku.current_context().user_id

    assert asyncio.run(handler()) == "async-decorated"


# -- threads ----------------------------------------------------------------------------------


def test_context_and_parent_span_cross_a_thread_pool_but_do_not_leak_to_later_tasks(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        with kansoku.context(user_id="u-pool", tags={"job": "batch"}), kansoku.span("fan-out") as parent:
            # The pool's only worker thread is started here, inside the context.
            pool.submit(ask, "submitted inside").result()
            list(pool.map(ask, ["mapped inside"]))
        pool.submit(ask, "submitted after").result()
        leaked = pool.submit(kansoku.current_context).result()

    calls = calls_by_prompt(recorder)
    for prompt in ("submitted inside", "mapped inside"):
        assert calls[prompt].user_id == "u-pool"
        assert calls[prompt].tags == {"job": "batch"}
        assert calls[prompt].parent_span_id == parent.span_id
        assert calls[prompt].trace_id == parent.trace_id
    assert attribution(calls["submitted after"]) == NONE
    assert calls["submitted after"].parent_span_id is None
    assert calls["submitted after"].trace_id != parent.trace_id
    assert leaked == CallContext()


def test_context_and_parent_span_cross_threading_thread(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    with kansoku.context(session_id="s-thread"), kansoku.span("spawn") as parent:
        worker = threading.Thread(target=ask, args=("from thread",))
        worker.start()
    worker.join()
    later = threading.Thread(target=ask, args=("later thread",))
    later.start()
    later.join()

    calls = calls_by_prompt(recorder)
    assert calls["from thread"].context_id == "s-thread"
    assert calls["from thread"].parent_span_id == parent.span_id
    assert calls["later thread"].context_id is None
    assert calls["later thread"].parent_span_id is None


def test_context_crosses_a_thread_subclass_that_overrides_run(recorder: InMemoryExporter) -> None:
    seen: list[str | None] = []

    class Worker(threading.Thread):
        def run(self) -> None:
            seen.append(kansoku.current_context().user_id)

    with kansoku.context(user_id="u-subclass"):
        worker = Worker()
        worker.start()
    worker.join()

    assert seen == ["u-subclass"]


def test_concurrent_threads_keep_their_own_context(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    barrier = threading.Barrier(3)

    def handle(name: str) -> None:
        with kansoku.context(user_id=name):
            barrier.wait(5)  # all three are inside their own context at once
            ask(f"request of {name}")

    threads = [threading.Thread(target=handle, args=(n,)) for n in ("alice", "bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    calls = calls_by_prompt(recorder)
    assert {prompt: span.user_id for prompt, span in calls.items()} == {
        "request of alice": "alice",
        "request of bob": "bob",
        "request of carol": "carol",
    }


# -- asyncio ----------------------------------------------------------------------------------


def test_context_crosses_gather_and_tasks_and_each_task_keeps_its_own(
    recorder: InMemoryExporter, upstream: MockUpstream
) -> None:
    async def ask(aclient: openai.AsyncOpenAI, who: str) -> None:
        async with kansoku.context(user_id=who):
            # The delay makes the three requests overlap on the loop.
            await aclient.chat.completions.create(
                model=MODEL, messages=user(who), extra_headers={"x-mock-delay-ms": "30"}
            )

    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=upstream.openai_base_url, api_key="t", max_retries=0
        ) as aclient:
            with kansoku.context(session_id="s-async", tags={"lane": "gather"}):
                async with kansoku.span("batch"):
                    await asyncio.gather(ask(aclient, "alice"), ask(aclient, "bob"), ask(aclient, "carol"))
                task = asyncio.create_task(
                    aclient.chat.completions.create(model=MODEL, messages=user("task"))
                )
            await task
            await aclient.chat.completions.create(model=MODEL, messages=user("outside"))

    asyncio.run(main())

    calls = calls_by_prompt(recorder)
    batch = by_name(recorder)["batch"]
    for who in ("alice", "bob", "carol"):
        assert attribution(calls[who]) == (who, "s-async", None, None, {"lane": "gather"})
        assert calls[who].parent_span_id == batch.span_id
    assert calls["task"].context_id == "s-async"  # created inside the block, awaited after it
    assert calls["task"].parent_span_id is None
    assert attribution(calls["outside"]) == NONE


# -- spans ------------------------------------------------------------------------------------


def test_spans_nest_into_one_trace_with_parent_links(
    recorder: InMemoryExporter, ask: Callable[[str], str]
) -> None:
    with kansoku.span("a") as a, kansoku.span("b") as b:
        ask("leaf")
    with kansoku.span("other"):
        pass

    found = by_name(recorder)
    call = calls_by_prompt(recorder)["leaf"]
    assert (found["a"].trace_id, found["a"].span_id, found["a"].parent_span_id) == (
        a.trace_id,
        a.span_id,
        None,
    )
    assert found["b"].parent_span_id == a.span_id
    assert call.parent_span_id == b.span_id
    assert {found["a"].trace_id, found["b"].trace_id, call.trace_id} == {a.trace_id}
    assert found["other"].trace_id != a.trace_id
    assert found["other"].parent_span_id is None
    assert (found["a"].kind, found["a"].status, call.kind) == ("internal", "ok", "client")
    assert found["a"].start_ns <= found["b"].start_ns <= call.start_ns
    assert call.end_ns <= found["b"].end_ns <= found["a"].end_ns


def test_span_attributes_events_and_status(recorder: InMemoryExporter) -> None:
    with kansoku.span("retrieve", kind="server", attributes={"k": 1}) as s:
        s.set_attribute("docs", 3)
        s.add_event("cache-miss", {"key": "q"})
        s.set_status("error", "invalid_output", "no documents")

    found = by_name(recorder)["retrieve"]
    assert found.kind == "server"
    assert found.attributes == {"k": 1, "docs": 3}
    assert [(e.name, e.attributes) for e in found.events] == [("cache-miss", {"key": "q"})]
    assert (found.status, found.error_type, found.error_message) == (
        "error",
        "invalid_output",
        "no documents",
    )


def test_observe_on_sync_functions(recorder: InMemoryExporter, ask: Callable[[str], str]) -> None:
    @kansoku.observe
    def retrieve(query: str) -> list[str]:
        ask(query)
        return ["doc-1"]

    @kansoku.observe(name="answer", kind="server")
    def answer() -> str:
        return ",".join(retrieve("observed"))

    assert answer() == "doc-1"

    found = by_name(recorder)
    outer = found["answer"]
    inner = found[retrieve.__qualname__]
    assert retrieve.__name__ == "retrieve"  # the wrapper keeps the function's identity
    assert outer.kind == "server"
    assert inner.parent_span_id == outer.span_id
    assert calls_by_prompt(recorder)["observed"].parent_span_id == inner.span_id


def test_observe_on_async_functions_keeps_concurrent_calls_apart(
    recorder: InMemoryExporter, upstream: MockUpstream
) -> None:
    @kansoku.observe
    async def step(aclient: openai.AsyncOpenAI, prompt: str) -> str:
        await aclient.chat.completions.create(
            model=MODEL, messages=user(prompt), extra_headers={"x-mock-delay-ms": "20"}
        )
        return prompt.upper()

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=upstream.openai_base_url, api_key="t", max_retries=0
        ) as aclient:
            return list(await asyncio.gather(step(aclient, "one"), step(aclient, "two")))

    assert asyncio.run(main()) == ["ONE", "TWO"]

    steps = [s for s in records(recorder) if s.name == step.__qualname__]
    calls = calls_by_prompt(recorder)
    assert len(steps) == 2
    assert {calls["one"].parent_span_id, calls["two"].parent_span_id} == {s.span_id for s in steps}
    assert all(s.latency_ms >= 20 for s in steps)  # the span covers the awaited body


def test_observe_on_a_generator_function_spans_its_iteration(recorder: InMemoryExporter) -> None:
    @kansoku.observe
    def produce() -> Iterator[int]:
        with kansoku.span("inside-generator"):
            yield 1

    assert list(produce()) == [1]

    found = by_name(recorder)
    assert found["inside-generator"].parent_span_id == found[produce.__qualname__].span_id


class AppError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        pytest.param(AppError("bad input"), "unknown", id="app-error"),
        pytest.param(TimeoutError("slow tool"), "timeout", id="timeout"),
        pytest.param(ConnectionError("db down"), "connection", id="connection"),
    ],
)
def test_an_exception_in_a_span_marks_it_as_an_error_and_propagates(
    recorder: InMemoryExporter, exc: Exception, error_type: str
) -> None:
    def fail() -> None:
        with kansoku.span("work"):
            raise exc

    with pytest.raises(type(exc)) as info:
        fail()

    assert info.value is exc
    found = by_name(recorder)["work"]
    assert (found.status, found.error_type) == ("error", error_type)
    assert found.error_message == f"{type(exc).__name__}: {exc}"
    assert [e.attributes for e in found.events] == [{"exception.type": type(exc).__name__}]


def test_a_failed_llm_call_inside_an_observed_function_marks_both_as_errors(
    recorder: InMemoryExporter, client: openai.OpenAI
) -> None:
    @kansoku.observe
    def plan() -> None:
        client.chat.completions.create(
            model=MODEL, messages=user("x"), extra_headers={"x-mock-fault": "rate_limit"}
        )

    with pytest.raises(openai.RateLimitError):
        plan()

    outer, call = by_name(recorder)[plan.__qualname__], calls_by_prompt(recorder)["x"]
    assert (outer.status, outer.error_type, outer.status_code) == ("error", "rate_limit", 429)
    assert (call.status, call.error_type) == ("error", "rate_limit")
    assert call.parent_span_id == outer.span_id


# -- traceparent ------------------------------------------------------------------------------


def test_inject_gives_the_current_spans_ids(recorder: InMemoryExporter) -> None:
    assert kansoku.inject() == {}  # nothing to propagate outside a span
    headers = {"x-app": "1"}
    with kansoku.span("outgoing") as s:
        returned = kansoku.inject(headers)

    assert returned is headers
    assert headers == {"x-app": "1", "traceparent": f"00-{s.trace_id}-{s.span_id}-01"}
    assert len(s.trace_id) == 32
    assert len(s.span_id) == 16


def test_extract_makes_new_spans_and_calls_children_of_the_remote_span(
    recorder: InMemoryExporter, upstream: MockUpstream, ask: Callable[[str], str]
) -> None:
    with kansoku.extract({"Content-Type": "application/json", "TraceParent": REMOTE}) as remote:
        assert remote is not None
        with kansoku.span("server-side"):
            pass
        ask("remote child")
    with kansoku.span("afterwards"):
        pass

    found = by_name(recorder)
    call = calls_by_prompt(recorder)["remote child"]
    assert (found["server-side"].trace_id, found["server-side"].parent_span_id) == (REMOTE_TRACE, REMOTE_SPAN)
    assert (call.trace_id, call.parent_span_id) == (REMOTE_TRACE, REMOTE_SPAN)
    assert upstream.requests[0].headers["traceparent"] == f"00-{REMOTE_TRACE}-{call.span_id}-01"
    assert found["afterwards"].trace_id != REMOTE_TRACE
    assert found["afterwards"].parent_span_id is None


def test_traceparent_round_trips_between_two_services(recorder: InMemoryExporter) -> None:
    with kansoku.span("client-side") as caller:
        headers = kansoku.inject()
    with kansoku.extract(headers), kansoku.span("server-side") as callee:
        pass

    assert callee.trace_id == caller.trace_id
    assert by_name(recorder)["server-side"].parent_span_id == caller.span_id


def test_an_unsampled_remote_parent_stays_unsampled_downstream(recorder: InMemoryExporter) -> None:
    with kansoku.extract({"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-00"}), kansoku.span("child"):
        headers = kansoku.inject()

    assert headers["traceparent"].endswith("-00")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}", id="missing-flags"),
        pytest.param(f"00-{REMOTE_TRACE[:-1]}-{REMOTE_SPAN}-01", id="short-trace-id"),
        pytest.param(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}0-01", id="long-span-id"),
        pytest.param(f"00-{'0' * 32}-{REMOTE_SPAN}-01", id="zero-trace-id"),
        pytest.param(f"00-{REMOTE_TRACE}-{'0' * 16}-01", id="zero-span-id"),
        pytest.param(f"ff-{REMOTE_TRACE}-{REMOTE_SPAN}-01", id="version-ff"),
        pytest.param(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01-extra", id="version-00-with-extra-field"),
        pytest.param(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-0g", id="non-hex-flags"),
        pytest.param(f"00_{REMOTE_TRACE}_{REMOTE_SPAN}_01", id="wrong-separators"),
        pytest.param(f"00-{REMOTE_TRACE.upper()}-{REMOTE_SPAN.upper()}-01", id="uppercase-hex"),
    ],
)
def test_an_invalid_traceparent_is_ignored(recorder: InMemoryExporter, value: str) -> None:
    remote = kansoku.extract({"traceparent": value})
    with remote, kansoku.span("fresh") as s:
        pass

    assert not remote
    assert s.trace_id != REMOTE_TRACE
    assert by_name(recorder)["fresh"].parent_span_id is None


def test_a_future_version_traceparent_is_accepted(recorder: InMemoryExporter) -> None:
    remote = kansoku.extract({"traceparent": f"cc-{REMOTE_TRACE}-{REMOTE_SPAN}-01-what-comes-next"})
    with remote, kansoku.span("child") as s:
        pass

    assert remote
    assert (s.trace_id, by_name(recorder)["child"].parent_span_id) == (REMOTE_TRACE, REMOTE_SPAN)


def test_a_missing_traceparent_gives_an_empty_parent(recorder: InMemoryExporter) -> None:
    remote = kansoku.extract({"tracestate": "a=b"})
    with remote as parent:
        assert parent is None
    assert not remote


# -- OpenTelemetry ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def otel_tracer() -> Iterator[trace.Tracer]:
    """A tracer from a local provider: the global OpenTelemetry provider is never set."""
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider.get_tracer("kansoku-tests")
    provider.shutdown()


def ids_of(otel_span: trace.Span) -> tuple[str, str]:
    ctx = otel_span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def test_a_kansoku_span_inside_an_otel_span_joins_its_trace(
    recorder: InMemoryExporter, otel_tracer: trace.Tracer, ask: Callable[[str], str]
) -> None:
    with otel_tracer.start_as_current_span("otel-request") as otel_span:
        with kansoku.span("kansoku-step") as step:
            ask("under otel")
        ask("directly under otel")
        headers = kansoku.inject()
    with kansoku.span("after otel") as after:
        pass

    otel_trace, otel_span_id = ids_of(otel_span)
    found = by_name(recorder)
    calls = calls_by_prompt(recorder)
    assert (step.trace_id, found["kansoku-step"].parent_span_id) == (otel_trace, otel_span_id)
    assert (calls["under otel"].trace_id, calls["under otel"].parent_span_id) == (otel_trace, step.span_id)
    assert calls["directly under otel"].trace_id == otel_trace
    assert calls["directly under otel"].parent_span_id == otel_span_id
    assert headers == {"traceparent": f"00-{otel_trace}-{otel_span_id}-01"}
    assert after.trace_id != otel_trace
    assert found["after otel"].parent_span_id is None


@pytest.mark.parametrize(
    "how", [pytest.param("use_span", id="use-span"), pytest.param("attach", id="attach")]
)
def test_otel_spans_activated_by_hand_are_joined_too(
    recorder: InMemoryExporter, otel_tracer: trace.Tracer, how: str
) -> None:
    otel_span = otel_tracer.start_span("manual")
    if how == "use_span":
        with trace.use_span(otel_span, end_on_exit=True), kansoku.span("inside") as inside:
            pass
    else:
        token = otel_context.attach(trace.set_span_in_context(otel_span))
        try:
            with kansoku.span("inside") as inside:
                pass
        finally:
            otel_context.detach(token)
            otel_span.end()

    otel_trace, otel_span_id = ids_of(otel_span)
    assert inside.trace_id == otel_trace
    assert by_name(recorder)["inside"].parent_span_id == otel_span_id


def test_an_invalid_otel_span_is_not_used_as_parent(recorder: InMemoryExporter) -> None:
    with trace.use_span(trace.INVALID_SPAN), kansoku.span("root") as root:
        pass

    assert root.trace_id != f"{0:032x}"
    assert by_name(recorder)["root"].parent_span_id is None

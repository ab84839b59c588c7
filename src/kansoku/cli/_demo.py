"""``kansoku demo``: a small support-bot app against the built-in mock upstream, fully offline.

It uses the real ``openai`` and ``anthropic`` clients (instrumented by ``kansoku.init``), user
sessions, prompt versions and department/feature tags, nested spans, streaming, and injected
provider faults (429, 500, timeouts, context length) — then reads the JSON-lines file it wrote
and prints the summary.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import kansoku
from kansoku.cli._summary import read_records, render, summarise
from kansoku.testing import MockUpstream

_QUESTIONS = (
    "How do I reset my password?",
    "My invoice for October is wrong, can you check? My email is taro.yamada@example.co.jp",
    "Is the API down right now?",
    "Please call me back at 090-1234-5678 about my refund.",
    "Which plan includes SSO?",
    "Can I pay with card 4111 1111 1111 1111?",
)
_FAULTS = (("rate_limit", 0.06), ("server_error", 0.04), ("hang", 0.02), ("context_length", 0.02))
_DEPARTMENTS = ("support", "billing", "sales")
_FEATURES = ("answer", "summarise", "classify")


def _fault(rng: random.Random, fault_rate: float) -> str | None:
    if rng.random() >= fault_rate:
        return None
    roll, acc = rng.random() * sum(w for _, w in _FAULTS), 0.0
    for mode, weight in _FAULTS:
        acc += weight
        if roll < acc:
            return mode
    return _FAULTS[-1][0]


def _clients(up: MockUpstream) -> tuple[Any, Any]:
    try:
        import openai
    except ImportError:
        raise SystemExit("kansoku demo needs the openai client: pip install 'kansoku[demo]'") from None
    try:
        import anthropic
    except ImportError:
        anthropic = None  # type: ignore[assignment]
    oai = openai.OpenAI(
        base_url=up.openai_base_url, api_key="sk-demo-not-a-real-key", max_retries=0, timeout=0.5
    )
    ant = None
    if anthropic is not None:
        ant = anthropic.Anthropic(
            base_url=up.anthropic_base_url, api_key="sk-ant-demo", max_retries=0, timeout=0.5
        )
    return oai, ant


def _one_call(oai: Any, ant: Any, rng: random.Random, question: str, fault: str | None) -> bool:
    headers = {"x-mock-fault": fault} if fault else {}
    with kansoku.span("retrieve", attributes={"retriever": "faq-index", "k": 3}):
        time.sleep(rng.uniform(0.001, 0.004))
    messages = [
        {"role": "system", "content": "You are a helpful support agent."},
        {"role": "user", "content": question},
    ]
    use_claude = ant is not None and rng.random() < 0.3
    stream = rng.random() < 0.4
    try:
        if use_claude:
            kwargs: dict[str, Any] = {
                "model": "mock-claude",
                "max_tokens": 256,
                "system": messages[0]["content"],
            }
            if stream:
                with ant.messages.stream(messages=messages[1:], extra_headers=headers, **kwargs) as s:
                    "".join(s.text_stream)
            else:
                ant.messages.create(messages=messages[1:], extra_headers=headers, **kwargs)
        elif stream:
            for _ in oai.chat.completions.create(
                model="mock-gpt", messages=messages, stream=True, temperature=0.3, extra_headers=headers
            ):
                pass
        else:
            oai.chat.completions.create(
                model="mock-gpt", messages=messages, temperature=0.3, extra_headers=headers
            )
    except Exception:  # noqa: BLE001 - a real app shows an apology; the record keeps the error type
        return False
    return True


def traffic(
    up: MockUpstream,
    rng: random.Random,
    calls: int | None,
    fault_rate: float,
    *,
    stop: threading.Event | None = None,
    pause_s: float = 0.0,
) -> int:
    """Make ``calls`` support-bot calls (forever when None, until ``stop``); the number that failed."""
    oai, ant = _clients(up)
    failed = 0
    try:
        for i in itertools.count() if calls is None else range(calls):
            if stop is not None and stop.is_set():
                break
            user = f"u-{rng.randint(1, 12)}"
            with (
                kansoku.context(
                    user_id=user,
                    session_id=f"s-{user}-{i // 4}",
                    prompt_id="support-answer",
                    prompt_version=rng.choice(("v3", "v4")),
                    tags={"department": rng.choice(_DEPARTMENTS), "feature": rng.choice(_FEATURES)},
                ),
                kansoku.span("handle_ticket"),
            ):
                failed += not _one_call(oai, ant, rng, rng.choice(_QUESTIONS), _fault(rng, fault_rate))
            if pause_s and stop is not None:
                stop.wait(pause_s)
    finally:
        oai.close()
        if ant is not None:
            ant.close()
    return failed


def run_demo(calls: int, out: Path, fault_rate: float, seed: int) -> int:
    """Make ``calls`` LLM calls, record them to ``out`` and print the summary."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    rng = random.Random(seed)
    kansoku.init(
        service_name="kansoku-demo",
        environment="demo",
        export=f"file://{out}",
        spool_dir=str(out.parent / "spool"),
    )
    started = time.perf_counter()
    with MockUpstream(delay_ms=15, stream_interval_ms=3) as up:
        failed = traffic(up, rng, calls, fault_rate)
    kansoku.flush()
    stats = kansoku.stats()
    kansoku.shutdown()
    elapsed = time.perf_counter() - started
    total, by_model, spans = summarise(read_records(out))
    print(
        f"kansoku demo: {calls} calls in {elapsed:.1f}s against the built-in mock upstream ({failed} failed)"
    )
    print(f"records written to {out}\n")
    print(render(total, by_model, spans))
    dropped = sum(stats.get("dropped", {}).values())
    print(f"\nexport: {stats['processed']:,} records processed, {dropped:,} dropped (sampling or errors)")
    print("note: emails, phone numbers and card numbers in prompts were masked before writing.")
    return 0

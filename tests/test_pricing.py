"""The price catalog and cost computation, as a user of kansoku sees them."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from kansoku.model import LLMCall, Span
from kansoku.pricing import CostProcessor, ModelPrice, PriceCatalog, PriceCatalogError


def ns(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1_000_000_000


NOW = ns(2026, 1, 15)


def call(model: str | None, provider: str = "openai", **tokens: Any) -> LLMCall:
    return LLMCall(provider=provider, model=model, **tokens)


def span(llm: LLMCall | None, start_ns: int = NOW) -> Span:
    return Span(
        trace_id="a" * 32, span_id="b" * 16, name="call", start_ns=start_ns, end_ns=start_ns + 1, llm=llm
    )


def cost_of(s: Span) -> float | None:
    assert s.llm is not None
    return s.llm.cost_usd


def write(tmp_path: Path, models: list[dict[str, Any]], name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": "test", "models": models}), encoding="utf-8")
    return path


@pytest.fixture
def catalog() -> PriceCatalog:
    return PriceCatalog.default()


# --- costs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("llm", "at_ns", "expected"),
    [
        pytest.param(
            call("gpt-4o-mini", input_tokens=1000, cached_input_tokens=200, output_tokens=500),
            NOW,
            0.000435,  # 800 x 0.15 + 200 x 0.075 + 500 x 0.60 per million
            id="openai-cached-split",
        ),
        pytest.param(
            call(
                "claude-3-5-sonnet-20241022",
                "anthropic",
                input_tokens=10_000,
                cached_input_tokens=8000,
                output_tokens=1000,
            ),
            NOW,
            0.0234,  # 2000 x 3 + 8000 x 0.30 + 1000 x 15
            id="anthropic-cache-read",
        ),
        pytest.param(
            call(
                "gemini-2.5-flash-preview-04-17",
                "google",
                input_tokens=1000,
                output_tokens=3000,
                reasoning_tokens=2000,
            ),
            ns(2025, 5, 1),
            0.00775,  # 1000 x 0.15 + 1000 x 0.60 + 2000 x 3.50 (thinking billed higher)
            id="reasoning-priced-apart",
        ),
        pytest.param(
            call(
                "mock-gpt",
                input_tokens=1_000_000,
                cached_input_tokens=250_000,
                output_tokens=100_000,
                reasoning_tokens=40_000,
            ),
            NOW,
            1.075,
            id="mock-gpt-all-parts",
        ),
        pytest.param(
            call("mock-claude", "anthropic", input_tokens=2000, output_tokens=100),
            NOW,
            0.0075,  # unreported cached/reasoning counts mean "none of them"
            id="subsets-unreported",
        ),
        pytest.param(call("mock-gpt", input_tokens=None, output_tokens=100), NOW, 0.0002, id="only-output"),
        pytest.param(call("mock-gpt", input_tokens=None, output_tokens=None), NOW, None, id="no-usage"),
        pytest.param(call("mock-gpt", input_tokens=0, output_tokens=0), NOW, 0.0, id="zero-tokens"),
        pytest.param(
            call("text-embedding-3-small", input_tokens=1000, output_tokens=None),
            NOW,
            0.00002,
            id="embedding",
        ),
    ],
)
def test_cost_of_known_models_is_exact(
    catalog: PriceCatalog, llm: LLMCall, at_ns: int, expected: float | None
) -> None:
    assert catalog.cost(llm, at_ns) == expected


def test_cost_is_rounded_to_ten_decimals() -> None:
    price = ModelPrice("acme", "thirds", input=1 / 3, output=0.0)
    assert price.cost(input_tokens=1, output_tokens=None) == 0.0000003333


def test_subset_counts_larger_than_the_whole_do_not_make_cost_negative(catalog: PriceCatalog) -> None:
    llm = call("mock-gpt", input_tokens=100, cached_input_tokens=500, output_tokens=10, reasoning_tokens=50)
    assert catalog.cost(llm, NOW) == 0.00007  # all 100 input cached at 0.50, all 10 output as reasoning at 2


def test_request_model_is_used_when_the_reported_model_is_unknown(catalog: PriceCatalog) -> None:
    llm = call("my-proxy-name", input_tokens=1000, output_tokens=0)
    llm.request_model = "gpt-4o-mini"
    assert catalog.cost(llm, NOW) == 0.00015
    assert catalog.unknown_models == {}


# --- name resolution --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "name", "model"),
    [
        pytest.param("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", id="openai-dated"),
        pytest.param("openai", "gpt-4o-2024-11-20", "gpt-4o", id="gpt-4o-dated"),
        pytest.param("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13", id="snapshot-with-own-price"),
        pytest.param("openai", "GPT-4o-Mini", "gpt-4o-mini", id="case-insensitive"),
        pytest.param("openai", "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano", id="gpt-4.1-dated"),
        pytest.param("openai", "o1-preview", "o1", id="preview-pointer"),
        pytest.param("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet", id="anthropic-dated"),
        pytest.param("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet", id="anthropic-latest"),
        pytest.param("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", id="sonnet-4.5-not-4"),
        pytest.param("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4", id="sonnet-4"),
        pytest.param(
            "gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet", id="vertex-claude"
        ),
        pytest.param(
            "aws.bedrock", "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet", id="bedrock"
        ),
        pytest.param("google", "models/gemini-2.0-flash-001", "gemini-2.0-flash", id="gemini-path-version"),
        pytest.param("mistral", "mistral-large-2411", "mistral-large", id="mistral-version"),
        pytest.param(
            None, "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", "llama-3.1-70b-instruct", id="hf-id"
        ),
        pytest.param("deepseek", "deepseek-chat", "deepseek-v3", id="alias"),
    ],
)
def test_snapshot_and_alias_names_resolve_to_their_model(
    catalog: PriceCatalog, provider: str | None, name: str, model: str
) -> None:
    price = catalog.price_for(provider, name, NOW)
    assert price is not None
    assert price.model == model


@pytest.mark.parametrize(
    "name",
    ["gpt-4o-mini-foo", "gpt-4o-minix", "gpt-4o-realtime-preview", "gpt-4", "claude-3-5", "2024-07-18"],
)
def test_names_are_never_matched_by_prefix(catalog: PriceCatalog, name: str) -> None:
    price = catalog.price_for("openai", name, NOW)
    assert price is None or price.model == name  # e.g. "gpt-4" is a model of its own


def test_gpt_4o_mini_is_not_priced_as_gpt_4o(catalog: PriceCatalog) -> None:
    mini = catalog.price_for("openai", "gpt-4o-mini-2024-07-18", NOW)
    big = catalog.price_for("openai", "gpt-4o-2024-08-06", NOW)
    assert mini is not None
    assert big is not None
    assert (mini.input, mini.output) == (0.15, 0.60)
    assert (big.input, big.output) == (2.50, 10.00)


@pytest.mark.parametrize(
    ("provider", "name", "expected_provider", "input_price"),
    [
        pytest.param("groq", "llama-3.1-70b-versatile", "groq", 0.59, id="provider-picks"),
        pytest.param("together", "llama-3.1-70b-versatile", "together", 0.88, id="same-name-other-provider"),
        pytest.param("vllm", "llama-3.1-70b-instruct", "together", 0.88, id="unknown-provider-model-first"),
        pytest.param(None, "llama-3.1-70b-instruct", "together", 0.88, id="no-provider"),
        pytest.param("azure.openai", "gpt-4o", "openai", 2.50, id="provider-alias"),
    ],
)
def test_provider_chooses_between_sellers_of_one_model(
    catalog: PriceCatalog, provider: str | None, name: str, expected_provider: str, input_price: float
) -> None:
    price = catalog.price_for(provider, name, NOW)
    assert price is not None
    assert (price.provider, price.input) == (expected_provider, input_price)


#: The models kansoku promises to price out of the box, as their providers name them.
COMMON_MODELS = {
    "openai": [
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small", "text-embedding-3-large",
        "text-embedding-ada-002", "mock-gpt",
    ],
    "anthropic": [
        "claude-3-haiku-20240307", "claude-3-5-haiku-20241022", "claude-3-5-sonnet-20240620",
        "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514", "claude-sonnet-4-5",
        "claude-opus-4-20250514", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001", "mock-claude",
    ],
    "google": [
        "gemini-1.5-flash", "gemini-1.5-pro", "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro",
    ],
    "mistral": ["mistral-small-latest", "mistral-medium-latest", "mistral-large-latest", "codestral-latest"],
    "together": [
        "llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.1-405b-instruct",
        "mixtral-8x7b-instruct-v0.1", "qwen2.5-72b-instruct", "deepseek-v3", "deepseek-r1",
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "name"), [(provider, name) for provider, names in COMMON_MODELS.items() for name in names]
)
def test_packaged_catalog_prices_the_common_models_today(
    catalog: PriceCatalog, provider: str | None, name: str
) -> None:
    price = catalog.price_for(provider, name, NOW)
    assert price is not None
    assert price.input > 0
    assert price.provider == provider


# --- effective dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "at_ns", "input_price"),
    [
        pytest.param("gpt-4o", ns(2024, 9, 1), 5.00, id="gpt-4o-launch-price"),
        pytest.param("gpt-4o", ns(2024, 10, 1) + 86_400 * 10**9 - 1, 5.00, id="gpt-4o-last-nanosecond"),
        pytest.param("gpt-4o", ns(2024, 10, 2), 2.50, id="gpt-4o-new-price-from-its-first-day"),
        pytest.param("o3", ns(2025, 5, 1), 10.00, id="o3-before-cut"),
        pytest.param("o3", ns(2025, 7, 1), 2.00, id="o3-after-cut"),
        pytest.param("gpt-4o", ns(2020, 1, 1), 5.00, id="before-release-uses-first-price"),
    ],
)
def test_effective_dates_switch_the_price(
    catalog: PriceCatalog, name: str, at_ns: int, input_price: float
) -> None:
    price = catalog.price_for("openai", name, at_ns)
    assert price is not None
    assert price.input == input_price


def test_a_gap_between_periods_or_a_retired_price_has_no_price() -> None:
    catalog = PriceCatalog(
        [
            ModelPrice(
                "acme", "m", 1.0, 1.0, effective_from=date(2025, 1, 1), effective_until=date(2025, 2, 1)
            ),
            ModelPrice(
                "acme", "m", 2.0, 2.0, effective_from=date(2025, 3, 1), effective_until=date(2025, 4, 1)
            ),
        ]
    )
    assert catalog.price_for("acme", "m", ns(2025, 2, 15)) is None
    assert catalog.price_for("acme", "m", ns(2025, 4, 1)) is None
    assert catalog.price_for("acme", "m", ns(2025, 3, 31)) == ModelPrice(
        "acme", "m", 2.0, 2.0, effective_from=date(2025, 3, 1), effective_until=date(2025, 4, 1)
    )


# --- user overrides ----------------------------------------------------------------------------


def test_user_price_file_wins_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"provider": "openai", "model": "gpt-4o", "input": 1.0, "output": 4.0},
            {"provider": "deepseek", "model": "deepseek-v3", "input": 0.1, "output": 0.2},
            {"provider": "acme", "model": "acme-large", "aliases": ["acme-l"], "input": 7, "output": 9},
        ],
    )
    catalog = PriceCatalog.default().merged(PriceCatalog.from_file(path))

    assert catalog.cost(call("gpt-4o-2024-11-20", input_tokens=1000, output_tokens=1000), NOW) == 0.005
    # The override replaces every period, so old calls get the user's price as well.
    assert catalog.cost(call("gpt-4o", input_tokens=1000, output_tokens=0), ns(2024, 6, 1)) == 0.001
    # Aliases from the packaged catalog still lead to the overridden model.
    chat = catalog.price_for("deepseek", "deepseek-chat", NOW)
    assert chat is not None
    assert chat.input == 0.1
    assert catalog.cost(call("acme-l-2025-01-01", "acme", input_tokens=10**6, output_tokens=0), NOW) == 7.0
    # Untouched models keep their packaged price.
    assert catalog.cost(call("gpt-4o-mini", input_tokens=10**6, output_tokens=0), NOW) == 0.15
    assert catalog.version == "2026-11-01+test"


def test_from_dict_matches_from_file(tmp_path: Path) -> None:
    models = [{"provider": "acme", "model": "m", "input": 1, "cached_input": 0.1, "output": 2}]
    from_file = PriceCatalog.from_file(write(tmp_path, models))
    from_dict = PriceCatalog.from_dict({"models": models})
    assert list(from_file) == list(from_dict)
    assert len(from_dict) == 1


GOOD = {"provider": "acme", "model": "m", "input": 1.0, "output": 2.0}
NEGATIVE_INPUT = r"models\[1\]\.input must be a non-negative number"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param({**GOOD, "input": -1}, NEGATIVE_INPUT, id="negative"),
        pytest.param(
            {**GOOD, "output": "2"}, r"models\[1\]\.output must be a non-negative number", id="string"
        ),
        pytest.param({**GOOD, "input": True}, NEGATIVE_INPUT, id="bool"),
        pytest.param(
            {**GOOD, "model": None}, r"models\[1\]\.model must be a non-empty string", id="no-model"
        ),
        pytest.param({**GOOD, "effective_from": "May 1"}, r"\.effective_from must be an ISO date", id="date"),
        pytest.param({**GOOD, "inptu": 1}, r"models\[1\]: unknown field 'inptu'", id="typo"),
        pytest.param({**GOOD, "aliases": "m2"}, r"models\[1\]\.aliases must be a list", id="aliases"),
        pytest.param(
            {**GOOD, "effective_from": "2025-02-01", "effective_until": "2025-01-01"},
            r"models\[1\]\.effective_until must be after effective_from",
            id="until-before-from",
        ),
        pytest.param({**GOOD, "model": "first"}, r"models\[1\].*overlaps models\[0\]", id="overlap"),
        pytest.param(
            {**GOOD, "aliases": ["first"]},
            r"models\[1\]\.aliases: 'first' already names model",
            id="alias-clash",
        ),
    ],
)
def test_bad_price_file_names_file_entry_and_field(tmp_path: Path, bad: dict[str, Any], message: str) -> None:
    path = write(tmp_path, [{**GOOD, "model": "first"}, bad], name="team-prices.json")
    with pytest.raises(PriceCatalogError, match=message) as excinfo:
        PriceCatalog.from_file(path)
    assert str(excinfo.value).startswith(f"{path}: ")
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{not json", r"not valid JSON \(line 1, column 2\)", id="syntax"),
        pytest.param("[]", "must be a JSON object", id="not-object"),
        pytest.param('{"models": {}}', "models must be a list", id="models-not-list"),
        pytest.param('{"currency": "EUR", "models": []}', "currency must be 'USD'", id="currency"),
    ],
)
def test_malformed_price_file_is_reported(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PriceCatalogError, match=message):
        PriceCatalog.from_file(path)


def test_missing_price_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PriceCatalogError, match="cannot read the price file"):
        PriceCatalog.from_file(tmp_path / "nope.json")


# --- unknown models -----------------------------------------------------------------------------


def test_unknown_model_costs_none_is_counted_and_warned_once(
    catalog: PriceCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kansoku.pricing")
    llm = call("my-finetune-v7", input_tokens=10, output_tokens=10)

    assert [catalog.cost(llm, NOW) for _ in range(3)] == [None, None, None]
    catalog.cost(call("other-model", input_tokens=1, output_tokens=1), NOW)

    assert catalog.unknown_models == {"my-finetune-v7": 3, "other-model": 1}
    warnings = [r for r in caplog.records if r.name == "kansoku.pricing"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert "'my-finetune-v7'" in warnings[0].getMessage()
    assert "from_file" in warnings[0].getMessage()


def test_calls_without_usage_are_not_counted_as_unknown(catalog: PriceCatalog) -> None:
    assert catalog.cost(call("my-finetune-v7"), NOW) is None
    assert catalog.unknown_models == {}


def test_each_default_catalog_counts_on_its_own() -> None:
    first, second = PriceCatalog.default(), PriceCatalog.default()
    first.cost(call("nobody-knows", input_tokens=1, output_tokens=1), NOW)
    assert first.unknown_models == {"nobody-knows": 1}
    assert second.unknown_models == {}


def test_unknown_counts_are_exact_across_threads(catalog: PriceCatalog) -> None:
    llm = call("threaded-unknown", input_tokens=1, output_tokens=1)

    def work() -> None:
        for _ in range(2000):
            catalog.cost(llm, NOW)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert catalog.unknown_models["threaded-unknown"] == 16_000


# --- processor -------------------------------------------------------------------------------------


def test_processor_fills_cost_from_the_span_start_time(catalog: PriceCatalog) -> None:
    before = span(call("gpt-4o", input_tokens=10**6, output_tokens=0), start_ns=ns(2024, 9, 1))
    after = span(call("gpt-4o", input_tokens=10**6, output_tokens=0), start_ns=ns(2024, 11, 1))
    processor = CostProcessor(catalog)
    processor(before)
    processor(after)
    assert (cost_of(before), cost_of(after)) == (5.0, 2.5)


def test_processor_leaves_spans_without_llm_alone() -> None:
    plain = span(None)
    record = plain.to_record()
    assert CostProcessor()(plain) is plain
    assert plain.to_record() == record


def test_processor_keeps_a_cost_already_set(catalog: PriceCatalog) -> None:
    s = span(call("gpt-4o", input_tokens=10**6, output_tokens=0, cost_usd=0.42))
    CostProcessor(catalog)(s)
    assert cost_of(s) == 0.42


def test_processor_never_raises(
    catalog: PriceCatalog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(llm: LLMCall, at_ns: int) -> float | None:
        raise RuntimeError("pricing bug")

    monkeypatch.setattr(catalog, "cost", broken)
    s = span(call("gpt-4o", input_tokens=1, output_tokens=1))
    with caplog.at_level(logging.WARNING, logger="kansoku.pricing"):
        assert CostProcessor(catalog)(s) is s
    assert cost_of(s) is None
    assert "could not compute cost_usd" in caplog.text

"""The gateway's configuration: the documented shape parses; every mistake names its line."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from kansoku.gateway import Budget, ConfigFileError, Limit, Secret, key_digest, load_config, parse_config
from kansoku.policy import SlidingWindow, TokenBucket

GOOD = textwrap.dedent(
    """\
    models:
      - name: chat                      # what clients send as "model"
        deployments:
          - {provider: openai, model: gpt-4o-mini, api_base: https://api.openai.com/v1, api_key: ${OPENAI_API_KEY}, region: us-east, weight: 3, timeout_s: 20}
          - {provider: anthropic, model: claude-haiku-4-5, api_key: "${ANTHROPIC_API_KEY:-sk-ant-none}", region: eu-west, weight: 1}
        routing: weighted
        retry: {attempts: 3, backoff: full_jitter, base_ms: 200, cap_ms: 5000, budget: 0.2}
        circuit_breaker: {window: 100, failure_rate: 0.5, min_calls: 20, open_s: 30, half_open_calls: 3}
        fallbacks: [chat-backup]
        fallback_response: "We are busy right now; please try again in a minute."
        validate: {json_schema: {type: object, required: [answer]}, reask: 1}
      - name: chat-backup
        deployments:
          - {provider: openai_compatible, model: llama-3, api_base: "http://127.0.0.1:8000/v1"}
    dead_letter: {retain_days: 7}
    """  # noqa: E501 -- the issue's example, flow mappings on one line
)
ENV = {"OPENAI_API_KEY": "sk-test-canary-123"}


def test_the_documented_shape_parses_with_env_substitution():
    cfg = parse_config(GOOD, "gateway.yaml", ENV)
    chat = cfg.model("chat")
    assert chat is not None
    assert [d.model for d in chat.deployments] == ["gpt-4o-mini", "claude-haiku-4-5"]
    first, second = chat.deployments
    assert first.api_key == Secret("sk-test-canary-123")
    assert second.api_key is not None
    assert second.api_key.reveal() == "sk-ant-none"  # the :-default
    assert (first.region, first.weight, first.timeout_s) == ("us-east", 3.0, 20.0)
    assert (chat.retry.attempts, chat.retry.base_ms, chat.retry.cap_ms) == (3, 200, 5000)
    assert chat.circuit_breaker.half_open_calls == 3
    assert chat.fallbacks == ("chat-backup",)
    assert chat.validate is not None
    assert chat.validate.json_schema == {"type": "object", "required": ["answer"]}
    assert cfg.dead_letter_retain_days == 7


def test_provider_keys_never_show_in_reprs():
    cfg = parse_config(GOOD, "gateway.yaml", ENV)
    assert "sk-test-canary-123" not in repr(cfg)
    assert "sk-test-canary-123" not in str(cfg.models[0].deployments[0])


def _error(text: str, env: dict[str, str] | None = None) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as info:
        parse_config(textwrap.dedent(text), "gateway.yaml", env if env is not None else ENV)
    assert "sk-test-canary-123" not in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("models:\n  - name: chat\n    deployments:\n      - {provider: opnai, model: x}\n", 4,
         "models[0].deployments[0].provider: must be one of openai"),
        ("models:\n  - name: chat\n    retyr: {attempts: 2}\n    fallback_response: hi\n", 3,
         "unknown setting 'retyr'; did you mean 'retry'?"),
        ("models:\n  - name: chat\n    fallback_response: hi\n    retry:\n      attempts: 0\n", 5,
         "models[0].retry.attempts: must be a whole number from 1 to 10, got 0"),
        ("models:\n  - name: chat\n    fallback_response: hi\n    fallbacks: [chta]\n", 2,
         "fallback 'chta' is not a model name"),
        ("models:\n  - name: a\n    fallbacks: [b]\n  - name: b\n    fallbacks: [a]\n", 2,
         "lead back to itself"),
        ("models:\n  - name: a\n    fallback_response: x\n  - name: a\n    fallback_response: y\n", 4,
         "used twice (first at line 2)"),
        (("models:\n  - name: chat\n    deployments:\n      - {provider: openai, "
         "model: m, api_key: ${NOPE}}\n"), 4, "environment variable NOPE is not set"),
        ("models:\n  - name: chat\n    deployments:\n      - {provider: azure, model: m}\n", 4,
         "api_base is required for provider azure"),
        (("models:\n  - name: chat\n    circuit_breaker: {window: 10, min_calls: 20}\n"
         "    fallback_response: x\n"), 3, "min_calls (20) cannot exceed window (10)"),
        ("models:\n  - name: chat\n  deployments: [\n", 3, "not valid YAML"),
        ("models:\n  - name: chat\n    fallback_response: x\nlimits: {}\n", 4,
         "limits: expected a list, got a mapping"),
        ("models: []\n", 1, "needs at least one model"),
        ("models:\n  - name: chat\n", 2, "needs deployments"),
        ("", 1, "the file is empty"),
    ],
)  # fmt: skip
def test_mistakes_name_the_line_and_the_fix(text, line, message):
    err = _error(text)
    assert err.line == line
    assert message in str(err)
    assert str(err).startswith(f"gateway.yaml:{line}")


def test_a_plain_env_value_gets_its_yaml_type():
    text = "models:\n  - name: chat\n    fallback_response: x\n    deadline_s: ${DEADLINE}\n"
    assert parse_config(text, "gateway.yaml", {"DEADLINE": "12.5"}).models[0].deadline_s == 12.5


def test_an_env_value_cannot_inject_structure():
    text = "models:\n  - name: chat\n    fallback_response: ${REPLY}\n"
    cfg = parse_config(text, "gateway.yaml", {"REPLY": "x\n  - name: evil"})
    assert [m.name for m in cfg.models] == ["chat"]
    assert cfg.models[0].fallback_response == "x\n  - name: evil"


def test_load_config_reads_a_file_and_reports_a_missing_one(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    assert load_config(path, ENV).model("chat-backup") is not None
    with pytest.raises(ConfigFileError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


# -- virtual keys, admin keys, limits, budgets -----------------------------------------------------

KEY = "vk-canary-0123456789abcdef"
ADMIN = "adm-canary-0123456789abcdef"
ACCESS_ENV = {**ENV, "SUPPORT_BOT_KEY": KEY, "KANSOKU_ADMIN_KEY": ADMIN}
ACCESS = textwrap.dedent(
    """\
    models:
      - {name: chat, fallback_response: hi}
      - {name: embed, fallback_response: hi}
    admin_keys:
      - ${KANSOKU_ADMIN_KEY}
      - {key_sha256: %s}
    keys:
      - name: support-bot
        key: ${SUPPORT_BOT_KEY}
        models: [chat]
        tags: {department: support, feature: faq, cost_center: 4411}
        budget: {daily_usd: 5, monthly_usd: 100}
        limits:
          - {on: requests, algorithm: sliding_window, limit: 60, window_s: 60}
      - {name: batch, key_sha256: %s}
    limits:
      - {per: key, on: requests, algorithm: token_bucket, limit: 10, per_s: 1}
      - {per: user, on: tokens, algorithm: sliding_window, limit: 100000, window_s: 3600}
      - {per: model, on: requests, algorithm: sliding_window, limit: 1000, window_s: 60}
      - {per: global, on: tokens, algorithm: token_bucket, limit: 1000000, per_s: 1000}
    budgets:
      - {per: department, daily_usd: 10, monthly_usd: 200}
      - {per: user, daily_usd: 1}
    """
) % ("AB" * 32, "cd" * 32)


def test_keys_limits_and_budgets_parse_and_plain_keys_are_hashed() -> None:
    cfg = parse_config(ACCESS, "gateway.yaml", ACCESS_ENV)
    bot, batch = cfg.keys
    assert bot.name == "support-bot"
    assert bot.sha256 == key_digest(KEY)
    assert bot.models == frozenset({"chat"})
    assert bot.tags == {"department": "support", "feature": "faq", "cost_center": "4411"}
    assert bot.department == "support"
    assert bot.budget == Budget("key", 5.0, 100.0)
    assert bot.limits == (Limit("key", "requests", SlidingWindow(60, 60, 0.06)),)
    assert (batch.sha256, batch.models, batch.budget, batch.limits) == ("cd" * 32, None, None, ())
    assert cfg.admin_key_hashes == frozenset({key_digest(ADMIN), "ab" * 32})  # hex lowercased
    assert [(lim.per, lim.on) for lim in cfg.limits] == [
        ("key", "requests"), ("user", "tokens"), ("model", "requests"), ("global", "tokens")
    ]  # fmt: skip
    assert cfg.limits[0].rate == TokenBucket(10, 1)
    assert cfg.budgets == (Budget("department", 10.0, 200.0), Budget("user", 1.0, None))


def test_plain_keys_are_never_kept_nor_shown() -> None:
    cfg = parse_config(ACCESS, "gateway.yaml", ACCESS_ENV)
    shown = repr(cfg) + str(cfg.keys) + repr(cfg.keys[0])
    for secret in (KEY, ADMIN, key_digest(KEY), key_digest(ADMIN)):
        assert secret not in shown
    assert "support-bot" in shown
    stored = pickle.dumps(cfg)  # everything the config object holds
    assert KEY.encode() not in stored
    assert ADMIN.encode() not in stored


def test_without_access_settings_the_gateway_is_open() -> None:
    cfg = parse_config(GOOD, "gateway.yaml", ENV)
    assert (cfg.keys, cfg.admin_key_hashes, cfg.limits, cfg.budgets) == ((), frozenset(), (), ())


HEAD = "models:\n  - {name: chat, fallback_response: hi}\n"
ONE_KEY = "keys:\n  - {name: k, key: ${SUPPORT_BOT_KEY}}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${SHORT}}\n", 4,
                     "keys[0].key: is shorter than 16 characters: keys are kept only as an unsalted SHA-256",
                     id="short-key"),
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${SPACED}}\n", 4,
                     "must not start or end with whitespace", id="spaced-key"),
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${DIGITS}}\n", 4,
                     'quote it, as in key: "${MY_KEY}"', id="digits-key"),
        pytest.param(HEAD + "keys:\n  - {name: k}\n", 4, "needs exactly one of key", id="no-key"),
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${SUPPORT_BOT_KEY}, key_sha256: abc}\n", 4,
                     "needs exactly one of key", id="both-keys"),
        pytest.param(HEAD + "keys:\n  - {name: k, key_sha256: abc}\n", 4,
                     "key_sha256: must be 64 hex digits", id="bad-hash"),
        pytest.param(HEAD + "keys:\n  - {name: k, kye: ${SUPPORT_BOT_KEY}}\n", 4,
                     "unknown setting 'kye'; did you mean 'key'?", id="typo"),
        pytest.param(HEAD + "keys:\n  - {name: 'a b', key: ${SUPPORT_BOT_KEY}}\n", 4,
                     "keys[0].name: use 1-64 letters", id="bad-name"),
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${SUPPORT_BOT_KEY}, models: [caht]}\n", 4,
                     "'caht' is not a model name; did you mean 'chat'?", id="unknown-model"),
        pytest.param(HEAD + "keys:\n  - {name: k, key: ${SUPPORT_BOT_KEY}, models: []}\n", 4,
                     "is empty, so the key could call nothing", id="no-models"),
        pytest.param(HEAD + ONE_KEY + "  - {name: k, key_sha256: %s}\n" % ("ab" * 32), 5,
                     "key name 'k' is used twice (first at line 4)", id="same-name"),
        pytest.param(HEAD + ONE_KEY + "  - {name: j, key: ${SUPPORT_BOT_KEY}}\n", 5,
                     "the same key is given twice (first at keys[0])", id="same-key"),
        pytest.param(HEAD + ONE_KEY + "admin_keys: [${SUPPORT_BOT_KEY}]\n", 5,
                     "admin_keys[0]: the same key is given twice (first at keys[0]); admin keys must differ",
                     id="admin-is-a-virtual-key"),
        pytest.param(HEAD + "admin_keys: [${SHORT}]\n", 3, "admin_keys[0]: is shorter than 16",
                     id="short-admin"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: key, on: requests, algorithm: token_bucket, "
                     "limit: 10, window_s: 60}\n", 6,
                     "window_s: is not a setting of a token_bucket; it takes per_s", id="bucket-window"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: key, on: requests, algorithm: sliding_window, "
                     "limit: 10}\n", 6, "window_s (the window length in seconds) is required",
                     id="no-window"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: key, on: requests, algorithm: sliding_window, "
                     "limit: 0, window_s: 60}\n", 6, "limit: must be a number from 1", id="zero-limit"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: key, on: requests, algorithm: token_bucket, "
                     "limit: 5, per_s: 0}\n", 6, "per_s: must be a number above 0", id="zero-refill"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: team, on: requests, algorithm: token_bucket, "
                     "limit: 5, per_s: 1}\n", 6, "per: must be one of key, user, model, global",
                     id="bad-per"),
        pytest.param(HEAD + ONE_KEY + "limits:\n  - {per: key, on: request, algorithm: token_bucket, "
                     "limit: 5, per_s: 1}\n", 6, "on: must be one of requests, tokens", id="bad-on"),
        pytest.param(HEAD + "keys:\n  - name: k\n    key: ${SUPPORT_BOT_KEY}\n    limits:\n"
                     "      - {per: key, on: requests, algorithm: token_bucket, limit: 5, per_s: 1}\n", 7,
                     "keys[0].limits[0].per: is implied (key) inside a key; for another per, use the top "
                     "limits:",
                     id="per-inside-a-key"),
        pytest.param(HEAD + "limits:\n  - {per: key, on: requests, algorithm: token_bucket, "
                     "limit: 5, per_s: 1}\n", 4, "per: key needs virtual keys, but no keys: are configured",
                     id="per-key-without-keys"),
        pytest.param(HEAD + ONE_KEY + "budgets:\n  - {per: department, daily_usd: 5}\n", 6,
                     "per: department needs keys with a department tag", id="department-without-tags"),
        pytest.param(HEAD + ONE_KEY + "budgets:\n  - {per: key}\n", 6,
                     "needs daily_usd or monthly_usd", id="budget-without-amounts"),
        pytest.param(HEAD + ONE_KEY + "budgets:\n  - {per: key, daily_usd: -1}\n", 6,
                     "budgets[0].daily_usd: must be a number above 0", id="negative-budget"),
        pytest.param(HEAD + "budgets:\n  - {per: user, weekly_usd: 5}\n", 4,
                     "unknown setting 'weekly_usd'; did you mean 'daily_usd'?", id="budget-typo"),
    ],
)  # fmt: skip
def test_access_mistakes_name_the_line_and_the_fix(text: str, line: int, message: str) -> None:
    env = {**ACCESS_ENV, "SHORT": "vk-canary-short", "SPACED": f" {KEY}", "DIGITS": "12345678901234567890"}
    err = _error(text, env)
    assert err.line == line
    assert message in str(err)
    assert str(err).startswith(f"gateway.yaml:{line}")
    for secret in (KEY, "vk-canary-short", "12345678901234567890", key_digest(KEY)):
        assert secret not in str(err)

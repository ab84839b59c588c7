"""The gateway's configuration: the documented shape parses; every mistake names its line."""

from __future__ import annotations

import textwrap

import pytest

from kansoku.gateway import ConfigFileError, Secret, load_config, parse_config

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
         "not supported by this version yet"),
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

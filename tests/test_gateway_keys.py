"""Virtual and admin keys: who gets in, by which header, and that no key ever shows."""

from __future__ import annotations

import textwrap

import pytest

from kansoku.gateway import KeyRing, VirtualKey, key_digest, parse_config
from kansoku.gateway._errors import AuthError

KEY = "vk-canary-0123456789abcdef"
OTHER = "vk-canary-fedcba9876543210"
ADMIN = "adm-canary-0123456789abcdef"
CONFIG = textwrap.dedent(
    """\
    models:
      - {name: chat, fallback_response: hi}
    admin_keys: [${ADMIN_KEY}]
    keys:
      - {name: support-bot, key: ${BOT_KEY}, models: [chat], tags: {department: support}}
      - {name: batch, key: ${BATCH_KEY}}
    """
)


def ring() -> KeyRing:
    env = {"BOT_KEY": KEY, "BATCH_KEY": OTHER, "ADMIN_KEY": ADMIN}
    return KeyRing.from_config(parse_config(CONFIG, "gateway.yaml", env))


def auth_error(keys: KeyRing, authorization: str | None, x_api_key: str | None = None) -> str:
    with pytest.raises(AuthError) as info:
        keys.authenticate(authorization, x_api_key)
    assert info.value.status == 401
    return info.value.message


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "name"),
    [
        pytest.param(f"Bearer {KEY}", None, "support-bot", id="bearer"),
        pytest.param(f"bearer   {OTHER} ", None, "batch", id="scheme-case-and-spaces"),
        pytest.param(None, KEY, "support-bot", id="api-key-header"),
        pytest.param("", f" {OTHER}", "batch", id="empty-authorization-then-api-key"),
    ],
)
def test_a_configured_key_is_accepted_by_bearer_or_api_key_header(
    authorization: str | None, x_api_key: str | None, name: str
) -> None:
    key = ring().authenticate(authorization, x_api_key)
    assert key is not None
    assert key.name == name


def test_the_key_carries_its_models_and_tags() -> None:
    key = ring().authenticate(f"Bearer {KEY}", None)
    assert key is not None
    assert key.allows("chat")
    assert not key.allows("gpt-4o")
    assert key.department == "support"


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "message"),
    [
        pytest.param(None, None, "no API key: send 'Authorization: Bearer <key>'", id="missing"),
        pytest.param("Bearer ", None, "no API key", id="empty-bearer"),
        pytest.param(f"Bearer {KEY}x", None, "invalid API key", id="unknown"),
        pytest.param(None, f"{KEY[:-1]}", "invalid API key", id="unknown-api-key"),
        pytest.param(f"Basic {KEY}", None, "must be 'Bearer <key>'", id="wrong-scheme"),
        pytest.param(f"Bearer {ADMIN}", None, "invalid API key", id="admin-key-is-not-a-virtual-key"),
    ],
)
def test_a_missing_or_unknown_key_is_refused_without_echoing_it(
    authorization: str | None, x_api_key: str | None, message: str
) -> None:
    text = auth_error(ring(), authorization, x_api_key)
    assert message in text
    assert "canary" not in text  # every key here has it: no key, nor a prefix of one, is echoed


def test_with_no_keys_the_gateway_is_open() -> None:
    keys = KeyRing()
    assert keys.open
    assert keys.authenticate(None, None) is None
    assert keys.authenticate("Bearer sk-whatever-the-client-sends", None) is None
    assert not ring().open


def test_admin_keys_open_only_the_admin_api() -> None:
    keys = ring()
    assert keys.admin(f"Bearer {ADMIN}")
    assert keys.admin(None, ADMIN)
    assert not keys.admin(f"Bearer {KEY}")  # a virtual key is no admin key
    assert not keys.admin(None)
    assert not keys.admin(f"Bearer {ADMIN}x")


def test_with_no_admin_key_the_admin_api_is_closed_and_says_how_to_open_it() -> None:
    keys = KeyRing([VirtualKey("bot", key_digest(KEY))])
    with pytest.raises(AuthError, match=r"admin API is closed.*admin_keys:") as info:
        keys.admin(f"Bearer {KEY}")
    assert KEY not in info.value.message


def test_keys_never_show_in_reprs() -> None:
    keys = ring()
    key = keys.authenticate(f"Bearer {KEY}", None)
    shown = f"{keys!r} {key!r} {key}"
    for secret in (KEY, OTHER, ADMIN, key_digest(KEY), key_digest(ADMIN)):
        assert secret not in shown
    assert "support-bot" in shown

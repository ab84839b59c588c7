"""Gateway security (reliability.md tests 11 and 12, and the gateway issue's list).

Canary secrets planted in the client's ``Authorization`` and ``x-api-key``, in request bodies,
in the configuration's provider keys and in upstream error text must not show in records,
dead letters, error bodies, logs or stderr; keys are kept as hashes only. Client-supplied
``api_base`` is refused (and never reaches a private address even when allowed); bodies are
bounded; bad input, unknown models, missing keys and admin access are refused cleanly.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from helpers.gateway import Launch, Reply, RunningGateway, write_config
from kansoku.gateway import KeyRing, load_config
from kansoku.testing import MockUpstream

VIRTUAL_KEY = "vk-CANARY-virtual-7c1f0e9a2b3d4c5e"
OTHER_KEY = "vk-other-client-0a9b8c7d6e5f4a3b"
ADMIN_KEY = "ak-CANARY-admin-5e4d3c2b1a0f9e8d"
PROVIDER_KEY = "sk-CANARY-provider-1b2c3d4e5f6a7b8c9d0e"
X_API_KEY = "xk-CANARY-xapikey-9d8c7b6a5f4e3d2c"
BODY_KEY = "bk-CANARY-bodykey-3c4d5e6f7a8b9c0d"
MESSAGE_KEY = "sk-proj-CANARYmsg0123456789abcdefABCDEF"
WRONG_KEY = "vk-CANARY-wrong-00112233445566778899"
UPSTREAM_SECRET = "sk-proj-CANARYupstream9876543210fedcbaXY"
CANARIES = {
    "virtual key": VIRTUAL_KEY,
    "admin key": ADMIN_KEY,
    "provider key": PROVIDER_KEY,
    "x-api-key": X_API_KEY,
    "body api_key": BODY_KEY,
    "key in a message": MESSAGE_KEY,
    "wrong key": WRONG_KEY,
    "secret in upstream error": UPSTREAM_SECRET,
}


class _ErrorUpstream:
    """An OpenAI-style upstream that answers every POST with ``status`` and a fixed error body."""

    def __init__(self, status: int, body: dict[str, Any], host: str = "127.0.0.1") -> None:
        payload = json.dumps(body).encode()
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.count += 1
                self.send_response(status)
                for name, value in outer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.headers: dict[str, str] = {}
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> _ErrorUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def leaky_upstream() -> Iterator[_ErrorUpstream]:
    """Fails with an error text that echoes the provider key and another secret."""
    message = f"Incorrect API key provided: {PROVIDER_KEY}. Hint: the key {UPSTREAM_SECRET} is revoked"
    with _ErrorUpstream(500, {"error": {"message": message, "type": "server_error", "code": None}}) as up:
        yield up


def _config(up: MockUpstream, leaky: _ErrorUpstream, extra: str = "") -> str:
    return f"""
admin_keys: ["{ADMIN_KEY}"]
keys:
  - name: bot
    key: "{VIRTUAL_KEY}"
  - name: narrow
    key: "{OTHER_KEY}"
    models: [ok]
models:
  - name: ok
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {up.openai_base_url}
        api_key: {PROVIDER_KEY}
  - name: failing
    retry: {{attempts: 2, base_ms: 1, cap_ms: 2}}
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {leaky.url}
        api_key: {PROVIDER_KEY}
{extra}"""


def _client_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {VIRTUAL_KEY}", "x-api-key": X_API_KEY}


def _leaks(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return [name for name, value in CANARIES.items() if value in text and name not in allowed]


# -- test 11: canaries ----------------------------------------------------------------------------


def test_canary_secrets_appear_nowhere(
    launch: Launch,
    upstream: MockUpstream,
    leaky_upstream: _ErrorUpstream,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = launch(_config(upstream, leaky_upstream))
    body_extra = {"api_key": BODY_KEY, "user": "u1"}
    content = f"my key is {MESSAGE_KEY}, keep it safe"
    replies: list[Reply] = []

    # An answered call, plain and streamed.
    replies.append(gw.chat("ok", content, headers=_client_headers(), **body_extra))
    replies.append(gw.chat("ok", content, headers=_client_headers(), stream=True, **body_extra))
    assert [r.status for r in replies] == [200, 200]
    # A call every deployment fails, with the secrets echoed in the upstream's error text.
    failed = gw.chat("failing", content, headers=_client_headers(), **body_extra)
    assert failed.status >= 500
    assert leaky_upstream.count == 2  # tried, and retried
    failed_stream = gw.chat("failing", content, headers=_client_headers(), stream=True, **body_extra)
    assert failed_stream.status == failed.status
    letter_id = failed.headers["x-kansoku-dead-letter"]
    # Refusals: a wrong key, no key, a non-admin key on the admin API.
    replies.append(gw.chat("ok", content, headers={"Authorization": f"Bearer {WRONG_KEY}"}))
    replies.append(gw.chat("ok", content, headers={"x-api-key": WRONG_KEY}))
    replies.append(gw.request("GET", "/admin/dead-letters", headers={"Authorization": f"Bearer {WRONG_KEY}"}))
    assert [r.status for r in replies[2:]] == [401, 401, 401]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    listed = gw.request("GET", "/admin/dead-letters", headers=admin)
    shown = gw.request("GET", f"/admin/dead-letters/{letter_id}", headers=admin)
    assert listed.status == shown.status == 200
    assert shown.json()["key_name"] == "bot"

    # The answered calls' text is the model's, and the prompt reached the model unchanged.
    assert "my key is" in json.dumps(upstream.requests[0].json)
    records = [json.dumps(s.to_record(), default=str) for s in gw.flush()]
    assert len([r for r in records if '"kind": "server"' in r]) >= 4
    for where, text in [
        *((f"record {i}", r) for i, r in enumerate(records)),
        ("dead letters list", listed.body.decode()),
        ("dead letter", shown.body.decode()),
        ("failed call's answer", failed.body.decode() + json.dumps(failed.headers)),
        ("failed stream's answer", failed_stream.body.decode()),
        *((f"reply {i}", r.body.decode() + json.dumps(r.headers)) for i, r in enumerate(replies)),
        ("log", caplog.text),
    ]:
        # A reply may repeat the prompt ("Mock reply to: my key is sk-...") as the model's answer.
        allowed = ("key in a message",) if where.startswith(("reply 0", "reply 1")) else ()
        assert _leaks(text, allowed) == [], where
    out, err = capfd.readouterr()
    assert _leaks(out + err) == []
    # The upstreams saw the gateway's provider key, never the client's credentials.
    for sent in upstream.requests:
        headers = json.dumps(sent.headers)
        assert VIRTUAL_KEY not in headers
        assert X_API_KEY not in headers
        assert PROVIDER_KEY in headers


def test_a_body_api_key_is_not_sent_to_the_provider(
    launch: Launch, upstream: MockUpstream, leaky_upstream: _ErrorUpstream
) -> None:
    gw = launch(_config(upstream, leaky_upstream))
    assert gw.chat("ok", "hi", headers=_client_headers(), api_key=BODY_KEY).status == 200
    assert BODY_KEY not in json.dumps(upstream.requests[-1].json)


def test_keys_are_kept_as_hashes_only(
    tmp_path: Path, upstream: MockUpstream, leaky_upstream: _ErrorUpstream
) -> None:
    config = load_config(write_config(tmp_path, _config(upstream, leaky_upstream)))
    ring = KeyRing.from_config(config)
    for shown in (repr(config), str(config), repr(ring), repr(config.keys), repr(config.models)):
        assert _leaks(shown) == []
    assert repr(ring) == "KeyRing(2 keys, 1 admin keys)"
    assert all(len(k.sha256) == 64 for k in config.keys)
    assert ring.authenticate(f"Bearer {VIRTUAL_KEY}") is not None


# -- test 12: client-supplied upstream URLs -------------------------------------------------------


def _ssrf_config(up: MockUpstream, allow: bool) -> str:
    return f"""
allow_api_base_override: {"true" if allow else "false"}
models:
  - name: chat
    deployments:
      - provider: openai_compatible
        model: gpt-4o-mini
        api_base: {up.openai_base_url}
        api_key: {PROVIDER_KEY}
"""


@pytest.mark.parametrize("field", ["api_base", "base_url"])
def test_api_base_is_refused_by_default(launch: Launch, upstream: MockUpstream, field: str) -> None:
    gw = launch(_ssrf_config(upstream, allow=False))
    reply = gw.chat("chat", "hi", **{field: "https://api.example.com/v1"})
    assert reply.status == 400
    error = reply.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "api_base_not_allowed",
        field,
        "invalid_request_error",
    )
    assert upstream.request_count == 0


PRIVATE_BASES = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://localhost:{port}/v1",
    "http://LOCALHOST./v1",
    "http://127.0.0.1:{port}/v1",
    "http://127.1:{port}/v1",
    "http://2130706433:{port}/v1",  # 127.0.0.1 as one decimal number
    "http://0x7f000001:{port}/v1",
    "http://[::1]:{port}/v1",
    "http://0.0.0.0:{port}/v1",
    "http://10.0.0.1/v1",
    "http://172.16.0.1/v1",
    "http://192.168.1.1/v1",
    "http://100.64.0.1/v1",
    "http://[fd00::1]/v1",
    "http://[fe80::1]/v1",
]


def test_allowed_api_base_still_never_reaches_a_private_address(
    launch: Launch, upstream: MockUpstream
) -> None:
    gw = launch(_ssrf_config(upstream, allow=True))
    for base in PRIVATE_BASES:
        url = base.format(port=upstream.port)
        reply = gw.chat("chat", "hi", api_base=url, api_key="client-key")
        assert reply.status == 400, url
        assert reply.json()["error"]["code"] == "api_base_not_allowed", url
    assert upstream.request_count == 0
    assert gw.chat("chat", "hi", api_base="gopher://example.com/").status == 400


def test_an_allowed_api_base_cannot_redirect_into_the_private_network(
    launch: Launch, upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kansoku.gateway._override as override

    gw = launch(_ssrf_config(upstream, allow=True))
    # 127.0.0.2 stands in for a public host; everything else stays private.
    private = override._private
    monkeypatch.setattr(override, "_private", lambda address: address != "127.0.0.2" and private(address))
    with _ErrorUpstream(307, {}, host="127.0.0.2") as public:
        public.headers["location"] = f"{upstream.openai_base_url}/chat/completions"
        reply = gw.chat("chat", "hi", api_base=public.url, api_key="client-key")
        assert public.count == 1
    assert upstream.request_count == 0
    assert reply.status >= 400


# -- input bounds and refusals --------------------------------------------------------------------


def _post_chunked(gw: RunningGateway, chunks: list[bytes], pause_s: float = 0.0) -> tuple[int, bytes]:
    def pieces() -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            time.sleep(pause_s)  # each piece in its own TCP segment, as from a slow client

    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=pieces(),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_request_bodies_are_bounded(launch: Launch, upstream: MockUpstream) -> None:
    gw = launch(_ssrf_config(upstream, allow=False) + "max_body_bytes: 4096\n")
    big = "x" * 5000
    reply = gw.chat("chat", big)
    assert reply.status == 413
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "4096" in error["message"]
    # Without a Content-Length the bound holds too.
    payload = json.dumps({"model": "chat", "messages": [{"role": "user", "content": big}]}).encode()
    status, body = _post_chunked(gw, [payload[i : i + 1000] for i in range(0, len(payload), 1000)])
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert upstream.request_count == 0
    assert gw.chat("chat", "x" * 3000).status == 200  # below the bound


def test_a_body_arriving_in_pieces_is_read_whole(launch: Launch, upstream: MockUpstream) -> None:
    gw = launch(_ssrf_config(upstream, allow=False) + "max_body_bytes: 4096\n")
    payload = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "y" * 3000}]}).encode()
    status, body = _post_chunked(gw, [payload[i : i + 500] for i in range(0, len(payload), 500)], 0.01)
    assert status == 200, body
    assert upstream.requests[-1].json["messages"][0]["content"] == "y" * 3000
    # Over the bound, in pieces: 413, never a 400 about half-read JSON.
    payload = payload.replace(b"y" * 3000, b"y" * 5000)
    status, body = _post_chunked(gw, [payload[i : i + 500] for i in range(0, len(payload), 500)], 0.01)
    assert status == 413, body


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": []}', "model"),
        (b'{"model": 7, "messages": []}', "model"),
        (b'{"model": "chat", "x": "\\ud800"}'[:-3] + b'\xff"}', "not valid JSON"),
    ],
    ids=["broken", "empty", "array", "no-model", "model-not-a-string", "bad-utf8"],
)
def test_malformed_requests_get_a_400(
    launch: Launch, upstream: MockUpstream, body: bytes, fragment: str
) -> None:
    gw = launch(_ssrf_config(upstream, allow=False))
    reply = gw.request("POST", "/v1/chat/completions", body)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert upstream.request_count == 0


def test_unknown_model_is_a_404_the_sdk_understands(launch: Launch, upstream: MockUpstream) -> None:
    gw = launch(_ssrf_config(upstream, allow=False))
    with (
        openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as sdk,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        sdk.chat.completions.create(model="gpt-5-turbo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert "chat" in caught.value.message  # names what is available
    assert upstream.request_count == 0
    assert gw.request("GET", "/v1/nothing-here").status == 404
    assert gw.request("DELETE", "/v1/chat/completions").status == 405


# -- keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Basic {VIRTUAL_KEY}"},
        {"Authorization": "Bearer "},
        {"x-api-key": WRONG_KEY},
        {"Authorization": f"Bearer {VIRTUAL_KEY[:-1]}"},
        {"Authorization": f"Bearer {ADMIN_KEY}"},  # an admin key is no virtual key
    ],
    ids=["none", "wrong", "basic", "empty", "wrong-x-api-key", "prefix", "admin-key"],
)
def test_requests_without_a_valid_key_are_refused(
    launch: Launch, upstream: MockUpstream, leaky_upstream: _ErrorUpstream, headers: dict[str, str]
) -> None:
    gw = launch(_config(upstream, leaky_upstream))
    for reply in (
        gw.chat("ok", "hi", headers=headers),
        gw.chat("ok", "hi", headers=headers, stream=True),
        gw.request("POST", "/v1/embeddings", {"model": "ok", "input": "x"}, headers=headers),
        gw.request("GET", "/v1/models", headers=headers),
    ):
        assert reply.status == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"
        assert _leaks(reply.body.decode()) == []
    assert upstream.request_count == 0
    assert leaky_upstream.count == 0


def test_a_valid_key_passes_and_a_key_limited_to_models_gets_403(
    launch: Launch, upstream: MockUpstream, leaky_upstream: _ErrorUpstream
) -> None:
    gw = launch(_config(upstream, leaky_upstream))
    assert gw.chat("ok", "hi", headers={"Authorization": f"Bearer {VIRTUAL_KEY}"}).status == 200
    assert gw.chat("ok", "hi", headers={"x-api-key": VIRTUAL_KEY}).status == 200
    narrow = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert gw.chat("ok", "hi", headers=narrow).status == 200
    refused = gw.chat("failing", "hi", headers=narrow)
    assert refused.status == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert [m["id"] for m in gw.request("GET", "/v1/models", headers=narrow).json()["data"]] == ["ok"]
    assert upstream.request_count == 3
    assert leaky_upstream.count == 0
    # The refusal is recorded, with the key that tried.
    [record] = [r for r in gw.records() if r.status_code == 403]
    assert record.attributes["kansoku.gateway.key"] == "narrow"
    assert record.attributes["kansoku.gateway.outcome"] == "rejected"
    assert record.llm is not None
    assert record.llm.request_model == "failing"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Bearer {VIRTUAL_KEY}"},
        {"x-api-key": VIRTUAL_KEY},
        {"Authorization": f"Token {ADMIN_KEY}"},
    ],
    ids=["none", "wrong", "virtual-key", "virtual-x-api-key", "bad-scheme"],
)
def test_the_admin_api_needs_an_admin_key(
    launch: Launch, upstream: MockUpstream, leaky_upstream: _ErrorUpstream, headers: dict[str, str]
) -> None:
    gw = launch(_config(upstream, leaky_upstream))
    letter = gw.chat("failing", "hi", headers=_client_headers()).headers["x-kansoku-dead-letter"]
    sent = upstream.request_count
    for method, path in [
        ("GET", "/admin/dead-letters"),
        ("GET", f"/admin/dead-letters/{letter}"),
        ("POST", f"/admin/dead-letters/{letter}/replay"),
    ]:
        reply = gw.request(method, path, headers=headers)
        assert reply.status == 401, path
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert letter not in reply.body.decode()
    assert upstream.request_count == sent  # no replay happened
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert gw.request("GET", f"/admin/dead-letters/{letter}", headers=admin).status == 200
    assert gw.request("GET", "/admin/dead-letters", headers={"x-api-key": ADMIN_KEY}).status == 200


def test_the_admin_api_is_closed_without_admin_keys(launch: Launch, upstream: MockUpstream) -> None:
    gw = launch(_ssrf_config(upstream, allow=False))
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_KEY}"}):
        reply = gw.request("GET", "/admin/dead-letters", headers=headers)
        assert reply.status == 401
        assert reply.json()["error"]["code"] == "admin_api_closed"


# -- test 13: hostile ids and parameters ----------------------------------------------------------

HOSTILE_IDS = [
    "' OR '1'='1",
    "dl_x'; DROP TABLE dead_letters; --",
    "dl_1 UNION SELECT * FROM sqlite_master",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..\\..\\windows\\win.ini",
    "%00",
    "dl_" + "a" * 5000,
    "%F0%9F%92%A5",
]


def test_hostile_dead_letter_ids_get_404_not_5xx(
    launch: Launch, upstream: MockUpstream, leaky_upstream: _ErrorUpstream
) -> None:
    from urllib.parse import quote

    gw = launch(_config(upstream, leaky_upstream))
    real = gw.chat("failing", "hi", headers=_client_headers()).headers["x-kansoku-dead-letter"]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for raw in HOSTILE_IDS:
        ident = raw if "%" in raw else quote(raw, safe="")
        for method, path in (
            ("GET", f"/admin/dead-letters/{ident}"),
            ("POST", f"/admin/dead-letters/{ident}/replay"),
        ):
            reply = gw.request(method, path, headers=admin)
            assert reply.status == 404, (raw, reply.body[:200])
            assert real not in reply.body.decode()
    for query in ("model=x'%20OR%20'1'%3D'1", "model=%25", "model=chat%00"):
        reply = gw.request("GET", f"/admin/dead-letters?{query}", headers=admin)
        assert reply.status == 200, query
        assert reply.json()["data"] == []
    for query in ("limit=1%20OR%201=1", "before=1;DROP", "limit=-1", "limit=99999999999999999999", "id=1"):
        assert gw.request("GET", f"/admin/dead-letters?{query}", headers=admin).status == 400, query
    # Still intact.
    assert [d["id"] for d in gw.request("GET", "/admin/dead-letters", headers=admin).json()["data"]] == [real]

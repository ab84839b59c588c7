"""The web UI in a real browser: headless Chromium (Debian's, driven by Playwright) against
``kansoku up --demo``.

Every page loads with no console error, no uncaught exception and no failed request; the filters
change the data and the URL; a deep link reproduces a view; a click from the overview reaches a
trace and its session; the nav is reachable by keyboard. A corpus of XSS payloads stored as
prompts, answers, user ids, tags and models renders as text and never runs. Screenshots of every
page go to ``test-artifacts/ui/``.

The tests follow the UI's DOM contract: ``main#page[data-page][data-state]``, ``form#filters``
with fields named like the API's parameters, ``table#calls tbody tr[data-trace-id][data-span-id]``,
``a[data-link=trace|session]``, ``section[data-panel=...]``, ``#waterfall [data-span-id]``,
``.conversation .message[data-role]``, ``#turns .turn``, ``[data-empty]``, ``[data-error]``; on the
gateway page ``section[data-panel=deployments] tr[data-deployment] [data-breaker]``,
``section[data-panel=limits] tr[data-limit][data-per][data-on] td.limit-usage`` with one
``[data-usage="<subject>"][data-used][data-limit-of]`` per subject (``""`` for a global limit;
``.usage.is-near`` from 90 %, ``[data-usage-unknown]`` without state), ``[data-usage-note]`` and
``[data-refused="N"]``, ``section[data-panel=dead-letters] tr[data-letter-id]
button[data-action=replay]`` and ``[data-replay-outcome]``.

Needs chromium (``KANSOKU_TEST_CHROMIUM`` or on the PATH): skipped locally without it, a failure
under CI.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from helpers.records import llm_record, span_record
from helpers.ui import PAGES, PageWatch, UpDemo, chromium_path, screenshot, settled, wait_page
from kansoku.ui import CSP

pytestmark = pytest.mark.slow

NAV = ("overview", "calls", "gateway")
RANGES = ["15m", "1h", "6h", "24h", "7d", "30d", "custom"]
OVERVIEW_PANELS = ("requests", "latency", "tokens", "cost", "top-prompts", "recent")
GATEWAY_PANELS = ("deployments", "budgets", "limits", "dead-letters")
BREAKER_STATES = {"closed", "open", "half_open", "unknown"}
DEPLOYMENTS = 'section[data-panel="deployments"] tr[data-deployment]'
LETTERS = 'section[data-panel="dead-letters"] tr[data-letter-id]'
LIMITS = 'section[data-panel="limits"] tr[data-limit]'
ROWS = "table#calls tbody tr[data-trace-id][data-span-id]"
XSS_SERVICE = "acceptance"  # the service of helpers.records.llm_record; the demo's is kansoku-demo

# Stored as prompts, answers, user ids, tags, models and span names: each must show as the text it
# is. Those that could run set window.__xss or open a dialog; both are checked.
XSS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<img src=x onerror="window.__xss=1">',
    '"><svg onload=alert(1)>',
    "'><svg/onload=window.__xss=2>",
    "javascript:alert(1)",
    "</title><script>window.__xss=3</script>",
    "</textarea><script>alert(1)</script>",
    "{{7*7}} ${7*7} <%= 7*7 %>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<a href="javascript:alert(1)">click me</a>',
    "<details open ontoggle=alert(1)>",
    "<body onload=window.__xss=4>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<style>*{display:none}</style>",
    "<input autofocus onfocus=window.__xss=5>",
    '<object data="javascript:alert(1)"></object>',
    '<base href="//evil.invalid/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    '<svg><animate onbegin="window.__xss=6" attributeName=x dur=1s>',
)

# Elements and attributes that must not exist in the page's body: any of them means data was
# parsed as markup. (The CSP would stop most of them from running; the UI must not rely on that.)
_INJECTED_JS = """() => {
  const bad = [];
  const tags = new Set(['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'BASE', 'META', 'STYLE', 'MGLYPH']);
  for (const el of document.body.querySelectorAll('*')) {
    if (tags.has(el.tagName.toUpperCase())) bad.push(el.outerHTML.slice(0, 120));
    for (const a of el.attributes) {
      if (a.name.startsWith('on')) bad.push(el.outerHTML.slice(0, 120));
      if (['href', 'src', 'data', 'action', 'formaction'].includes(a.name)
          && /^\\s*javascript:/i.test(a.value)) bad.push(el.outerHTML.slice(0, 120));
    }
  }
  return bad;
}"""


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def demo(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpDemo]:
    """``kansoku up --demo`` with at least 10 calls in the store."""
    tmp = tmp_path_factory.mktemp("ui-demo")
    up = UpDemo(tmp / "data", tmp / "up.log")
    up.start(min_rows=10)
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, demo: UpDemo) -> Iterator[tuple[Page, PageWatch]]:
    """A fresh browser context on the demo, with everything that goes wrong recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=demo.url)
    context.set_default_timeout(10_000)
    p = context.new_page()
    watch = PageWatch(demo.url).attach(p)
    try:
        yield p, watch
    finally:
        context.close()


@pytest.fixture(scope="module")
def demo_trace(demo: UpDemo) -> dict[str, Any]:
    """A successful demo LLM call with a session (its record from the query API)."""
    for row in demo.calls(since="1h", limit="200", status="ok"):
        if row.get("context_id") and row.get("model") and row["service"] != XSS_SERVICE:
            return row
    raise AssertionError("no demo call with a session")


@pytest.fixture(scope="module")
def xss_session(demo: UpDemo) -> dict[str, Any]:
    """The XSS corpus stored as one trace and one session (a call per payload); their ids."""
    context_id = f"xss-{uuid.uuid4().hex[:12]}"
    trace_id = uuid.uuid4().hex
    root = span_record(XSS[3], trace_id=trace_id)  # a span name carrying a payload, for the waterfall
    t0 = time.time_ns() - 10_000_000_000
    records = [root]
    for i, payload in enumerate(XSS):
        rec = llm_record(
            start_ns=t0 + i * 100_000_000,
            trace_id=trace_id,
            parent_span_id=root["span_id"],
            context_id=context_id,
            user_id=payload,
            model=payload,
            tags={"department": payload, "xss": payload},
            prompt=payload,
            answer=XSS[(i + 1) % len(XSS)],
            status="error" if i % 5 == 4 else "ok",
            error_type="server_error" if i % 5 == 4 else None,
        )
        if i % 5 == 4:
            rec["error_message"] = payload
        records.append(rec)
    demo.ingest(records)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(demo.calls(since="1h", context_id=context_id, limit="100")) == len(XSS):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the XSS records did not become queryable")
    return {"context_id": context_id, "trace_id": trace_id, "span_ids": [r["span_id"] for r in records]}


# -- helpers -------------------------------------------------------------------------------------------


def open_page(page: Page, hash_: str, name: str) -> str:
    """Open ``/#<hash_>``, check the document's CSP, wait for page ``name``; its data-state."""
    response = page.goto(f"/#{hash_}")
    assert response is not None
    assert response.headers.get("content-security-policy") == CSP
    return wait_page(page, name)


def assert_clean(watch: PageWatch, page: Page, where: str) -> None:
    page.wait_for_timeout(200)  # late errors of the last fetch
    problems = watch.problems()
    assert not problems, f"{where}:\n" + "\n".join(problems)


def row_ids(page: Page) -> list[str]:
    return [str(x) for x in page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.spanId)")]


def hash_params_of(url: str) -> dict[str, list[str]]:
    frag = urllib.parse.urlsplit(url).fragment
    return urllib.parse.parse_qs(frag.partition("?")[2])


def poll(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def pick_model(demo: UpDemo) -> tuple[str, set[str]]:
    """A model of the demo that is not the only one, and the span ids of all calls so far."""
    rows = [r for r in demo.calls(since="1h", limit="500") if r["service"] != XSS_SERVICE]
    models = Counter(r["model"] for r in rows if r.get("model"))
    assert len(models) >= 2, models
    model = min(models, key=lambda m: models[m])  # the rarer one: the filter visibly removes rows
    return model, {r["span_id"] for r in rows}


def set_filter(page: Page, name: str, value: str) -> None:
    field = page.locator(f'form#filters [name="{name}"]')
    if field.evaluate("el => el.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)
        field.press("Enter")


def rows_all_of_model(page: Page, demo: UpDemo, model: str) -> bool:
    shown = row_ids(page)
    if not shown:
        return False
    of_model = {r["span_id"] for r in demo.calls(since="1h", model=model, limit="500")}
    return set(shown) <= of_model


# -- every page ----------------------------------------------------------------------------------------


def _hash_of(name: str, trace: dict[str, Any]) -> str:
    if name == "trace":
        return f"/trace/{trace['trace_id']}"
    if name == "session":
        return f"/session/{urllib.parse.quote(trace['context_id'], safe='')}"
    return f"/{name}"


@pytest.mark.parametrize("name", PAGES)
def test_every_page_loads_without_errors_and_is_screenshotted(
    page: tuple[Page, PageWatch], demo: UpDemo, demo_trace: dict[str, Any], name: str
) -> None:
    p, watch = page
    state = open_page(p, _hash_of(name, demo_trace), name)
    for nav in NAV:
        assert p.locator(f'a[data-nav="{nav}"]').count() == 1, nav
    assert p.locator('form#key-form input[name="key"]').count() == 0  # no keys: local mode
    if name == "overview":
        for panel in OVERVIEW_PANELS:
            assert p.locator(f'section[data-panel="{panel}"]').count() == 1, panel
        assert p.locator('section[data-panel="recent"] a[data-link="trace"]').count() >= 1
        assert p.locator("select#range option").evaluate_all("os => os.map(o => o.value)") == RANGES
    elif name == "calls":
        assert state == "ready"
        assert p.locator(ROWS).count() >= 10
        assert p.locator(f'{ROWS} a[data-link="trace"]').count() >= 1
        assert p.locator("form#filters").count() == 1
        for field in ("model", "user_id", "error_type", "q"):
            assert p.locator(f'form#filters [name="{field}"]').count() == 1, field
    elif name == "trace":
        assert state == "ready"
        assert p.locator(f'#waterfall [data-span-id="{demo_trace["span_id"]}"]').count() == 1
        assert p.locator(".conversation .message[data-role]").count() >= 1
        assert p.locator('a[data-link="session"]').count() >= 1
    elif name == "session":
        assert state == "ready"
        assert p.locator("#turns .turn").count() >= 1
    elif name == "gateway":
        assert state == "ready"  # up --demo runs its gateway in the process
        for panel in GATEWAY_PANELS:
            assert p.locator(f'section[data-panel="{panel}"]').count() == 1, panel
        assert_gateway_deployments(p, demo)
        # The demo's gateway has rate limits but no budgets (budgets need virtual keys).
        assert p.locator('section[data-panel="budgets"] [data-empty]').count() == 1
        assert p.locator('section[data-panel="limits"] [data-empty]').count() == 0
        assert p.locator(LIMITS).count() == len(demo.get("/api/v1/gateway/status")["limits"])
    screenshot(p, name)
    assert_clean(watch, p, f"page {name}")


def test_an_unknown_trace_shows_an_error_or_empty_state_without_breaking(
    page: tuple[Page, PageWatch],
) -> None:
    p, watch = page
    p.goto("/#/trace/" + "0" * 32)
    p.wait_for_selector('main#page[data-page="trace"]:not([data-state="loading"])')
    assert p.locator("main#page :is([data-empty], [data-error])").count() >= 1
    screenshot(p, "trace-not-found")
    assert not watch.page_errors
    assert not watch.dialogs
    # The API's 404 is the expected answer; nothing else may fail.
    others = [r for r in watch.failed_requests if "/api/v1/traces/" not in r]
    assert not others, others


# -- the gateway page ----------------------------------------------------------------------------------


def assert_gateway_deployments(p: Page, demo: UpDemo) -> None:
    """One row per deployment of the gateway's status, each showing its breaker state."""
    status = demo.get("/api/v1/gateway/status")
    expected = {d["name"] for m in status["models"] for d in m["deployments"]}
    assert expected
    rows = p.locator(DEPLOYMENTS)
    shown = {str(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.deployment)")}
    assert shown == expected
    breakers = rows.locator("[data-breaker]").all_inner_texts()
    assert len(breakers) == len(expected)
    assert set(breakers) <= BREAKER_STATES, breakers


# Each limit row as the page shows it: its bars (subject, used, limit) and its refusals.
_LIMIT_ROWS_JS = """rows => rows.map(r => ({
  per: r.dataset.per, on: r.dataset.on,
  bars: [...r.querySelectorAll('td.limit-usage [data-usage]')].map(b => ({
    subject: b.dataset.usage, used: b.dataset.used ?? null, limit: b.dataset.limitOf ?? null,
    near: b.classList.contains('is-near'), unknown: b.querySelector('[data-usage-unknown]') !== null,
  })),
  refused: r.querySelector('td.limit-usage [data-refused]')?.dataset.refused ?? null,
  refusedText: r.querySelector('td.limit-usage [data-refused]')?.textContent ?? '',
}))"""


def demo_limits(demo: UpDemo) -> dict[tuple[str, str], tuple[float, list[str]]]:
    """The limits of the configuration ``up --demo`` wrote: (per, on) → (limit, the subjects shown)."""
    from kansoku.gateway._config import load_config
    from kansoku.policy import TokenBucket

    config = load_config(demo.data_dir / "demo-gateway.yaml")
    out: dict[tuple[str, str], tuple[float, list[str]]] = {}
    for lim in config.limits:
        assert lim.per in ("global", "model"), lim  # limits whose every subject the status lists
        rate = lim.rate
        limit = rate.capacity if isinstance(rate, TokenBucket) else rate.limit
        subjects = [""] if lim.per == "global" else [m.name for m in config.models]
        out[(lim.per, lim.on)] = (float(limit), subjects)
    return out


def test_the_gateway_page_shows_the_demo_limits_in_use(page: tuple[Page, PageWatch], demo: UpDemo) -> None:
    """A row per configured limit, a bar per subject against the configured limit, refusals
    shown (none: the demo's limits are sized above its traffic), and each limit in use: the
    global request count stays up for its minute; a token bucket refills within a second of
    an answer, so the page is reloaded until every limit has shown use."""
    p, watch = page
    configured = demo_limits(demo)
    assert {on for _, on in configured} == {"requests", "tokens"}, configured
    assert open_page(p, "/gateway", "gateway") == "ready"
    assert p.locator('section[data-panel="limits"] [data-empty]').count() == 0
    in_use: set[tuple[str, str]] = set()
    looks = [0]

    def every_limit_in_use() -> bool:
        looks[0] += 1
        if looks[0] > 1:  # the first look is the page as opened
            p.reload()
            assert wait_page(p, "gateway") == "ready"
        rows = p.locator(LIMITS).evaluate_all(_LIMIT_ROWS_JS)
        assert len(rows) == len(configured), rows
        for row in rows:
            key = (row["per"], row["on"])
            assert key in configured, row
            limit, subjects = configured[key]
            assert [b["subject"] for b in row["bars"]] == subjects, row
            for bar in row["bars"]:
                assert not bar["unknown"], row
                assert bar["limit"] is not None, row
                assert float(bar["limit"]) == limit, row
                assert 0 <= float(bar["used"]) < 0.9 * limit, row  # generous: never near the limit
                assert not bar["near"], row
                if float(bar["used"]) > 0:
                    in_use.add(key)
            assert row["refused"] == "0", row  # the demo's own traffic is never refused
            assert row["refusedText"].strip() == "0 refused", row
        assert p.locator(f"{LIMITS} [data-usage-note]").count() == 0  # every subject is listed
        return in_use == set(configured)

    poll("every limit of the demo to show use", every_limit_in_use, timeout=30)
    screenshot(p, "gateway-limits")
    assert_clean(watch, p, "gateway page, limits")


def test_a_dead_letter_replays_from_the_gateway_page(page: tuple[Page, PageWatch], demo: UpDemo) -> None:
    p, watch = page
    poll("a dead letter of the demo", lambda: bool(demo.get("/api/v1/gateway/status")["dead_letters"]), 30)
    assert open_page(p, "/gateway", "gateway") == "ready"
    p.locator(LETTERS).first.wait_for()
    letter_id = p.locator(LETTERS).first.get_attribute("data-letter-id")
    assert letter_id
    row = p.locator(f'{LETTERS}[data-letter-id="{letter_id}"]')  # newer letters may arrive above it
    assert p.locator(f'{LETTERS} button[data-action="replay"]').count() == p.locator(LETTERS).count()
    row.locator('button[data-action="replay"]').click()
    # The demo's mock recovers between faults: the replay may answer or fail again; either shows.
    outcome = row.locator("[data-replay-outcome]")
    outcome.wait_for(timeout=20_000)
    assert outcome.get_attribute("data-replay-outcome") in {"ok", "template", "dead_letter", "client_error"}
    assert outcome.inner_text().strip()
    assert p.locator("#admin-key-form").count() == 0  # the demo's gateway has no admin keys
    trace = outcome.locator('a[data-link="trace"]')
    if trace.count():
        assert re.fullmatch(r"#/trace/[0-9a-f]{32}", trace.get_attribute("href") or "")
    screenshot(p, "gateway-replay")
    # A replay that fails again answers 502 with its outcome: expected, and the browser logs it.
    replay_url = f"/api/v1/gateway/dead-letters/{letter_id}/replay: HTTP 502"
    watch.failed_requests[:] = [r for r in watch.failed_requests if not r.endswith(replay_url)]
    watch.console_errors[:] = [m for m in watch.console_errors if "status of 502" not in m]
    assert_clean(watch, p, "gateway page, replay")


def test_without_a_gateway_the_page_says_how_to_start_one(page: tuple[Page, PageWatch]) -> None:
    p, watch = page
    message = "no gateway runs in this process"
    answer = {"error": {"message": message, "type": "not_found_error", "param": None, "code": "no_gateway"}}
    p.route("**/api/v1/gateway/status", lambda route: route.fulfill(status=404, json=answer))
    assert open_page(p, "/gateway", "gateway") == "empty"
    text = p.locator("main#page [data-empty]").inner_text()
    assert "kansoku up --gateway-config gateway.yaml" in text
    assert "--demo" in text
    assert "base_url='http://127.0.0.1:4000/v1'" in text
    assert p.locator('section[data-panel="deployments"]').count() == 0
    watch.failed_requests[:] = [r for r in watch.failed_requests if not r.endswith("/status: HTTP 404")]
    watch.console_errors[:] = [m for m in watch.console_errors if "status of 404" not in m]
    assert_clean(watch, p, "gateway page without a gateway")


def test_a_replay_asks_for_the_admin_key_and_sends_it_as_a_header(
    page: tuple[Page, PageWatch], demo: UpDemo
) -> None:
    """A gateway with admin keys answers 401 admin_key_required (simulated here): the UI asks for
    the key, keeps it in sessionStorage, sends it as X-Kansoku-Admin-Key and never shows it."""
    p, watch = page
    admin_key = "ak-browser-admin-0123456789abcdef"
    sent: list[str | None] = []
    refused = {"error": {"message": "replaying needs the gateway's admin key", "code": "admin_key_required"}}

    def replay(route: Route) -> None:
        key = route.request.headers.get("x-kansoku-admin-key")
        sent.append(key)
        if key != admin_key:
            route.fulfill(status=401, json=refused)
            return
        letter = route.request.url.rsplit("/", 2)[-2]
        route.fulfill(
            status=200,
            json={"id": letter, "trace_id": "ab" * 16, "attempts": 1, "outcome": "ok", "response": {}},
        )

    p.route("**/api/v1/gateway/dead-letters/*/replay", replay)
    poll("a dead letter of the demo", lambda: bool(demo.get("/api/v1/gateway/status")["dead_letters"]), 30)
    assert open_page(p, "/gateway", "gateway") == "ready"
    letter_id = p.locator(LETTERS).first.get_attribute("data-letter-id")
    row = p.locator(f'{LETTERS}[data-letter-id="{letter_id}"]')  # newer letters may arrive above it
    row.locator('button[data-action="replay"]').click()
    form = p.locator("form#admin-key-form")
    form.wait_for()
    form.locator('input[name="admin-key"]').fill("ak-wrong-key-0123456789abcdef")
    form.locator('input[name="admin-key"]').press("Enter")
    p.locator("form#admin-key-form [data-error]").wait_for()
    form.locator('input[name="admin-key"]').fill(admin_key)
    form.locator('button[type="submit"]').click()
    outcome = row.locator("[data-replay-outcome]")
    outcome.wait_for()
    assert outcome.get_attribute("data-replay-outcome") == "ok"
    assert outcome.locator('a[data-link="trace"]').get_attribute("href") == "#/trace/" + "ab" * 16
    assert sent == [None, "ak-wrong-key-0123456789abcdef", admin_key]
    assert p.locator("form#admin-key-form").count() == 0
    assert admin_key not in p.content()
    assert p.evaluate("() => sessionStorage.getItem('kansoku.gatewayAdminKey')") == admin_key
    watch.failed_requests[:] = [r for r in watch.failed_requests if not r.endswith("/replay: HTTP 401")]
    watch.console_errors[:] = [m for m in watch.console_errors if "status of 401" not in m]
    assert_clean(watch, p, "gateway page, replay with an admin key")


# -- filters, deep links, navigation -------------------------------------------------------------------


def test_a_model_filter_changes_the_rows_and_the_url(page: tuple[Page, PageWatch], demo: UpDemo) -> None:
    p, watch = page
    model, _ = pick_model(demo)
    open_page(p, "/calls", "calls")
    before = row_ids(p)
    assert before
    set_filter(p, "model", model)
    p.wait_for_url(lambda url: hash_params_of(url).get("model") == [model])
    wait_page(p, "calls")
    poll(f"only {model} rows", lambda: rows_all_of_model(p, demo, model))
    assert set(row_ids(p)) != set(before)
    assert p.locator('form#filters [name="model"]').input_value() == model
    screenshot(p, "calls-filtered")

    # The time range is a filter too: it goes into the URL as `since`.
    p.locator("select#range").select_option("15m")
    p.wait_for_url(lambda url: hash_params_of(url).get("since") == ["15m"])
    assert hash_params_of(p.url).get("model") == [model]
    wait_page(p, "calls")
    assert_clean(watch, p, "calls page, filtered")


def test_a_deep_link_reproduces_the_filtered_view(page: tuple[Page, PageWatch], demo: UpDemo) -> None:
    p, watch = page
    model, _ = pick_model(demo)
    open_page(p, f"/calls?since=1h&model={urllib.parse.quote(model, safe='')}", "calls")
    poll(f"only {model} rows", lambda: rows_all_of_model(p, demo, model))
    assert p.locator('form#filters [name="model"]').input_value() == model
    assert p.locator("select#range").input_value() == "1h"
    assert_clean(watch, p, "calls page, deep link")


def test_the_next_page_button_shows_the_next_rows(page: tuple[Page, PageWatch]) -> None:
    p, watch = page
    assert open_page(p, "/calls?since=1h&limit=5", "calls") == "ready"
    first = row_ids(p)
    assert len(first) == 5
    p.locator("button#next-page").click()
    p.wait_for_url(lambda url: bool(hash_params_of(url).get("cursor")))
    poll("the second page", lambda: bool(row_ids(p)) and not set(row_ids(p)) & set(first))
    assert wait_page(p, "calls") == "ready"
    assert len(row_ids(p)) == 5
    assert_clean(watch, p, "calls page, next page")


def test_a_bad_filter_shows_the_error_state(page: tuple[Page, PageWatch]) -> None:
    p, watch = page
    p.goto("/#/calls?since=1h&min_latency_ms=fast")
    p.wait_for_selector('main#page[data-page="calls"][data-state="error"]')
    error = p.locator("main#page [data-error]")
    assert error.count() >= 1
    assert "min_latency_ms" in error.first.inner_text()  # the API's message names the parameter
    screenshot(p, "calls-error")
    assert not watch.page_errors
    assert not watch.dialogs
    others = [r for r in watch.failed_requests if "/api/v1/calls?" not in r]  # the API's 400 is expected
    assert not others, others


def test_the_latency_histogram_counts_every_call_of_the_range(
    page: tuple[Page, PageWatch], demo: UpDemo
) -> None:
    p, watch = page
    # A closed window in the past, so the demo's new calls do not move the figures under the test.
    until = int(time.time())
    window = {"since": str(until - 3600), "until": str(until)}

    def count() -> int:
        rows = demo.get("/api/v1/stats?" + urllib.parse.urlencode(window))["data"]
        return int(rows[0]["count"]) if rows else 0

    seen = [count()]

    def settled_count() -> bool:  # calls that started before `until` may still be on their way
        time.sleep(0.5)
        seen.append(count())
        return seen[-1] > 0 and seen[-1] == seen[-2]

    poll("the window's calls to be stored", settled_count, timeout=20)
    total = seen[-1]
    assert open_page(p, "/overview?" + urllib.parse.urlencode(window), "overview") == "ready"
    panel = p.locator('section[data-panel="latency"]')
    assert f"Distribution ({total:,} calls)" in panel.inner_text()
    titles = panel.locator("figure svg rect title").all_text_contents()
    counts = [int(m.group(1).replace(",", "")) for t in titles if (m := re.search(r": ([\d,]+) calls?", t))]
    assert counts
    assert sum(counts) == total  # every call of the range is in a bar, not a sample of the latest
    assert_clean(watch, p, "overview, fixed window")


def test_a_click_from_the_overview_reaches_a_trace_and_then_its_session(
    page: tuple[Page, PageWatch], demo: UpDemo
) -> None:
    p, watch = page
    open_page(p, "/overview", "overview")
    links = p.locator('section[data-panel="recent"] a[data-link="trace"]')
    assert links.count() >= 1
    # A recent call whose trace has a session (the demo's gateway traffic has none).
    chosen = None
    for i in range(links.count()):
        m = re.search(r"#/trace/([^?/]+)", links.nth(i).get_attribute("href") or "")
        assert m, links.nth(i).get_attribute("href")
        spans = demo.get(f"/api/v1/traces/{m.group(1)}")["spans"]
        if _has_context(spans):
            chosen = i, m.group(1)
            break
    assert chosen is not None, "no recent call with a session on the overview"
    links.nth(chosen[0]).click()
    p.wait_for_url(re.compile(r"#/trace/" + chosen[1]))
    assert wait_page(p, "trace") == "ready"
    assert p.locator("#waterfall [data-span-id]").count() >= 1
    assert p.locator(".conversation .message[data-role]").count() >= 1

    p.locator('a[data-link="session"]').first.click()
    p.wait_for_url(re.compile(r"#/session/"))
    assert wait_page(p, "session") == "ready"
    assert p.locator("#turns .turn").count() >= 1
    assert_clean(watch, p, "overview → trace → session")


def _has_context(spans: list[dict[str, Any]]) -> bool:
    return any(s.get("context_id") or _has_context(s.get("children", [])) for s in spans)


def test_the_calls_table_links_to_a_trace(page: tuple[Page, PageWatch]) -> None:
    p, watch = page
    open_page(p, "/calls", "calls")
    row = p.locator(ROWS).first
    trace_id = row.get_attribute("data-trace-id")
    row.locator('a[data-link="trace"]').first.click()
    p.wait_for_url(re.compile(f"#/trace/{trace_id}"))
    assert wait_page(p, "trace") == "ready"
    assert_clean(watch, p, "calls → trace")


def test_tab_reaches_every_nav_link_and_enter_follows_it(page: tuple[Page, PageWatch]) -> None:
    p, watch = page
    open_page(p, "/overview", "overview")
    p.locator("body").focus()
    reached: list[str] = []
    for _ in range(15):
        p.keyboard.press("Tab")
        nav = p.evaluate("() => document.activeElement && document.activeElement.getAttribute('data-nav')")
        if nav:
            reached.append(str(nav))
        if nav == "calls":
            break
    assert reached[:2] == ["overview", "calls"], reached
    p.keyboard.press("Enter")
    p.wait_for_url(re.compile(r"#/calls"))
    wait_page(p, "calls")
    for _ in range(15):
        if p.evaluate("() => document.activeElement?.getAttribute('data-nav')") == "gateway":
            break
        p.keyboard.press("Tab")
    else:
        raise AssertionError("Tab did not reach the gateway nav link")
    assert_clean(watch, p, "keyboard navigation")


# -- XSS -----------------------------------------------------------------------------------------------


def _assert_inert(p: Page, watch: PageWatch, where: str) -> None:
    p.wait_for_timeout(300)  # give anything injected the chance to run
    assert not watch.dialogs, f"{where}: a dialog opened: {watch.dialogs}"
    assert p.evaluate("() => window.__xss === undefined"), f"{where}: a payload ran (window.__xss is set)"
    injected = p.evaluate(_INJECTED_JS)
    assert not injected, f"{where}: data became markup: {injected}"
    assert p.title().endswith("kansoku"), f"{where}: the title changed to {p.title()!r}"
    assert_clean(watch, p, where)


def _visible_payloads(p: Page) -> set[str]:
    text = p.locator("main#page").inner_text()
    return {x for x in XSS if x in text}


def test_xss_payloads_render_as_text_on_the_calls_page(
    page: tuple[Page, PageWatch], xss_session: dict[str, Any]
) -> None:
    p, watch = page
    ctx = urllib.parse.quote(xss_session["context_id"], safe="")
    assert open_page(p, f"/calls?since=1h&context_id={ctx}", "calls") == "ready"
    poll("the XSS rows", lambda: set(row_ids(p)) & set(xss_session["span_ids"]) != set())
    shown = _visible_payloads(p)
    assert "<script>alert(1)</script>" in shown, shown
    assert len(shown) >= len(XSS) // 2, sorted(set(XSS) - shown)
    screenshot(p, "xss-calls")
    _assert_inert(p, watch, "calls page with XSS data")


def test_xss_payloads_render_as_text_on_the_trace_page(
    page: tuple[Page, PageWatch], xss_session: dict[str, Any]
) -> None:
    p, watch = page
    assert open_page(p, f"/trace/{xss_session['trace_id']}", "trace") == "ready"
    assert p.locator("#waterfall [data-span-id]").count() == len(XSS) + 1
    assert p.locator(".conversation .message[data-role]").count() >= 1
    assert _visible_payloads(p), "no payload is shown as text on the trace page"
    assert XSS[3] in p.locator("#waterfall").inner_text()  # the root span's name
    screenshot(p, "xss-trace")
    _assert_inert(p, watch, "trace page with XSS data")


def test_xss_payloads_render_as_text_on_the_session_page(
    page: tuple[Page, PageWatch], xss_session: dict[str, Any]
) -> None:
    p, watch = page
    ctx = urllib.parse.quote(xss_session["context_id"], safe="")
    assert open_page(p, f"/session/{ctx}", "session") == "ready"
    assert p.locator("#turns .turn").count() == len(XSS)
    turns = p.locator("#turns").inner_text()
    missing = [x for x in XSS if x not in turns]
    assert not missing, f"payloads not shown as text in the session's turns: {missing}"
    screenshot(p, "xss-session")
    _assert_inert(p, watch, "session page with XSS data")


def test_the_overview_with_xss_data_stays_inert(
    page: tuple[Page, PageWatch], xss_session: dict[str, Any]
) -> None:
    p, watch = page
    open_page(p, "/overview", "overview")
    p.wait_for_selector(settled("overview"))
    screenshot(p, "xss-overview")
    _assert_inert(p, watch, "overview with XSS data")

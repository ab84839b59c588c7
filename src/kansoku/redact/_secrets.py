"""Detectors for credentials: provider API keys, JWTs, private keys, bearer tokens, assignments.

Provider keys have fixed prefixes, so their expressions begin with a literal and the regex
engine can skip through text with a fast substring search; each one is also gated on a
cheap check so a prompt without the prefix costs one ``in`` test. Boundaries are checked
with a look-behind placed after the literal (``sk-(?<!...sk-)``) because a look-behind in
front would disable the literal-prefix search.
"""

from __future__ import annotations

import re

from kansoku.redact._text import TextView
from kansoku.redact._validators import looks_secret, mixed_key_body

Out = list[tuple[int, int, str]]

_OPENAI_ANTHROPIC = re.compile(r"sk-(?<![A-Za-z0-9_\-]sk-)([A-Za-z0-9_\-]{20,})")
_STRIPE = re.compile(r"(?:sk|rk)_(?:live|test)_(?<![A-Za-z0-9_].{8})[0-9A-Za-z]{16,}")
_AWS = re.compile(r"A(?:KIA|SIA)(?<![A-Za-z0-9].{4})[A-Z0-9]{16}(?![A-Za-z0-9])")
_GITHUB = re.compile(r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})")
_SLACK = re.compile(r"xox(?<![A-Za-z0-9_]xox)[abprs]-[A-Za-z0-9\-]{10,}")
_GOOGLE = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
# Possessive runs: the character classes exclude '.', so giving nothing back loses no match.
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{5,}+\.eyJ[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]*+")
_B64URL_RUN = re.compile(r"[A-Za-z0-9_\-]*+")
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
# A truncated block (no END line, as in a clipped log) is redacted as far as its body goes.
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s\\:,\-]*+")
# (cheap substring gate, expression) for the keys whose prefix says what they are, grouped by
# a character the prefix contains so a whole group is skipped with one memchr.
_DASH_PREFIXED = (("xox", _SLACK),)
_UNDERSCORE_PREFIXED = (("_live_", _STRIPE), ("_test_", _STRIPE), ("gh", _GITHUB), ("github_pat_", _GITHUB))
_OTHER_PREFIXED = (("AIza", _GOOGLE),)
_URL_PASSWORD = re.compile(r"://[^\s/:@\"'<>]{1,128}:([^\s/@\"'<>]{1,256})@")
_BEARER = re.compile(r"(?:Bearer|bearer|BEARER)[ \t]+([A-Za-z0-9\-._~+/]+=*)")
_AUTHORIZATION = re.compile(
    r"[Aa](?:uthorization|UTHORIZATION)[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?:((?:Basic|Bearer|Token|Bot|Digest|basic|bearer|token)[ \t]+)?)([A-Za-z0-9\-._~+/]+=*)"
)

# The identifier must end with one of these words for its value to be taken as a secret;
# "key" needs a qualifier in front, since monkey, sort_key and hotkey are not secrets.
_ANCHORS = ("key", "secret", "token", "passw")
_KEY_QUALIFIERS = (
    "api", "secret", "private", "access", "auth", "signing", "encryption", "master", "license",
    "subscription", "client", "app",
)  # fmt: skip
_PASSWORD_WORD = re.compile(r"passw(?:or)?d")
_ASSIGNMENT = re.compile(
    r"[\"']?[ \t]*(?::=|=>|[:=])[ \t]*"
    r"(?:\"([^\"\\\n]{1,256})\"|'([^'\\\n]{1,256})'|([!#$%*+\-./0-9:=?@A-Z\\^_a-z|~]{1,256}+)(?![(\[]))"
)


def _bearer_ok(token: str, has_scheme: bool) -> bool:
    if has_scheme:
        return len(token) >= 6
    return len(token) >= 16 or (len(token) >= 8 and any(c.isdigit() for c in token))


def detect_api_keys(view: TextView, out: Out) -> None:
    """Provider keys, JWTs, PEM private keys, passwords in URLs and assignments, as ``API_KEY``."""
    text = view.text
    if view.has_long_token:
        runs = view.token_runs()
        if runs is None:
            _prefixed_text(text, out)
        else:
            # Every provider key is one run of letters, digits, '_' and '-' (boundaries included:
            # the expressions' look-behinds still see the text before the run), so each run is
            # checked on its own, and prose with no long run costs nothing here.
            for start, end in runs:
                _prefixed_run(text, start, end, out)
        # Single-character checks (memchr) first: 'J' is rare in prose.
        if "J" in text and "eyJ" in text:
            _jwts(text, out)
    # Outside the long-token gate: a clipped key block may have less than 20 characters of body.
    if "-" in text and "-----BEGIN" in text:
        _private_keys(text, out)
    colon = ":" in text
    if colon and "@" in text and "://" in text:
        out.extend((m.start(1), m.end(1), "API_KEY") for m in _URL_PASSWORD.finditer(text))
    if colon or "=" in text:
        _assignments(view, out)


def _prefixed_run(text: str, start: int, end: int, out: Out) -> None:
    """Provider keys inside the run ``text[start:end]`` (at least 15 characters long)."""
    run = text[start:end]
    if end - start >= 20:
        if "sk-" in run:
            for m in _OPENAI_ANTHROPIC.finditer(text, start, end):
                # Real keys mix case or digits; "risk-assessment-framework" does not.
                if mixed_key_body(m.group(1)):
                    out.append((m.start(), m.end(), "API_KEY"))
        if "_" in run:
            if "_live_" in run or "_test_" in run:
                out.extend((m.start(), m.end(), "API_KEY") for m in _STRIPE.finditer(text, start, end))
            if "gh" in run or "github_pat_" in run:
                out.extend((m.start(), m.end(), "API_KEY") for m in _GITHUB.finditer(text, start, end))
        if "AIza" in run:
            out.extend((m.start(), m.end(), "API_KEY") for m in _GOOGLE.finditer(text, start, end))
        if "KIA" in run or "SIA" in run:
            out.extend((m.start(), m.end(), "API_KEY") for m in _AWS.finditer(text, start, end))
    # Slack tokens are shorter; they count once the text has a long run somewhere.
    if "xox" in run:
        out.extend((m.start(), m.end(), "API_KEY") for m in _SLACK.finditer(text, start, end))


def _prefixed_text(text: str, out: Out) -> None:
    """The provider keys of :func:`_prefixed_run`, searched for over the whole text."""
    if "-" in text:
        if "sk-" in text:
            for m in _OPENAI_ANTHROPIC.finditer(text):
                if mixed_key_body(m.group(1)):
                    out.append((m.start(), m.end(), "API_KEY"))
        _prefixed(text, _DASH_PREFIXED, out)
    if "_" in text:
        _prefixed(text, _UNDERSCORE_PREFIXED, out)
    _prefixed(text, _OTHER_PREFIXED, out)
    if "KIA" in text or "SIA" in text:
        out.extend((m.start(), m.end(), "API_KEY") for m in _AWS.finditer(text))


def _prefixed(text: str, table: tuple[tuple[str, re.Pattern[str]], ...], out: Out) -> None:
    for gate, pattern in table:
        if gate in text:
            out.extend((m.start(), m.end(), "API_KEY") for m in pattern.finditer(text))


def _jwts(text: str, out: Out) -> None:
    """JWTs. A failed attempt skips the rest of its base64url run: every later "eyJ" in the same
    run would fail the same way, and retrying each would be quadratic ("eyJeyJeyJ...")."""
    pos = text.find("eyJ")
    while pos >= 0:
        m = _JWT.match(text, pos)
        if m is not None:
            out.append((pos, m.end(), "API_KEY"))
            nxt = m.end()
        else:
            run = _B64URL_RUN.match(text, pos)
            nxt = run.end() if run is not None and run.end() > pos else pos + 3
        pos = text.find("eyJ", nxt)


def _private_keys(text: str, out: Out) -> None:
    """PEM private key blocks, from BEGIN to the next END line (found with one search each)."""
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end_at = text.find("-----END ", begin.end())
        end = _PEM_END.match(text, end_at) if end_at >= 0 else None
        stop = end.end() if end is not None else begin.end()
        if end is None:
            body = _PEM_BODY.match(text, begin.end())
            stop = body.end() if body else stop
        out.append((begin.start(), stop, "API_KEY"))
        pos = stop


# The last character of each anchor word ("key", "secret", "token", "passwd", "password").
_ANCHOR_LAST = frozenset("ytndYTND")
# Up to this many ':' and '=' the assignments are found from their operators; beyond it (code,
# JSON) from the anchor words, with one search per word.
_MAX_OPERATORS = 16


def _assignments(view: TextView, out: Out) -> None:
    """``api_key=...``, ``"apiKey": "..."``, ``password: ...``: the value becomes ``API_KEY``."""
    text = view.text
    ends = _operator_ends(text)
    if ends is None:
        low = view.lower
        for anchor in _ANCHORS:
            pos = low.find(anchor)
            while pos >= 0:
                _assignment_at(text, low, anchor, pos, out)
                pos = low.find(anchor, pos + len(anchor))
        return
    if not ends:
        return
    low = view.lower
    for end in ends:
        # Which anchor word (if any) ends right where the operator's left side begins.
        if low.endswith("key", 0, end):
            _assignment_at(text, low, "key", end - 3, out)
        elif low.endswith("secret", 0, end):
            _assignment_at(text, low, "secret", end - 6, out)
        elif low.endswith("token", 0, end):
            _assignment_at(text, low, "token", end - 5, out)
        elif low.endswith("password", 0, end):
            _assignment_at(text, low, "passw", end - 8, out)
        elif low.endswith("passwd", 0, end):
            _assignment_at(text, low, "passw", end - 6, out)


def _operator_ends(text: str) -> list[int] | None:
    """Where an anchor word would end for each ':' / '=' (before an optional quote and blanks),
    kept only when the character there can end an anchor; ``None`` when there are too many."""
    ends: list[int] = []
    seen = 0
    for op in ":=":
        q = text.find(op)
        while q >= 0:
            seen += 1
            if seen > _MAX_OPERATORS:
                return None
            end = q
            while end > 0 and text[end - 1] in " \t":
                end -= 1
            if end > 0 and text[end - 1] in "\"'":
                end -= 1
            if end > 0 and text[end - 1] in _ANCHOR_LAST:
                ends.append(end)
            q = text.find(op, q + 1)
    return ends


def _assignment_at(text: str, low: str, anchor: str, pos: int, out: Out) -> None:
    end = pos + len(anchor)
    if anchor == "passw":
        word = _PASSWORD_WORD.match(low, pos)
        if word is None:
            return
        end = word.end()
    if end < len(text) and text[end].isascii() and (text[end].isalnum() or text[end] == "_"):
        return  # the identifier goes on: tokenizer, keyboard, max_tokens
    if anchor == "key":
        if not low[max(0, pos - 13) : pos].rstrip("_.-").endswith(_KEY_QUALIFIERS):
            return
    elif pos > 0 and low[pos - 1].isascii() and low[pos - 1].isalnum() and not text[pos].isupper():
        return  # glued to a longer word (mytoken), unless camelCase (clientSecret)
    m = _ASSIGNMENT.match(text, end)
    if m is None:
        return
    group = 1 if m.group(1) is not None else 2 if m.group(2) is not None else 3
    if looks_secret(m.group(group)):
        out.append((m.start(group), m.end(group), "API_KEY"))


def detect_bearer(view: TextView, out: Out) -> None:
    """``Bearer <token>`` anywhere, and the credential of any ``Authorization`` header."""
    text = view.text
    # The expressions spell the words Bearer/bearer/BEARER and [Aa]uthorization/[Aa]UTHORIZATION;
    # a rare letter is looked for first (memchr) before the word itself.
    bearer = "earer" in text or ("R" in text and "EARER" in text)
    # Without ':' or '=' there is no header; a bare "Bearer <token>" still counts.
    header = (":" in text or "=" in text) and (
        ("z" in text and "uthoriz" in text) or ("Z" in text and "UTHORIZ" in text)
    )
    if bearer:
        for m in _BEARER.finditer(text):
            if _bearer_ok(m.group(1), has_scheme=False) and looks_like_credential(m.group(1)):
                out.append((m.start(1), m.end(1), "BEARER_TOKEN"))
    if header:
        for m in _AUTHORIZATION.finditer(text):
            token = m.group(2)
            if _bearer_ok(token, has_scheme=m.group(1) is not None) and looks_like_credential(token):
                out.append((m.start(2), m.end(2), "BEARER_TOKEN"))


def looks_like_credential(token: str) -> bool:
    """Refuse words ("Authorization: required"); credentials are not plain lower-case words."""
    return not token.isalpha() or not token.islower()

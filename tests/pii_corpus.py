"""A deterministic, labelled corpus for the redaction tests (no Faker: seeded ``random`` only).

:func:`planted` gives sentences that each embed one generated value of a known entity, in
English and Japanese prose, JSON, code and log lines; :func:`negatives` gives sentences full
of things that look like PII to a careless pattern but are not: trace and span ids, UUIDs,
git SHAs, timestamps, versions, order numbers, code, prices, dates, ISO durations, 16-digit
numbers that fail Luhn and date-shaped "phone numbers".

Check digits (Luhn, IBAN, My Number) are computed here independently of ``kansoku.redact``,
so the corpus does not inherit a bug from the code it tests.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Planted:
    """A sentence ``text`` holding ``value``, which a redactor must remove; ``entity`` is its label."""

    entity: str
    value: str
    text: str


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the digit that makes the Luhn sum a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return prefix + str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    return luhn_complete(number[:-1]) == number


def iban_from(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def my_number_complete(first11: str) -> str:
    total = sum(int(first11[10 - i]) * (i + 2 if i < 6 else i - 4) for i in range(11))
    rem = total % 11
    return first11 + str(0 if rem <= 1 else 11 - rem)


# --- value generators, one function per entity, each returning a varied spelling.
_FIRST = ["taro", "hanako", "john", "maria", "li.wei", "o.connor", "yuki", "anne-marie", "dev", "k.sato"]
_DOMAINS = [
    "example.com",
    "example.co.jp",
    "mail.example.org",
    "corp.example.io",
    "example.de",
    "ex-ample.dev",
]


def email(rng: random.Random) -> str:
    local = rng.choice(_FIRST) + rng.choice(["", ".", "_", "+news", "2024", str(rng.randint(1, 99))])
    value = f"{local.strip('.')}@{rng.choice(_DOMAINS)}"
    return value.upper() if rng.random() < 0.1 else value


def _nanp(rng: random.Random) -> tuple[str, str, str]:
    return str(rng.randint(200, 999)), str(rng.randint(200, 999)), _digits(rng, 4)


def phone(rng: random.Random) -> str:
    a, b, c = _nanp(rng)
    mobile = rng.choice(["090", "080", "070"])
    m1, m2 = _digits(rng, 4), _digits(rng, 4)
    forms = [
        f"+81 {mobile[1:]}-{m1}-{m2}",
        f"+81-3-{m1}-{m2}",
        f"+81{mobile[1:]}{m1}{m2}",
        f"+1 {a} {b} {c}",
        f"+1 ({a}) {b}-{c}",
        f"+44 20 {m1} {m2}",
        f"+49 30 {_digits(rng, 7)}",
        f"({a}) {b}-{c}",
        f"{a}-{b}-{c}",
        f"{a}.{b}.{c}",
        f"1-800-{b}-{c}",
        f"{mobile}-{m1}-{m2}",
        f"{mobile}{m1}{m2}",
        f"0{rng.choice('36')}-{m1}-{m2}",
        f"045-{_digits(rng, 3)}-{m2}",
        f"0120-{_digits(rng, 3)}-{_digits(rng, 3)}",
        f"(03) {m1}-{m2}",
        f"03({m1}){m2}",
        _fullwidth(f"{mobile}-{m1}-{m2}"),
        f"{mobile}ー{m1}ー{m2}",
    ]
    return rng.choice(forms)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c == "-" else c for c in text)


# (IIN prefix, length) for Visa, Mastercard (both series), Amex, Discover, JCB, Diners, UnionPay.
_CARD_PREFIXES = [
    ("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
    ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("3589", 16), ("36", 14), ("62", 19),
]  # fmt: skip


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(_CARD_PREFIXES)
    number = luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    style = rng.choice(["plain", " ", "-"])
    if style == "plain":
        return number
    if length in (14, 15):  # Diners and Amex print 4-6-4 / 4-6-5
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, length, 4)]
    return style.join(groups)


_IBAN_BBAN: dict[str, Callable[[random.Random], str]] = {
    "DE": lambda r: _digits(r, 18),
    "GB": lambda r: _rand(r, string.ascii_uppercase, 4) + _digits(r, 14),
    "FR": lambda r: _digits(r, 10) + _rand(r, string.ascii_uppercase + string.digits, 11) + _digits(r, 2),
    "ES": lambda r: _digits(r, 20),
    "NL": lambda r: _rand(r, string.ascii_uppercase, 4) + _digits(r, 10),
    "IT": lambda r: r.choice(string.ascii_uppercase) + _digits(r, 10) + _digits(r, 12),
    "CH": lambda r: _digits(r, 17),
    "BE": lambda r: _digits(r, 12),
    "NO": lambda r: _digits(r, 11),
    "PL": lambda r: _digits(r, 24),
}


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_IBAN_BBAN))
    value = iban_from(country, _IBAN_BBAN[country](rng))
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ip_address(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return ".".join(str(rng.randint(1, 255)) for _ in range(4))
    if kind == 1:
        prefix = rng.choice(["10", "192.168", "172.16"])
        rest = ".".join(str(rng.randint(0, 255)) for _ in range(4 - len(prefix.split("."))))
        return f"{prefix}.{rest}"
    groups = [f"{rng.randint(0x1000, 0xFFFF):x}" for _ in range(8)]
    if kind == 2:
        return ":".join(groups)
    if kind == 3:
        return (
            f"2001:db8::{groups[0]}:{groups[1]}" if rng.random() < 0.5 else f"fe80::{groups[2]}:{groups[3]}"
        )
    return f"::ffff:192.0.2.{rng.randint(1, 254)}"


def national_id(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        area = rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == 1:
        number = my_number_complete(str(rng.randint(1, 9)) + _digits(rng, 10))
        return number if rng.random() < 0.5 else f"{number[:4]} {number[4:8]} {number[8:]}"
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in {"GB", "NT", "TN", "KN", "NK", "ZZ", "BG"}:
        first, second = "A", "B"
    digits, suffix = _digits(rng, 6), rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second}{digits}{suffix}"
    return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"


def _jwt(rng: random.Random) -> str:
    def seg(obj: str) -> str:
        return base64.urlsafe_b64encode(obj.encode()).decode().rstrip("=")

    header = seg('{"alg":"HS256","typ":"JWT"}')
    payload = seg(
        f'{{"sub":"{rng.randint(1, 10**9)}","name":"{rng.choice(_FIRST)}","iat":{rng.randint(1, 2**31)}}}'
    )
    return f"{header}.{payload}.{_rand(rng, ALNUM + '-_', 43)}"


def _pem(rng: random.Random) -> str:
    kind = rng.choice(["", "RSA ", "EC ", "OPENSSH "])
    body = "\n".join(_rand(rng, ALNUM + "+/", 64) for _ in range(rng.randint(2, 5)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def api_key(rng: random.Random) -> str:
    """A provider key on its own (the value is the whole key)."""
    forms: list[Callable[[], str]] = [
        lambda: "sk-" + _rand(rng, ALNUM, 48),
        lambda: "sk-proj-" + _rand(rng, ALNUM + "-_", 100),
        lambda: "sk-ant-api03-" + _rand(rng, ALNUM + "-_", 93) + "AA",
        lambda: "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16),
        lambda: "ASIA" + _rand(rng, string.ascii_uppercase + string.digits, 16),
        lambda: "ghp_" + _rand(rng, ALNUM, 36),
        lambda: "gho_" + _rand(rng, ALNUM, 36),
        lambda: "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59),
        lambda: f"xoxb-{_digits(rng, 12)}-{_digits(rng, 13)}-{_rand(rng, ALNUM, 24)}",
        lambda: "xoxp-" + _digits(rng, 11) + "-" + _rand(rng, ALNUM, 30),
        lambda: "AIza" + _rand(rng, ALNUM + "-_", 35),
        lambda: "sk_live_" + _rand(rng, ALNUM, 24),
        lambda: "rk_live_" + _rand(rng, ALNUM, 24),
        lambda: _jwt(rng),
        lambda: _pem(rng),
    ]
    return rng.choice(forms)()


def _secret_value(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.randint(10, 40)) + str(rng.randint(0, 9))


# Assignments: (template with {v}, entity). The value alone is what must disappear.
_ASSIGNMENTS = [
    "api_key={v}", 'API_KEY="{v}"', '"apiKey": "{v}"', "x-api-key: {v}", "client_secret = '{v}'",
    '"access_token":"{v}"', "password: {v}", "DB_PASSWORD={v}", "secretKey: {v}", "auth_token => {v}",
    "https://api.example.com/v1/data?api_key={v}&limit=10", "postgres://admin:{v}@db.internal:5432/app",
]  # fmt: skip
_BEARER = [
    "Authorization: Bearer {v}", '"Authorization": "Bearer {v}"', "curl -H 'Authorization: Bearer {v}' ...",
    "authorization: basic {v}", "Authorization: Basic {v}", "headers = {{'Authorization': 'Token {v}'}}",
    "sent Bearer {v} upstream",
]  # fmt: skip


def _bearer_value(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return _rand(rng, ALNUM + "-._~", rng.randint(24, 64)) + str(rng.randint(0, 9))
    if kind == 1:
        creds = f"{rng.choice(_FIRST)}:{_secret_value(rng)}"
        return base64.b64encode(creds.encode()).decode()
    return _jwt(rng)


# --- contexts a value is embedded in.
_CONTEXTS = [
    "Please contact me at {v} if anything changes.",
    "My details: {v}. Thanks!",
    "The value ({v}) was rejected by the upstream service.",
    "'{v}'",
    "{v}",
    "User wrote:\n{v}\nand then logged out.",
    "連絡先は{v}です。よろしくお願いします。",
    "お問い合わせ：{v}（平日のみ）",  # noqa: RUF001 -- full-width punctuation is the point
    "「{v}」までご連絡ください。",
    '{{"field": "{v}", "count": 3, "ok": true}}',
    'payload = {{"value": "{v}", "retries": 2}}',
    "2024-11-23T10:15:30Z INFO request user={v} status=200 latency_ms=123",
    "<td>{v}</td>",
    "- {v}\n- next item",
]

_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": email,
    "PHONE": phone,
    "CREDIT_CARD": card,
    "IBAN": iban,
    "IP_ADDRESS": ip_address,
    "NATIONAL_ID": national_id,
    "API_KEY": api_key,
}


def planted(seed: int = 20241123, per_entity: int = 300) -> list[Planted]:
    """``per_entity`` labelled sentences for every built-in entity, deterministic for a seed."""
    rng = random.Random(seed)
    samples: list[Planted] = []
    for entity, make in _GENERATORS.items():
        for _ in range(per_entity):
            value = make(rng)
            samples.append(Planted(entity, value, rng.choice(_CONTEXTS).format(v=value)))
    for _ in range(per_entity):
        value = _secret_value(rng)
        line = rng.choice(_ASSIGNMENTS).format(v=value)
        samples.append(Planted("API_KEY", value, rng.choice(_CONTEXTS).format(v=line)))
    for _ in range(per_entity):
        value = _bearer_value(rng)
        line = rng.choice(_BEARER).format(v=value)
        samples.append(Planted("BEARER_TOKEN", value, rng.choice(_CONTEXTS).format(v=line)))
    return samples


# --- negatives: things that must survive redaction untouched.
def _non_luhn16(rng: random.Random) -> str:
    number = str(rng.randint(2, 6)) + _digits(rng, 15)
    while luhn_ok(number):
        number = number[:-1] + str((int(number[-1]) + 1) % 10)
    return number


_NEGATIVE_ITEMS: list[Callable[[random.Random], str]] = [
    lambda r: _rand(r, HEX, 32),  # trace id
    lambda r: _rand(r, HEX, 16),  # span id
    lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)).upper(),
    lambda r: _rand(r, HEX, 40),  # git SHA
    lambda r: _rand(r, HEX, 7),
    lambda r: "sha256:" + _rand(r, HEX, 64),
    lambda r: (
        f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
        f"{r.randint(0, 59):02d}.{_digits(r, 3)}Z"
    ),
    lambda r: str(r.randint(1_600_000_000, 1_800_000_000)),  # unix seconds
    lambda r: str(r.randint(1_600_000_000_000, 1_800_000_000_000)),  # unix ms
    lambda r: str(r.randint(1_600_000_000_000_000_000, 1_800_000_000_000_000_000)),  # unix ns
    lambda r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
    lambda r: f"v{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}.{r.randint(0, 999)}",
    lambda r: f"{r.randint(1, 3)}.{r.randint(0, 9)}.{r.randint(0, 9)}-rc.{r.randint(1, 5)}",
    lambda r: f"ORD-{r.randint(2019, 2025)}-{_digits(r, 6)}",
    lambda r: f"#A-{_digits(r, 5)}",
    lambda r: f"INV-{_digits(r, 6)}-{_digits(r, 2)}",
    lambda r: f"order {_digits(r, 8)}",
    lambda r: f"${r.randint(1, 9)},{_digits(r, 3)}.{_digits(r, 2)}",
    lambda r: f"¥{r.randint(1, 99)},{_digits(r, 3)}",
    lambda r: f"€{r.randint(1, 999)}.{_digits(r, 2)}",
    lambda r: f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    lambda r: f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(2000, 2030)}",
    lambda r: f"{r.randint(2000, 2030)}年{r.randint(1, 12)}月{r.randint(1, 28)}日",
    lambda r: r.choice(["PT1H30M", "P3DT4H", "PT45S", "P1Y2M10DT2H30M", "PT0.5S"]),
    _non_luhn16,
    lambda r: f"{_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"{r.randint(9, 17):02d}:00-{r.randint(9, 17):02d}:30",
    lambda r: f"{_digits(r, 4)}-{_digits(r, 4)}",
    lambda r: f"{r.randint(10, 99)}-{r.randint(10, 99)}-{r.randint(10, 99)}",
    lambda r: f"978-4-{_digits(r, 2)}-{_digits(r, 6)}-{r.randint(0, 9)}",
    lambda r: f"{r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
    lambda r: f"{r.randint(1, 999)},{_digits(r, 3)},{_digits(r, 3)}",
    lambda r: f"0.{_digits(r, 4)}",
    lambda r: f"pod-{_rand(r, HEX, 9)}-{_rand(r, 'abcdefghijklmnopqrstuvwxyz0123456789', 5)}",
    lambda r: ":".join(_rand(r, HEX, 2) for _ in range(6)),  # MAC address
    lambda r: f"2024-W{r.randint(1, 52):02d}",
    lambda r: r.choice(["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "gemini-1.5-pro-002"]),
    lambda r: f"arn:aws:iam::{_digits(r, 12)}:role/{r.choice(['deploy', 'reader'])}",
    lambda r: f"localhost:{r.randint(1024, 65535)}",
    lambda r: f"#{_rand(r, HEX, 6)}",
]

_CODE = [
    "for i in range(10):\n    total += prices[i] * 1.08",
    "x = np.zeros((3, 4)); y = x[1::2]",
    "const total = items.reduce((a, b) => a + b, 0);",
    "client.chat.completions.create(model=model, max_tokens=1024, temperature=0.7)",
    "token = tokenizer.encode(text)",
    "api_key = os.environ['OPENAI_API_KEY']",
    "password = getpass.getpass('Password: ')",
    "secret_key = settings.SECRET_KEY",
    "headers = {'Authorization': f'Bearer {token}'}",
    "std::vector<int> v; std::sort(v.begin(), v.end());",
    "let map: std::collections::HashMap<String, u32> = HashMap::new();",
    "if (key === 'Enter') { submit(); }",
    "SELECT id, created_at FROM orders WHERE total > 100 LIMIT 50;",
    "monkey: banana, keyboard: qwerty, hotkey: ctrl+k",
    "The key takeaway: revenue grew 12.5% year over year.",
    "Bearer instruments are legal documents; the token economy is growing.",
    "Authorization: required for all endpoints.",
    "max_tokens: 4096\ntemperature: 0.2\ntop_p: 0.95",
    'const apiKey = process.env.API_KEY ?? "";',
    "risk-assessment-framework-for-large-language-models",
]

_NEGATIVE_CONTEXTS = [
    "See {v} for details.",
    "trace_id={v} span_id={w} status=ok",
    '{{"id": "{v}", "ref": "{w}", "n": 42}}',
    "詳細は{v}を参照してください（{w}）。",  # noqa: RUF001 -- full-width punctuation is the point
    "Logged at {v}; previous value was {w}.",
    "{v}",
]


def negatives(seed: int = 7, count: int = 2000) -> list[str]:
    """``count`` sentences that contain no PII or secrets, deterministic for a seed."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        if i % 10 == 0:
            out.append(rng.choice(_CODE))
            continue
        v = rng.choice(_NEGATIVE_ITEMS)(rng)
        w = rng.choice(_NEGATIVE_ITEMS)(rng)
        out.append(rng.choice(_NEGATIVE_CONTEXTS).format(v=v, w=w))
    return out

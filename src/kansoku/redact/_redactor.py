"""The pattern redactor: a frozen configuration in, a fast ``str -> str`` callable out.

Findings from every detector are pooled, overlaps are settled (the longest finding wins; on
a tie the more specific entity), and each survivor is replaced by ``[ENTITY]`` in mask mode
or ``[ENTITY:<12 hex>]`` in hash mode, the hex being the start of HMAC-SHA256 under the
user's key. The same value always gives the same token, so records can still be joined on
it, but without the key nobody can test guesses against the token.
"""

from __future__ import annotations

import hmac
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from kansoku.redact._ip import detect_ipv4, detect_ipv6
from kansoku.redact._pii import detect_email, detect_letter_ids, detect_numeric
from kansoku.redact._secrets import detect_api_keys, detect_bearer
from kansoku.redact._text import _CLASS_TABLE, _RUN_NEEDLE, _TOKEN_TABLE, TextView

#: Built-in entity names, in tie-break order (earlier wins when two findings are equally long:
#: a JWT after "Bearer" is reported as the bearer token it is used as).
ENTITIES: tuple[str, ...] = (
    "BEARER_TOKEN", "API_KEY", "EMAIL", "IBAN", "CREDIT_CARD", "NATIONAL_ID", "PHONE", "IP_ADDRESS",
)  # fmt: skip
_PRIORITY = {name: rank for rank, name in enumerate(ENTITIES, start=1)}
# No built-in entity fits in fewer characters ("a@b.io", "1.1.1.1"); roles, finish reasons and
# other short strings in a span skip the scan entirely.
_SHORTEST = 6
# A dotted quad on the byte-class map (digits are b"0"): the gate of the IPv4 detector.
_IPV4_SHAPE = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")
_ENTITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_NO_KEY = (
    "mode='hash' needs a secret key: pass hash_key=... (bytes or str, for example read from the "
    "KANSOKU_REDACT_KEY environment variable; make one with "
    "python -c 'import secrets; print(secrets.token_hex(32))'). There is no unkeyed fallback: "
    "a plain hash of an e-mail or phone number can be reversed by hashing every candidate."
)


class Finding(NamedTuple):
    """Where a detector found something: entity name and ``text[start:end]``. Never the value."""

    entity: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """What a :class:`Redactor` looks for and how it replaces it. Validated on construction.

    ``entities`` ``None`` means every built-in entity; ``custom`` pairs an entity name with a
    compiled pattern (a named group ``value``, when present, is the part replaced). The key
    is kept out of ``repr``.
    """

    entities: frozenset[str] | None = None
    custom: tuple[tuple[str, re.Pattern[str]], ...] = ()
    mode: str = "mask"
    hash_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("mask", "hash"):
            raise ValueError(f"mode must be 'mask' or 'hash', got {self.mode!r}")
        if self.mode == "hash" and not self.hash_key:
            raise ValueError(_NO_KEY)
        if self.entities is not None:
            unknown = sorted(set(self.entities) - set(ENTITIES))
            if unknown:
                raise ValueError(f"unknown entities {unknown}; choose from {list(ENTITIES)}")
        for name, pattern in self.custom:
            if not isinstance(pattern, re.Pattern):
                raise ValueError(
                    f"custom pattern for {name!r} must be compiled with re.compile in a RedactionConfig"
                )
            if not _ENTITY_NAME.fullmatch(name):
                raise ValueError(
                    f"custom entity name {name!r} must start with a letter and use only letters, "
                    "digits and '_' (it becomes the [NAME] token)"
                )

    def __repr__(self) -> str:
        key = "[secure]" if self.hash_key else None
        names = [name for name, _ in self.custom]
        return (
            f"RedactionConfig(entities={self.entities!r}, custom={names!r}, mode={self.mode!r}, "
            f"hash_key={key})"
        )


def _compile(name: str, pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"custom pattern for {name!r} is not a valid regular expression: {exc}") from None


class Redactor:
    """Find and replace PII and secrets in text.

    >>> r = Redactor(custom={"EMPLOYEE_ID": r"EMP-\\d{6}"})
    >>> r.redact("mail taro@example.com, badge EMP-123456")
    'mail [EMAIL], badge [EMPLOYEE_ID]'

    Thread-safe and cheap to call: build one and reuse it.
    """

    __slots__ = (
        "_api",
        "_bearer",
        "_custom",
        "_email",
        "_ip",
        "_key",
        "_letters",
        "_numeric",
        "_wanted",
        "config",
    )

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        *,
        custom: Mapping[str, str | re.Pattern[str]] | None = None,
        mode: str = "mask",
        hash_key: bytes | str | None = None,
    ) -> None:
        key = hash_key.encode("utf-8") if isinstance(hash_key, str) else hash_key
        compiled = tuple((name, _compile(name, pat)) for name, pat in (custom or {}).items())
        config = RedactionConfig(
            entities=None if entities is None else frozenset(entities),
            custom=compiled,
            mode=mode,
            hash_key=key if mode == "hash" else None,
        )
        self._setup(config)

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redactor:
        """A redactor for an existing (already validated) configuration."""
        self = cls.__new__(cls)
        self._setup(config)
        return self

    def _setup(self, config: RedactionConfig) -> None:
        self.config = config
        wanted = frozenset(ENTITIES if config.entities is None else config.entities)
        self._wanted = wanted
        self._custom = config.custom
        self._key = config.hash_key if config.mode == "hash" else None
        self._api = "API_KEY" in wanted
        self._bearer = "BEARER_TOKEN" in wanted
        self._email = "EMAIL" in wanted
        self._letters = bool(wanted & {"IBAN", "NATIONAL_ID"})
        self._numeric = bool(wanted & {"PHONE", "CREDIT_CARD", "NATIONAL_ID"})
        self._ip = "IP_ADDRESS" in wanted

    def __repr__(self) -> str:
        cfg = self.config
        names = [name for name, _ in cfg.custom]
        entities = "all" if cfg.entities is None else sorted(cfg.entities)
        key = ", hash_key=[secure]" if cfg.mode == "hash" else ""
        return f"Redactor(entities={entities}, custom={names}, mode={cfg.mode!r}{key})"

    def findings(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, sorted by position."""
        return [Finding(entity, start, end) for start, end, entity in self._scan(text)[0]]

    def redact(self, text: str) -> str:
        """``text`` with every finding replaced by its token; the same object when nothing is found."""
        spans, folded = self._scan(text)
        if not spans:
            return text
        if self._key is None:  # mask mode: the token depends on the entity alone
            parts: list[str] = []
            last = 0
            for start, end, entity in spans:
                parts += (text[last:start], "[" + entity + "]")
                last = end
            parts.append(text[last:])
            return "".join(parts)
        # Hash full-width and ASCII spellings of a value alike: tokens come from the folded text.
        return replace_spans(text, folded, spans, self.token)

    __call__ = redact

    def token(self, entity: str, value: str) -> str:
        """The replacement for ``value`` found as ``entity`` (``[EMAIL]`` or ``[EMAIL:1a2b3c4d5e6f]``)."""
        if self._key is None:
            return f"[{entity}]"
        digest = hmac.digest(self._key, _normalise(entity, value).encode("utf-8", "surrogatepass"), "sha256")
        return f"[{entity}:{digest[:6].hex()}]"

    def _scan(self, text: str) -> tuple[list[tuple[int, int, str]], str]:
        """Resolved findings and the folded text they were found in."""
        out: list[tuple[int, int, str]] = []
        for name, pattern in self._custom:
            for m in pattern.finditer(text):
                start, end = m.span("value") if "value" in pattern.groupindex else m.span()
                if end > start:
                    out.append((start, end, name))
        size = len(text)
        if size < _SHORTEST or (size < 20 and text.isalpha()):
            # Every built-in finding needs a digit, '@', ':', '=', a space or 20 characters.
            return (resolve(out) if out else out), text
        # What each detector needs is decided here from a few memchr-speed facts, so that a
        # string that cannot hold anything (most of a span's strings) costs well under a
        # microsecond and never builds a TextView.
        view: TextView | None = None
        if text.isascii():
            classes = text.encode("ascii").translate(_CLASS_TABLE)
        else:
            view = TextView(text)
            text, classes = view.text, view.classes
        # Six digits or more for an IBAN or a NINO, eight for the numeric entities, four in a
        # dotted-quad shape for an IPv4 address, at least one and a ':' for IPv6.
        digits = classes.count(b"0") if b"0" in classes else 0
        dotted = digits >= 4 and _IPV4_SHAPE.search(classes) is not None
        at = "@" in text
        colon = ":" in text
        assigns = colon or "=" in text
        if size < 15:
            # No key, token or header fits: only an address, an assignment or digits.
            if not (at or assigns or digits >= 6 or dotted):
                return (resolve(out) if out else out), text
        elif not (digits or at or assigns) and view is None and not _may_hold_plain(text):
            return (resolve(out) if out else out), text
        if view is None:
            view = TextView(text, classes, digits)
        if self._api and (size >= 15 or assigns):
            detect_api_keys(view, out)
        if self._bearer and size >= 15:
            detect_bearer(view, out)
        if at and self._email:
            detect_email(view, out)
        if digits >= 6 and self._letters:
            detect_letter_ids(view, out, self._wanted)
        if digits >= 8 and self._numeric:
            detect_numeric(view, out, self._wanted)
        if self._ip and digits:
            if dotted:
                detect_ipv4(view, out)
            if colon:
                detect_ipv6(view, out)
        return (resolve(out) if out else out), text


def _may_hold_plain(text: str) -> bool:
    """Whether an ASCII text without digits, '@', ':' or '=' could still hold a finding.

    What is left is a provider key (a run of 15+ key characters), a PEM block or a bare
    "Bearer <token>"; the rarest character of a word is looked for (memchr) before the word.
    """
    if "earer" in text or ("R" in text and "EARER" in text) or ("-" in text and "-----BEGIN" in text):
        return True
    return _RUN_NEEDLE in text.encode("ascii").translate(_TOKEN_TABLE)


def replace_spans(
    text: str, source: str, spans: list[tuple[int, int, str]], token: Callable[[str, str], str]
) -> str:
    """``text`` with each ``(start, end, entity)`` replaced by ``token(entity, source[start:end])``."""
    parts: list[str] = []
    last = 0
    for start, end, entity in spans:
        parts.append(text[last:start])
        parts.append(token(entity, source[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def resolve(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Keep the longest of overlapping findings (ties: custom, then :data:`ENTITIES` order)."""
    if len(found) <= 1:
        return found
    # By position; stable, so findings on the very same span keep the order they were found in
    # (which settles ties between equally ranked entities, as it always has).
    found.sort(key=_SPAN)
    # Findings that overlap nothing are kept as they are; each group of overlapping ones (a
    # phone number inside an international one, say) is settled on its own, which gives the
    # same answer as settling them all at once since no two groups touch.
    kept: list[tuple[int, int, str]] = []
    prev = found[0]
    group: list[tuple[int, int, str]] | None = None
    group_end = prev[1]
    for item in found[1:]:
        if item[0] < group_end:
            if group is None:
                group = [prev]
            group.append(item)
            group_end = max(group_end, item[1])
            continue
        if group is None:
            kept.append(prev)
        else:
            _settle(group, kept)
            group = None
        prev = item
        group_end = item[1]
    if group is None:
        kept.append(prev)
    else:
        _settle(group, kept)
    return kept


_SPAN = itemgetter(0, 1)


def _rank(finding: tuple[int, int, str]) -> tuple[int, int, int]:
    """Longest first; on a tie the higher-priority entity, then the earlier start."""
    return finding[0] - finding[1], _PRIORITY.get(finding[2], 0), finding[0]


def _settle(group: list[tuple[int, int, str]], kept: list[tuple[int, int, str]]) -> None:
    """Add the longest-first choice among ``group`` (findings that overlap) to ``kept``, in order."""
    if len(group) == 2:  # the best of two overlapping findings; the first on a full tie
        a, b = group
        kept.append(b if _rank(b) < _rank(a) else a)
        return
    group.sort(key=_rank)
    starts: list[int] = []
    chosen: list[tuple[int, int, str]] = []
    for item in group:
        start, end, _ = item
        i = bisect_right(starts, start)
        if (i > 0 and chosen[i - 1][1] > start) or (i < len(chosen) and chosen[i][0] < end):
            continue
        starts.insert(i, start)
        chosen.insert(i, item)
    kept.extend(chosen)


def _normalise(entity: str, value: str) -> str:
    """One spelling per value, so "4111 1111 1111 1111" and "4111111111111111" hash alike."""
    if entity == "EMAIL":
        return value.lower()
    if entity == "PHONE":
        return "".join(c for c in value if c.isdigit() or c == "+")
    if entity in ("CREDIT_CARD", "IBAN", "NATIONAL_ID"):
        return "".join(c for c in value if c not in " -").upper()
    return value

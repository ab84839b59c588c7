"""The scanned form of a text: folded to ASCII where it matters, plus cheap features for gating.

Detectors are regular expressions, and running a dozen of them over every prompt would cost
far more than the budget (about 20 us per KB). So each detector first asks
:class:`TextView` a question that costs a ``memchr`` or a short substring search on a
byte-class map ("are there at least seven digits?", "is there an uppercase-uppercase-digit-digit
run?") and only runs its expression when the answer allows a match. A gate may say yes for
nothing; it must never say no for a real match.

Full-width digits and Japanese dash variants are folded to ASCII first, character for
character, so every offset in the folded text is an offset in the original.
"""

from __future__ import annotations

import re

# Full-width digits and the characters phone numbers are written with, to ASCII: one code
# point to one code point, so offsets survive folding. Dash-like characters are folded only
# between digits ('ー' is in every other katakana word).
_FOLD: dict[str, str] = {chr(0xFF10 + i): chr(0x30 + i) for i in range(10)}
_FOLD.update({"\uff0b": "+", "\uff08": "(", "\uff09": ")", "\uff0d": "-", "\u3000": " "})
_FOLDABLE = re.compile("[\uff10-\uff19\uff0b\uff08\uff09\uff0d\u3000]")
_FULLWIDTH_DIGIT = re.compile(rb"\xef\xbc[\x90-\x99]")
# UTF-8 of the dashes below; only worth folding when they may sit between digits.
_DASH_BYTES = re.compile(rb"\xe2\x80[\x90-\x95]|\xe2\x88\x92|\xe3\x83\xbc|\xef\xbd\xb0|\xef\xbc\x8d")
_DASH_BETWEEN_DIGITS = re.compile("[\u2010-\u2015\u2212\u30fc\uff70\uff0d](?<=[0-9].)(?=[0-9])")


def _fold_one(match: re.Match[str]) -> str:
    return _FOLD[match.group()]


# Byte classes: every ASCII digit becomes '0', upper-case letter 'A', lower-case letter 'a';
# punctuation and non-ASCII bytes stay as they are. Gates then look for shapes such as b"AA00".
_CLASS_TABLE = bytes(
    0x30 if 0x30 <= c <= 0x39 else 0x41 if 0x41 <= c <= 0x5A else 0x61 if 0x61 <= c <= 0x7A else c
    for c in range(256)
)
# Token classes: letters, digits, '_' and '-' become 'x', everything else a space. A run of
# twenty 'x' is the one gate for every provider key, JWT and private key body.
_TOKEN_TABLE = bytes(
    0x78 if (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c in (0x2D, 0x5F)) else 0x20
    for c in range(256)
)
_LONG_TOKEN = b"x" * 20
# Slack tokens may be as short as 15 characters; they are looked for only in runs this long.
_RUN_MIN = 15
_RUN_NEEDLE = b"x" * _RUN_MIN
#: Above this many runs (a table of hashes, say) the key detectors search the whole text.
MAX_RUNS = 12


class TextView:
    """A text prepared for scanning: ``text`` (folded), ``classes`` (byte-class map), ``digits``."""

    __slots__ = ("_digits", "_long", "_lower", "_raw", "_runs", "ascii", "classes", "text")

    def __init__(self, original: str, classes: bytes | None = None, digits: int = -1) -> None:
        """``classes`` (and its count of ``b"0"``, ``digits``) may be passed for an ASCII
        ``original`` whose class map the caller has already made."""
        text = original
        if classes is not None:
            raw = text.encode("ascii")
        elif text.isascii():
            raw = text.encode("ascii")
            classes = raw.translate(_CLASS_TABLE)
        else:
            # surrogatepass: lone surrogates are legal in a Python str and must not crash us.
            raw = text.encode("utf-8", "surrogatepass")
            classes = raw.translate(_CLASS_TABLE)
            folded = text
            wide = _FULLWIDTH_DIGIT.search(raw) is not None
            if wide:
                folded = _FOLDABLE.sub(_fold_one, folded)
            # The dash search is an alternation (slow over kana), so only when digits exist.
            if (wide or b"0" in classes) and _DASH_BYTES.search(raw):
                folded = _DASH_BETWEEN_DIGITS.sub("-", folded)
            if folded is not text:
                text = folded
                raw = text.encode("utf-8", "surrogatepass")
                classes = raw.translate(_CLASS_TABLE)
        self.text = text
        #: Byte offsets in ``classes`` are character offsets in ``text`` only when this is true.
        self.ascii = len(raw) == len(text)
        self.classes = classes
        self._raw = raw
        self._digits = digits
        self._lower: str | None = None
        self._runs: list[tuple[int, int]] | None = None
        self._long: bool | None = None

    @property
    def digits(self) -> int:
        """How many ASCII digits the text holds (counted on first use)."""
        if self._digits < 0:
            self._digits = self.classes.count(b"0")
        return self._digits

    def token_runs(self) -> list[tuple[int, int]] | None:
        """``(start, end)`` of every maximal run of letters, digits, '_' and '-' at least 15 long;
        ``None`` for a non-ASCII text or more than :data:`MAX_RUNS` runs (search the whole text)."""
        if self._long is None:
            self._scan_runs()
        return self._runs

    @property
    def has_long_token(self) -> bool:
        """Whether some run of letters, digits, '_' and '-' is at least 20 characters long."""
        if self._long is None:
            self._scan_runs()
        return bool(self._long)

    def _scan_runs(self) -> None:
        self._long, self._runs = False, []
        if len(self._raw) < _RUN_MIN:
            return
        tokens = self._raw.translate(_TOKEN_TABLE)
        pos = tokens.find(_RUN_NEEDLE)
        if pos < 0:
            return
        self._long = _LONG_TOKEN in tokens
        if not self.ascii:  # byte offsets are not character offsets: search the whole text
            self._runs = None
            return
        runs: list[tuple[int, int]] = []
        # Searching on from the space that ended the last run, the first hit is always the
        # start of the next run.
        while pos >= 0:
            if len(runs) == MAX_RUNS:  # a table of hashes, a blob: not worth a list
                self._runs = None
                return
            end = tokens.find(b" ", pos + _RUN_MIN)
            if end < 0:
                end = len(tokens)
            runs.append((pos, end))
            pos = tokens.find(_RUN_NEEDLE, end)
        self._runs = runs

    def digits_in(self, start: int, end: int) -> int:
        """How many ASCII digits ``text[start:end]`` holds."""
        if self.ascii:
            return self.classes.count(b"0", start, end)
        return sum(1 for ch in self.text[start:end] if "0" <= ch <= "9")

    @property
    def lower(self) -> str:
        """The lower-cased text, offset for offset the same as ``text``."""
        if self._lower is None:
            low = self.text.lower()
            if len(low) != len(self.text):
                # Only U+0130 (I with dot above) lower-cases to two code points; map it alone.
                low = self.text.replace("\u0130", "i").lower()
                if len(low) != len(self.text):
                    low = "".join(c if len(c.lower()) != 1 else c.lower() for c in self.text)
            self._lower = low
        return self._lower

"""Detectors for personal data: e-mail, phone, card, IBAN and national ids.

Each detector is ``detect(view, out)``: it appends ``(start, end, entity)`` for every finding
in ``view.text`` and returns quickly when its gate rules a match out. Digit-based entities
share one pass: a single expression finds "numeric clusters" (digits with the separators
numbers are written with) and the specific expressions then run only inside those short
windows, which is what keeps a prompt full of ordinary numbers cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kansoku.redact._text import TextView
from kansoku.redact._validators import (
    IBAN_LENGTHS,
    card_valid,
    e164_valid,
    email_valid,
    iban_valid,
    jp_phone_valid,
    my_number_valid,
    nino_valid,
    ssn_valid,
)

Out = list[tuple[int, int, str]]

# --- e-mail: found from the '@' outwards (a literal search), never by scanning every word.
_EMAIL_DOMAIN = re.compile(r"@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+)")
_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,64}")


def detect_email(view: TextView, out: Out) -> None:
    text = view.text
    at = text.find("@")
    while at >= 0:
        m = _EMAIL_DOMAIN.match(text, at)
        if m is None:
            at = text.find("@", at + 1)
            continue
        # The local part is read backwards from the '@': one match on the reversed window.
        local = _LOCAL_REVERSED.match(text[at - 64 if at > 64 else 0 : at][::-1])
        if local is not None:
            start = at - local.end()
            while text[start] == ".":  # stops at the latest at the '@'
                start += 1
            # scheme://user:secret@host is a credential (API_KEY), not an address
            if not (text[start - 1 : start] == ":" and _url_password(text, start)):
                domain = m.group(1)
                if domain[-1] in ".-":
                    domain = domain.rstrip(".-")
                if email_valid(text[start:at], domain):
                    out.append((start, at + 1 + len(domain), "EMAIL"))
        at = text.find("@", m.end())


def _url_password(text: str, start: int) -> bool:
    if start == 0 or text[start - 1] != ":":
        return False
    scheme = text.rfind("://", max(0, start - 200), start)
    return scheme >= 0 and not any(c.isspace() for c in text[scheme:start])


# --- numeric clusters (runs of digits and the separators numbers are written with)
# and what lives in them. IP addresses are found in _ip.py, from their dots and colons.
# A cluster is found from its first eight digits: on the byte-class map (every digit is b"0",
# a literal the engine skips to quickly) for ASCII text, on the text itself otherwise. The match
# runs from the first digit to the end of the run of number characters; a '(' or '+' in front
# of that digit is added afterwards. The look-behind (after the literal, so the engine can still
# skip to it) tries each group of digits once, from its first digit, instead of from every digit.
_CLUSTER_CLASSES = re.compile(rb"0(?<!00)(?:[ ().+\-]*+0){7}[0 ().+\-]*+")
_CLUSTER_TEXT = re.compile(r"[0-9](?<![0-9][0-9])(?:[ ().+\-]*+[0-9]){7}[0-9 ().+\-]*+")
_CLUSTER_LEAD = frozenset(" ().+-")
_DIGIT_RUN = re.compile(r"[0-9]+")
_SSN = re.compile(r"(?<![0-9A-Za-z_\-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9A-Za-z_]|-[0-9])")
_E164 = re.compile(r"(?<![0-9A-Za-z_+])\+[0-9][0-9 ().\-]*[0-9]")
# North American and Japanese domestic numbers in one expression (one call per cluster).
_PHONE = re.compile(
    r"(?<![0-9A-Za-z_+\-.])(?:"
    r"(?P<nanp>(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4})"
    r"|(?P<jp>(?:\(0[0-9]{1,4}\) ?|0[0-9]{1,4}[ \-]?(?=\()|0[0-9]{1,4}[ \-])"  # area code
    r"(?:\([0-9]{1,4}\) ?|[0-9]{1,4}[ \-])"  # exchange
    r"[0-9]{3,4}"  # subscriber
    r"|0[5789]0[0-9]{8}|0120[0-9]{6})"
    r")(?![0-9])"
)

# Group layouts people print cards and My Numbers in; a single tuple entry is an unseparated run.
_LAYOUTS: dict[tuple[int, ...], str] = {(12,): "MY_NUMBER", (4, 4, 4): "MY_NUMBER"}
_LAYOUTS.update({(n,): "CARD" for n in range(13, 20)})
_LAYOUTS.update({(4, 6, 5): "CARD", (4, 6, 4): "CARD", (4, 4, 4, 4): "CARD"})
_LAYOUTS.update({(4, 4, 4, n): "CARD" for n in (1, 2, 3)})
_LAYOUTS.update({(4, 4, 4, 4, n): "CARD" for n in (1, 2, 3)})


# Every ASCII byte but the digits, deleted by bytes.translate (one C call for the whole match).
_NON_DIGIT_BYTES = bytes(c for c in range(128) if not 0x30 <= c <= 0x39)


def _digits(text: str, start: int, end: int) -> str:
    # Matches only ever hold ASCII digits (the expressions say [0-9]), so isdigit is exact here.
    part = text[start:end]
    if part.isascii():
        return part.encode("ascii").translate(None, _NON_DIGIT_BYTES).decode("ascii")
    return "".join(filter(str.isdigit, part))


def _isolated(text: str, start: int, end: int) -> bool:
    """Not glued to letters, underscores or a decimal point (hex ids, decimals, identifiers)."""
    if start > 0 and (text[start - 1].isascii() and (text[start - 1].isalnum() or text[start - 1] in "_.")):
        return False
    if end < len(text):
        nxt = text[end]
        if nxt.isascii() and (nxt.isalnum() or nxt == "_"):
            return False
        if nxt == "." and end + 1 < len(text) and text[end + 1].isdigit():
            return False
    return True


def _card_like(text: str, runs: list[tuple[int, int]], out: Out) -> None:
    """Cards and My Numbers from digit runs joined by single, uniform separators."""
    if len(runs) == 1:
        _card_at(text, runs, [runs[0][1] - runs[0][0]], [], i=0, out=out)
        return
    seqs: list[list[tuple[int, int]]] = []
    for run in runs:
        if seqs and run[0] - seqs[-1][-1][1] == 1 and text[run[0] - 1] in " -":
            seqs[-1].append(run)
        else:
            seqs.append([run])
    for seq in seqs:
        first = seq[0][0]
        if first > 0 and text[first - 1].isascii() and text[first - 1].isalpha():
            continue  # digit groups of a longer code (an IBAN that failed its check, say)
        lens = [e - s for s, e in seq]
        seps = [text[seq[j][1]] for j in range(len(seq) - 1)]
        i = 0
        while i < len(seq):
            i += _card_at(text, seq, lens, seps, i=i, out=out)


def _card_at(
    text: str, seq: list[tuple[int, int]], lens: list[int], seps: list[str], *, i: int, out: Out
) -> int:
    """Try layouts starting at group ``i``, longest first; returns how many groups to advance."""
    for k in range(min(5, len(seq) - i), 0, -1):
        kind = _LAYOUTS.get(tuple(lens[i : i + k]))
        if kind is None:
            continue
        if k > 1:
            sep = seps[i]
            if any(s != sep for s in seps[i : i + k - 1]):
                continue
            # A 4-digit group on either side with the same separator means this is a longer
            # list of numbers (an order number, a table), not a card.
            if i > 0 and lens[i - 1] == 4 and seps[i - 1] == sep:
                continue
            if i + k < len(seq) and lens[i + k] == 4 and seps[i + k - 1] == sep:
                continue
        start, end = seq[i][0], seq[i + k - 1][1]
        if not _isolated(text, start, end):
            continue
        digits = _digits(text, start, end)
        if kind == "CARD" and card_valid(digits):
            out.append((start, end, "CREDIT_CARD"))
            return k
        # An AWS account id in an ARN (arn:aws:iam::123456789012:role) is not a My Number.
        if kind == "MY_NUMBER" and text[start - 1 : start] != ":" and my_number_valid(digits):
            out.append((start, end, "NATIONAL_ID"))
            return k
    return 1


def _e164(text: str, classes: bytes | None, cs: int, ce: int, out: Out) -> None:
    """International numbers in ``text[cs:ce]``; ``classes`` is the class map of an ASCII text."""
    # search() in a loop rather than finditer(): most windows hold one match, and a scanner
    # object costs as much as the search itself.
    m = _E164.search(text, cs, ce)
    while m is not None:
        start, end = m.span()
        count = classes.count(b"0", start, end) if classes is not None else 16
        if count <= 15:
            # e164_valid without building the digit string: 8-15 digits, the first (right
            # after the '+') not 0.
            if count >= 8 and text[start + 1] != "0":
                out.append((start, end, "PHONE"))
            # A '+' and eight digits at least: nothing shorter is worth a search.
            m = _E164.search(text, end, ce) if ce - end >= 9 else None
            continue
        digits = _digits(text, start, end)
        if len(digits) > 15:
            # Only the first 15 digits can be the number: end after the last run that fits.
            total, end = 0, -1
            for run in _DIGIT_RUN.finditer(text, start, m.end()):
                total += run.end() - run.start()
                if total > 15:
                    break
                if total >= 8:
                    end = run.end()
            digits = _digits(text, start, end) if end > 0 else ""
        if digits and e164_valid(digits):
            out.append((start, end, "PHONE"))
        m = _E164.search(text, m.end(), ce)


def _phones(text: str, cs: int, ce: int, out: Out) -> None:
    m = _PHONE.search(text, cs, ce)
    while m is not None:
        start, end = m.span()
        # The nanp branch itself enforces the NANP rules (10 digits after an optional 1, area
        # code and exchange starting 2-9), so only Japanese numbers need their digits read.
        if m.lastgroup == "nanp" or jp_phone_valid(_digits(text, start, end)):
            out.append((start, end, "PHONE"))
        # No number these expressions accept is shorter than ten characters.
        m = _PHONE.search(text, end, ce) if ce - end >= 10 else None


def _cluster_heads(view: TextView) -> Iterator[tuple[int, int]]:
    """``(first digit, end)`` of each cluster, from the class map when offsets allow."""
    if view.ascii:
        classes = view.classes
        found = _CLUSTER_CLASSES.search(classes)
        while found is not None:
            yield found.span()
            found = _CLUSTER_CLASSES.search(classes, found.end())
    else:
        for match in _CLUSTER_TEXT.finditer(view.text):
            yield match.span()


def detect_numeric(view: TextView, out: Out, wanted: frozenset[str]) -> None:
    """PHONE, CREDIT_CARD and NATIONAL_ID (SSN, My Number) from numeric clusters.

    A cluster is a run of digits, spaces and ``( ) . + -`` holding eight digits or more; it
    starts at its first digit, '(' or '+' and ends where the number characters stop.
    """
    if view.digits < 8:
        return
    text = view.text
    limit = len(text)
    phones, cards, ids = "PHONE" in wanted, "CREDIT_CARD" in wanted, "NATIONAL_ID" in wanted
    ascii_view = view.ascii
    classes = view.classes
    ssn_shape: bool | None = None  # for non-ASCII text: the whole text, checked once
    for first, ce in _cluster_heads(view):
        # Walk back over the separators in front of the first digit; the cluster starts at the
        # first '(' or '+' among them.
        cs = i = first
        while i > 0 and text[i - 1] in _CLUSTER_LEAD:
            i -= 1
            if text[i] in "(+":
                cs = i
        count = classes.count(b"0", cs, ce) if ascii_view else view.digits_in(cs, ce)
        # One character past the cluster lets the trailing look-aheads see what follows it;
        # every expression below ends on a digit, so none can consume that character.
        we = ce + 1 if ce < limit else limit
        if phones:
            if text.find("+", cs, ce) >= 0:
                _e164(text, classes if ascii_view else None, cs, we, out)
            if count >= 10:
                _phones(text, cs, we, out)
        if ids and count >= 9 and text.find("-", cs, ce) >= 0:
            # The SSN shape, looked for in this cluster when offsets allow, else once in the text.
            if ascii_view:
                shaped = classes.find(b"000-00-0000", cs, ce) >= 0
            else:
                if ssn_shape is None:
                    ssn_shape = b"000-00-0000" in classes
                shaped = ssn_shape
            if shaped:
                out.extend(
                    (m.start(), m.end(), "NATIONAL_ID")
                    for m in _SSN.finditer(text, cs, we)
                    if ssn_valid(*m.groups())
                )
        # A '+' cluster of up to 15 digits is a phone number, never a card or an id.
        if (cards or ids) and count >= 12 and (count > 15 or text[cs] != "+"):
            found: Out = []
            _card_like(text, [r.span() for r in _DIGIT_RUN.finditer(text, cs, ce)], found)
            out.extend(f for f in found if (cards if f[2] == "CREDIT_CARD" else ids))


# --- letter-led: IBAN and UK National Insurance numbers.
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?")
_NINO = re.compile(
    r"[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9_][A-Z])[A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]"
    r"(?![A-Za-z0-9_])"
)


_LETTER_GATE = re.compile(rb"AA ?00")


def _iban_end(text: str, start: int, end: int) -> int:
    """Where the IBAN starting at ``start`` ends, or -1. Trims to the country's length, so
    an IBAN followed by another group of capitals or digits is still found."""
    compact = text[start:end].replace(" ", "")
    expected = IBAN_LENGTHS.get(compact[:2], len(compact))
    if len(compact) < expected or not iban_valid(compact[:expected]):
        return -1
    seen, pos = 0, start
    while seen < expected:
        if text[pos] != " ":
            seen += 1
        pos += 1
    return pos


def _iban_starts(view: TextView) -> list[int]:
    """Where an IBAN may start: found in the byte-class map when offsets agree (ASCII text)."""
    if not view.ascii:
        return [m.start() for m in _IBAN.finditer(view.text)]
    starts, pos = [], view.classes.find(b"AA00")
    while pos >= 0:
        starts.append(pos)
        pos = view.classes.find(b"AA00", pos + 1)
    return starts


def detect_letter_ids(view: TextView, out: Out, wanted: frozenset[str]) -> None:
    """IBAN and UK NINO; both begin with two capitals followed by digits."""
    classes = view.classes
    # One pass for both shapes (a literal-led expression); most texts stop here.
    if _LETTER_GATE.search(classes) is None or view.digits < 6:
        return
    compact = b"AA00" in classes
    spaced = b"AA 00" in classes
    if not (compact or spaced):
        return
    text = view.text
    if "IBAN" in wanted and compact and b"0000" in classes:
        for start in _iban_starts(view):
            m = _IBAN.match(text, start)
            if m is None or (
                start > 0
                and text[start - 1].isascii()
                and (text[start - 1].isalnum() or text[start - 1] == "_")
            ):
                continue
            end = _iban_end(text, start, m.end())
            if end > 0 and _isolated(text, start, end):
                out.append((start, end, "IBAN"))
    if "NATIONAL_ID" in wanted and (
        (compact and b"AA000000A" in classes) or (spaced and b"AA 00 00 00 A" in classes)
    ):
        out.extend(
            (m.start(), m.end(), "NATIONAL_ID") for m in _NINO.finditer(text) if nino_valid(m.group()[:2])
        )

"""IP address detectors: IPv4 from its dots, IPv6 from its colons.

Both start from a literal the regex engine can search for quickly ('.' or '::') and extend
outwards, instead of trying a hex-digit pattern at every letter of the text.
"""

from __future__ import annotations

import re

from kansoku.redact._text import TextView
from kansoku.redact._validators import ipv4_valid, ipv6_valid

Out = list[tuple[int, int, str]]

_IPV4_TAIL = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9A-Za-z_]|\.[0-9])")


def detect_ipv4(view: TextView, out: Out) -> None:
    """Dotted quads, found from their second octet on (a literal '.' search), then extended left."""
    if view.digits < 4 or "." not in view.text:
        return
    text = view.text
    m = _IPV4_TAIL.search(text)
    while m is not None:
        dot, end = m.span()
        m = _IPV4_TAIL.search(text, end)
        start = dot
        while start > dot - 3 and start > 0 and "0" <= text[start - 1] <= "9":
            start -= 1
        if start == dot or (
            start > 0 and text[start - 1].isascii() and (text[start - 1].isalnum() or text[start - 1] in "_.")
        ):
            continue
        if ipv4_valid(text[start:end]):
            out.append((start, end, "IP_ADDRESS"))


# --- IPv6: compressed forms are found around each '::', full forms from their colons.
_V6_LEFT = re.compile(r"[0-9A-Fa-f:]{1,40}\Z")
_V6_RIGHT = re.compile(r"[0-9A-Fa-f:.]{0,45}")
# The seven colon-led groups of a full address; the first group is read back from the match.
_V6_FULL_TAIL = re.compile(r":[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){6}")


_HEX = frozenset("0123456789abcdefABCDEF")


def _v6_bounded(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    glued = before.isascii() and (before.isalnum() or before in "_.:")
    return not glued and not (after.isascii() and (after.isalnum() or after == "_"))


def detect_ipv6(view: TextView, out: Out) -> None:
    text = view.text
    # Every address this detector accepts holds a digit (see ipv6_valid).
    if view.digits == 0 or ":" not in text:
        return
    pos = text.find("::")
    while pos >= 0:
        left = _V6_LEFT.search(text, max(0, pos - 40), pos)
        start = left.start() if left else pos
        right = _V6_RIGHT.match(text, pos)
        end = right.end() if right else pos + 2
        candidate = text[start:end].rstrip(".")
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]
        stop = start + len(candidate)
        if _v6_bounded(text, start, stop) and ipv6_valid(candidate):
            out.append((start, stop, "IP_ADDRESS"))
        pos = text.find("::", max(end, pos + 2))
    if text.count(":") >= 7:
        for m in _V6_FULL_TAIL.finditer(text):
            start = m.start()
            while start > m.start() - 4 and start > 0 and text[start - 1] in _HEX:
                start -= 1
            if start < m.start() and _v6_bounded(text, start, m.end()) and ipv6_valid(text[start : m.end()]):
                out.append((start, m.end(), "IP_ADDRESS"))

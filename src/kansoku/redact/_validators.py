"""Checksums and plausibility rules that turn regex candidates into findings.

Every function takes the candidate as the scanner saw it (ASCII digits and letters, possibly
with separators) and answers yes or no; none of them raises on odd input. They exist so that
random digit runs, hex ids and version strings are not reported: a 16-digit number is a card
only if its Luhn sum is right, an IBAN only if its mod-97 remainder is 1, and so on.
"""

from __future__ import annotations

import ipaddress

#: IBAN length per country (ISO 13616 registry). A country not listed is still accepted when
#: its length is plausible and the mod-97 check passes; a listed one must have exactly this length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip

# UK National Insurance prefixes that are never issued.
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
# Japanese numbers that are 11 digits long: mobiles, IP phones, 0800 free dial, M2M.
_JP_ELEVEN_DIGIT_PREFIXES = ("070", "080", "090", "050", "060", "020", "0800")


_LUHN_DOUBLED = {str(d): (2 * d if d < 5 else 2 * d - 9) for d in range(10)}


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers. ``digits`` holds digits only."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    # From the right: odd positions count as they are, even positions doubled (digits summed).
    kept = sum(map(int, digits[-1::-2]))
    doubled = sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
    return (kept + doubled) % 10 == 0


def card_valid(digits: str) -> bool:
    """A plausible payment card: 13-19 digits, a major-network first digit, Luhn valid.

    The first-digit rule (2-6: Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard,
    Discover/UnionPay) is what keeps nanosecond timestamps and other 1-prefixed counters out.
    """
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: known length for the country (when known) and mod 97 == 1.

    ``iban`` is the compact form (no spaces), upper case.
    """
    if not (15 <= len(iban) <= 34 and iban.isascii() and iban.isalnum() and iban == iban.upper()):
        return False
    if not (iban[:2].isalpha() and iban[2:4].isdigit()):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def my_number_valid(digits: str) -> bool:
    """Japanese Individual Number (My Number): 12 digits, the last a mod-11 check digit."""
    if len(digits) != 12 or not digits.isdigit():
        return False
    # Weights run from the digit next to the check digit leftwards: 2..7, then 2..6.
    total = 0
    for n in range(1, 12):
        weight = n + 1 if n <= 6 else n - 5
        total += int(digits[11 - n]) * weight
    remainder = total % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return check == int(digits[11])


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """US Social Security number: areas 000, 666 and 900-999 are never issued, nor all-zero parts."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def nino_valid(prefix: str) -> bool:
    """UK National Insurance number: two-letter prefixes that are never issued are refused."""
    return prefix.upper() not in _NINO_BAD_PREFIXES


def ipv4_valid(candidate: str) -> bool:
    """Four decimal octets, each 0-255."""
    parts = candidate.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv6_valid(candidate: str) -> bool:
    """A real IPv6 address that also looks like one in prose.

    ``ipaddress`` decides validity. Compressed forms must carry at least two groups, a group
    of three or more characters and a digit, so ``::1``, ``a::b`` and ``x[1::2]`` in code are
    left alone while ``fe80::1`` and ``2001:db8::8a2e:370:7334`` are caught.
    """
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    if "::" not in candidate:
        return True
    groups = [g for g in candidate.replace(".", ":").split(":") if g]
    return len(groups) >= 2 and any(len(g) >= 3 for g in groups) and any(c.isdigit() for c in candidate)


def email_valid(local: str, domain: str) -> bool:
    """Local part without edge or doubled dots; a domain whose last label is alphabetic."""
    if not local or local[0] == "." or local[-1] == "." or ".." in local or len(local) > 64:
        return False
    dot = domain.rfind(".")
    if dot < 0:
        return False
    tld = domain[dot + 1 :]
    # No empty label and no label that starts or ends with '-', checked on the whole domain.
    return (
        tld.isalpha()
        and len(tld) >= 2
        and domain[0] not in ".-"
        and ".." not in domain
        and ".-" not in domain
        and "-." not in domain
    )


def e164_valid(digits: str) -> bool:
    """International number after ``+``: 8-15 digits, country code not starting with 0."""
    return 8 <= len(digits) <= 15 and digits[0] != "0"


def jp_phone_valid(digits: str) -> bool:
    """Japanese domestic number: trunk prefix 0 (never 00), 10 digits, or 11 for mobiles and 0800."""
    if len(digits) < 10 or digits[0] != "0" or digits[1] == "0":
        return False
    return len(digits) == 10 or (len(digits) == 11 and digits.startswith(_JP_ELEVEN_DIGIT_PREFIXES))


_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PLAIN = _DIGITS | _LOWER | _UPPER | frozenset("_-.")
_SPACE = frozenset(" \t\r\n\f\v")


def looks_secret(value: str) -> bool:
    """Whether the value of a ``password=`` / ``"apiKey":`` style assignment looks like a secret.

    Real keys and passwords mix character classes; identifiers, placeholders (``YOUR_API_KEY``,
    ``<token>``) and code (``os.environ``) mostly do not. This is the rule that keeps the
    generic assignment detector quiet on source code.
    """
    if len(value) < 6:
        return False
    chars = set(value)
    if not chars.isdisjoint(_SPACE):
        return False
    has_digit = not chars.isdisjoint(_DIGITS)
    has_alpha = not (chars.isdisjoint(_LOWER) and chars.isdisjoint(_UPPER)) or not value.isascii()
    if has_digit and (has_alpha or len(value) >= 8):
        return True
    classes = has_digit + (not chars.isdisjoint(_LOWER)) + (not chars.isdisjoint(_UPPER))
    classes += not chars <= _PLAIN
    return classes >= 3


def mixed_key_body(body: str) -> bool:
    """A provider key body holds a digit or a capital (a random string almost always does)."""
    chars = set(body)
    return not (chars.isdisjoint(_DIGITS) and chars.isdisjoint(_UPPER))

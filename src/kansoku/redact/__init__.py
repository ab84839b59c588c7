"""PII and secret redaction for spans and records, before anything leaves the process.

>>> from kansoku.redact import Redactor
>>> Redactor().redact("call +81 90-1234-5678 or mail taro@example.jp")
'call [PHONE] or mail [EMAIL]'

Built-in entities: ``EMAIL``, ``PHONE``, ``CREDIT_CARD`` (Luhn-checked), ``IBAN`` (mod-97),
``IP_ADDRESS`` (v4 and v6), ``NATIONAL_ID`` (US SSN, Japanese My Number with its check digit,
UK NINO), ``API_KEY`` (provider keys, JWTs, private keys, ``api_key=...`` assignments) and
``BEARER_TOKEN``; add your own with ``custom={"NAME": regex}``. :class:`RedactionProcessor`
applies a redactor to every text field of a span; :class:`PresidioRedactor` adds names and
places when the ``presidio`` extra is installed.
"""

from kansoku.redact._presidio import PresidioRedactor
from kansoku.redact._redactor import ENTITIES, Finding, RedactionConfig, Redactor
from kansoku.redact._span import FAILED, RedactionProcessor, TextRedactor, redact_span, redact_value

__all__ = [
    "ENTITIES",
    "FAILED",
    "Finding",
    "PresidioRedactor",
    "RedactionConfig",
    "RedactionProcessor",
    "Redactor",
    "TextRedactor",
    "redact_span",
    "redact_value",
]

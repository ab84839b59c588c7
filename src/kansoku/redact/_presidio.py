"""Optional Presidio integration: names and places on top of the pattern detectors.

Presidio (``pip install 'kansoku[presidio]'``) brings NER-based entities such as ``PERSON``
and ``LOCATION`` that no regular expression can find. It is imported only when a
:class:`PresidioRedactor` is built, so kansoku itself never depends on it. The pattern
detectors still run (they are faster and, for keys and checksummed numbers, more precise);
Presidio's findings are pooled with theirs and overlaps are settled the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kansoku.redact._redactor import Finding, Redactor, replace_spans, resolve

_INSTALL_HINT = (
    "PresidioRedactor needs the optional Presidio analyzer: pip install 'kansoku[presidio]' "
    "(and a spaCy model, e.g. python -m spacy download en_core_web_lg)"
)


class PresidioRedactor:
    """Pattern redaction plus Presidio entities, with the :class:`Redactor` interface.

    ``patterns`` is the pattern redactor to run first (its mode and key also shape the
    Presidio tokens); ``entities`` are Presidio entity types; ``analyzer`` is an existing
    ``presidio_analyzer.AnalyzerEngine`` (building one loads a language model, so share it).
    """

    def __init__(
        self,
        patterns: Redactor | None = None,
        *,
        entities: Iterable[str] = ("PERSON", "LOCATION"),
        language: str = "en",
        score_threshold: float = 0.5,
        analyzer: Any = None,
    ) -> None:
        if analyzer is None:
            try:
                from presidio_analyzer import AnalyzerEngine
            except ImportError as exc:
                raise ImportError(_INSTALL_HINT) from exc
            analyzer = AnalyzerEngine()
        self.patterns = patterns if patterns is not None else Redactor()
        self.entities = tuple(entities)
        self.language = language
        self.score_threshold = score_threshold
        self._analyzer = analyzer

    def __repr__(self) -> str:
        return (
            f"PresidioRedactor({self.patterns!r}, entities={list(self.entities)}, language={self.language!r})"
        )

    def _scan(self, text: str) -> list[tuple[int, int, str]]:
        found = [(f.start, f.end, f.entity) for f in self.patterns.findings(text)]
        results = self._analyzer.analyze(
            text=text,
            entities=list(self.entities),
            language=self.language,
            score_threshold=self.score_threshold,
        )
        found.extend((int(r.start), int(r.end), str(r.entity_type)) for r in results if r.end > r.start)
        return resolve(found)

    def findings(self, text: str) -> list[Finding]:
        """Non-overlapping findings of both the patterns and Presidio, sorted by position."""
        return [Finding(entity, start, end) for start, end, entity in self._scan(text)]

    def redact(self, text: str) -> str:
        """``text`` with pattern and Presidio findings replaced by their tokens."""
        spans = self._scan(text)
        return replace_spans(text, text, spans, self.patterns.token) if spans else text

    __call__ = redact

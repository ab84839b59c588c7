"""Plain-text tables for the query commands: aligned by display width, clipped with "…".

Widths are terminal cells, not characters: prompts are often Japanese or Chinese, whose
characters take two cells, and a table aligned by ``len`` would be ragged. Text from records is
also cleaned of control characters before it is printed, because model output can contain
terminal escape sequences.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

NULL = "\N{EN DASH}"  # shown for a value the server reported as null
ELLIPSIS = "…"
SEP = "  "


def cell_width(text: str) -> int:
    """Terminal cells ``text`` takes (wide East Asian characters 2, combining marks 0)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, ending in "…" when something was cut."""
    if cell_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for ch in text:
        w = 0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def clean(text: object) -> str:
    """One line of printable text: whitespace runs become one space, control characters "�"."""
    if text is None:
        return ""
    return "".join(
        "\N{REPLACEMENT CHARACTER}" if unicodedata.category(ch) in ("Cc", "Cf") else ch
        for ch in " ".join(str(text).split())
    )


def pad(text: str, width: int, align: str = "<") -> str:
    gap = " " * max(0, width - cell_width(text))
    return text + gap if align == "<" else gap + text


@dataclass(frozen=True)
class Column:
    """``flex``: takes what is left of the line (at least ``min_width``); ``optional``: dropped
    rather than squeezed below ``min_width``."""

    header: str
    align: str = "<"
    max_width: int | None = None
    flex: bool = False
    min_width: int = 8
    optional: bool = False


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, *, header: bool = True
) -> list[str]:
    """Lines of an aligned table at most ``width`` cells wide where the data allows."""
    cols = list(columns)
    natural = [
        min(
            max([cell_width(c.header) if header else 0, *(cell_width(r[i]) for r in rows)]),
            c.max_width or 10**6,
        )
        for i, c in enumerate(cols)
    ]
    keep = list(range(len(cols)))
    for i, c in enumerate(cols):
        if not c.flex:
            continue
        others = sum(natural[j] for j in keep if j != i) + len(SEP) * (len(keep) - 1)
        room = width - others
        if room < c.min_width and c.optional:
            keep.remove(i)
        else:
            natural[i] = min(natural[i], max(room, c.min_width))
    lines = []
    if header:
        lines.append(
            _line([cols[i].header for i in keep], [cols[i] for i in keep], [natural[i] for i in keep])
        )
        lines.append(SEP.join("-" * natural[i] for i in keep))
    lines.extend(
        _line([row[i] for i in keep], [cols[i] for i in keep], [natural[i] for i in keep]) for row in rows
    )
    return lines


def _line(cells: Sequence[str], cols: Sequence[Column], widths: Sequence[int]) -> str:
    parts = [pad(clip(text, w), w, c.align) for text, c, w in zip(cells, cols, widths, strict=True)]
    return SEP.join(parts).rstrip()


# -- values ------------------------------------------------------------------------------------


def num(value: object) -> str:
    """A count with thousands separators."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return NULL
    return f"{round(value):,}"


def ms(value: object) -> str:
    """Milliseconds: one decimal under 100 ms, whole milliseconds above."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return NULL
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def usd(value: object) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return NULL
    return f"{value:.6f}" if value < 100 else f"{value:,.2f}"


def pct(value: object) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return NULL
    return f"{value:.1%}"


def tokens(inp: object, out: object) -> str:
    """``in→out``; a side the provider did not report is :data:`NULL`."""
    if inp is None and out is None:
        return NULL
    return f"{num(inp)}→{num(out)}"


def when(iso: object, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO timestamp from the API in UTC with ``fmt``; unparseable text is shown as is."""
    if not isinstance(iso, str) or not iso:
        return NULL
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return clean(iso)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime(fmt)

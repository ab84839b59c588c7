"""The backend-neutral store interface: the :class:`Store` protocol and its query values.

Every query is scoped to one ``project`` (multi-tenant). Query values validate themselves when
they are made: a bad parameter raises :class:`ValueError` whose message starts with the
parameter's name (the query API turns it into a 400). Backends keep their SQL dialect to
themselves and accept exactly these values.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson

from kansoku.model import Span

#: Sort keys of :class:`CallQuery` (closed set; backends map each to a column).
SORT_FIELDS: tuple[str, ...] = ("timestamp", "latency_ms", "cost_usd", "total_tokens")
#: Plain group-by keys of :class:`StatsQuery`; ``tag:<key>`` groups by one tag as well.
GROUP_FIELDS: tuple[str, ...] = (
    "model", "provider", "prompt_id", "prompt_version", "user_id", "error_type", "environment", "service",
)  # fmt: skip
#: Record types a query may select; ``None`` means both.
RECORD_TYPES: tuple[str, ...] = ("llm_call", "span")
STATUSES: tuple[str, ...] = ("ok", "error", "unset")
#: Numeric fields :class:`HistogramQuery` may bin (closed set; backends map each to a column).
HISTOGRAM_FIELDS: tuple[str, ...] = (
    "latency_ms", "ttft_ms", "total_tokens", "input_tokens", "output_tokens", "cost_usd",
)  # fmt: skip
#: Percentile families :class:`StatsQuery` may compute (each is named after the field it sorts).
QUANTILE_FIELDS: tuple[str, ...] = ("latency_ms", "ttft_ms", "total_tokens")
#: Histogram bins per power of ten: fine enough to see a p95 tail, few enough to draw.
BINS_PER_DECADE = 10
MAX_LIMIT = 1000
MAX_STATS_ROWS = 10_000
MAX_BUCKETS = 100_000
_MAX_STR = 1000

_STR_FILTERS = (
    "user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type", "text",
    "environment", "service",
)  # fmt: skip


def _check_str(name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > _MAX_STR:
        raise ValueError(f"{name} must be a non-empty string of at most {_MAX_STR} characters")


def _check_num(name: str, value: object, *, integer: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative {'integer' if integer else 'number'}")


@dataclass(frozen=True, kw_only=True)
class Filters:
    """What :class:`CallQuery`, :class:`StatsQuery` and :class:`HistogramQuery` share: the project and
    the filters.

    ``since_ns`` is inclusive, ``until_ns`` exclusive (span start time). ``text`` is a
    case-insensitive substring of the input or output text. ``tags`` must all match.
    ``record_type`` is ``"llm_call"`` (default), ``"span"`` or ``None`` for both.
    """

    project: str
    user_id: str | None = None
    context_id: str | None = None
    prompt_id: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    provider: str | None = None
    error_type: str | None = None
    environment: str | None = None
    service: str | None = None
    status: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    since_ns: int | None = None
    until_ns: int | None = None
    text: str | None = None
    min_latency_ms: float | None = None
    min_tokens: int | None = None
    min_cost: float | None = None
    record_type: str | None = "llm_call"

    def __post_init__(self) -> None:
        _check_str("project", self.project, optional=False)
        for name in _STR_FILTERS:
            _check_str(name, getattr(self, name))
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}")
        if self.record_type is not None and self.record_type not in RECORD_TYPES:
            raise ValueError(f"record_type must be one of {list(RECORD_TYPES)} or None")
        if not isinstance(self.tags, tuple):
            raise ValueError("tags must be a tuple of (key, value) pairs")
        for pair in self.tags:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError("tags must be a tuple of (key, value) pairs")
            _check_str("tags", pair[0])
            if not isinstance(pair[1], str) or len(pair[1]) > _MAX_STR:
                raise ValueError("tags values must be strings")
        _check_num("since_ns", self.since_ns, integer=True)
        _check_num("until_ns", self.until_ns, integer=True)
        _check_num("min_latency_ms", self.min_latency_ms)
        _check_num("min_tokens", self.min_tokens, integer=True)
        _check_num("min_cost", self.min_cost)


@dataclass(frozen=True, kw_only=True)
class CallQuery(Filters):
    """A page of spans (LLM calls by default), sorted, with keyset pagination.

    ``sort`` is one of :data:`SORT_FIELDS`; ties are broken by ``span_id`` in the same
    direction, and a missing cost or token count sorts last in both directions. ``cursor`` is
    the opaque ``next_cursor`` of the previous :class:`Page` of the same query.
    """

    sort: str = "timestamp"
    descending: bool = True
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sort not in SORT_FIELDS:
            raise ValueError(f"sort must be one of {list(SORT_FIELDS)}")
        if not isinstance(self.descending, bool):
            raise ValueError("descending must be a boolean")
        if (
            isinstance(self.limit, bool)
            or not isinstance(self.limit, int)
            or not 1 <= self.limit <= MAX_LIMIT
        ):
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        if self.cursor is not None:
            self.after()  # validates

    def after(self) -> tuple[int | float, str] | None:
        """The (sort key, span_id) the cursor points after, or ``None`` on the first page."""
        if self.cursor is None:
            return None
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(self.cursor.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise ValueError("cursor is not a cursor returned by this query") from None
        if (
            not isinstance(raw, list)
            or len(raw) != 4
            or raw[0] != self.sort
            or raw[1] != self.descending
            or isinstance(raw[2], bool)
            or not isinstance(raw[2], int | float)
            or not isinstance(raw[3], str)
            or (isinstance(raw[2], int) and not -(2**63) <= raw[2] < 2**63)  # a BIGINT everywhere
        ):
            raise ValueError("cursor is not a cursor returned by this query (same sort and order)")
        return raw[2], raw[3]

    def make_cursor(self, key: int | float, span_id: str) -> str:
        """Encode the position after the row with this sort key and span id."""
        raw = orjson.dumps([self.sort, self.descending, key, span_id])
        return base64.urlsafe_b64encode(raw).decode("ascii")


@dataclass(frozen=True, kw_only=True)
class StatsQuery(Filters):
    """Aggregates grouped by one key, optionally per time bucket of ``bucket_s`` seconds.

    ``group_by`` is one of :data:`GROUP_FIELDS`, ``tag:<key>``, or ``None`` for one group.
    """

    group_by: str | None = None
    bucket_s: int | None = None
    limit: int = 1000
    quantiles: bool | frozenset[str] | tuple[str, ...] = True
    """The percentile families to compute, from :data:`QUANTILE_FIELDS` (``True``: all, ``False``:
    none); the others stay null. Exact percentiles sort every row of each group, so they are most
    of a query's cost over a long range. Held as a frozenset once made (equal queries compare equal)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # Frozen dataclass: normalising in place needs object.__setattr__.
        object.__setattr__(self, "quantiles", _quantile_fields(self.quantiles))
        if self.group_by is not None and self.group_by not in GROUP_FIELDS:
            if not (isinstance(self.group_by, str) and self.group_by.startswith("tag:")):
                raise ValueError(f"group_by must be one of {list(GROUP_FIELDS)} or 'tag:<key>'")
            _check_str("group_by", self.group_by[4:])
        if self.bucket_s is not None:
            if isinstance(self.bucket_s, bool) or not isinstance(self.bucket_s, int) or self.bucket_s <= 0:
                raise ValueError("bucket_s must be a positive integer (seconds)")
            if self.since_ns is None or self.until_ns is None:
                raise ValueError("bucket_s needs since_ns and until_ns")
            if (self.until_ns - self.since_ns) // (self.bucket_s * 1_000_000_000) > MAX_BUCKETS:
                raise ValueError(f"bucket_s is too small: more than {MAX_BUCKETS} buckets")
        if (
            isinstance(self.limit, bool)
            or not isinstance(self.limit, int)
            or not 1 <= self.limit <= MAX_STATS_ROWS
        ):
            raise ValueError(f"limit must be an integer from 1 to {MAX_STATS_ROWS}")

    @property
    def tag_key(self) -> str | None:
        """The tag key when grouping by ``tag:<key>``."""
        return self.group_by[4:] if self.group_by is not None and self.group_by.startswith("tag:") else None

    @property
    def quantile_fields(self) -> frozenset[str]:
        """The percentile families asked for (what :attr:`quantiles` holds, typed)."""
        return _quantile_fields(self.quantiles)


def _quantile_fields(value: object) -> frozenset[str]:
    """``True`` / ``False`` / names to a frozenset of :data:`QUANTILE_FIELDS`; ValueError otherwise."""
    if isinstance(value, bool):
        return frozenset(QUANTILE_FIELDS) if value else frozenset()
    # A bare string would be taken apart into its characters: refuse it rather than guess.
    if isinstance(value, frozenset | tuple | list | set) and all(v in QUANTILE_FIELDS for v in value):
        return frozenset(value)
    raise ValueError(f"quantiles must be True, False or a tuple of names from {list(QUANTILE_FIELDS)}")


@dataclass(frozen=True, kw_only=True)
class HistogramQuery(Filters):
    """How the values of one numeric ``field`` (one of :data:`HISTOGRAM_FIELDS`) are spread.

    Log-scale bins, :data:`BINS_PER_DECADE` per power of ten (:func:`bin_bounds`); values <= 0
    share one bin ``[0, 0]`` and missing values are left out.
    """

    field: str = "latency_ms"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.field not in HISTOGRAM_FIELDS:
            raise ValueError(f"field must be one of {list(HISTOGRAM_FIELDS)}")


@dataclass(frozen=True, slots=True)
class HistogramBin:
    """``count`` values in ``[lo, hi)``; the bin of values <= 0 has ``lo == hi == 0.0``."""

    lo: float
    hi: float
    count: int


#: Bin index + this before flooring: a value on a bin edge (log10(100) * 10 == 20, give or take
#: an ulp of the backend's log10) lands in the bin it starts, the same one on every backend.
BIN_EPSILON = 1e-9


def bin_bounds(index: int | None) -> tuple[float, float]:
    """``(lo, hi)`` of bin ``index`` (``floor(log10(v) * 10 + 1e-9)``); ``None`` is the <= 0 bin.

    Computed here, not in SQL, so every backend reports the very same floats.
    """
    if index is None:
        return 0.0, 0.0
    return _power(index), _power(index + 1)


def _power(index: int) -> float:
    try:
        return float(10 ** (index / BINS_PER_DECADE))
    except OverflowError:  # the bin of values near the largest double ends beyond it
        return sys.float_info.max


def histogram_bins(rows: Iterable[Sequence[Any]]) -> list[HistogramBin]:
    """Bins from a backend's ``(index or NULL, count)`` rows, the <= 0 bin first."""
    bins = [(None if i is None else int(i), int(n)) for i, n in rows if n]
    bins.sort(key=lambda b: (b[0] is not None, b[0] or 0))
    return [HistogramBin(*bin_bounds(i), n) for i, n in bins]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results; ``next_cursor`` is ``None`` on the last page."""

    items: list[Span]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StatsRow:
    """Aggregates of one group (and one time bucket when bucketed). ``None`` means no data."""

    group: str | None
    bucket_start_ns: int | None
    count: int
    errors: int
    errors_by_type: dict[str, int] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_p50: float | None = None
    tokens_p95: float | None = None
    cost_usd: float | None = None

    @classmethod
    def of(  # noqa: PLR0917 -- mirrors the aggregate columns both backends select, in order
        cls,
        group: str | None,
        bucket_start_ns: int | None,
        count: int,
        errors: int,
        errors_by_type: Iterable[tuple[Any, Any]],
        latency: Sequence[Any] | None,
        ttft: Sequence[Any] | None,
        input_tokens: int | None,
        output_tokens: int | None,
        tokens: Sequence[Any] | None,
        cost_usd: float | None,
    ) -> StatsRow:
        """A row from a backend's aggregate columns (quantile lists may be missing or hold None)."""
        lat, tt, tok = _quantiles(latency, 3), _quantiles(ttft, 3), _quantiles(tokens, 2)
        return cls(
            group=group,
            bucket_start_ns=bucket_start_ns,
            count=int(count),
            errors=int(errors),
            errors_by_type={str(k): int(v) for k, v in errors_by_type},
            latency_p50=lat[0], latency_p95=lat[1], latency_p99=lat[2],
            ttft_p50=tt[0], ttft_p95=tt[1], ttft_p99=tt[2],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tokens_p50=tok[0], tokens_p95=tok[1],
            cost_usd=None if cost_usd is None else float(cost_usd),
        )  # fmt: skip


def _quantiles(values: Sequence[Any] | None, n: int) -> list[float | None]:
    if not values:
        return [None] * n
    return [None if v is None else float(v) for v in values]


@runtime_checkable
class Store(Protocol):
    """Where the collector writes spans and the query layer reads them."""

    def write(self, spans: Sequence[Span], project: str = "default") -> int:
        """Store a batch idempotently on (project, span_id); return the number of new rows."""
        ...

    def load(self, rows: bytes, lo_ns: int, hi_ns: int) -> int:
        """Bulk-load pre-encoded rows (:func:`kansoku.store.rows_ndjson`, any projects mixed).

        ``lo_ns``/``hi_ns`` bound the rows' start times (inclusive); idempotent like :meth:`write`.
        This is the collector's path: rows are encoded once at ingest and kept in the WAL as is.
        """
        ...

    def query_calls(self, q: CallQuery) -> Page: ...

    def get_trace(self, project: str, trace_id: str) -> list[Span]:
        """Every span of one trace, in start-time order."""
        ...

    def get_session(self, project: str, context_id: str) -> list[Span]:
        """Every span of one session / conversation, in start-time order."""
        ...

    def stats(self, q: StatsQuery) -> list[StatsRow]: ...

    def histogram(self, q: HistogramQuery) -> list[HistogramBin]:
        """The non-empty bins of ``q.field`` over the matching rows, in ascending order."""
        ...

    def apply_retention(self, now_ns: int) -> int:
        """Delete what is older than the retention period; return the number of rows deleted."""
        ...

    def close(self) -> None: ...


def check_range(lo_ns: Any, hi_ns: Any) -> None:
    """Validate the start-time bounds given to :meth:`Store.load`."""
    for name, v in (("lo_ns", lo_ns), ("hi_ns", hi_ns)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer")
    if lo_ns > hi_ns:
        raise ValueError("lo_ns must not be greater than hi_ns")


def check_id(name: str, value: Any) -> str:
    """Validate a project / trace / context id argument (the API's path parameters)."""
    _check_str(name, value, optional=False)
    return str(value)

"""``kansoku calls | trace | session | stats``: the query API of ``kansoku server`` from a shell.

:func:`register` adds the four subcommands to the main parser; each sets ``run`` to a function
taking the parsed arguments and returning the exit code: 0, 2 for bad arguments (including a
400 from the server, whose message names the parameter), 1 for server and connection errors.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from kansoku.cli import _views
from kansoku.client import Client, Record
from kansoku.errors import ConfigError, QueryError

__all__ = ["ALL_BOUND", "register", "run_calls", "run_session", "run_stats", "run_trace"]

#: Most rows ``kansoku calls --all`` fetches unless ``--limit`` says otherwise.
ALL_BOUND = 10_000
_PAGE = 1000
_SORTS = {
    "timestamp": "timestamp", "time": "timestamp",
    "latency": "latency_ms", "latency_ms": "latency_ms",
    "cost": "cost_usd", "cost_usd": "cost_usd",
    "tokens": "total_tokens", "total_tokens": "total_tokens",
}  # fmt: skip
_GROUPS = {
    "prompt": "prompt_id",
    "prompt-version": "prompt_version",
    "user": "user_id",
    "error-type": "error_type",
}

Subparsers = argparse._SubParsersAction  # the type add_subparsers() returns


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(kind: Callable[[str], float], *, positive: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > 0 if positive else value >= 0):  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {'above 0' if positive else 'at least 0'}, got {text}")
        return value

    return parse


def _tag(text: str) -> str:
    key, sep, _ = text.partition(":")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key:value (e.g. department:support), got {text!r}")
    return text


def _sort(text: str) -> str:
    if text not in _SORTS:
        raise argparse.ArgumentTypeError("expected one of timestamp, latency, cost, tokens")
    return _SORTS[text]


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``calls``, ``trace``, ``session`` and ``stats`` to the ``kansoku`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument("--url", help="query API base URL (env KANSOKU_URL, default http://127.0.0.1:4318)")
    group.add_argument("--key", help="API key (env KANSOKU_API_KEY; the variable keeps it out of `ps`)")
    group.add_argument(
        "--timeout", type=_number(float, positive=True), default=None, help="seconds (default 10)"
    )
    group.add_argument(
        "--json", action="store_true", help="print the server's JSON (pretty) instead of a table"
    )

    filters = argparse.ArgumentParser(add_help=False)
    f = filters.add_argument_group("filters")
    for flag, dest, what in (
        ("--user", "user_id", "end user (user_id)"),
        ("--session", "context_id", "session / conversation (context_id)"),
        ("--prompt", "prompt_id", "prompt_id"),
        ("--prompt-version", "prompt_version", "prompt_version"),
        ("--model", "model", "response or request model"),
        ("--provider", "provider", "openai, anthropic, ..."),
        ("--error-type", "error_type", "rate_limit, timeout, context_length_exceeded, ..."),
    ):
        f.add_argument(flag, dest=dest, metavar=flag[2:].upper().replace("-", "_"), help=what)
    f.add_argument("--status", choices=("ok", "error", "unset"))
    f.add_argument("--tag", dest="tags", type=_tag, action="append", metavar="KEY:VALUE", help="repeatable")
    f.add_argument("--since", help="RFC 3339 time, unix seconds or a duration back from now: 15m, 1h, 7d")
    f.add_argument("--until", help="same forms as --since")
    f.add_argument("--search", dest="q", metavar="TEXT", help="case-insensitive text in input or output")
    f.add_argument("--min-latency", dest="min_latency_ms", type=_number(float), metavar="MS")
    f.add_argument("--min-tokens", type=_number(int), metavar="N")
    f.add_argument("--min-cost", type=_number(float), metavar="USD")
    f.add_argument("--type", choices=("llm_call", "span", "all"), help="record type (default llm_call)")

    calls = sub.add_parser(
        "calls", parents=[common, filters], help="list recorded LLM calls from a kansoku server"
    )
    calls.add_argument(
        "--sort", type=_sort, metavar="{timestamp,latency,cost,tokens}", help="default timestamp"
    )
    calls.add_argument("--asc", action="store_true", help="ascending (default: descending)")
    calls.add_argument(
        "--limit", type=_count, help=f"rows (default 50; up to 1000, or {ALL_BOUND:,} with --all)"
    )
    calls.add_argument(
        "--all", action="store_true", help=f"follow pages up to --limit (default {ALL_BOUND:,})"
    )
    calls.add_argument("--cursor", help="continue from a previous page's next_cursor")
    calls.set_defaults(run=run_calls)

    trace = sub.add_parser("trace", parents=[common], help="show one trace as a tree of spans")
    trace.add_argument("trace_id")
    trace.add_argument("--full", action="store_true", help="print whole inputs and outputs")
    trace.set_defaults(run=run_trace)

    session = sub.add_parser("session", parents=[common], help="show one conversation turn by turn")
    session.add_argument("context_id", metavar="session_id")
    session.add_argument("--full", action="store_true", help="print whole messages")
    session.set_defaults(run=run_session)

    stats = sub.add_parser(
        "stats", parents=[common, filters], help="aggregates: errors, latency, tokens, cost"
    )
    stats.add_argument(
        "--by", dest="group_by", help="model, provider, prompt, prompt-version, user, error-type or tag:KEY"
    )
    stats.add_argument("--bucket", help="time buckets: seconds or a duration (1h); needs --since")
    stats.add_argument("--limit", type=_count, help="most rows (default 1000)")
    stats.set_defaults(run=run_stats)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = ("user_id", "context_id", "prompt_id", "prompt_version", "model", "provider", "error_type")
    out = {n: getattr(args, n) for n in (*names, "status", "tags", "since", "until", "q", "type")}
    out.update(min_latency_ms=args.min_latency_ms, min_tokens=args.min_tokens, min_cost=args.min_cost)
    return out


def run_calls(args: argparse.Namespace) -> int:
    return _run("calls", args, _calls)


def run_trace(args: argparse.Namespace) -> int:
    return _run("trace", args, _trace)


def run_session(args: argparse.Namespace) -> int:
    return _run("session", args, _session)


def run_stats(args: argparse.Namespace) -> int:
    return _run("stats", args, _stats)


class _UsageError(Exception):
    """A combination of flags argparse cannot check by itself (exit code 2)."""


def _calls(client: Client, args: argparse.Namespace) -> str:
    params = _filters(args)
    params.update(sort=args.sort, order="asc" if args.asc else None, cursor=args.cursor)
    if not args.all:
        if args.limit is not None and args.limit > _PAGE:
            raise _UsageError(f"--limit above {_PAGE} needs --all")
        page = client.calls(**params, limit=args.limit)
        records, next_cursor, has_more, raw = page.data, page.next_cursor, page.has_more, page.raw
    else:
        records, next_cursor, has_more = _follow(client, params, args.limit or ALL_BOUND)
        raw = {"object": "list", "data": records, "next_cursor": next_cursor, "has_more": has_more}
    if args.json:
        return _json(raw)
    noun = {"span": "spans", "all": "records"}.get(args.type or "", "calls")
    if not records:
        return f"no {noun} match"
    lines = _views.calls_view(records, _width())
    more = f"; more: --all, a higher --limit, or --cursor {next_cursor}" if has_more and next_cursor else ""
    lines += ["", f"{len(records):,} {noun}{more}"]
    return "\n".join(lines)


def _follow(client: Client, params: dict[str, Any], bound: int) -> tuple[list[Record], str | None, bool]:
    """Pages until the end or ``bound`` records; also says whether more were left."""
    records: list[Record] = []
    cursor, has_more = params.pop("cursor"), True
    while has_more and len(records) < bound:
        page = client.calls(**params, limit=min(_PAGE, bound - len(records)), cursor=cursor)
        records.extend(page.data)
        cursor, has_more = page.next_cursor, page.has_more and bool(page.next_cursor) and bool(page.data)
    return records[:bound], cursor, has_more


def _trace(client: Client, args: argparse.Namespace) -> str:
    trace = client.trace(args.trace_id)
    return _json(trace.raw) if args.json else "\n".join(_views.trace_view(trace, _width(), full=args.full))


def _session(client: Client, args: argparse.Namespace) -> str:
    session = client.session(args.context_id)
    if args.json:
        return _json(session.raw)
    return "\n".join(_views.session_view(session, _width(), full=args.full))


def _stats(client: Client, args: argparse.Namespace) -> str:
    group_by = _GROUPS.get(args.group_by, args.group_by) if args.group_by else None
    stats = client.stats(**_filters(args), group_by=group_by, bucket=args.bucket, limit=args.limit)
    return _json(stats.raw) if args.json else "\n".join(_views.stats_view(stats, _width()))


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _width() -> int:
    # COLUMNS wins (set by shells and tests); a pipe gets 120, the width the tables are laid out for.
    return max(60, shutil.get_terminal_size((120, 24)).columns)


def _run(name: str, args: argparse.Namespace, body: Callable[[Client, argparse.Namespace], str]) -> int:
    def fail(message: str, code: int) -> int:
        print(f"kansoku {name}: {message}", file=sys.stderr)
        return code

    try:
        client = Client(args.url, args.key, args.timeout)
        text = body(client, args)
    except (ConfigError, _UsageError) as exc:
        return fail(str(exc), 2)
    except QueryError as exc:
        message = exc.message if exc.status is None else f"{exc.message} (HTTP {exc.status})"
        if exc.type == "authentication_error":
            message += "; pass --key or set KANSOKU_API_KEY"
        return fail(message, 2 if exc.status == 400 else 1)
    except (ValueError, TypeError) as exc:  # the client's own checks of arguments
        return fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `kansoku calls --all | head`: the reader left; silence the flush at exit too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0

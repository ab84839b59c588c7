"""The ``kansoku`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kansoku import __version__

__all__ = ["main"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kansoku", description="Observability and reliability for LLM apps."
    )
    parser.add_argument("--version", action="version", version=f"kansoku {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a sample app against the built-in mock upstream and summarise it")
    demo.add_argument("--calls", type=_positive, default=60, help="number of LLM calls (default 60)")
    demo.add_argument(
        "--out", type=Path, default=Path("kansoku-demo/calls.jsonl"), help="JSON-lines output file"
    )
    demo.add_argument("--fault-rate", type=_rate, default=0.15, help="share of calls given a provider fault")
    demo.add_argument("--seed", type=int, default=7)

    summary = sub.add_parser("summary", help="summarise a JSON-lines file of kansoku records")
    summary.add_argument("path", type=Path)

    mock = sub.add_parser(
        "mock-upstream",
        help="run the mock OpenAI/Anthropic server (for tests and benchmarks)",
        add_help=False,
    )
    mock.add_argument("args", nargs=argparse.REMAINDER)

    from kansoku.cli import _gateway, _query, _server

    _server.register(sub)
    _gateway.register(sub)
    _query.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mock-upstream"]:
        # Everything after the subcommand (including --help) belongs to the mock's own parser.
        from kansoku.testing.mock_upstream_main import main as mock_main

        return mock_main(argv[1:], prog="kansoku mock-upstream")
    args = _parser().parse_args(argv)
    if hasattr(args, "run"):
        code: int = args.run(args)
        return code
    if args.command == "demo":
        from kansoku.cli._demo import run_demo

        return run_demo(args.calls, args.out, args.fault_rate, args.seed)
    if args.command == "summary":
        from kansoku.cli._summary import read_records, render, summarise

        if not args.path.is_file():
            print(f"kansoku summary: no such file: {args.path}", file=sys.stderr)
            return 2
        try:
            print(render(*summarise(read_records(args.path))))
        except ValueError as exc:
            print(f"kansoku summary: {exc}", file=sys.stderr)
            return 2
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

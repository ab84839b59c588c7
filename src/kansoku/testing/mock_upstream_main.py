"""Command line for the mock LLM upstream: serve until SIGINT/SIGTERM, print the URL first.

Example (benchmarks)::

    MOCK_DELAY_MS=60 python -m kansoku.testing mock-upstream --port 8399

The first line on stdout is the base URL (``http://127.0.0.1:PORT``), so a parent process
started with port 0 can read which port was chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from kansoku.testing._mock_upstream import FaultMode, MockUpstream, _new_loop

__all__ = ["ENV_DELAY_MS", "ENV_STREAM_INTERVAL_MS", "build_parser", "main"]

ENV_DELAY_MS = "MOCK_DELAY_MS"
"""Default for ``--delay-ms``: milliseconds added before every answer."""
ENV_STREAM_INTERVAL_MS = "MOCK_STREAM_INTERVAL_MS"
"""Default for ``--stream-interval-ms``: milliseconds between streamed events."""


def _env_ms(name: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(
            f"{name}={raw!r} is not a number of milliseconds; unset it or set e.g. {name}=60"
        ) from None
    if value < 0:
        raise SystemExit(f"{name} must be >= 0, got {raw}")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser, exposed so a parent CLI can embed or document it."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fake OpenAI/Anthropic API server on loopback, for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        help=f"delay before every answer, in ms (default: ${ENV_DELAY_MS} or 0)",
    )
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        default=None,
        help=f"gap between streamed events, in ms (default: ${ENV_STREAM_INTERVAL_MS} or 0)",
    )
    parser.add_argument(
        "--fault",
        choices=sorted(m.value for m in FaultMode),
        default=None,
        help="server-wide fault mode (default: none)",
    )
    parser.add_argument(
        "--fault-rate", type=float, default=1.0, help="share of requests the fault hits, 0..1 (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault-rate RNG (default: 0)")
    parser.add_argument(
        "--slow-ms", type=float, default=1000.0, help="extra delay of the slow fault (default: 1000)"
    )
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429s (default: 1)")
    parser.add_argument(
        "--reply", default=None, help="fixed reply text (default: echo of the last user message)"
    )
    parser.add_argument("--cached-tokens", type=int, default=0, help="cached prompt tokens to report")
    parser.add_argument("--reasoning-tokens", type=int, default=0, help="reasoning tokens to report")
    parser.add_argument(
        "--record-limit",
        type=int,
        default=1000,
        help="requests kept for GET /_mock/requests (default: 1000; bounded so load tests stay flat)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM, return the exit status.

    ``prog`` names the command in ``--help`` (e.g. ``"kansoku mock-upstream"``).
    """
    args = build_parser(prog).parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        raise SystemExit(f"--fault-rate must be between 0 and 1, got {args.fault_rate}")
    upstream = MockUpstream(
        host=args.host,
        port=args.port,
        reply=args.reply,
        fault=args.fault,
        fault_rate=args.fault_rate,
        seed=args.seed,
        delay_ms=_env_ms(ENV_DELAY_MS) if args.delay_ms is None else args.delay_ms,
        slow_ms=args.slow_ms,
        stream_interval_ms=_env_ms(ENV_STREAM_INTERVAL_MS)
        if args.stream_interval_ms is None
        else args.stream_interval_ms,
        retry_after=args.retry_after,
        cached_tokens=args.cached_tokens,
        reasoning_tokens=args.reasoning_tokens,
        record_limit=args.record_limit,
    )
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(upstream))
    finally:
        loop.close()
    return 0


async def _serve(upstream: MockUpstream) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with upstream:
        sys.stdout.write(upstream.url + "\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())

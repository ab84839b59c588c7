"""``kansoku gateway`` and ``kansoku dead-letters list|replay`` (over the gateway's admin API)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kansoku.errors import ConfigError

ADMIN_KEY_ENV = "KANSOKU_ADMIN_KEY"
GATEWAY_URL_ENV = "KANSOKU_GATEWAY_URL"


def register(sub: Any) -> None:
    gw = sub.add_parser(
        "gateway", help="run the OpenAI-compatible gateway (retries, fallbacks, limits, recording)"
    )
    gw.add_argument("--config", help="gateway.yaml (KANSOKU_GATEWAY_CONFIG)")
    gw.add_argument("--host", help="bind address (KANSOKU_GATEWAY_HOST, default 127.0.0.1)")
    gw.add_argument("--port", type=int, help="port (KANSOKU_GATEWAY_PORT, default 4000)")
    gw.add_argument("--state", help="memory (default) or redis://host:port/db to share state across replicas")
    gw.add_argument(
        "--record",
        help="where records go: collector URL(s), comma-separated, or 'off' "
        "(KANSOKU_GATEWAY_RECORD, default http://127.0.0.1:4318)",
    )
    gw.add_argument("--data-dir", help="dead letters and the record spool (KANSOKU_DATA_DIR)")
    gw.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow a non-loopback bind without keys",
    )
    gw.set_defaults(run=_run_gateway)

    dl = sub.add_parser("dead-letters", help="list or replay requests that exhausted retries and fallbacks")
    dl_sub = dl.add_subparsers(dest="dl_command", required=True)
    listing = dl_sub.add_parser("list", help="newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--model")
    replay = dl_sub.add_parser("replay", help="send a dead letter through the gateway again")
    replay.add_argument("letter_id")
    for p in (listing, replay):
        p.add_argument("--url", help=f"the gateway (default ${GATEWAY_URL_ENV} or http://127.0.0.1:4000)")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
    dl.set_defaults(run=_run_dead_letters)


def _run_gateway(args: argparse.Namespace) -> int:
    from kansoku.gateway._serve import run_gateway
    from kansoku.gateway._settings import load_gateway_settings
    from kansoku.gateway._yaml import ConfigFileError

    values = {k: getattr(args, k) for k in ("config", "host", "port", "state", "record", "data_dir")}
    values["allow_unauthenticated"] = args.allow_unauthenticated
    try:
        run_gateway(load_gateway_settings(values))
    except (ConfigError, ConfigFileError, OSError) as exc:
        print(f"kansoku gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def _call(method: str, url: str, key: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    if method == "POST":
        req.data = b"{}"
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - the user's gateway URL
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": {"message": exc.reason}}


def _run_dead_letters(args: argparse.Namespace) -> int:
    key = os.environ.get(ADMIN_KEY_ENV)
    if not key:
        print(f"kansoku dead-letters: set {ADMIN_KEY_ENV} to the gateway's admin key", file=sys.stderr)
        return 2
    base = (args.url or os.environ.get(GATEWAY_URL_ENV) or "http://127.0.0.1:4000").rstrip("/")
    if not base.startswith(("http://", "https://")):
        print(f"kansoku dead-letters: --url must be an http(s) URL, got {base!r}", file=sys.stderr)
        return 2
    if args.dl_command == "list":
        query = {"limit": str(args.limit)} | ({"model": args.model} if args.model else {})
        url = f"{base}/admin/dead-letters?{urllib.parse.urlencode(query)}"
        method = "GET"
    else:
        url = f"{base}/admin/dead-letters/{urllib.parse.quote(args.letter_id, safe='')}/replay"
        method = "POST"
    try:
        status, data = _call(method, url, key)
    except (urllib.error.URLError, OSError) as exc:
        print(f"kansoku dead-letters: cannot reach {base}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if status >= 400:
        message = data.get("error", {}).get("message") if isinstance(data, dict) else data
        print(f"kansoku dead-letters: HTTP {status}: {message}", file=sys.stderr)
        return 2 if 400 <= status < 500 and status != 404 else 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.dl_command == "list":
        _print_letters(data.get("data", []))
    else:
        print(
            f"{data['id']}: {data['outcome']} after {data['attempts']} attempt(s), trace {data['trace_id']}"
        )
    return 0


def _print_letters(letters: list[dict[str, Any]]) -> None:
    if not letters:
        print("no dead letters")
        return
    from datetime import UTC, datetime

    print(f"{'id':<34} {'created (UTC)':<20} {'model':<16} {'tries':>5}  last error")
    for letter in letters:
        when = datetime.fromtimestamp(letter["created_ns"] / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        attempts = letter.get("attempts") or []
        last = attempts[-1] if attempts else {}
        error = f"{last.get('status') or '-'} {last.get('error_type', '')}".strip()
        replays = f" (replayed {len(letter['replays'])}x)" if letter.get("replays") else ""
        print(
            f"{letter['id']:<34} {when:<20} {letter['model'][:16]:<16} {len(attempts):>5}  {error}{replays}"
        )

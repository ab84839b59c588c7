"""``kansoku server``, ``kansoku up [--demo]`` and ``kansoku keys create|list|revoke``."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

from kansoku.errors import ConfigError
from kansoku.gateway._yaml import ConfigFileError

_DEMO_BURST = 40  # calls made at once so a newcomer sees data within seconds


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default 127.0.0.1; KANSOKU_HOST)")
    p.add_argument("--port", help="port (default 4318, the OTLP/HTTP port; KANSOKU_PORT)")
    p.add_argument("--store", help="store URL: duckdb:///path or clickhouse://host:port/db (KANSOKU_STORE)")
    p.add_argument("--data-dir", help="WAL, keys and the default DuckDB file (KANSOKU_DATA_DIR)")
    p.add_argument("--retention-days", help="delete records older than this; 0 keeps all (default 30)")
    p.add_argument("--config", type=Path, help="TOML file with a [server] table of these settings")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_const",
        const=True,
        help="allow a non-loopback bind without API keys (only behind an authenticating proxy)",
    )


def register(sub: Any) -> None:
    server = sub.add_parser("server", help="run the collector: OTLP + native ingest, query API, /metrics")
    _server_flags(server)
    server.set_defaults(run=_run_server)

    up = sub.add_parser("up", help="run everything in one process on the embedded store")
    _server_flags(up)
    up.add_argument(
        "--demo", action="store_true", help="add the mock upstream and a demo app sending traffic"
    )
    up.add_argument(
        "--gateway-config",
        help="also run the gateway with this gateway.yaml (KANSOKU_GATEWAY_CONFIG; --demo has its own)",
    )
    up.add_argument("--gateway-port", type=int, default=None, help="the gateway's port (default 4000)")
    up.set_defaults(run=_run_up)

    keys = sub.add_parser("keys", help="manage project API keys (stored hashed in the data dir)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; it is shown once")
    create.add_argument("--project", required=True)
    create.add_argument(
        "--scope", required=True, choices=["ingest", "read", "metrics"], help="metrics: for Prometheus"
    )
    create.add_argument("--name", help="a label to recognise the key by")
    listing = keys_sub.add_parser("list", help="list keys (ids, projects, scopes; never the keys)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    for p in (create, listing, revoke):
        p.add_argument("--data-dir", help="the server's data dir (KANSOKU_DATA_DIR)")
        p.add_argument("--config", type=Path, help="TOML config file")
    keys.set_defaults(run=_run_keys)


def _settings(args: argparse.Namespace) -> Any:
    from kansoku.server import load_server_settings
    from kansoku.server._settings import read_config_file

    config = read_config_file(args.config) if getattr(args, "config", None) else None
    values = {
        name: getattr(args, name, None)
        for name in ("host", "port", "store", "data_dir", "retention_days", "allow_unauthenticated")
    }
    return load_server_settings(values, config=config)


def _fail(command: str, exc: Exception) -> int:
    print(f"kansoku {command}: {exc}", file=sys.stderr)
    return 2


def _run_server(args: argparse.Namespace) -> int:
    from kansoku.server import run

    try:
        settings = _settings(args)
        run(settings)
    except ConfigError as exc:
        return _fail("server", exc)
    except OSError as exc:  # port in use, data dir not writable
        return _fail("server", exc)
    return 0


def _run_up(args: argparse.Namespace) -> int:
    from kansoku.cli._up_gateway import UpGateway
    from kansoku.gateway._settings import DEFAULT_PORT
    from kansoku.server import run

    stop = threading.Event()
    threads: list[threading.Thread] = []
    gateway: UpGateway | None = None

    async def on_ready(url: str, collector: Any) -> None:
        nonlocal gateway
        config = args.gateway_config or os.environ.get("KANSOKU_GATEWAY_CONFIG")
        port = args.gateway_port if args.gateway_port is not None else DEFAULT_PORT
        gateway = UpGateway(config, port, collector.settings.data_dir, demo=args.demo)
        gateway_url = await gateway.start(collector) if gateway.enabled else None
        print(_banner(url, demo=args.demo, gateway_url=gateway_url), flush=True)
        if args.demo and collector.keys.enabled and not os.environ.get("KANSOKU_API_KEY"):
            print(
                "kansoku up --demo: this data dir has API keys, so the demo app needs one: set "
                "KANSOKU_API_KEY to an ingest key, or pass a fresh --data-dir",
                file=sys.stderr,
                flush=True,
            )
        if args.demo:
            t = threading.Thread(target=_demo_traffic, args=(url, stop), name="kansoku-demo", daemon=True)
            t.start()
            threads.append(t)
        await asyncio.sleep(0)

    async def on_stop() -> None:
        if gateway is not None:
            await gateway.stop()

    try:
        settings = _settings(args)
        run(settings, on_ready, on_stop)
    except (ConfigError, ConfigFileError, OSError) as exc:
        return _fail("up", exc)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    return 0


def _banner(url: str, *, demo: bool, gateway_url: str | None = None) -> str:
    flag = "" if url.endswith(":4318") else f" --url {url}"
    lines = [
        "",
        f"  collector   {url}  (OTLP/HTTP at /v1/traces, SDK batches at /api/v1/ingest)",
        f"  query API   {url}/api/v1/calls   OpenAPI {url}/openapi.json   metrics {url}/metrics",
        f"  send data   kansoku.init(export='{url}')  or  OTEL_EXPORTER_OTLP_ENDPOINT={url}",
        f"  look        kansoku calls --since 1h{flag}    kansoku stats --by model --since 1h{flag}",
    ]
    if gateway_url is not None:
        lines.append(f"  gateway     {gateway_url}/v1  (OpenAI-compatible: point base_url here)")
    else:
        lines.append("  gateway     off (add --gateway-config gateway.yaml)")
    if demo:
        lines.append(
            f"  demo        a support bot is sending calls ({_DEMO_BURST} at once, then one a second)"
        )
        if gateway_url is not None:
            lines.append("              and a client calls the gateway (model 'chat'), with provider faults")
    lines.append("  stop        Ctrl-C")
    return "\n".join(lines) + "\n"


def _demo_traffic(url: str, stop: threading.Event) -> None:
    import kansoku
    from kansoku.cli._demo import traffic
    from kansoku.testing import MockUpstream

    kansoku.init(service_name="kansoku-demo", environment="demo", export=url, flush_interval_ms=250)
    rng = random.Random(7)
    try:
        with MockUpstream(delay_ms=15, stream_interval_ms=3) as up:
            traffic(up, rng, _DEMO_BURST, 0.15, stop=stop)
            kansoku.flush()
            print(f"  demo        {_DEMO_BURST} calls recorded; look with the commands above", flush=True)
            traffic(up, rng, None, 0.15, stop=stop, pause_s=1.0)
    except SystemExit as exc:  # the demo extra is missing
        print(f"kansoku up --demo: {exc}", file=sys.stderr)
    finally:
        kansoku.shutdown(timeout=2.0)


def _run_keys(args: argparse.Namespace) -> int:
    from kansoku.server import KeyRing

    try:
        settings = _settings(args)
        ring = KeyRing(settings.keys_file)
        if args.keys_command == "create":
            key, info = ring.create(args.project, args.scope, args.name)
            print(f"created {info.scope} key {info.key_id} for project {info.project!r} in {ring.path}")
            print("the key (shown once; store it now):")
            print(key)
        elif args.keys_command == "list":
            rows = ring.list()
            if not rows:
                print(f"no keys in {ring.path}: the server runs in local mode (loopback only)")
            for k in rows:
                print(f"{k.key_id}  {k.project:<20} {k.scope:<7} {k.created}  {k.name or ''}".rstrip())
        else:
            info = ring.revoke(args.key_id)
            print(f"revoked {info.key_id} ({info.scope} key of project {info.project!r})")
    except ConfigError as exc:
        return _fail("keys", exc)
    return 0

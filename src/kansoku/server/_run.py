"""Running the collector: bind checks, the event loop, graceful shutdown on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from kansoku.errors import ConfigError
from kansoku.server._app import make_app
from kansoku.server._collector import Collector
from kansoku.server._keys import KeyRing
from kansoku.server._settings import ServerSettings

log = logging.getLogger("kansoku.server")

#: Called once the server listens, with its base URL; may start more work (``kansoku up --demo``).
OnReady = Callable[[str, Collector], Awaitable[None]]


def check_bind(settings: ServerSettings) -> None:
    """Refuse an unauthenticated server reachable from other machines (unless explicitly allowed)."""
    if settings.is_loopback or settings.allow_unauthenticated:
        return
    if KeyRing(settings.keys_file).enabled:
        return
    raise ConfigError(
        "--host",
        f"binding {settings.host} would expose an unauthenticated collector to the network. "
        "Create keys first (kansoku keys create --project P --scope ingest|read), bind 127.0.0.1, "
        "or pass --allow-unauthenticated (KANSOKU_ALLOW_UNAUTHENTICATED=1) when a proxy authenticates.",
    )


def base_url(settings: ServerSettings, port: int) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 -- describing the bind, not binding
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def serve(
    settings: ServerSettings,
    *,
    on_ready: OnReady | None = None,
    stop: asyncio.Event | None = None,
    collector: Collector | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT); then drain and close everything.

    ``on_stop`` runs first, while the collector still accepts data (``kansoku up`` stops its
    gateway there, so the gateway's last records still reach the store)."""
    check_bind(settings)
    collector = collector or Collector(settings)
    app = make_app(collector)
    # A short shutdown grace: after SIGTERM aiohttp stops reading bodies, so a client stuck
    # mid-upload would otherwise hold the exit for the default 60 s (its batch was not acked).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
        await site.start()
        port = _bound_port(site, settings.port)
        url = base_url(settings, port)
        print(f"kansoku server listening on {url} (store: {settings.store_label})", flush=True)
        if on_ready is not None:
            await on_ready(url, collector)
        await stop.wait()
    finally:
        if on_stop is not None:
            await on_stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()


def _bound_port(site: web.TCPSite, default: int) -> int:
    server = site._server  # the only way to learn the port chosen for port 0
    sockets = getattr(server, "sockets", None)
    return int(sockets[0].getsockname()[1]) if sockets else default


def run(
    settings: ServerSettings,
    on_ready: OnReady | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Blocking entry point of ``kansoku server`` / ``kansoku up`` (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, on_ready=on_ready, on_stop=on_stop))
    else:
        uvloop.run(serve(settings, on_ready=on_ready, on_stop=on_stop))

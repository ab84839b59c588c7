"""The bare passthrough: the least a Python proxy can do (aiohttp + uvloop + orjson), the baseline.

    .venv/bin/python bench/_passthrough.py --upstream http://127.0.0.1:PORT --port 0

Parses the request JSON, forwards it with one pooled ClientSession, parses the response JSON and
answers; streams are relayed chunk by chunk. Prints ``passthrough listening on URL`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
import orjson
from aiohttp import web

JSON = {"Content-Type": "application/json"}


async def serve(upstream: str, port: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        async with session.post(upstream + request.path, data=orjson.dumps(body), headers=JSON) as up:
            if body.get("stream") is True:
                out = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
            data = orjson.loads(await up.read())
            return web.Response(status=up.status, body=orjson.dumps(data), headers=JSON)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", proxy)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"passthrough listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await session.close()


def main() -> None:
    ap = argparse.ArgumentParser(description="bare aiohttp passthrough proxy (bench baseline)")
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8000")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    import uvloop

    uvloop.run(serve(args.upstream.rstrip("/"), args.port))


if __name__ == "__main__":
    main()

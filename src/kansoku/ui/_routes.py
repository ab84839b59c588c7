"""Serving the UI's files: ``/`` is the single page, ``/ui/...`` its assets.

The files ship inside the package (no CDN, works offline). Every answer carries the CSP and
the other hardening headers; assets are cached by the browser with a revalidation (they change
with the installed version only), and paths are resolved inside the static directory only.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

__all__ = ["CSP", "add_ui_routes", "static_dir"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def static_dir() -> Path:
    return Path(__file__).parent / "static"


def _file(path: Path, *, cache: bool) -> web.StreamResponse:
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = dict(HEADERS)
    headers["Cache-Control"] = "no-cache" if not cache else "public, max-age=300"
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8", headers=headers)


async def index(request: web.Request) -> web.StreamResponse:
    return _file(static_dir() / "index.html", cache=False)


async def asset(request: web.Request) -> web.StreamResponse:
    root = static_dir().resolve()
    name = request.match_info["name"]
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():  # no way out of the static directory
        raise web.HTTPNotFound
    return _file(path, cache=True)


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/ui/{name:.+}", asset)

"""The web UI: static files (HTML, CSS, ES modules, no build step) served by the collector.

Every page talks to the collector's own query API (``/api/v1/...``) with ``fetch``; nothing is
rendered on the server, so the only thing served here is files, under a strict
Content-Security-Policy. See ``ARCHITECTURE.md`` ("The web UI") for why this stack.
"""

from kansoku.ui._routes import CSP, add_ui_routes, static_dir

__all__ = ["CSP", "add_ui_routes", "static_dir"]

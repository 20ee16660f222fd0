"""The browser client: ``GET /`` serves the page, ``/static/`` its scripts, styles and icon.

The files live in the package (``eva/web``), so an installed Eva serves them with no build
step and no network. Both the page and the static files are sent with ``Cache-Control:
no-cache``: the browser keeps its copy but revalidates it (ETag, Last-Modified) on every load,
so after an upgrade the page and its ES modules never come from two different versions.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Revalidate every time: the files are tiny and served from the same machine, and a stale
# app.js against a newer server protocol would be a confusing failure.
_NO_CACHE = "no-cache"

# The page only ever talks to its own origin (HTTP and the /ws WebSocket) and loads nothing
# from elsewhere; saying so makes injected markup or scripts from other origins inert.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; worker-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class _RevalidatedStaticFiles(StaticFiles):
    """Starlette's static files, with every response marked ``no-cache``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = _NO_CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the browser client: the page at ``/`` and its files under ``/static/``."""
    index = WEB_DIR / "index.html"

    # HEAD too: uptime checks and `curl -I` ask for the page without its body.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            index,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": _NO_CACHE,
                "Content-Security-Policy": _CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    app.mount("/static", _RevalidatedStaticFiles(directory=WEB_DIR), name="static")

"""Who may talk to Eva, and how much: API keys, the WebSocket Origin check, rate limits,
concurrent WebSocket sessions and the idle timeout, in one ASGI middleware in front of
every route (so that no route can forget them).

Public without a key: ``GET /health`` (so a client learns that a key is needed) and the
browser client's files (``/``, ``/static/…``), which hold no data. The close codes and the
refusals are documented in docs/protocol.md ("Access and limits").
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eva.server.auth import ApiKeys, key_owner
from eva.server.errors import ApiError, error_response
from eva.server.identity import resolve_user
from eva.server.limits import RateLimits, SessionSlots
from eva.server.logs import request_id_of

# Private-range WebSocket close codes (4000-4999), after the HTTP status they mirror.
CLOSE_UNAUTHORIZED = 4401  # no key, or a wrong one: ask the person for a key
CLOSE_IDLE = 4408  # no frame from the client for EVA_WS_IDLE_TIMEOUT_S
CLOSE_TOO_MANY = 4429  # over the rate limit, or too many concurrent sessions

_PUBLIC_PATHS = ("/health", "/")


def is_public(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    path: str = scope["path"]
    return path in _PUBLIC_PATHS or path.startswith("/static/")


def origin_allowed(headers: Headers, allowed: list[str]) -> bool:
    """Browsers always send Origin on a WebSocket handshake; a page from another site must
    not open a socket that rides on this browser's access (cross-site WebSocket hijacking).
    Clients that are not browsers send none, and are let through."""
    origin = headers.get("origin")
    if origin is None or origin in allowed:
        return True
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_public(scope):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        state = connection.app.state
        limits: RateLimits = state.rate_limits
        wait = limits.hit(connection)
        if wait is not None:
            response = error_response(
                429,
                "rate_limited",
                f"too many requests; retry in {wait} s",
                request_id_of(scope),
            )
            response.headers["Retry-After"] = str(wait)
            await response(scope, receive, send)
            return
        keys: ApiKeys = state.api_keys
        if keys.required and key_owner(connection) is None:
            response = error_response(
                401,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                request_id_of(scope),
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        state = connection.app.state
        settings = state.settings
        if not origin_allowed(connection.headers, settings.allowed_origins):
            # Refused before the upgrade: the handshake gets HTTP 403, no socket opens.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        limits: RateLimits = state.rate_limits
        wait = limits.hit(connection)
        if wait is not None:
            await _refuse(receive, send, CLOSE_TOO_MANY, "rate_limited", f"retry in {wait} s")
            return
        keys: ApiKeys = state.api_keys
        if keys.required and key_owner(connection) is None:
            await _refuse(
                receive,
                send,
                CLOSE_UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required: a token query parameter or a Bearer header",
            )
            return
        try:
            user = resolve_user(connection, connection.query_params.get("user_id"))
        except ApiError:
            user = None  # the endpoint refuses the malformed user_id itself
        slots: SessionSlots = state.session_slots
        refusal = slots.acquire(user)
        if refusal is not None:
            await _refuse(receive, send, CLOSE_TOO_MANY, "too_many_sessions", refusal)
            return
        try:
            await self.app(scope, _idle_limited(receive, send, settings.ws_idle_timeout_s), send)
        finally:
            slots.release(user)


async def _refuse(receive: Receive, send: Send, code: int, error: str, message: str) -> None:
    """Accept, say why in an ``error`` event, and close with ``code``: a browser sees the
    close code (a refused handshake would only show it 1006)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    text = json.dumps({"type": "error", "code": error, "message": message})
    await send({"type": "websocket.send", "text": text})
    await send({"type": "websocket.close", "code": code})


def _idle_limited(receive: Receive, send: Send, timeout_s: float) -> Receive:
    """``receive`` that, after ``timeout_s`` without a client frame, closes the socket with
    CLOSE_IDLE and tells the endpoint the client left."""

    async def receive_or_idle() -> Message:
        try:
            async with asyncio.timeout(timeout_s):  # no task per frame, unlike wait_for
                return await receive()
        except TimeoutError:
            message: dict[str, Any] = {
                "type": "error",
                "code": "idle_timeout",
                "message": f"nothing received for {timeout_s:g} s",
            }
            try:
                await send({"type": "websocket.send", "text": json.dumps(message)})
                await send({"type": "websocket.close", "code": CLOSE_IDLE})
            except (RuntimeError, OSError):
                pass  # already closed or gone: the endpoint still learns it is over
            return {"type": "websocket.disconnect", "code": CLOSE_IDLE}

    return receive_or_idle

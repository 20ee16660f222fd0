"""Who may talk to Eva, and how much: the Host and Origin checks, API keys, rate limits,
request body sizes, concurrent WebSocket sessions and the idle timeout, in one ASGI
middleware in front of every route (so that no route can forget them).

Public without a key: ``GET /health`` (so a client learns that a key is needed) and the
browser client's files (``/``, ``/static/…``), which hold no data. The close codes and the
refusals are documented in docs/protocol.md ("Access and limits").
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eva.config import Settings
from eva.server.auth import ApiKeys, key_owner
from eva.server.errors import ApiError, error_response
from eva.server.identity import resolve_user
from eva.server.limits import RateLimits, SessionSlots, client_address
from eva.server.logs import request_id_of
from eva.server.origins import STATE_CHANGING_METHODS, OriginPolicy

# Private-range WebSocket close codes (4000-4999), after the HTTP status they mirror.
CLOSE_UNAUTHORIZED = 4401  # no key, or a wrong one: ask the person for a key
CLOSE_IDLE = 4408  # no frame from the client for EVA_WS_IDLE_TIMEOUT_S
CLOSE_TOO_MANY = 4429  # over the rate limit, or too many concurrent sessions

# The balancer health-checks /health/ready without a key.
_PUBLIC_PATHS = ("/health", "/health/ready", "/")


def is_public(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    path: str = scope["path"]
    return path in _PUBLIC_PATHS or path.startswith("/static/")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a request body passes its limit: an HTTPException, so
    that FastAPI's body parsing lets it through to the error handler (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def body_limit(scope: Scope, settings: Settings) -> int:
    """Uploads (multipart audio) may be as large as EVA_MAX_UPLOAD_BYTES plus the form's
    own framing; every other body, JSON, EVA_MAX_BODY_BYTES."""
    content_type = Headers(scope=scope).get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return settings.max_upload_bytes + _MULTIPART_FRAMING_BYTES
    return settings.max_body_bytes


# The form fields and boundaries around an uploaded file.
_MULTIPART_FRAMING_BYTES = 64 * 1024


def _size_limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that counts the body's bytes and raises BodyTooLarge past ``limit``,
    before the rest is read: a client cannot make Eva hold a huge body."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited


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
        connection = HTTPConnection(scope)
        state = connection.app.state
        policy: OriginPolicy = state.origin_policy
        if not policy.host_allowed(connection.headers):
            await _refuse_http(scope, receive, send, 421, "unknown_host", _UNKNOWN_HOST)
            return
        if is_public(scope):
            await self.app(scope, receive, send)
            return
        if scope["method"] in STATE_CHANGING_METHODS and not policy.browser_allowed(
            connection.headers
        ):
            message = "a page of another site may not change anything here (Origin refused)"
            await _refuse_http(scope, receive, send, 403, "cross_origin", message)
            return
        limit = body_limit(scope, state.settings)
        declared = connection.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse_http(scope, receive, send, 413, "body_too_large", _too_large(limit))
            return
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
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _size_limited(receive, limit), send_tracked)
        except BodyTooLarge:
            if started:
                raise
            await _refuse_http(scope, receive, send, 413, "body_too_large", _too_large(limit))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        state = connection.app.state
        settings = state.settings
        policy: OriginPolicy = state.origin_policy
        origin = connection.headers.get("origin")
        # Browsers always send Origin on a WebSocket handshake; programs send none.
        if not policy.host_allowed(connection.headers) or (
            origin is not None and not policy.origin_allowed(origin)
        ):
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
        anonymous = None if key_owner(connection) else client_address(connection)
        refusal = slots.acquire(user, anonymous)
        if refusal is not None:
            await _refuse(receive, send, CLOSE_TOO_MANY, "too_many_sessions", refusal)
            return
        try:
            await self.app(scope, _idle_limited(receive, send, settings.ws_idle_timeout_s), send)
        finally:
            slots.release(user, anonymous)


_UNKNOWN_HOST = "this server does not answer to that Host name (see EVA_ALLOWED_HOSTS)"


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


async def _refuse_http(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
) -> None:
    await error_response(status, code, message, request_id_of(scope))(scope, receive, send)


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

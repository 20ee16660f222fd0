"""Request ids and the request log, which never holds what people said or their keys.

Each HTTP request and WebSocket gets an id: the client's ``X-Request-ID`` when it is a
plain short token, else a new one. It comes back in the ``X-Request-ID`` response header and
in JSON error bodies, and every log line written while serving it carries it.

The request log (logger ``eva.access``, INFO) writes the method, the path, the status and
the duration. Query strings are written with their values replaced by ``…``: a WebSocket
``token`` is an API key. Bodies, frames, transcripts and audio are never logged; uvicorn's
own access log, which prints whole query strings, stays off (see serving.py).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("eva.access")

# A client's id is kept when it is short and plain: it goes into headers and log lines.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SCOPE_KEY = "eva.request_id"

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "eva_request_id", default="-"
)


def request_id_of(scope: Scope) -> str | None:
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


# A session id in a path is enough to read the session where no keys are set.
_SESSION_IN_PATH = re.compile(r"(/sessions/)[^/]+")


def printable(text: str) -> str:
    """``text`` with every character that could forge a line or drive a terminal (newline,
    escape, NUL, other controls) written as an escape, so one request is one log line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def redacted_target(scope: Scope) -> str:
    """The path, without session ids, and the query's parameter names with their values
    hidden; control characters escaped."""
    path = _SESSION_IN_PATH.sub(r"\1…", scope.get("path", ""))
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return printable(path)
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    return printable(path + "?" + "&".join(f"{name[:32]}=…" for name in names[:10]))


_QUERY_VALUE = re.compile(r"([?&][^=&\s\"']+=)[^&\s\"']*")


class RedactQueryValues(logging.Filter):
    """For uvicorn's own loggers: at INFO they print WebSocket paths with their query
    string (``"WebSocket /ws?token=…" [accepted]``); hide every value there too, and
    escape control characters as in the request log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        cleaned = printable(_QUERY_VALUE.sub(r"\1…", text) if "=" in text else text)
        if cleaned != text:
            record.msg, record.args = cleaned, ()
        return True


def redact_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryValues) for f in logger.filters):
            logger.addFilter(RedactQueryValues())


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request) for the formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def install_request_ids(handler: logging.Handler) -> None:
    """Make ``handler`` write the request id of each line."""
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s [%(request_id)s]: %(message)s"))


class RequestLogMiddleware:
    """Outermost middleware: gives the request its id, and logs it once it is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope[SCOPE_KEY] = request_id
        token = current_request_id.set(request_id)
        started = time.monotonic()
        outcome: dict[str, Any] = {"status": None}

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                outcome["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif kind == "websocket.accept":
                outcome["status"] = 101
            elif kind == "websocket.close":
                outcome["close"] = message.get("code", 1000)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.monotonic() - started) * 1000
            method = scope.get("method", "WS")
            status = outcome["status"] if outcome["status"] is not None else "-"
            if "close" in outcome:
                status = f"{status} close {outcome['close']}"
            access_log.info("%s %s %s %.0f ms", method, redacted_target(scope), status, elapsed_ms)
            current_request_id.reset(token)

"""How ``eva serve`` runs the app: where it may listen, what it says at start-up, and the
uvicorn options that keep secrets out of logs and dead sockets out of memory."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from eva.config import Settings
from eva.server.logs import install_request_ids, redact_uvicorn_logs

log = logging.getLogger("eva.server")

# uvicorn's limit on one WebSocket message: text events are at most a few KiB
# (EVA_MAX_MESSAGE_CHARS), audio frames at most EVA_MAX_AUDIO_FRAME_BYTES; a 1 MiB ceiling
# stops a huge frame before it is even buffered.
WS_MAX_MESSAGE_BYTES = 1 << 20


def freeze_what_was_loaded() -> None:
    """Leave what start-up made (modules, the engines' Python objects, the persona) out of
    every later garbage collection. It lives as long as the process, and each full
    collection walked all of it (about 140,000 objects): the event loop stopped 100-160 ms,
    and whoever was refused or answered just then was told that much later (eva loadtest,
    2026-12-04). Start-up's own garbage is collected first: frozen objects never are."""
    gc.collect()
    gc.freeze()


class ExposureError(Exception):
    """Eva would listen beyond this machine with nobody's key required."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(settings: Settings) -> None:
    """Refuse to serve every conversation to the network without keys, unless told to."""
    if settings.api_keys or settings.allow_unauthenticated or is_loopback(settings.host):
        return
    raise ExposureError(
        f"refusing to listen on {settings.host} without API keys: anyone who can reach it "
        "could read every conversation. Set EVA_API_KEYS=owner:key,... (see README, "
        '"Access and privacy"), or EVA_ALLOW_UNAUTHENTICATED=true if this network is trusted.'
    )


def startup_line(settings: Settings) -> str:
    """One line: where Eva listens and whether a key is required."""
    where = f"http://{settings.host}:{settings.port}"
    if settings.api_keys:
        owners = {pair.get_secret_value().split(":", 1)[0] for pair in settings.api_keys}
        return (
            f"Eva listens on {where}; API keys required "
            f"({len(settings.api_keys)} keys, {len(owners)} owners)"
        )
    scope = "this machine only" if is_loopback(settings.host) else "UNAUTHENTICATED, on purpose"
    return f"Eva listens on {where}; no API key required ({scope})"


# After the drain (below), uvicorn stops accepting, closes open WebSockets (1012) and waits
# for requests in flight; a turn stops at its next token or clause and is stored, in a
# second or two. This bounds a stuck one (docs/hardening.md).
GRACEFUL_SHUTDOWN_S = 7


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM drains before it stops: /health/ready answers 503 so
    that the balancer sends new conversations elsewhere, new conversations and turns are
    told "busy", and the turns in flight finish (at most EVA_DRAIN_TIMEOUT_S). A second
    signal, or Ctrl-C, stops at once as uvicorn does."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s
        self._draining: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining is not None:
            super().handle_exit(sig, frame)
            return
        loop = asyncio.get_event_loop()
        # The handler runs between two bytecodes of the loop's thread: schedule, don't run.
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        service = self._app.state.conversation
        if service is not None:
            service.gate.drain()
            log.warning("SIGTERM: draining (turns in flight finish, new ones go elsewhere)")
            try:
                async with asyncio.timeout(self._drain_timeout_s):
                    await service.gate.wait_idle()
            except TimeoutError:
                log.warning("drain: turns still running after %.0f s", self._drain_timeout_s)
        # As uvicorn's own handler: it stops, then re-raises the signal, so the exit
        # status still says SIGTERM.
        super().handle_exit(signal.SIGTERM, None)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        # uvicorn's access log prints whole query strings, and a WebSocket ``token`` is an
        # API key: Eva writes its own request log (logs.py) with the values hidden.
        "access_log": False,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def configure_logging() -> None:
    """Request ids on every line, and the request log on (as uvicorn's would be)."""
    for handler in logging.getLogger().handlers:
        install_request_ids(handler)
    logging.getLogger("eva.access").setLevel(logging.INFO)
    redact_uvicorn_logs()  # in case someone turns uvicorn's logs up to INFO

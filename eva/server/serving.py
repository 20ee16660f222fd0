"""How ``eva serve`` runs the app: where it may listen, what it says at start-up, and the
uvicorn options that keep secrets out of logs and dead sockets out of memory."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from eva.config import Settings
from eva.server.logs import install_request_ids, redact_uvicorn_logs

# uvicorn's limit on one WebSocket message: text events are at most a few KiB
# (EVA_MAX_MESSAGE_CHARS), audio frames at most EVA_MAX_AUDIO_FRAME_BYTES; a 1 MiB ceiling
# stops a huge frame before it is even buffered.
WS_MAX_MESSAGE_BYTES = 1 << 20


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


# On SIGTERM uvicorn stops accepting, closes open WebSockets (1012) and waits for requests
# in flight; a turn stops at its next token or clause and is stored, in a second or two.
# This bounds a stuck one, so that `eva serve` always exits within 10 s (docs/hardening.md).
GRACEFUL_SHUTDOWN_S = 7


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

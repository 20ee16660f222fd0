"""The ASGI application: routes, error handling, and model loading at start-up.

Models load in a background thread so that ``GET /health`` answers (``ready: false``) while
they load; every other route answers 503 until they are warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from eva import __version__
from eva.config import Settings
from eva.conversation.persona import load_persona
from eva.conversation.service import Conversation
from eva.engines.runtime import Engines
from eva.server import metrics, routes_chat, routes_memory, routes_speech
from eva.server.access import AccessMiddleware
from eva.server.auth import REALTIME_PATH, ApiKeys, ClientSecrets, parse_api_keys
from eva.server.errors import install_error_handlers
from eva.server.limits import RateLimits, SessionSlots
from eva.server.logs import RequestLogMiddleware
from eva.server.loop_lag import watch_loop_lag
from eva.server.metrics import AdmissionCollector
from eva.server.origins import OriginPolicy
from eva.server.schemas import CapacityInfo, HealthResponse
from eva.server.serving import freeze_what_was_loaded
from eva.server.v1 import router as openai_router
from eva.server.v1.realtime import realtime_endpoint
from eva.server.web import mount_web
from eva.server.ws_chat import chat_endpoint
from eva.server.ws_voice import voice_endpoint
from eva.stats import LatencyStats
from eva.store import open_store

log = logging.getLogger("eva.server")


def create_app(
    settings: Settings,
    engines: Engines | None = None,
    progress: Callable[[str], None] = log.info,
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    """An app over ``engines`` (tests pass loaded ones) or over engines it loads itself."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        app.state.store = store
        owned: list[Engines] = []

        async def load() -> None:
            try:
                if engines is not None:
                    loaded = engines
                else:
                    loaded = await asyncio.to_thread(
                        Engines.load, settings, progress, load_persona(settings).prefix
                    )
                    owned.append(loaded)
                app.state.engines = loaded
                conversation = Conversation(settings, loaded, store, app.state.stats)
                if engines is None:  # loaded here: they live as long as the process
                    freeze_what_was_loaded()  # before the first client, who would wait
                app.state.conversation = conversation
                if on_ready is not None:
                    on_ready()
            except Exception as exc:
                log.exception("loading the models failed")
                app.state.load_error = str(exc)

        loader = asyncio.create_task(load())
        lag_watcher = asyncio.create_task(watch_loop_lag(app.state.stats))
        try:
            yield
        finally:
            for task in (loader, lag_watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if app.state.conversation is not None:
                await app.state.conversation.aclose()
            for loaded in owned:
                loaded.close()
            store.close()

    app = FastAPI(
        title="Eva",
        version=__version__,
        description="A real-time voice companion that runs offline. "
        "The WebSocket protocol is documented in docs/protocol.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.stats = LatencyStats()
    app.state.conversation = None
    app.state.engines = None
    app.state.load_error = None
    app.state.stats.registry.register(
        AdmissionCollector(lambda: app.state.conversation and app.state.conversation.gate)
    )
    app.state.api_keys = ApiKeys(parse_api_keys([k.get_secret_value() for k in settings.api_keys]))
    app.state.client_secrets = ClientSecrets()
    app.state.rate_limits = RateLimits.from_settings(settings)
    app.state.session_slots = SessionSlots(
        settings.max_ws_sessions,
        settings.max_sessions_per_user,
        settings.max_anonymous_sessions_per_address,
    )
    app.state.origin_policy = OriginPolicy.of(
        settings.host, settings.allowed_hosts, [*settings.allowed_origins, *settings.cors_origins]
    )
    install_error_handlers(app)
    app.include_router(routes_chat.router)
    app.include_router(routes_speech.router)
    app.include_router(routes_memory.router)
    app.include_router(openai_router)
    app.include_router(metrics.router)
    app.add_api_websocket_route("/ws", voice_endpoint)
    app.add_api_websocket_route("/ws/chat", chat_endpoint)
    app.add_api_websocket_route(REALTIME_PATH, realtime_endpoint)
    mount_web(app)
    # Outermost last: every request gets its id and log line, then CORS (a preflight needs
    # no key), then the key, Origin and limit checks.
    app.add_middleware(AccessMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Server-Timing"],
        )
    app.add_middleware(RequestLogMiddleware)

    @app.get("/health", response_model=HealthResponse, summary="Liveness and readiness")
    async def health(request: Request) -> HealthResponse:
        return _health(request.app.state)

    @app.get(
        "/health/ready",
        response_model=HealthResponse,
        summary="200 while this process takes new conversations, else 503 (for balancers)",
        responses={503: {"model": HealthResponse}},
    )
    async def health_ready(request: Request) -> JSONResponse:
        report = _health(request.app.state)
        accepting = report.capacity is not None and report.capacity.accepting
        return JSONResponse(report.model_dump(), status_code=200 if accepting else 503)

    @app.get("/stats", summary="Request counts, sessions, and latency percentiles per stage")
    async def stats(request: Request) -> dict[str, Any]:
        state = request.app.state
        snapshot: dict[str, Any] = state.stats.snapshot()
        snapshot["sessions"] = await asyncio.to_thread(state.store.count_sessions)
        service: Conversation | None = state.conversation
        snapshot["active_sessions"] = service.gate.conversations if service else 0
        return snapshot

    return app


def _health(state: Any) -> HealthResponse:
    service: Conversation | None = state.conversation
    status = "ok" if service else ("error" if state.load_error else "loading")
    capacity = None
    if service is not None:
        now = service.gate.capacity()
        capacity = CapacityInfo(
            accepting=now.accepting,
            draining=now.draining,
            conversations=now.conversations,
            max_conversations=now.max_conversations,
            free_conversations=max(0, now.max_conversations - now.conversations),
            turns_running=now.turns_running,
            turns_limit=now.turns_limit,
            turns_waiting=now.turns_waiting_spoken + now.turns_waiting_typed,
            llm_slots=now.llm_slots,
            turn_hold_s=round(now.turn_hold_s, 3),
        )
    return HealthResponse(
        status="draining" if capacity is not None and capacity.draining else status,
        ready=service is not None,
        backends=state.engines.describe() if service else {},
        loading=state.load_error,
        auth_required=state.api_keys.required,
        capacity=capacity,
    )

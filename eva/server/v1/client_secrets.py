"""``POST /v1/realtime/client_secrets``: a short-lived secret for one browser's Realtime
connection, minted with a key, as OpenAI's are. The page never holds the key: it offers
the secret as the ``openai-insecure-api-key.<secret>`` subprotocol (or a Bearer header),
and the session configuration minted with it applies when it connects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from eva.server.auth import ClientSecrets
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.v1.realtime import RealtimeError, check_session

router = APIRouter()

# OpenAI's bounds: ten seconds to two hours, ten minutes when not said.
MIN_TTL_S = 10
MAX_TTL_S = 7200
DEFAULT_TTL_S = 600


class ExpiresAfter(BaseModel):
    anchor: str = "created_at"
    seconds: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)


class SecretRequest(BaseModel):
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)
    session: dict[str, Any] = Field(default_factory=dict)


@router.post("/v1/realtime/client_secrets", summary="A short-lived secret for /v1/realtime")
async def client_secrets(body: SecretRequest, request: Request) -> dict[str, Any]:
    try:
        check_session(body.session)
    except RealtimeError as exc:
        raise ApiError(400, exc.code, exc.message, param=f"session.{exc.param}") from None
    store: ClientSecrets = request.app.state.client_secrets
    try:
        value, expires_at = store.mint(
            resolve_user(request, None), body.expires_after.seconds, body.session
        )
    except OverflowError as exc:
        raise ApiError(429, "too_many_secrets", str(exc)) from None
    session = {"type": "realtime", "object": "realtime.session", "model": "eva", **body.session}
    return {"value": value, "expires_at": int(expires_at), "session": session}

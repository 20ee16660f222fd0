"""Typed conversation over HTTP: /chat, /chat/stream (server-sent events) and the history."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from eva.conversation.service import Conversation, turn_owner
from eva.conversation.turn import AudioChunk, TextDelta, TurnDone
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.base import EngineError
from eva.server.admitted import busy_fields
from eva.server.deps import checked_message, conversation
from eva.server.identity import resolve_user
from eva.server.schemas import (
    ChatRequest,
    ChatResponse,
    Message,
    MessagesResponse,
    StreamRequest,
)

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]


@router.post("/chat", response_model=ChatResponse, summary="One typed turn, whole reply")
async def chat(body: ChatRequest, service: Service, request: Request) -> ChatResponse:
    started = time.monotonic()
    text = checked_message(service, body.message)
    user = resolve_user(request, body.user_id)
    owner = turn_owner(body.session_id, user)
    service.check_admission(owner)  # 503 busy before a new session is made
    session = await service.open_session(body.session_id, user)
    done: TurnDone | None = None
    async for event in service.reply(session.id, text, audio=False, owner=owner):
        if isinstance(event, TurnDone):
            done = event
    assert done is not None  # run_turn always ends with TurnDone
    return ChatResponse(
        session_id=session.id,
        response=done.text,
        latency_ms=round((time.monotonic() - started) * 1000.0, 2),
        timings=done.timings,
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@router.post(
    "/chat/stream",
    summary="One typed turn as server-sent events",
    description=(
        "Events: `session` {session_id}, then `delta` {text} as the reply is written "
        "(and `audio` {audio: base64 PCM16 mono, sample_rate} when `audio` is true), then "
        "`done` {session_id, response, latency_ms, timings, interrupted}, or `error` "
        "{code, message}."
    ),
    response_class=StreamingResponse,
)
async def chat_stream(body: StreamRequest, service: Service, request: Request) -> StreamingResponse:
    started = time.monotonic()
    text = checked_message(service, body.message)
    user = resolve_user(request, body.user_id)
    service.engines.tts.info(body.voice)  # an unknown voice is a 400 before streaming starts
    owner = turn_owner(body.session_id, user)
    service.check_admission(owner)  # 503 busy before streaming
    session = await service.open_session(body.session_id, user)

    async def events() -> AsyncIterator[bytes]:
        yield _sse("session", {"session_id": session.id})
        try:
            async for event in service.reply(
                session.id, text, voice_id=body.voice, audio=body.audio, owner=owner
            ):
                if isinstance(event, TextDelta):
                    yield _sse("delta", {"text": event.text})
                elif isinstance(event, AudioChunk):
                    pcm = base64.b64encode(event.pcm.astype("<i2").tobytes()).decode()
                    yield _sse("audio", {"audio": pcm, "sample_rate": event.sample_rate})
                else:
                    yield _sse(
                        "done",
                        {
                            "session_id": session.id,
                            "response": event.text,
                            "latency_ms": round((time.monotonic() - started) * 1000.0, 2),
                            "timings": event.timings,
                            "interrupted": event.interrupted,
                        },
                    )
        except ServerBusyError as exc:  # the rare turn refused after the check above
            yield _sse("error", busy_fields(exc))
        except EngineError as exc:
            service.stats.count_error("/chat/stream")
            yield _sse("error", {"code": "backend_unavailable", "message": str(exc)})
        except asyncio.CancelledError:
            raise  # the client left: the turn's finally blocks stop the engines

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.get(
    "/sessions/{session_id}/messages",
    response_model=MessagesResponse,
    summary="The stored conversation of a session",
)
async def session_messages(
    session_id: str, service: Service, request: Request, user_id: str | None = None
) -> MessagesResponse:
    # Resolving the session first makes another user's session a 404 like a missing one.
    await service.open_session(session_id, resolve_user(request, user_id))
    records = await asyncio.to_thread(service.store.messages, session_id)
    return MessagesResponse(
        session_id=session_id,
        messages=[
            Message(
                id=r.id,
                role=r.role,
                content=r.content,
                created_at=r.created_at,
                timings=r.timings,
                interrupted=r.interrupted,
            )
            for r in records
        ],
    )

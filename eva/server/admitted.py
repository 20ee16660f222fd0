"""Admission of WebSocket conversations: one shape for /ws, /ws/chat and /v1/realtime.

A conversation beyond what this process serves within its latency targets is told so at
once (an ``error`` event ``busy`` with ``retry_after_s``, then close 1013 "try again
later"), rather than admitted to wait in silence (eva/conversation/turn_gate.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import WebSocket

from eva.conversation.turn_gate import ServerBusyError, TurnGate
from eva.server.ws_protocol import event

# RFC 6455's "Try Again Later": a client that knows it reconnects after a while.
CLOSE_TRY_AGAIN_LATER = 1013


def busy_fields(exc: ServerBusyError) -> dict[str, Any]:
    """What Eva's own protocols say of a refusal, beside the event's type."""
    return {"code": "busy", "message": str(exc), "retry_after_s": exc.retry_after_s}


def busy_event(exc: ServerBusyError) -> dict[str, Any]:
    return event("error", **busy_fields(exc))


@asynccontextmanager
async def admitted_conversation(
    socket: WebSocket, gate: TurnGate, refusal: Callable[[ServerBusyError], dict[str, Any]]
) -> AsyncIterator[bool]:
    """Whether the conversation was admitted; counted in until the block ends."""
    try:
        gate.open_conversation()
    except ServerBusyError as exc:
        await socket.send_json(refusal(exc))
        await socket.close(code=CLOSE_TRY_AGAIN_LATER)
        yield False
        return
    try:
        yield True
    finally:
        gate.close_conversation()

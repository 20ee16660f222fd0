"""``/ws/chat``: the text streaming endpoint of the companion Eva replaces, kept for its
clients.

In: plain text, or JSON ``{"message": ..., "session_id"?}`` or ``{"type": "message",
"content": ..., "session_id"?}``, or ``{"type": "ping"}``. Out: ``{"type": "token",
"content"}`` deltas, then ``{"type": "end", "content", "session_id", "timings"}``;
``{"type": "pong"}``; ``{"type": "error", "code", "message"}``. Text only, no audio.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from eva.conversation.service import Conversation
from eva.conversation.turn import TextDelta, TurnDone
from eva.conversation.turn_gate import ServerBusyError
from eva.engines.base import EngineError
from eva.server.admitted import admitted_conversation, busy_event, busy_fields
from eva.server.client_text import text_problem
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.limits import rate_limited
from eva.server.outbox import Outbox
from eva.server.ws_protocol import ProtocolError
from eva.store.sqlite import UnknownSessionError


def parse_chat_message(raw: str) -> tuple[str, str | None] | None:
    """(message, session_id), or None for a ping. Plain text is a message."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, over-long integers, absurd nesting
        return raw, None  # the old clients send bare text
    if not isinstance(data, dict):
        return raw, None  # a bare JSON string or number is still just text
    if data.get("type") == "ping":
        return None
    text = data.get("message", data.get("content"))
    session_id = data.get("session_id")
    if not isinstance(text, str):
        raise ProtocolError("invalid_event", 'expected {"message": "..."} or plain text')
    if session_id is not None and not isinstance(session_id, str):
        raise ProtocolError("invalid_event", "session_id must be a string")
    return text, session_id


async def chat_endpoint(socket: WebSocket) -> None:
    await socket.accept()
    out = Outbox(socket, socket.app.state.settings.ws_send_stall_s)
    service: Conversation | None = socket.app.state.conversation
    if service is None:
        await out.json({"type": "error", "code": "not_ready", "message": "Eva is still loading"})
        await socket.close(code=1013)
        return
    try:
        user_id = resolve_user(socket, socket.query_params.get("user_id"))
    except ApiError as exc:
        await out.json({"type": "error", "code": exc.code, "message": exc.message})
        await socket.close(code=1008)  # policy violation: the handshake was unacceptable
        return
    service.stats.count_request("/ws/chat")
    async with admitted_conversation(socket, service.gate, busy_event) as admitted:
        if admitted:
            await _converse(socket, out, service, user_id)


async def _converse(
    socket: WebSocket, out: Outbox, service: Conversation, user_id: str | None
) -> None:
    current_session: str | None = None
    try:
        while out.open:
            raw = await socket.receive_text()
            try:
                parsed = parse_chat_message(raw)
                if parsed is None:
                    await out.json({"type": "pong"})
                    continue
                text, session_id = parsed
                text = text.strip()
                if not text:
                    raise ProtocolError("empty_message", "the message is empty")
                problem = text_problem(text)
                if problem is not None:
                    raise ProtocolError("invalid_message", f"the message {problem}")
                if len(text) > service.settings.max_message_chars:
                    raise ProtocolError("message_too_long", "the message is too long")
                problem = service.too_long_for_model(text)
                if problem is not None:
                    raise ProtocolError("message_too_long", problem)
                wait = rate_limited(socket)
                if wait is not None:
                    raise ProtocolError("rate_limited", f"too many messages; retry in {wait} s")
                session = await service.open_session(session_id or current_session, user_id)
                current_session = session.id
                async for item in service.reply(session.id, text, audio=False):
                    if isinstance(item, TextDelta):
                        await out.json({"type": "token", "content": item.text})
                    elif isinstance(item, TurnDone):
                        await out.json(
                            {
                                "type": "end",
                                "content": item.text,
                                "session_id": session.id,
                                "timings": item.timings,
                            }
                        )
            except ProtocolError as exc:
                await out.json({"type": "error", "code": exc.code, "message": exc.message})
            except UnknownSessionError:
                await out.json(
                    {"type": "error", "code": "unknown_session", "message": "no such session"}
                )
            except ServerBusyError as exc:
                await out.json({"type": "error", **busy_fields(exc)})
            except EngineError as exc:
                service.stats.count_error("/ws/chat")
                await out.json(
                    {"type": "error", "code": "backend_unavailable", "message": str(exc)}
                )
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left; an unfinished reply was cancelled with its task

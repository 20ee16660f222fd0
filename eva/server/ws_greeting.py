"""Eva speaks first when someone she knows opens a new /ws session (``greet=true``).

The greeting is a reply without a question: ``response.created``, the text, paced audio,
``response.done``, exactly like any reply, so clients need nothing new to show and play
it, and the person can talk over it like over any reply. Its text comes from
``Conversation.greeting`` (a template over the person's memories, already stored).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from eva.conversation.text_shaping import speakable
from eva.engines.base import EngineError
from eva.engines.threads import iterate_in_thread
from eva.server.ws_protocol import event

if TYPE_CHECKING:
    from eva.server.ws_voice import Response, VoiceSession


def wants_greeting(flag: str | None) -> bool:
    return (flag or "").lower() in ("1", "true", "yes")


async def start_greeting(session: VoiceSession, text: str) -> None:
    response = await session._new_response()
    response.committed.set()  # nothing to wait for: Eva speaks first
    response.task = asyncio.create_task(_speak(session, response, text))


async def _speak(session: VoiceSession, response: Response, text: str) -> None:
    tts = session.service.engines.tts
    voice = session.voice
    words = speakable(text, session.settings.language)
    await session.out.json(event("response.created", response_id=response.id))
    await session.out.json(event("response.text.delta", text=text))
    heard = 1.0
    try:
        chunks = iterate_in_thread(
            session.service.engines.pools.tts,
            lambda stop: tts.synthesize(words, voice.id, stop),
            threading.Event(),
        )
        async for pcm in chunks:
            heard = await session._send_paced(pcm, voice.sample_rate, response)
            if heard < 1.0:
                break  # the person spoke over the greeting
    except EngineError as exc:
        await session.out.json(event("error", code="backend_unavailable", message=str(exc)))
    await session.out.json(
        event(
            "response.done",
            response_id=response.id,
            text=text,
            interrupted=heard < 1.0,
            timings={},
        )
    )

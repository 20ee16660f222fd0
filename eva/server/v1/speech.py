"""``POST /v1/audio/speech``: OpenAI's text to speech, streamed clause by clause.

The text is said as Eva says a reply (``Conversation.speak``: clauses, the voice's style,
speech's priority over the language model), and each clause's audio is encoded and sent as
soon as it exists, so the first bytes leave after the first clause. ``stream_format: sse``
sends the same bytes base64-encoded in ``speech.audio.delta`` events.

OpenAI's voice names map onto the installed voices (``voice_for``); ``instructions`` can
only move the speed (Eva's voices have no other controls): words asking for calm slow the
voice to its gentle rate, words asking for energy speed it to its excited rate, anything
else is ignored, as docs/openai.md says.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from eva.conversation.prompt import estimate_tokens
from eva.conversation.prosody import VoiceStyle, style_for
from eva.conversation.service import Conversation
from eva.conversation.turn import AudioChunk, TurnControl
from eva.engines.base import EngineError, VoiceInfo
from eva.engines.voices import UnknownVoiceError, primary_language
from eva.server.deps import checked_text, conversation
from eva.server.errors import ApiError, error_type
from eva.server.v1.encode import ResponseFormat, StreamEncoder
from eva.server.v1.models import Models
from eva.server.v1.sse import sse_data

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]

# OpenAI's voices, in its documentation's order: each names one of the installed voices.
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)  # fmt: skip
_CALM = re.compile(r"\b(calm|gentl|soft|slow|sooth|quiet|relax|whisper|sad)", re.IGNORECASE)
_LIVELY = re.compile(r"\b(excit|energ|cheer|fast|quick|upbeat|enthusias|happ)", re.IGNORECASE)


class VoiceRef(BaseModel):
    id: str


class SpeechRequest(BaseModel):
    model: str
    input: str
    voice: str | VoiceRef
    instructions: str | None = None
    response_format: ResponseFormat = "mp3"  # OpenAI's default
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"


def voice_for(name: str, service: Conversation) -> VoiceInfo:
    """An installed voice by its id, or by OpenAI's name: those map in turn onto the voices
    of Eva's language from the default voice's backend (the default first; never a robotic
    espeak-ng voice in place of a Piper one), so each name always gives the same one."""
    catalog = service.engines.tts
    try:
        return catalog.info(name)
    except UnknownVoiceError:
        if name not in OPENAI_VOICES:
            raise
    default = catalog.info(None)
    speaking = [
        v
        for v in catalog.voices()
        if v != default
        and v.backend == default.backend
        and primary_language(v.language) == primary_language(default.language)
    ]
    choices = [default, *speaking]
    return choices[OPENAI_VOICES.index(name) % len(choices)]


def rate_for(instructions: str | None, style: VoiceStyle) -> float:
    """What ``instructions`` can change: the speed."""
    if not instructions:
        return 1.0
    if _CALM.search(instructions):
        return style.gentle_rate
    if _LIVELY.search(instructions):
        return style.excited_rate
    return 1.0


@router.post(
    "/v1/audio/speech",
    summary="OpenAI's text to speech, streamed as it is synthesized",
    response_class=StreamingResponse,
)
async def speech(body: SpeechRequest, service: Service, models: Models) -> StreamingResponse:
    models.check("tts", body.model)
    text = checked_text(body.input, service.settings.max_message_chars, field="input")
    name = body.voice if isinstance(body.voice, str) else body.voice.id
    try:
        voice = voice_for(name, service)
    except UnknownVoiceError as exc:
        raise ApiError(400, "unknown_voice", str(exc), param="voice") from exc
    style = style_for(service.settings.voice_styles, voice.id)
    rate = body.speed * rate_for(body.instructions, style)
    encoder = StreamEncoder(body.response_format, voice.sample_rate)
    sse = body.stream_format == "sse"

    async def audio() -> AsyncIterator[bytes]:
        control = TurnControl()
        events = service.speak(text, voice.id, control, rate)
        try:
            async for event in events:
                if isinstance(event, AudioChunk):
                    data = encoder.push(event.pcm)
                    if data:
                        yield _delta(data) if sse else data
            tail = encoder.finish()
        except EngineError as exc:
            # The status is sent: a stream can only end early (and say why when it is sse).
            if sse:
                error = {"message": str(exc), "type": error_type(503), "param": None}
                yield sse_data({"type": "error", "error": {**error, "code": "backend_unavailable"}})
            return
        finally:
            control.cancel()
            await events.aclose()
        if sse:
            if tail:
                yield _delta(tail)
            tokens = estimate_tokens(text)
            usage = {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
            yield sse_data({"type": "speech.audio.done", "usage": usage})
        elif tail:
            yield tail

    media_type = "text/event-stream" if sse else encoder.media_type
    return StreamingResponse(audio(), media_type=media_type)


def _delta(data: bytes) -> bytes:
    return sse_data({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})

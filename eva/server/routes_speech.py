"""Speech over HTTP: synthesis (/tts), recognition (/stt), a whole voice turn (/voice)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from eva.audio import decode_audio, wav_bytes
from eva.conversation.admission import Channel
from eva.conversation.service import Conversation, turn_owner
from eva.conversation.turn import AudioChunk, TurnDone
from eva.engines.base import STT_SAMPLE_RATE
from eva.server.deps import checked_text, conversation, read_upload
from eva.server.errors import ApiError
from eva.server.identity import resolve_user
from eva.server.schemas import STTResponse, TTSRequest, Voice, VoiceTurnResponse

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]
AudioUpload = Annotated[
    UploadFile, File(description="WAV, WebM, Ogg, MP3 or M4A audio of one utterance")
]


@router.get("/voices", response_model=list[Voice], summary="The voices Eva can speak with")
async def voices(service: Service) -> list[Voice]:
    default = service.engines.tts.default_voice
    return [
        Voice(
            id=v.id,
            language=v.language,
            sample_rate=v.sample_rate,
            backend=v.backend,
            description=v.description,
            default=v.id == default,
        )
        for v in service.engines.tts.voices()
    ]


@router.post(
    "/tts",
    summary="Speak a text",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}, "description": "A mono 16-bit WAV file"}},
)
async def tts(body: TTSRequest, service: Service) -> Response:
    text = checked_text(body.text, service.settings.max_message_chars, field="text")
    pcm, rate, first_chunk_ms = await service.synthesize(text, body.voice)
    # Server-Timing is the standard header for a server's own measurements.
    return Response(
        wav_bytes(pcm, rate),
        media_type="audio/wav",
        headers={"Server-Timing": f"tts_first_chunk;dur={first_chunk_ms}"},
    )


async def _decode(service: Service, upload: UploadFile) -> np.ndarray:
    data = await read_upload(upload, service.settings.max_upload_bytes)
    return await asyncio.to_thread(
        decode_audio, data, STT_SAMPLE_RATE, service.settings.max_audio_seconds
    )


@router.post("/stt", response_model=STTResponse, summary="Transcribe an audio file")
async def stt(service: Service, file: AudioUpload) -> STTResponse:
    audio = await _decode(service, file)
    result = await service.transcribe(audio)
    return STTResponse(
        text=result.transcript.text,
        language=result.transcript.language,
        latency_ms=result.milliseconds,
    )


@router.post(
    "/voice",
    response_model=VoiceTurnResponse,
    summary="A whole spoken turn: audio in, transcript, reply text and spoken reply out",
)
async def voice_turn(
    service: Service,
    request: Request,
    file: AudioUpload,
    session_id: Annotated[str | None, Form()] = None,
    user_id: Annotated[str | None, Form()] = None,
    voice: Annotated[str | None, Form()] = None,
) -> VoiceTurnResponse:
    started = time.monotonic()
    user = resolve_user(request, user_id)
    # A session named is checked first (a stranger's is a 404 whatever the audio); a new
    # one is made only once the upload is speech, so noise leaves no empty session behind.
    named = await service.open_session(session_id, user) if session_id else None
    rate = service.engines.tts.info(voice).sample_rate  # an unknown voice is a 400 here
    audio = await _decode(service, file)
    heard = await service.transcribe(audio)
    user_text = heard.transcript.text.strip()
    if not any(character.isalnum() for character in user_text):
        raise ApiError(422, "no_speech", "no speech was recognised in the audio")
    owner = turn_owner(session_id, user)
    service.check_admission(owner, Channel.SPOKEN)  # 503 busy before a new session is made
    session = named or await service.open_session(None, user)
    chunks: list[np.ndarray] = []
    done: TurnDone | None = None
    async for event in service.reply(
        session.id, user_text, voice_id=voice, channel=Channel.SPOKEN, owner=owner
    ):
        if isinstance(event, AudioChunk):
            chunks.append(event.pcm)
        elif isinstance(event, TurnDone):
            done = event
    assert done is not None
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    timings = {"stt_ms": heard.milliseconds, **done.timings}
    timings["total_ms"] = round((time.monotonic() - started) * 1000.0, 2)
    return VoiceTurnResponse(
        session_id=session.id,
        user_text=user_text,
        response=done.text,
        audio=base64.b64encode(wav_bytes(pcm, rate)).decode(),
        timings=timings,
    )

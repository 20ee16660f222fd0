"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: OpenAI's speech to text.

A file is transcribed whole, with Whisper's full decode (segments, and words when asked),
not the short-window path Eva uses for turns. ``stream: true`` sends the transcript as
``transcript.text.delta`` events, one per segment, then ``transcript.text.done``: the
deltas come once the file is decoded (faster-whisper decodes a window before it yields),
so streaming saves a client nothing on a short file; it is there for clients that ask.
Translation (into English) needs a multilingual model (``EVA_STT_MODEL=base``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from eva.audio import decode_audio
from eva.conversation.prompt import estimate_tokens
from eva.conversation.service import Conversation
from eva.engines.base import STT_SAMPLE_RATE, DetailedTranscript, TranscriptionOptions
from eva.server.deps import conversation, read_upload
from eva.server.errors import ApiError
from eva.server.v1.models import Models
from eva.server.v1.sse import sse_data

router = APIRouter()
Service = Annotated[Conversation, Depends(conversation)]
Format = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]
# Whisper's decoder takes up to 224 prompt tokens; more is cut from the start.
MAX_PROMPT_CHARS = 1000


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def as_srt(transcript: DetailedTranscript) -> str:
    cues = [
        f"{n}\n{_clock(s.start_s, ',')} --> {_clock(s.end_s, ',')}\n{s.text}\n"
        for n, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(cues)


def as_vtt(transcript: DetailedTranscript) -> str:
    cues = [
        f"{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}\n{s.text}\n"
        for s in transcript.segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def as_verbose(
    transcript: DetailedTranscript, task: str, granularities: set[str], temperature: float
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": transcript.language,
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": n,
                "start": round(s.start_s, 3),
                "end": round(s.end_s, 3),
                "text": s.text,
                "temperature": temperature,
            }
            for n, s in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3)}
            for s in transcript.segments
            for w in s.words
        ]
    return body


def _usage(transcript: DetailedTranscript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(transcript.duration_s, 3)}


def _streamed(transcript: DetailedTranscript) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for n, segment in enumerate(transcript.segments):
            delta = segment.text if n == 0 else f" {segment.text}"
            yield sse_data({"type": "transcript.text.delta", "delta": delta})
        tokens = estimate_tokens(transcript.text) if transcript.text else 0
        usage = {"type": "tokens", "input_tokens": 0, "output_tokens": tokens}
        yield sse_data({"type": "transcript.text.done", "text": transcript.text, "usage": usage})

    return StreamingResponse(events(), media_type="text/event-stream")


async def _recognise(
    service: Conversation,
    upload: UploadFile,
    language: str | None,
    options: TranscriptionOptions,
) -> DetailedTranscript:
    if len(options.prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, "prompt_too_long", f"at most {MAX_PROMPT_CHARS} characters", "prompt")
    if not 0.0 <= options.temperature <= 1.0:
        raise ApiError(400, "invalid_temperature", "temperature is 0 to 1", "temperature")
    if options.translate and not service.engines.stt.translates:
        raise ApiError(
            400,
            "translation_unavailable",
            "the loaded recognizer is English-only; translations need a multilingual one "
            "(EVA_STT_MODEL=base)",
            "model",
        )
    data = await read_upload(upload, service.settings.max_upload_bytes)
    audio = await asyncio.to_thread(
        decode_audio, data, STT_SAMPLE_RATE, service.settings.max_audio_seconds
    )
    return await service.transcribe_recording(audio, language, options)


def _respond(
    transcript: DetailedTranscript,
    response_format: Format,
    stream: bool,
    task: str,
    granularities: set[str],
    temperature: float,
) -> Response:
    if stream:
        return _streamed(transcript)
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(as_srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(as_vtt(transcript), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse(as_verbose(transcript, task, granularities, temperature))
    return JSONResponse({"text": transcript.text, "usage": _usage(transcript)})


AudioFile = Annotated[UploadFile, File(description="The recording: any format FFmpeg reads")]


@router.post("/v1/audio/transcriptions", summary="OpenAI's speech to text")
async def transcriptions(
    service: Service,
    models: Models,
    file: AudioFile,
    model: Annotated[str, Form()],
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str, Form()] = "",
    temperature: Annotated[float, Form()] = 0.0,
    response_format: Annotated[Format, Form()] = "json",
    granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool, Form()] = False,
) -> Response:
    models.check("stt", model)
    wanted: set[str] = set(granularities or [])
    if wanted and response_format != "verbose_json":
        raise ApiError(
            400,
            "invalid_request",
            "timestamp_granularities need response_format verbose_json",
            "timestamp_granularities",
        )
    options = TranscriptionOptions(prompt, temperature, words="word" in wanted)
    transcript = await _recognise(service, file, language, options)
    return _respond(transcript, response_format, stream, "transcribe", wanted, temperature)


@router.post("/v1/audio/translations", summary="OpenAI's speech to English text")
async def translations(
    service: Service,
    models: Models,
    file: AudioFile,
    model: Annotated[str, Form()],
    prompt: Annotated[str, Form()] = "",
    temperature: Annotated[float, Form()] = 0.0,
    response_format: Annotated[Format, Form()] = "json",
) -> Response:
    models.check("stt", model)
    options = TranscriptionOptions(prompt, temperature, translate=True)
    transcript = await _recognise(service, file, None, options)
    return _respond(transcript, response_format, False, "translate", set(), temperature)

"""The WebSocket protocol's client side, parsed: frames in, typed events or a ProtocolError.

No I/O here, so every malformed input can be tested without a socket. The protocol is
documented in docs/protocol.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from eva.server.client_text import text_problem

PROTOCOL_VERSION = "eva.v1"
# One binary frame of microphone audio, unless the caller passes its own limit (the server
# passes EVA_MAX_AUDIO_FRAME_BYTES, which says why this default).
MAX_AUDIO_FRAME_BYTES = 64 * 1024


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextTurn(_Event):
    type: Literal["text"]
    text: str = Field(min_length=1)


class Interrupt(_Event):
    type: Literal["interrupt"]


class SessionUpdate(_Event):
    type: Literal["session.update"]
    voice: str | None = None
    mode: Literal["hands_free", "push_to_talk"] | None = None
    backchannels: bool | None = None  # Eva's own "mm-hm" while the person talks


class CommitAudio(_Event):
    type: Literal["input_audio.commit"]


class Ping(_Event):
    type: Literal["ping"]


ClientEvent = TextTurn | Interrupt | SessionUpdate | CommitAudio | Ping
_EVENT = TypeAdapter(Annotated[ClientEvent, Field(discriminator="type")])
KNOWN_EVENTS = ("text", "interrupt", "session.update", "input_audio.commit", "ping")


def parse_event(raw: str, max_text_chars: int) -> ClientEvent:
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: also an integer of over 4300 digits
        raise ProtocolError("invalid_json", "a text frame must be one JSON object") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "a text frame must be a JSON object")
    kind = data.get("type")
    if kind not in KNOWN_EVENTS:
        raise ProtocolError(
            "unknown_event", f"unknown event type {kind!r}; known: {', '.join(KNOWN_EVENTS)}"
        )
    text = data.get("text")
    if kind == "text" and isinstance(text, str):
        problem = text_problem(text)  # before validation, which would call it invalid_event
        if problem is not None:
            raise ProtocolError("invalid_text", f"the text {problem}")
    try:
        event = _EVENT.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise ProtocolError("invalid_event", f"{kind}: {where}: {first['msg']}") from None
    if isinstance(event, TextTurn):
        event.text = event.text.strip()
        if not event.text:
            raise ProtocolError("empty_text", "the text is empty")
        if len(event.text) > max_text_chars:
            raise ProtocolError(
                "text_too_long",
                f"the text has {len(event.text)} characters; at most {max_text_chars}",
            )
    return event


def parse_audio(frame: bytes, max_bytes: int = MAX_AUDIO_FRAME_BYTES) -> np.ndarray:
    """Microphone PCM16 little-endian mono 16 kHz, as int16 samples."""
    if len(frame) > max_bytes:
        raise ProtocolError(
            "frame_too_large", f"an audio frame has {len(frame)} bytes; at most {max_bytes}"
        )
    if len(frame) % 2:
        raise ProtocolError("invalid_audio", "audio frames are PCM16: an even number of bytes")
    return np.frombuffer(frame, dtype="<i2").astype(np.int16)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event: ``{"type": kind, ...}``."""
    return {"type": kind, **fields}

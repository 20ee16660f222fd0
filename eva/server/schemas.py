"""Request and response bodies of the HTTP API (they are the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictStr


class ChatRequest(BaseModel):
    message: StrictStr = Field(description="What the person says (typed)")
    session_id: StrictStr | None = Field(None, description="Continue this session; new if absent")
    user_id: StrictStr | None = Field(
        None, description="Who is talking (without API keys); sessions and memories carry it"
    )


class StreamRequest(ChatRequest):
    audio: bool = Field(
        False, description="Also stream the spoken reply as base64 PCM16 `audio` events"
    )
    voice: StrictStr | None = Field(None, description="Voice id from GET /voices")


class ChatResponse(BaseModel):
    session_id: str
    response: str
    latency_ms: float
    timings: dict[str, float]


class TTSRequest(BaseModel):
    text: StrictStr
    voice: StrictStr | None = None


class Voice(BaseModel):
    id: str
    language: str
    sample_rate: int
    backend: str
    description: str
    default: bool


class STTResponse(BaseModel):
    text: str
    language: str
    latency_ms: float


class VoiceTurnResponse(BaseModel):
    session_id: str
    user_text: str
    response: str
    audio: str = Field(description="The spoken reply, a base64 WAV file")
    timings: dict[str, float]


class Message(BaseModel):
    id: int
    role: str
    content: str
    created_at: float
    timings: dict[str, float] | None
    interrupted: bool


class MessagesResponse(BaseModel):
    session_id: str
    messages: list[Message]


class CapacityInfo(BaseModel):
    """What a load balancer routes on (docs/scaling.md)."""

    accepting: bool = Field(description="Takes new conversations: not full, not draining")
    draining: bool = Field(description="Stopping (SIGTERM): turns in flight finish")
    conversations: int
    max_conversations: int
    free_conversations: int
    turns_running: int
    turns_limit: int = Field(description="Turns let in at once now (adapts to the latency target)")
    turns_waiting: int
    llm_slots: int
    turn_hold_s: float = Field(description="Recent mean time a turn holds a slot of the model")


class HealthResponse(BaseModel):
    status: str
    ready: bool
    backends: dict[str, Any]
    loading: str | None = None
    auth_required: bool = Field(
        False, description="Every route but this one needs an API key (Authorization: Bearer)"
    )
    capacity: CapacityInfo | None = None


class MemoryItem(BaseModel):
    id: int
    key: str = Field(description="The slot, e.g. name, lives_in, likes:jazz; a newer fact "
                     "with the same key replaces this one")  # fmt: skip
    kind: str
    text: str
    created_at: float
    updated_at: float
    source_message_id: int | None


class MemoriesResponse(BaseModel):
    user_id: str
    memories: list[MemoryItem]


class MemoryEdit(BaseModel):
    text: StrictStr = Field(description="The memory as it should read")
    user_id: StrictStr | None = Field(None, description="Whose memory (without API keys)")


class ForgetMemoriesResponse(BaseModel):
    deleted: int


class ForgetAllResponse(BaseModel):
    sessions: int
    messages: int
    memories: int
    summaries: int

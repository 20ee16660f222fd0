"""The four engine interfaces. Conversation code depends on these and nothing else.

Every method here is blocking and is meant to run in a worker thread (see
``eva.engines.runtime``); long-running ones take a ``threading.Event`` that the caller sets
to cancel, and return promptly once it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Float32Audio = npt.NDArray[np.float32]
Int16Audio = npt.NDArray[np.int16]

STT_SAMPLE_RATE = 16_000  # every STT and VAD input in Eva is 16 kHz mono


class EngineError(RuntimeError):
    """A backend failed in a way the caller should report (HTTP 503, WS error event)."""


class MissingDependencyError(EngineError):
    """An optional backend's package is not installed; the message names what to install."""


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    language: str  # BCP-47-ish, e.g. "en-US", "fr-FR"
    sample_rate: int
    backend: str
    description: str = ""


@runtime_checkable
class STTEngine(Protocol):
    name: str

    def transcribe(self, audio: Float32Audio, language: str | None = None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio in [-1, 1]. ``language=None`` detects it."""
        ...


@runtime_checkable
class LLMEngine(Protocol):
    name: str

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
    ) -> Iterator[str]:
        """Yield the reply as text deltas; stop early once ``cancel`` is set.

        Raises EngineError (or a subclass) when the backend fails.
        """
        ...


@runtime_checkable
class TTSEngine(Protocol):
    name: str

    def voices(self) -> list[VoiceInfo]: ...

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        """Yield PCM16 mono chunks at the voice's sample rate as soon as each exists.

        ``rate`` scales the speaking speed (1.1 is ten per cent faster); every backend
        honours it (see eva/conversation/prosody.py for who sets it).
        """
        ...


class VADStream(Protocol):
    """Voice activity of one audio stream: it keeps recurrent state between frames."""

    frame_samples: int  # the exact number of 16 kHz samples ``speech_probability`` takes

    def speech_probability(self, frame: Int16Audio) -> float: ...


@runtime_checkable
class VADEngine(Protocol):
    name: str

    def new_stream(self) -> VADStream:
        """A detector for one independent stream (one per WebSocket session)."""
        ...

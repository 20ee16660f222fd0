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
class Sampling:
    """How a reply's tokens are drawn, where a caller asks (the OpenAI API's parameters).
    None and () leave each engine's own companion defaults."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


COMPANION_SAMPLING = Sampling()


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


@dataclass(frozen=True)
class TimedWord:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class TranscriptSegment:
    text: str
    start_s: float
    end_s: float
    words: tuple[TimedWord, ...] = ()


@dataclass(frozen=True)
class DetailedTranscript:
    """A whole recording's transcript with its timing (files, subtitles), not a turn's."""

    text: str
    language: str
    duration_s: float
    segments: tuple[TranscriptSegment, ...]


@dataclass(frozen=True)
class TranscriptionOptions:
    prompt: str = ""  # words that may come up (names, spellings): biases the decoder
    temperature: float = 0.0
    words: bool = False  # each word's timing too (slower)
    translate: bool = False  # write English whatever the language spoken


@runtime_checkable
class STTEngine(Protocol):
    name: str
    # Declared capability: ``translate`` works (a multilingual model); an English-only one
    # can only write what it hears.
    translates: bool

    def transcribe(self, audio: Float32Audio, language: str | None = None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio in [-1, 1]. ``language=None`` detects it."""
        ...

    def timed_words(self, audio: Float32Audio, language: str | None = None) -> list[TimedWord]:
        """The words of ``audio`` with their start and end, in seconds (slower than
        ``transcribe``: for subtitles and for cutting speech at a word, not for turns)."""
        ...

    def transcribe_detailed(
        self,
        audio: Float32Audio,
        language: str | None = None,
        options: TranscriptionOptions = TranscriptionOptions(),
    ) -> DetailedTranscript:
        """A recording's segments (and words, if asked) with their times: the full decode,
        for files and subtitles."""
        ...


@runtime_checkable
class LLMEngine(Protocol):
    name: str
    # Declared capabilities:
    # - the engine keeps the prompt it last evaluated for a session and reuses its longest
    #   common prefix, so evaluating a prompt's start ahead of time pays (``prime``);
    reuses_prompt_prefix: bool
    # - how many streams it serves at once (batched); more wait in the caller's queue.
    concurrent_streams: int

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        cancel: threading.Event,
        session: str = "",
        sampling: Sampling = COMPANION_SAMPLING,
    ) -> Iterator[str]:
        """Yield the reply as text deltas; stop early once ``cancel`` is set.

        ``session`` names the conversation, so that an engine with several prompt caches
        keeps each conversation's in its own ("" for one-off requests).
        Raises EngineError (or a subclass) when the backend fails.
        """
        ...

    # ``prefix``: the messages every turn's prompt starts with (the persona's system prompt
    # and its example exchanges). An engine with a prompt cache evaluates them ahead, so
    # that a conversation's first turn evaluates only what follows.
    def warm_up(self, prefix: Sequence[ChatMessage] = ()) -> None: ...

    # Speech is being synthesized: an engine in another process stops computing until
    # ``resume_after_speech`` (one in Eva's process is paused between tokens instead).
    def pause_for_speech(self) -> None: ...

    def resume_after_speech(self) -> None: ...

    def close(self) -> None: ...


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


@runtime_checkable
class EndOfTurnEngine(Protocol):
    """Whether the person has finished their turn, judged from how they spoke (the words,
    their melody, the way the last one trails off), not from how long they are silent."""

    name: str

    def probability_complete(self, audio: Float32Audio) -> float:
        """The probability that the turn in ``audio`` (16 kHz mono float32, the utterance
        through its last voiced frame and a little silence) is complete."""
        ...

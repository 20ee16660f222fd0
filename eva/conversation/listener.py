"""Hearing the person: voice activity, the end of what they said, and the end of their turn.

``TurnDetector`` is a plain state machine with no I/O: feed it 16 kHz PCM16 as it arrives,
it runs the VAD on 32 ms frames and returns events. It knows three moments:

- ``SpeechStarted``: enough voiced frames in a row (a click or a breath is not speech);
- ``SpeechPaused``: a short silence after speech. The reply can be prepared from here on,
  speculatively, while the detector waits to see whether the person goes on;
- ``TurnEnded``: the silence lasted long enough to be the end of the turn. How long is the
  caller's decision (``set_turn_wait_ms``), made from how and what the person said
  (eva/conversation/end_of_turn.py).

A person who resumes after ``SpeechPaused`` gets a new ``SpeechStarted`` and the utterance
goes on; the caller throws its speculative work away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eva.engines.base import STT_SAMPLE_RATE, Float32Audio, VADStream


@dataclass(frozen=True)
class ListenerConfig:
    # Silero's probability of speech: above ``threshold`` a frame is voiced, below
    # ``threshold - 0.15`` it is silent (the hysteresis Silero recommends against flicker).
    threshold: float = 0.5
    # Voiced time before speech counts as started: long enough to ignore a click or a cough,
    # short enough that a barge-in stops Eva almost at once.
    min_speech_ms: int = 96
    # Silence after which the person has paused: the reply starts being prepared. Work
    # started here is thrown away if they go on, so it can be early.
    pause_ms: int = 128
    # Silence after which the turn ends until the session says otherwise
    # (``set_turn_wait_ms``, from eva/conversation/end_of_turn.py).
    end_of_turn_ms: int = 800
    # Audio kept from before speech started, so the first syllable is not clipped.
    preroll_ms: int = 320
    # The longest single utterance: Whisper's comfortable window, and a memory bound.
    max_utterance_s: float = 30.0


@dataclass(frozen=True)
class SpeechStarted:
    resumed: bool  # the person went on after a pause: drop any speculative reply


@dataclass(frozen=True)
class SpeechPaused:
    audio: Float32Audio  # the utterance so far, through the end of speech
    speech_end_sample: int  # stream position where the voice stopped


@dataclass(frozen=True)
class TurnEnded:
    audio: Float32Audio
    speech_end_sample: int
    forced: bool = False  # the utterance hit max_utterance_s


ListenerEvent = SpeechStarted | SpeechPaused | TurnEnded


@dataclass
class TurnDetector:
    vad: VADStream
    config: ListenerConfig = field(default_factory=ListenerConfig)
    # Push-to-talk: the person says when their turn ends (``end_turn_now``), not silence.
    ends_turns_on_silence: bool = True

    def __post_init__(self) -> None:
        self._frame = self.vad.frame_samples
        self._pending = np.zeros(0, dtype=np.int16)
        self._position = 0  # samples consumed by the VAD since the stream began
        self._utterance: list[np.ndarray] = []  # PCM16 frames of the current utterance
        self._preroll: list[np.ndarray] = []
        self._voiced_run = 0
        self._silent_run = 0
        self._in_speech = False
        self._paused = False
        self._speech_end = 0
        self._end_of_turn_ms = self.config.end_of_turn_ms
        self.last_probability = 0.0

    # --- what the caller tells us

    @property
    def speaking(self) -> bool:
        """The person is in an utterance (speaking, or paused within the turn)."""
        return self._in_speech or self._paused

    @property
    def silence_ms(self) -> int:
        """Silence since the person paused (0 while they speak)."""
        return self._silent_run * self._frame * 1000 // STT_SAMPLE_RATE if self._paused else 0

    def set_turn_wait_ms(self, wait_ms: int) -> TurnEnded | None:
        """Set the silence that ends this utterance's turn. When the pause has already
        lasted that long, the turn ends now (returned)."""
        self._end_of_turn_ms = wait_ms
        if self._paused and self.ends_turns_on_silence and self.silence_ms >= wait_ms:
            event = TurnEnded(self._audio(), self._speech_end)
            self._reset_utterance()
            return event
        return None

    def end_turn_now(self) -> TurnEnded | None:
        """Push-to-talk release: the turn ends now, whatever the silence."""
        if not self._utterance:
            return None
        event = TurnEnded(self._audio(), self._speech_end or self._position)
        self._reset_utterance()
        return event

    def carry_over(self, audio: Float32Audio) -> None:
        """The utterance that just began continues the turn that ended with ``audio``: the
        two are heard, transcribed and judged as one."""
        if self.speaking and audio.size:
            self._utterance.insert(0, np.round(audio * 32768.0).astype(np.int16))

    def clear(self) -> None:
        """Forget the utterance so far (the client cleared its input)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._reset_utterance()

    def utterance_audio(self) -> Float32Audio:
        return self._audio()

    # --- audio in, events out

    def feed(self, pcm: np.ndarray) -> list[ListenerEvent]:
        self._pending = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        events: list[ListenerEvent] = []
        usable = len(self._pending) - len(self._pending) % self._frame
        for start in range(0, usable, self._frame):
            frame = self._pending[start : start + self._frame]
            events.extend(self._on_frame(frame))
        self._pending = self._pending[usable:]
        return events

    def _on_frame(self, frame: np.ndarray) -> list[ListenerEvent]:
        cfg, frame_ms = self.config, self._frame * 1000 // STT_SAMPLE_RATE
        probability = self.vad.speech_probability(frame)
        self.last_probability = probability
        self._position += self._frame
        voiced = probability >= cfg.threshold
        silent = probability < cfg.threshold - 0.15
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        self._silent_run = self._silent_run + 1 if silent else 0
        if self.speaking:
            self._utterance.append(frame)
        else:
            self._preroll = [*self._preroll, frame][-max(1, cfg.preroll_ms // frame_ms) :]

        events: list[ListenerEvent] = []
        if not self._in_speech and self._voiced_run * frame_ms >= cfg.min_speech_ms:
            resumed = self._paused
            if not resumed:  # a new utterance, with the audio just before it
                self._utterance = [*self._preroll]
                self._preroll = []
            self._in_speech, self._paused = True, False
            self._end_of_turn_ms = cfg.end_of_turn_ms
            events.append(SpeechStarted(resumed=resumed))
        elif self._in_speech and self._silent_run * frame_ms >= cfg.pause_ms:
            self._in_speech, self._paused = False, True
            self._speech_end = self._position - self._silent_run * self._frame
            events.append(SpeechPaused(self._audio(), self._speech_end))
        elif (
            self._paused
            and self.ends_turns_on_silence
            and self._silent_run * frame_ms >= self._end_of_turn_ms
        ):
            events.append(TurnEnded(self._audio(), self._speech_end))
            self._reset_utterance()
        if self.speaking and len(self._utterance) * self._frame >= (
            cfg.max_utterance_s * STT_SAMPLE_RATE
        ):
            events.append(TurnEnded(self._audio(), self._position, forced=True))
            self._reset_utterance()
        return events

    def _audio(self) -> Float32Audio:
        if not self._utterance:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(self._utterance).astype(np.float32) / 32768.0).astype(np.float32)

    def _reset_utterance(self) -> None:
        self._utterance = []
        self._in_speech = self._paused = False
        self._voiced_run = self._silent_run = 0
        self._end_of_turn_ms = self.config.end_of_turn_ms

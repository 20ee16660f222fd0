"""How Eva says a reply, clause by clause: the speed that fits its mood, and short pauses.

Intonation itself comes from the punctuation: Piper and espeak-ng phonemize through
espeak-ng, which gives a clause ending in "?" a rising contour and one ending in "." a
falling one (tests/conversation/test_prosody.py measures it). What the synthesizers do not
do is change pace with the mood, or leave a breath between the clauses Eva streams one by
one; ``StyledVoice`` adds both, per voice, as set in ``EVA_VOICE_STYLES``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eva.conversation.manners import Mood, clause_mood
from eva.engines.base import Int16Audio, TTSEngine, VoiceInfo

# The key of ``voice_styles`` that applies to every voice without its own entry.
DEFAULT_STYLE_KEY = "default"
# Piper ends every synthesis with 0.11-0.17 s of silence. A clause cut mid-phrase (no
# punctuation, to get speech out sooner: eva/conversation/turn.py) is followed at once by
# the rest of its phrase, so that tail is cut to this: one sentence said in three pieces
# played 0.5 s (14 %) longer than the sentence whole, with a hitch at each cut.
CUT_TAIL_KEEP_MS = 30
# PCM16 magnitude under which a sample counts as silence at the end of a clause.
_SILENCE_LEVEL = 300


class VoiceStyle(BaseModel):
    """The expressiveness of one voice. Rates multiply the speed (1.1 = 10 % faster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(1.0, gt=0.3, le=3.0)
    # An exclamation is said a little faster, sad or gentle words a little slower: small
    # steps, since a larger change sounds like a different speaker.
    excited_rate: float = Field(1.08, gt=0.3, le=3.0)
    gentle_rate: float = Field(0.9, gt=0.3, le=3.0)
    question_rate: float = Field(1.0, gt=0.3, le=3.0)
    # Silence before the next clause. A comma is a breath; a full stop a little longer,
    # as people pause between sentences. The synthesizers end each clause with a short
    # silence of their own, so these are what comes on top.
    comma_pause_ms: int = Field(60, ge=0, le=2000)
    sentence_pause_ms: int = Field(200, ge=0, le=2000)


def style_for(styles: Mapping[str, VoiceStyle], voice_id: str) -> VoiceStyle:
    return styles.get(voice_id) or styles.get(DEFAULT_STYLE_KEY) or VoiceStyle()


def clause_rate(style: VoiceStyle, mood: Mood) -> float:
    factor = {
        "excited": style.excited_rate,
        "gentle": style.gentle_rate,
        "question": style.question_rate,
    }.get(mood, 1.0)
    return style.rate * factor


def pause_after_ms(style: VoiceStyle, clause: str) -> int:
    """The silence a listener expects after ``clause``, from how it ends."""
    end = clause.rstrip().rstrip("\"')»”’ ")[-1:]
    if end in (".", "!", "?", "…"):
        return style.sentence_pause_ms
    if end in (",", ";", ":", "—", "-"):
        return style.comma_pause_ms
    return 0  # cut mid-phrase to get audio out sooner: no pause belongs there


class StyledVoice:
    """A ``TTSEngine`` for one reply: each clause at the rate of its mood, and the pause
    that follows a clause put in front of the next one (never before the first, so the
    first audio of a reply is not later). Clauses must be given in order, one at a time,
    as the turn pipeline does."""

    name = "styled"

    def __init__(self, tts: TTSEngine, voice: VoiceInfo, style: VoiceStyle) -> None:
        self.tts = tts
        self.voice = voice
        self.style = style
        self._pause_ms = 0  # owed before the next clause
        self.rates: list[float] = []  # the rate of every clause said, in order

    def voices(self) -> list[VoiceInfo]:
        return self.tts.voices()

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        clause_speed = rate * clause_rate(self.style, clause_mood(text))
        self.rates.append(clause_speed)
        silence = np.zeros(self.voice.sample_rate * self._pause_ms // 1000, dtype=np.int16)
        self._pause_ms = pause_after_ms(self.style, text)
        chunks = self.tts.synthesize(text, voice_id, cancel, clause_speed)
        if self._pause_ms == 0:  # cut mid-phrase
            keep = self.voice.sample_rate * CUT_TAIL_KEEP_MS // 1000
            chunks = _without_trailing_silence(chunks, keep)
        for pcm in chunks:
            # The pause rides on the clause's first chunk: it is sent when the clause is
            # ready, and counts as part of it when a barge-in cuts the reply.
            yield np.concatenate([silence, pcm]) if silence.size else pcm
            silence = silence[:0]


def _without_trailing_silence(chunks: Iterator[Int16Audio], keep: int) -> Iterator[Int16Audio]:
    """``chunks``, the last one's closing silence cut to ``keep`` samples (a chunk is
    held back until the next one comes, to know which is last)."""
    held: Int16Audio | None = None
    for pcm in chunks:
        if held is not None:
            yield held
        held = pcm
    if held is not None:
        loud = np.flatnonzero(np.abs(held.astype(np.int32)) > _SILENCE_LEVEL)
        yield held[: loud[-1] + 1 + keep] if loud.size else held

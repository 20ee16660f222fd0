"""The same-run baseline: Eva's own models in a plain sequential pipeline.

Whole transcript (the STT engine on the whole utterance), then the whole reply from the LLM
(no audio until it is complete), then the whole synthesis: no streaming, no overlap, no
speculation. It runs in the bench process through the engine interfaces (``Engines.load``
with the server's settings), on the same messages and utterances the server got, while the
server is idle, so each streamed figure has a ratio next to it.

The reply is bounded like a streamed one (``max_reply_tokens``, ``max_reply_sentences``), so
both pipelines say about as much; the baseline's "first audio" is its last: nothing plays
until the synthesis is done.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from eva.bench.voice import Utterance, word_error_rate
from eva.config import Settings
from eva.conversation.chunker import ClauseChunker
from eva.conversation.persona import load_persona
from eva.conversation.prompt import build_messages
from eva.conversation.text_shaping import speakable
from eva.engines.runtime import Engines


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


class SequentialPipeline:
    def __init__(self, settings: Settings, engines: Engines) -> None:
        self.settings = settings
        self.engines = engines
        self.prompt = load_persona(settings).prompt
        self.voice = engines.tts.info(None)

    @classmethod
    def load(cls, settings: Settings) -> SequentialPipeline:
        prefix = load_persona(settings).prefix
        return cls(settings, Engines.load(settings, lambda _: None, prefix))

    def close(self) -> None:
        self.engines.close()

    def _whole_reply(self, user_text: str) -> str:
        """The LLM's whole reply, bounded to the same sentences a streamed turn keeps."""
        messages = build_messages(self.prompt, [], user_text)
        chunker = ClauseChunker()
        kept: list[str] = []
        sentences = 0
        tokens = self.engines.llm.stream(
            messages, max_tokens=self.settings.max_reply_tokens, cancel=threading.Event()
        )
        for delta in tokens:
            for clause in chunker.push(delta):
                kept.append(clause.text)
                sentences += clause.ends_sentence
            if sentences >= self.settings.max_reply_sentences:
                break
        else:
            kept.extend(clause.text for clause in chunker.flush())
        return " ".join(kept)

    def _whole_synthesis(self, text: str) -> float:
        """Seconds of speech made."""
        words = speakable(text, self.settings.language)
        chunks = list(self.engines.tts.synthesize(words, self.voice.id, threading.Event()))
        return sum(len(c) for c in chunks) / self.voice.sample_rate

    def text_turn(self, message: str) -> dict[str, float]:
        started = time.monotonic()
        reply = self._whole_reply(message)
        llm_ms = _ms_since(started)
        synthesis_started = time.monotonic()
        seconds = self._whole_synthesis(reply)
        return {
            "baseline_llm_ms": llm_ms,
            "baseline_tts_ms": _ms_since(synthesis_started),
            "baseline_text_to_audio_ms": _ms_since(started),
            "baseline_reply_audio_s": seconds,
        }

    def short_clause(self, clause: str) -> dict[str, float]:
        started = time.monotonic()
        self._whole_synthesis(clause)
        return {"baseline_tts_short_clause_ms": _ms_since(started)}

    def voice_turn(self, utterance: Utterance) -> dict[str, float]:
        """From the end of speech: the whole transcript, the whole reply, its whole audio."""
        audio = utterance.pcm.astype(np.float32) / 32768.0
        started = time.monotonic()
        heard = self.engines.stt.transcribe(audio, self.settings.language).text.strip()
        stt_ms = _ms_since(started)
        reply = self._whole_reply(heard or "Hello.")
        self._whole_synthesis(reply)
        return {
            "baseline_stt_ms": stt_ms,
            "baseline_voice_to_voice_ms": _ms_since(started),
            "baseline_wer": word_error_rate(utterance.text, heard),
        }


def run_baseline(
    pipeline: SequentialPipeline,
    messages: list[str],
    clauses: list[str],
    utterances: list[Utterance],
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}

    def add(measured: dict[str, Any]) -> None:
        for name, value in measured.items():
            results.setdefault(name, []).append(float(value))

    for message in messages:
        add(pipeline.text_turn(message))
    for clause in clauses:
        add(pipeline.short_clause(clause))
    for utterance in utterances:
        add(pipeline.voice_turn(utterance))
    return results

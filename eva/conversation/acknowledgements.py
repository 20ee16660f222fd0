"""Short lines Eva says outside a reply ("Mm.", "Hmm.", "Still there?"),
synthesized once per voice and kept in memory.

They exist to fill a silence, so they must be ready at once: ``get`` never synthesizes.
``prepare`` does the work ahead of time (when a session starts or changes voice), in the
TTS worker thread; a line not ready yet is simply not said.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from eva.conversation.text_shaping import speakable
from eva.engines.base import Int16Audio
from eva.engines.runtime import Engines

# Each line is a few words (under a second of audio, about 40 KB): a few per voice.
_MAX_LINES = 256
# PCM16 amplitude under which synthesized audio is silence, and how much of it is kept
# around a line so that it does not start or end abruptly.
_SILENCE_LEVEL = 300
_MARGIN_MS = 40


class SpokenLines:
    def __init__(self, engines: Engines, language: str) -> None:
        self.engines = engines
        self.language = language
        self._audio: dict[tuple[str, str], Int16Audio] = {}
        self._lock = asyncio.Lock()

    def get(self, voice_id: str, text: str) -> Int16Audio | None:
        return self._audio.get((voice_id, text))

    async def prepare(self, voice_id: str, texts: list[str]) -> None:
        """Synthesize the lines of ``voice_id`` not yet in memory; one voice at a time."""
        async with self._lock:
            for text in texts:
                if (voice_id, text) in self._audio or len(self._audio) >= _MAX_LINES:
                    continue
                words = speakable(text, self.language)
                pcm = await asyncio.get_running_loop().run_in_executor(
                    self.engines.pools.tts, self._synthesize, words, voice_id
                )
                self._audio[(voice_id, text)] = pcm

    def _synthesize(self, words: str, voice_id: str) -> Int16Audio:
        chunks = list(self.engines.tts.synthesize(words, voice_id, threading.Event()))
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        # Without the synthesizer's silence around it: the line is there to fill a silence,
        # and the reply waits behind it.
        voiced = np.flatnonzero(np.abs(pcm) > _SILENCE_LEVEL)
        if voiced.size == 0:
            return pcm
        margin = self.engines.tts.info(voice_id).sample_rate * _MARGIN_MS // 1000
        return pcm[max(0, voiced[0] - margin) : voiced[-1] + margin]

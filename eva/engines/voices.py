"""All the voices of all loaded TTS backends, behind the one ``TTSEngine`` interface."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from eva.engines.base import Int16Audio, TTSEngine, VoiceInfo


class UnknownVoiceError(LookupError):
    def __init__(self, voice_id: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown voice {voice_id!r}; available: {', '.join(known)}")
        self.voice_id = voice_id


def primary_language(code: str) -> str:
    """ "fr-FR", "fr_FR" and "fr" all give "fr"."""
    return code.replace("_", "-").split("-")[0].lower()


class VoiceCatalog:
    name = "voices"

    def __init__(self, engines: Sequence[TTSEngine], default_voice: str, language: str) -> None:
        self.engines = list(engines)
        self._owner: dict[str, TTSEngine] = {}
        self._info: dict[str, VoiceInfo] = {}
        for engine in self.engines:
            for voice in engine.voices():
                self._owner.setdefault(voice.id, engine)
                self._info.setdefault(voice.id, voice)
        self.default_voice = default_voice or self._first_speaking(language)
        self.info(self.default_voice)  # fail at start-up, not on the first turn

    def _first_speaking(self, language: str) -> str:
        wanted = primary_language(language)
        for voice in self._info.values():  # backends in configured order: Piper first
            if primary_language(voice.language) == wanted:
                return voice.id
        if self._info:
            return next(iter(self._info))
        raise UnknownVoiceError("(default)", [])

    def voices(self) -> list[VoiceInfo]:
        return list(self._info.values())

    def info(self, voice_id: str | None) -> VoiceInfo:
        voice = self._info.get(voice_id or self.default_voice)
        if voice is None:
            raise UnknownVoiceError(str(voice_id), list(self._info))
        return voice

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        voice = self.info(voice_id)
        return self._owner[voice.id].synthesize(text, voice.id, cancel, rate)

"""Robotic but dependable speech synthesis with the espeak-ng command (Debian's espeak-ng).

It speaks about a hundred languages, French included, and is the fallback voice when no
Piper voice speaks the configured language. Voice ids are ``espeak-<language>``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import wave
from collections.abc import Iterator

import numpy as np

from eva.config import Settings
from eva.engines.base import EngineError, Int16Audio, MissingDependencyError, VoiceInfo

ESPEAK_SAMPLE_RATE = 22_050  # espeak-ng's fixed output rate
# Words per minute: espeak's default of 175 sounds hurried next to Piper.
_WORDS_PER_MINUTE = 160
# A clause takes espeak-ng tens of milliseconds; this only bounds a wedged process.
_TIMEOUT_S = 10.0
# The languages offered in the voice list. espeak-ng knows more; any of its voice names
# works as ``espeak-<name>`` when asked for explicitly.
OFFERED_LANGUAGES = ("en-us", "en-gb", "fr-fr", "de", "es", "it", "pt-br", "nl")


class EspeakTTS:
    name = "espeak"

    def __init__(self, executable: str, languages: tuple[str, ...]) -> None:
        self.executable = executable
        self._languages = languages

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(
                id=f"espeak-{lang}",
                language=lang if "-" in lang else f"{lang}",
                sample_rate=ESPEAK_SAMPLE_RATE,
                backend=self.name,
                description=f"espeak-ng {lang} (robotic)",
            )
            for lang in self._languages
        ]

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        language = voice_id.removeprefix("espeak-")
        if not language or language == voice_id:
            raise EngineError(f"unknown espeak voice {voice_id!r}")
        if cancel.is_set() or not text.strip():
            return
        speed = round(_WORDS_PER_MINUTE * rate)  # espeak-ng's rate is in words per minute
        try:
            result = subprocess.run(
                [self.executable, "--stdout", "-v", language, "-s", str(speed)],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise EngineError(f"espeak-ng failed for voice {language!r}: {exc}") from exc
        with wave.open(io.BytesIO(result.stdout), "rb") as wav:
            frames = wav.readframes(wav.getnframes())
        if not cancel.is_set():
            yield np.frombuffer(frames, dtype="<i2").astype(np.int16)

    def warm_up(self) -> None:
        for _ in self.synthesize("ready", "espeak-en-us", threading.Event()):
            pass


def create(settings: Settings) -> EspeakTTS:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise MissingDependencyError(
            "the espeak TTS backend needs the espeak-ng program: apt-get install espeak-ng"
        )
    languages: tuple[str, ...] = OFFERED_LANGUAGES
    wanted = settings.language.lower().replace("_", "-")
    if wanted not in languages and wanted.split("-")[0] not in languages:
        languages = (*languages, wanted)
    return EspeakTTS(executable, languages)

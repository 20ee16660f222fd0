"""End of turn with Smart Turn v3.2 (pipecat-ai's model, BSD-2) on onnxruntime.

The model reads Whisper's log-mel features of the last 8 s of the utterance and answers
the probability that the person has finished: about 50 ms on one thread here. The features
come from faster-whisper's own extractor (the same numbers as transformers' Whisper
extractor that the model was trained with, to 2e-7), after the waveform normalisation the
training used. The model file is fetched at install time (eva/engines/smart_turn_file.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
from faster_whisper.feature_extractor import FeatureExtractor

from eva.config import Settings
from eva.engines.base import STT_SAMPLE_RATE, Float32Audio
from eva.engines.smart_turn_file import verified_path

WINDOW_S = 8  # the model's input: 8 s, the utterance's end, silence in front when shorter
_WINDOW_SAMPLES = WINDOW_S * STT_SAMPLE_RATE
_FRAMES = 800  # 10 ms hops over 8 s
_NORMALISE_EPS = 1e-7  # transformers' zero-mean unit-variance epsilon


class SmartTurn:
    name = "smart_turn"

    def __init__(self, model: Path) -> None:
        options = onnxruntime.SessionOptions()
        # One judgement per pause: one thread is ~50 ms and leaves the cores to the reply.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)

    def probability_complete(self, audio: Float32Audio) -> float:
        window = np.zeros(_WINDOW_SAMPLES, dtype=np.float32)
        tail = np.asarray(audio, dtype=np.float32)[-_WINDOW_SAMPLES:]
        window[len(window) - len(tail) :] = tail
        window = (window - window.mean()) / np.sqrt(window.var() + _NORMALISE_EPS)
        features = self._features(window, padding=0)[:, :_FRAMES]
        (probability,) = self._session.run(None, {"input_features": features[None]})
        return float(np.asarray(probability).reshape(-1)[0])

    def warm_up(self) -> None:
        self.probability_complete(np.zeros(STT_SAMPLE_RATE, dtype=np.float32))


def create(settings: Settings) -> SmartTurn:
    return SmartTurn(verified_path())

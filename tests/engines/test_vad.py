"""Voice activity detection: speech is told from silence and noise, frame by frame."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from eva.audio import resample_linear
from eva.config import Settings
from eva.engines import registry
from eva.engines.base import EngineError
from eva.engines.runtime import Engines


def _probabilities(engines: Engines, audio: np.ndarray) -> np.ndarray:
    stream = engines.vad.new_stream()
    size = stream.frame_samples
    return np.array(
        [
            stream.speech_probability(audio[i : i + size])
            for i in range(0, len(audio) - size + 1, size)
        ]
    )


def test_speech_is_told_from_silence_and_noise(engines: Engines) -> None:
    info = engines.tts.info(None)
    pcm = np.concatenate(
        list(
            engines.tts.synthesize("I would like to talk about my day.", info.id, threading.Event())
        )
    )
    speech = (resample_linear(pcm.astype(np.float32), info.sample_rate, 16000)).astype(np.int16)
    noise = (np.random.default_rng(1).standard_normal(16000) * 300).astype(np.int16)
    audio = np.concatenate([np.zeros(16000, np.int16), speech, noise])
    probs = _probabilities(engines, audio)
    first, last = 16000 // 512, (16000 + len(speech)) // 512
    assert probs[: first - 1].max() < 0.2
    assert probs[first:last].mean() > 0.5
    assert probs[last + 4 :].max() < 0.5


def test_streams_keep_separate_state(engines: Engines) -> None:
    a, b = engines.vad.new_stream(), engines.vad.new_stream()
    silence = np.zeros(512, np.int16)
    assert a.speech_probability(silence) == pytest.approx(b.speech_probability(silence))


def test_a_frame_of_the_wrong_size_is_refused(engines: Engines) -> None:
    with pytest.raises(EngineError, match="512"):
        engines.vad.new_stream().speech_probability(np.zeros(100, np.int16))


def test_a_frame_costs_well_under_its_duration(engines: Engines) -> None:
    stream = engines.vad.new_stream()
    frame = (np.random.default_rng(2).standard_normal(512) * 1000).astype(np.int16)
    started = time.perf_counter()
    for _ in range(50):
        stream.speech_probability(frame)
    assert (time.perf_counter() - started) / 50 < 0.016  # half of a 32 ms frame, generously


def test_pysilero_refuses_to_share_a_process_with_llamacpp() -> None:
    with pytest.raises(EngineError, match="EVA_VAD_BACKEND=silero"):
        registry.create("vad", "pysilero", Settings(llm_backends=["llamacpp"]))

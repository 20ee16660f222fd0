"""Speech synthesis backends and the voice catalog."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from eva.config import Settings
from eva.engines import registry, tts_espeak, tts_piper
from eva.engines.base import EngineError
from eva.engines.runtime import Engines
from eva.engines.voices import UnknownVoiceError, VoiceCatalog


def _audio(engines: Engines, text: str, voice: str) -> np.ndarray:
    return np.concatenate(list(engines.tts.synthesize(text, voice, threading.Event())))


def test_piper_speaks_at_its_voice_rate_with_plausible_length(engines: Engines) -> None:
    pcm = _audio(engines, "Hello there, it is nice to meet you.", "en_US-joe-medium")
    seconds = len(pcm) / 22050
    assert 1.0 < seconds < 4.0
    assert pcm.dtype == np.int16 and np.abs(pcm).max() > 3000


def test_espeak_speaks_french(engines: Engines) -> None:
    pcm = _audio(engines, "Bonjour, comment ça va ?", "espeak-fr-fr")
    assert len(pcm) / tts_espeak.ESPEAK_SAMPLE_RATE > 0.8


def test_synthesis_stops_when_cancelled_before_it_starts(engines: Engines) -> None:
    stop = threading.Event()
    stop.set()
    assert list(engines.tts.synthesize("Nothing should be said.", "espeak-en-us", stop)) == []
    assert list(engines.tts.synthesize("Nothing at all.", "en_US-joe-medium", stop)) == []


def test_unknown_voice_is_refused_with_the_known_ones(engines: Engines) -> None:
    with pytest.raises(UnknownVoiceError, match="en_US-joe-medium"):
        engines.tts.info("nobody")


def test_default_voice_follows_the_language(engines: Engines) -> None:
    catalog = VoiceCatalog(engines.tts.engines, "", "fr-FR")
    assert catalog.default_voice == "espeak-fr-fr"
    assert VoiceCatalog(engines.tts.engines, "", "en").default_voice == "en_US-joe-medium"


def test_an_extra_piper_voice_is_added_by_path(tmp_path: Path) -> None:
    packaged = tts_piper._packaged_voice()
    copy = tmp_path / "en_US-copy-medium.onnx"
    copy.symlink_to(packaged)
    (tmp_path / "en_US-copy-medium.onnx.json").write_bytes(
        packaged.with_name(packaged.name + ".json").read_bytes()
    )
    engine = tts_piper.create(Settings(piper_voices=[copy], tts_threads=1))
    assert {v.id for v in engine.voices()} == {"en_US-joe-medium", "en_US-copy-medium"}
    assert list(engine.synthesize("Hi.", "en_US-copy-medium", threading.Event()))


def test_a_piper_voice_without_its_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lonely.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match=r"onnx\.json"):
        tts_piper.create(Settings(piper_voices=[tmp_path / "lonely.onnx"]))


def test_piper_voices_list_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVA_PIPER_VOICES", "/a/one.onnx, /b/two.onnx")
    assert Settings().piper_voices == [Path("/a/one.onnx"), Path("/b/two.onnx")]


def test_espeak_missing_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_espeak.shutil, "which", lambda name: None)
    with pytest.raises(EngineError, match="apt-get install espeak-ng"):
        registry.create("tts", "espeak", Settings())

"""/v1/audio/transcriptions and /translations through the official OpenAI SDK, on a spoken
WAV (one of Eva's voices standing in for a person)."""

from __future__ import annotations

import re

import numpy as np
import openai
import pytest

from eva.audio import wav_bytes
from eva.engines.runtime import Engines
from tests.server.ws_client import silence, speech

SAID = "My grandmother grew tomatoes in her garden. She gave them to the neighbours."
_CUE_TIME = r"\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d"


@pytest.fixture(scope="module")
def spoken_wav(engines: Engines) -> bytes:
    pcm = np.concatenate([silence(0.3), speech(engines, SAID), silence(0.5)])
    return wav_bytes(pcm, 16000)


def _file(data: bytes) -> tuple[str, bytes, str]:
    return ("said.wav", data, "audio/wav")


def test_json_is_the_text(client: openai.OpenAI, spoken_wav: bytes) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=_file(spoken_wav))
    assert "tomatoes" in result.text.lower() and "neighbours" in result.text.lower().replace(
        "neighbors", "neighbours"
    )


def test_text_srt_and_vtt_formats(client: openai.OpenAI, spoken_wav: bytes) -> None:
    text = client.audio.transcriptions.create(
        model="whisper-1", file=_file(spoken_wav), response_format="text"
    )
    assert isinstance(text, str) and "garden" in text.lower()
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=_file(spoken_wav), response_format="srt"
    )
    assert srt.startswith("1\n") and re.search(_CUE_TIME.replace("[,.]", ","), srt)
    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=_file(spoken_wav), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n") and re.search(_CUE_TIME.replace("[,.]", r"\."), vtt)
    assert "garden" in srt.lower() and "garden" in vtt.lower()


def test_verbose_json_has_segments_and_words_in_time_order(
    client: openai.OpenAI, spoken_wav: bytes
) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=_file(spoken_wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "en" and 3.0 < result.duration < 10.0
    assert result.segments and result.words
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    assert any(w.word.lower().strip(".,") == "tomatoes" for w in result.words)
    assert result.words[-1].end <= result.duration + 0.01
    assert result.segments[-1].end <= result.duration + 0.01


def test_streaming_sends_deltas_then_the_whole_text(
    client: openai.OpenAI, spoken_wav: bytes
) -> None:
    events = list(
        client.audio.transcriptions.create(model="whisper-1", file=_file(spoken_wav), stream=True)
    )
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert events[-1].type == "transcript.text.done" and events[-1].text == deltas
    assert "garden" in deltas.lower()


def test_words_without_verbose_json_are_refused(client: openai.OpenAI, spoken_wav: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(
            model="whisper-1",
            file=_file(spoken_wav),
            response_format="json",
            timestamp_granularities=["word"],
        )
    assert raised.value.param == "timestamp_granularities"


def test_a_file_that_is_not_audio_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"these are not audio bytes", "audio/wav")
        )
    assert raised.value.code == "invalid_audio"


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_needs_a_multilingual_recognizer(
    client: openai.OpenAI, spoken_wav: bytes
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.translations.create(model="whisper-1", file=_file(spoken_wav))
    assert raised.value.code == "translation_unavailable"

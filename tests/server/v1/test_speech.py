"""/v1/audio/speech through the official OpenAI SDK: every format decoded by PyAV and heard
back by the recognizer, streaming, speed, voices."""

from __future__ import annotations

import base64
import io
import json
import time

import av
import numpy as np
import openai
import pytest

from eva.audio import decode_audio, wav_bytes
from eva.engines.runtime import Engines

SENTENCE = "The quick brown fox jumps over the lazy dog."
# What each format must come back as (container as FFmpeg names it, and its rate).
FORMATS = {
    "wav": ("wav", 22050),
    "mp3": ("mp3", 22050),
    "opus": ("ogg", 48000),  # Opus decodes at 48 kHz whatever it was made from
    "aac": ("aac", 22050),
    "flac": ("flac", 22050),
}


def _heard(engines: Engines, pcm16k: np.ndarray) -> str:
    return engines.stt.transcribe(pcm16k, "en").text.lower()


@pytest.mark.parametrize("response_format", sorted(FORMATS))
def test_speech_in_each_format_decodes_and_says_the_words(
    client: openai.OpenAI, engines: Engines, response_format: str
) -> None:
    audio = client.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input=SENTENCE,
        response_format=response_format,  # type: ignore[arg-type]
    ).read()
    container, rate = FORMATS[response_format]
    with av.open(io.BytesIO(audio)) as opened:
        assert opened.format.name.split(",")[0] == container
        assert opened.streams.audio[0].sample_rate == rate
    heard = _heard(engines, decode_audio(audio, 16000))
    assert "fox" in heard and "lazy dog" in heard, heard


def test_pcm_is_raw_24_khz_samples(client: openai.OpenAI, engines: Engines) -> None:
    raw = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input=SENTENCE, response_format="pcm"
    ).read()
    pcm = np.frombuffer(raw, dtype="<i2")
    assert 1.5 < pcm.size / 24000 < 6.0  # the sentence's length at 24 kHz
    heard = _heard(engines, decode_audio(wav_bytes(pcm, 24000), 16000))
    assert "fox" in heard and "lazy dog" in heard, heard


def test_speech_streams_as_it_is_synthesized(client: openai.OpenAI) -> None:
    text = " ".join(
        [
            "Hello there.",
            "This is the second sentence of a longer text.",
            "And here is a third one, which is longer still, to take its time.",
            "Finally a fourth sentence ends the text.",
        ]
    )
    arrivals: list[float] = []
    started = time.monotonic()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        for _ in response.iter_bytes(4096):
            arrivals.append(time.monotonic() - started)
    # The first bytes come while the later clauses are still being synthesized, not after.
    assert len(arrivals) > 4
    assert arrivals[0] < 0.5 * arrivals[-1], arrivals


def test_sse_sends_base64_deltas_then_done(client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Good morning!", response_format="pcm",
        stream_format="sse",
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line.removeprefix("data: "))
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(audio) / 2 / 24000 > 0.4


def test_speed_changes_how_long_the_speech_lasts(client: openai.OpenAI) -> None:
    def seconds(speed: float) -> float:
        raw = client.audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm", speed=speed
        ).read()
        return len(raw) / 2 / 24000

    assert seconds(2.0) < 0.75 * seconds(1.0)


def test_an_unknown_voice_or_model_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi")  # type: ignore[arg-type]
    assert raised.value.param == "voice"
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="elevenlabs", voice="alloy", input="Hi")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="   ")

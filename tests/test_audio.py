"""Audio helpers: PCM/WAV conversions, decoding real encoded uploads, limits and bad input."""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
import pytest

from eva.audio import (
    AudioDecodeError,
    AudioTooLongError,
    decode_audio,
    float_to_pcm16,
    pcm16_to_float,
    resample_linear,
    wav_bytes,
)

TONE_HZ = 440.0


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


def _encode_tone(
    container_format: str,
    codecs: Sequence[str],
    rate: int = 48_000,
    layout: str = "mono",
    seconds: float = 1.0,
) -> bytes:
    """A sine at TONE_HZ encoded with the first of ``codecs`` this FFmpeg build can encode."""
    codec = next((c for c in codecs if _has_encoder(c)), None)
    if codec is None:
        pytest.skip(f"PyAV's bundled FFmpeg has no encoder among {list(codecs)}")
    channels = 2 if layout == "stereo" else 1
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    planar = np.tile(tone, (channels, 1))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout=layout)
        if codec in ("opus", "vorbis"):  # FFmpeg's native encoders are marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        chunk = 960
        for start in range(0, planar.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + chunk]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def _dominant_hz(audio: np.ndarray[Any, Any], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * rate / audio.size)


# (id, container, encoder candidates, input rate, layout)
ENCODED_FORMATS = [
    ("webm-opus", "webm", ["libopus", "opus"], 48_000, "mono"),
    ("ogg-opus", "ogg", ["libopus", "opus"], 48_000, "mono"),
    ("ogg-vorbis", "ogg", ["libvorbis", "vorbis"], 48_000, "stereo"),
    ("mp3", "mp3", ["libmp3lame", "mp3"], 48_000, "mono"),
    ("m4a-aac", "ipod", ["aac"], 48_000, "mono"),
    ("wav-44k-stereo", "wav", ["pcm_s16le"], 44_100, "stereo"),
]


@pytest.mark.parametrize(
    ("container_format", "codecs", "rate", "layout"),
    [pytest.param(*spec[1:], id=spec[0]) for spec in ENCODED_FORMATS],
)
def test_decode_audio_reads_real_encoded_files_as_16k_mono(
    container_format: str,
    codecs: list[str],
    rate: int,
    layout: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = _encode_tone(container_format, codecs, rate=rate, layout=layout)
    capfd.readouterr()  # drop anything the encoders said

    audio = decode_audio(data, sample_rate=16_000)

    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert audio.size == pytest.approx(16_000, rel=0.05)
    assert _dominant_hz(audio, 16_000) == pytest.approx(TONE_HZ, abs=5)
    assert 0.2 < float(np.max(np.abs(audio))) < 1.0
    # Normal files decode silently: no FFmpeg warnings on the server's stderr.
    assert capfd.readouterr().err == ""


def test_decode_audio_resamples_to_requested_rate() -> None:
    data = _encode_tone("wav", ["pcm_s16le"], rate=44_100, layout="stereo")
    audio = decode_audio(data, sample_rate=24_000)
    assert audio.size == pytest.approx(24_000, rel=0.01)
    assert _dominant_hz(audio, 24_000) == pytest.approx(TONE_HZ, abs=5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(bytes(range(256)) * 64, "", id="garbage"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "", id="png-header"),
        pytest.param(b"Dear Eva,\nthis is a plain text file, not audio.\n" * 40, "", id="text"),
    ],
)
def test_decode_audio_rejects_non_audio_with_useful_message(data: bytes, message: str) -> None:
    with pytest.raises(AudioDecodeError) as excinfo:
        decode_audio(data)
    text = str(excinfo.value)
    assert message in text
    assert any(word in text for word in ("empty", "audio", "recognised")), text


def test_decode_audio_rejects_file_without_audio_stream() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        stream: Any = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        decode_audio(buffer.getvalue())


@pytest.mark.parametrize(
    ("container_format", "codecs"),
    [
        pytest.param("wav", ["pcm_s16le"], id="wav"),
        pytest.param("webm", ["libopus", "opus"], id="webm"),
    ],
)
def test_audio_longer_than_limit_raises_too_long(container_format: str, codecs: list[str]) -> None:
    data = _encode_tone(
        container_format, codecs, rate=16_000 if container_format == "wav" else 48_000, seconds=5
    )
    with pytest.raises(AudioTooLongError) as excinfo:
        decode_audio(data, max_seconds=2)
    assert excinfo.value.limit == 2
    assert excinfo.value.seconds > 2
    assert isinstance(excinfo.value, AudioDecodeError)
    assert "2 s limit" in str(excinfo.value)
    # Under the limit the same file decodes fine.
    assert decode_audio(data, max_seconds=6).size == pytest.approx(5 * 16_000, rel=0.05)


def test_too_long_audio_stops_decoding_soon_after_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _encode_tone("wav", ["pcm_s16le"], rate=16_000, seconds=60)
    fed: list[int] = []
    real_resampler = av.AudioResampler

    class CountingResampler:
        def __init__(self, **kwargs: Any) -> None:
            self._inner = real_resampler(**kwargs)

        def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
            if frame is not None:
                fed.append(frame.samples)
            return self._inner.resample(frame)

    monkeypatch.setattr(av, "AudioResampler", CountingResampler)
    with pytest.raises(AudioTooLongError) as excinfo:
        decode_audio(data, max_seconds=2)
    assert sum(fed) / 16_000 < 3  # stopped after ~2 s, not 60
    assert excinfo.value.seconds == pytest.approx(60, rel=0.01)  # the stated duration


def test_wav_bytes_round_trip() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    data = wav_bytes(pcm, 22_050)
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22_050)
        frames = wav.readframes(wav.getnframes())
    assert np.array_equal(np.frombuffer(frames, dtype="<i2"), pcm)
    # And through the full decoder, which must read our own WAVs.
    decoded = decode_audio(data, sample_rate=22_050)
    assert np.allclose(decoded, pcm16_to_float(pcm), atol=1e-4)


def test_wav_bytes_rejects_stereo_arrays_and_bad_rate() -> None:
    with pytest.raises(ValueError):
        wav_bytes(np.zeros((2, 10), dtype=np.int16), 16_000)
    with pytest.raises(ValueError):
        wav_bytes(np.zeros(10, dtype=np.int16), 0)


def test_float_to_pcm16_scales_rounds_and_clips() -> None:
    audio = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e-5, np.nan], dtype=np.float32)
    pcm = float_to_pcm16(audio)
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [0, 32767, -32767, 16384, 32767, -32767, 0, 0]


def test_pcm16_to_float_from_array_and_little_endian_bytes() -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    from_array = pcm16_to_float(pcm)
    from_bytes = pcm16_to_float(pcm.astype("<i2").tobytes())
    assert from_array.dtype == from_bytes.dtype == np.float32
    assert from_array.tolist() == from_bytes.tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    assert pcm16_to_float(b"\x01\x00").tolist() == [1 / 32768]  # little-endian


def test_float_pcm_round_trip_is_within_one_step() -> None:
    audio = np.random.default_rng(0).uniform(-1, 1, 10_000).astype(np.float32)
    assert np.max(np.abs(pcm16_to_float(float_to_pcm16(audio)) - audio)) < 2 / 32768


def test_pcm16_odd_byte_count_raises_decode_error() -> None:
    with pytest.raises(AudioDecodeError, match="even number of bytes"):
        pcm16_to_float(b"\x00\x01\x02")


def test_resample_linear_length_and_identity() -> None:
    audio = np.sin(np.linspace(0, 20, 22_050)).astype(np.float32)
    assert resample_linear(audio, 22_050, 22_050) is audio
    down = resample_linear(audio, 22_050, 16_000)
    assert down.dtype == np.float32
    assert down.size == 16_000
    assert resample_linear(audio, 22_050, 48_000).size == 48_000
    assert resample_linear(np.zeros(0, np.float32), 22_050, 16_000).size == 0
    # Linear interpolation keeps a slow signal's shape: compare with the analytic values.
    expected = np.sin(np.arange(16_000) * (22_050 / 16_000) * (20 / (22_050 - 1)))
    assert np.allclose(down, expected, atol=1e-3)

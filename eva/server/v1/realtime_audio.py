"""The audio formats of OpenAI's Realtime protocol, to and from Eva's own.

Realtime audio is PCM16 at 24 kHz, or G.711 (mu-law or A-law) at 8 kHz for telephony. Eva
listens at 16 kHz and speaks at her voice's rate (22.05 kHz for Piper). FFmpeg, through
PyAV, resamples and does G.711; each direction keeps one resampler for the stream, so that
chunk edges add no clicks.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

from eva.engines.base import STT_SAMPLE_RATE, Int16Audio

AudioFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
PCM_RATE = 24_000
G711_RATE = 8_000
_G711_CODECS = {"audio/pcmu": "pcm_mulaw", "audio/pcma": "pcm_alaw"}


def _g711(audio_format: AudioFormat, mode: Literal["r", "w"]) -> AudioCodecContext:
    context = av.CodecContext.create(_G711_CODECS[audio_format], mode)
    assert isinstance(context, AudioCodecContext)
    context.sample_rate = G711_RATE
    context.layout = "mono"
    if mode == "w":
        context.format = "s16"
    return context


def format_rate(audio_format: AudioFormat) -> int:
    return PCM_RATE if audio_format == "audio/pcm" else G711_RATE


class _Resampler:
    """Mono PCM16 from one rate to another, as a stream."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.source_rate = source_rate
        self._resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=target_rate)
            if source_rate != target_rate
            else None
        )

    def __call__(self, pcm: Int16Audio) -> Int16Audio:
        if self._resampler is None or not pcm.size:
            return pcm
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.source_rate
        frame.time_base = Fraction(1, self.source_rate)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.int16) if out else np.zeros(0, dtype=np.int16)


class InputAudio:
    """What a client appends, as the 16 kHz PCM16 Eva listens to."""

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._decoder: AudioCodecContext | None = None
        if audio_format in _G711_CODECS:
            self._decoder = _g711(audio_format, "r")
        self._resample = _Resampler(format_rate(audio_format), STT_SAMPLE_RATE)

    def samples(self, data: bytes) -> int:
        """How many samples of the client's format ``data`` holds."""
        return len(data) // 2 if self._decoder is None else len(data)

    def decode(self, data: bytes) -> Int16Audio:
        if self._decoder is None:
            pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
        else:
            frames = self._decoder.decode(av.Packet(data))
            parts = [f.to_ndarray().reshape(-1) for f in frames]
            pcm = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
        return self._resample(pcm)


class OutputAudio:
    """Eva's voice (PCM16 at ``voice_rate``) as the client asked to hear it."""

    def __init__(self, audio_format: AudioFormat, voice_rate: int) -> None:
        self.format = audio_format
        self.voice_rate = voice_rate
        self._resample = _Resampler(voice_rate, format_rate(audio_format))
        self._encoder: AudioCodecContext | None = None
        if audio_format in _G711_CODECS:
            self._encoder = _g711(audio_format, "w")

    @property
    def rate(self) -> int:
        return format_rate(self.format)

    def encode(self, pcm: Int16Audio) -> bytes:
        resampled = self._resample(pcm)
        if self._encoder is None:
            return resampled.astype("<i2").tobytes()
        if not resampled.size:
            return b""
        frame = av.AudioFrame.from_ndarray(resampled.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = G711_RATE
        return b"".join(bytes(p) for p in self._encoder.encode(frame))

"""Speech as the OpenAI API's ``response_format``s, encoded as it is synthesized.

``StreamEncoder.push`` takes each PCM16 chunk as it leaves the synthesizer and returns the
bytes that are ready to send, so the first bytes of every format leave after the first
clause. PyAV (FFmpeg's encoders, already installed for decoding uploads) does mp3, opus,
aac and flac; wav and pcm are written here, since they are only a header and the samples.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from av.audio.stream import AudioStream

from eva.engines.base import Int16Audio

ResponseFormat = Literal["wav", "pcm", "mp3", "opus", "flac", "aac"]

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}
# OpenAI's "pcm" is raw 16-bit little-endian mono at 24 kHz, and clients assume that rate.
PCM_RATE = 24_000
# Opus runs at 8, 12, 16, 24 or 48 kHz; 24 kHz keeps all of a voice (Piper's are 22.05 kHz).
OPUS_RATE = 24_000
# Ogg holds packets until a page is full, a second of audio by default: 100 ms pages let
# each clause's audio leave when it is encoded, for 3 % more bytes.
OGG_PAGE_US = "100000"
# A WAV whose length is not known when its header leaves: the sizes say "until the end"
# (FFmpeg, browsers and the SDKs' players read such a stream to its end).
_UNKNOWN_SIZE = 0xFFFFFFFF

# format -> (container, codec, sample rate or None for the voice's own)
_CODECS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", OPUS_RATE),
    "aac": ("adts", "aac", None),
    "flac": ("flac", "flac", None),
}


def wav_stream_header(rate: int) -> bytes:
    """A PCM16 mono WAV header for a stream whose length is not known yet."""
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


class _Sink:
    """A write-only, unseekable file for PyAV: collects what the muxer writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


class StreamEncoder:
    """Encodes one stream of mono PCM16 at ``rate`` into ``response_format``."""

    def __init__(self, response_format: ResponseFormat, rate: int) -> None:
        self.format = response_format
        self.media_type = MEDIA_TYPES[response_format]
        self._rate = rate
        self._header_sent = False
        self._resampler: av.AudioResampler | None = None
        self._container: av.container.OutputContainer | None = None
        if response_format == "pcm" and rate != PCM_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
        if response_format in _CODECS:
            container, codec, codec_rate = _CODECS[response_format]
            self._sink = _Sink()
            options = {"page_duration": OGG_PAGE_US} if container == "ogg" else {}
            self._container = av.open(self._sink, mode="w", format=container, options=options)
            stream = self._container.add_stream(codec, rate=codec_rate or rate, layout="mono")
            assert isinstance(stream, AudioStream)
            self._stream = stream
        self._samples = 0

    def push(self, pcm: Int16Audio) -> bytes:
        """The bytes ready to send once ``pcm`` is in (possibly none yet)."""
        if self.format == "wav":
            head = b"" if self._header_sent else wav_stream_header(self._rate)
            self._header_sent = True
            return head + pcm.astype("<i2").tobytes()
        if self.format == "pcm":
            return self._pcm(self._frame(pcm))
        return self._encode(self._frame(pcm))

    def finish(self) -> bytes:
        """The last bytes: what the encoder held back, and the container's trailer."""
        if self.format == "wav":
            return b"" if self._header_sent else wav_stream_header(self._rate)
        if self.format == "pcm":
            return self._pcm(None)
        assert self._container is not None
        data = self._encode(None)
        self._container.close()
        return data + self._sink.take()

    def _frame(self, pcm: Int16Audio) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._samples
        self._samples += len(pcm)
        return frame

    def _pcm(self, frame: av.AudioFrame | None) -> bytes:
        if self._resampler is None:
            return b"" if frame is None else frame.to_ndarray().astype("<i2").tobytes()
        return b"".join(
            out.to_ndarray().astype("<i2").tobytes() for out in self._resampler.resample(frame)
        )

    def _encode(self, frame: av.AudioFrame | None) -> bytes:
        assert self._container is not None
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

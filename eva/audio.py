"""Audio conversions shared by the HTTP uploads, the TTS output and the WebSocket PCM stream.

Inside Eva audio is mono float32 in [-1, 1]; on the wire it is little-endian 16-bit PCM or a
WAV file. Uploaded recordings (whatever a browser or phone produced) are decoded with PyAV,
the FFmpeg binding that faster-whisper already depends on.
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np
from numpy.typing import NDArray

# 32767 rather than 32768 on the way out, so +1.0 maps to the largest int16 instead of
# wrapping around; 32768 on the way in, so every int16 lands inside [-1, 1).
_PCM16_OUT_SCALE = 32767.0
_PCM16_IN_SCALE = 32768.0


class AudioDecodeError(ValueError):
    """The input is not decodable audio; the message says why (safe to show to a client)."""


class AudioTooLongError(AudioDecodeError):
    """The audio is longer than the caller's limit.

    ``seconds`` is the container's stated duration when it has one, otherwise how much had
    been decoded when decoding stopped (just over ``limit``).
    """

    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"audio is longer than the {limit:g} s limit ({seconds:.1f} s)")
        self.seconds = seconds
        self.limit = limit


def float_to_pcm16(audio: NDArray[np.float32]) -> NDArray[np.int16]:
    """Float samples to int16, clipping out-of-range values rather than wrapping them."""
    # A NaN would otherwise cast to an arbitrary int16 and come out as a click.
    clean = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0)
    scaled: NDArray[np.float32] = np.rint(np.clip(clean, -1.0, 1.0) * _PCM16_OUT_SCALE)
    return scaled.astype(np.int16)


def pcm16_to_float(pcm: NDArray[np.int16] | bytes) -> NDArray[np.float32]:
    """int16 samples, or raw little-endian 16-bit PCM bytes, to float32 in [-1, 1)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise AudioDecodeError(f"16-bit PCM must have an even number of bytes, got {len(raw)}")
        samples = np.frombuffer(raw, dtype="<i2")
    else:
        samples = np.asarray(pcm, dtype=np.int16)
    return (samples.astype(np.float32) / np.float32(_PCM16_IN_SCALE)).astype(np.float32)


def wav_bytes(pcm: NDArray[np.int16], sample_rate: int) -> bytes:
    """A complete mono 16-bit WAV file holding ``pcm``."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples = np.asarray(pcm, dtype=np.int16)
    if samples.ndim != 1:
        raise ValueError(f"expected mono (1-D) samples, got shape {samples.shape}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def decode_audio(
    data: bytes, sample_rate: int = 16000, max_seconds: float | None = None
) -> NDArray[np.float32]:
    """Decode a recording in any common container/codec to mono float32 at ``sample_rate``.

    Handles WAV, WebM/Opus, Ogg (Opus or Vorbis), MP3 and M4A/AAC: whatever FFmpeg can read.
    With ``max_seconds``, decoding stops as soon as the limit is passed, so an over-long
    upload costs at most ``max_seconds`` of decoding and raises ``AudioTooLongError``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if not data:
        raise AudioDecodeError("the audio file is empty")
    try:
        # metadata_errors="ignore": a tag in a broken encoding must not reject the audio.
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"not a recognised audio file ({_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        stream = container.streams.audio[0]
        # Stated duration (microseconds), only used to report how long a rejected file is.
        stated = container.duration / 1_000_000 if container.duration else None
        limit_samples = None if max_seconds is None else int(max_seconds * sample_rate)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[NDArray[np.float32]] = []

        def resample(frame: av.AudioFrame | None) -> int:
            """Resample into ``chunks``; None flushes what the resampler still holds."""
            added = 0
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                chunks.append(chunk)
                added += chunk.size
            return added

        decoded = 0
        try:
            # demux() ends with an empty packet whose decode() flushes the decoder.
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.InvalidDataError:
                    # One corrupt packet (e.g. a recording cut mid-frame) costs a few ms of
                    # audio, not the whole upload; a file with nothing valid fails below.
                    continue
                for frame in frames:
                    decoded += resample(frame)
                if limit_samples is not None and decoded > limit_samples:
                    assert max_seconds is not None
                    seconds = stated if stated and stated > max_seconds else decoded / sample_rate
                    raise AudioTooLongError(seconds, max_seconds)
            decoded += resample(None)
        except AudioDecodeError:
            raise
        except (av.FFmpegError, ValueError) as exc:
            # ValueError: PyAV's resampler refuses a stream whose format changes part-way.
            raise AudioDecodeError(f"the audio could not be decoded ({_reason(exc)})") from exc
    if decoded == 0:
        raise AudioDecodeError("the file contains no decodable audio")
    return np.concatenate(chunks)


def resample_linear(
    audio: NDArray[np.float32], src_rate: int, dst_rate: int
) -> NDArray[np.float32]:
    """Resample by linear interpolation: cheap, and good enough for short TTS chunks.

    No low-pass filter, so downsampling aliases a little; use ``decode_audio`` (FFmpeg's
    resampler) for recordings.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    samples = np.asarray(audio, dtype=np.float32)
    if src_rate == dst_rate or samples.size == 0:
        return samples
    out_len = round(samples.size * dst_rate / src_rate)
    # Output sample i sits at time i / dst_rate, i.e. at input position i * src / dst.
    positions = np.arange(out_len, dtype=np.float64) * (src_rate / dst_rate)
    resampled = np.interp(positions, np.arange(samples.size, dtype=np.float64), samples)
    return resampled.astype(np.float32)


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words ("Invalid data found when processing input") without the file repr."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)

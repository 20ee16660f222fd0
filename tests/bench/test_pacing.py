"""The bench streams speech like a microphone: at real-time pace, never ahead of it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from eva.bench.voice import FRAME_SAMPLES, SAMPLE_RATE, frame_schedule, stream_audio


def test_frame_schedule_ends_exactly_when_the_audio_does() -> None:
    for samples in (1, FRAME_SAMPLES, FRAME_SAMPLES + 1, 16000, 16000 * 3 + 123):
        due = frame_schedule(samples)
        assert len(due) == -(-samples // FRAME_SAMPLES)
        assert due[-1] == pytest.approx(samples / SAMPLE_RATE)
        steps = np.diff([0.0, *due])
        assert np.all(steps[:-1] == pytest.approx(FRAME_SAMPLES / SAMPLE_RATE))
        assert 0 < steps[-1] <= FRAME_SAMPLES / SAMPLE_RATE + 1e-12


class _RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    async def send(self, frame: bytes) -> None:
        self.sent.append((time.monotonic(), frame))


async def test_streamed_audio_takes_its_own_duration_and_is_sent_whole() -> None:
    pcm = (np.arange(12_345) % 3000).astype(np.int16)  # 0.77 s, the last frame partial
    socket = _RecordingSocket()
    started = time.monotonic()
    ended = await stream_audio(socket, pcm)
    assert ended - started == pytest.approx(len(pcm) / SAMPLE_RATE, abs=0.06)
    assert b"".join(frame for _, frame in socket.sent) == pcm.astype("<i2").tobytes()
    # frame k leaves once the k frames before it have played, not earlier
    for index, (at, _) in enumerate(socket.sent):
        assert at - started >= index * FRAME_SAMPLES / SAMPLE_RATE - 0.002

"""A test client for /ws: streams microphone audio at real-time pace, records what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from eva.audio import resample_linear
from eva.engines.runtime import Engines

FRAME_SAMPLES = 640  # 40 ms at 16 kHz, as a browser worklet would send
_SILENCE_LEVEL = 500  # PCM16 amplitude under which synthesized audio is silence


def speech(engines: Engines, text: str, voice: str | None = None) -> np.ndarray:
    """``text`` spoken by one of Eva's voices, as 16 kHz PCM16 (a stand-in for a person),
    with the synthesizer's own leading and trailing silence cut, so that the silences a
    test adds are the real pauses."""
    info = engines.tts.info(voice)
    pcm = np.concatenate(list(engines.tts.synthesize(text, info.id, threading.Event())))
    audio = resample_linear(pcm.astype(np.float32), info.sample_rate, 16000).astype(np.int16)
    voiced = np.flatnonzero(np.abs(audio) > _SILENCE_LEVEL)
    if voiced.size == 0:
        return audio
    return audio[voiced[0] : voiced[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.int16)


@dataclass
class Received:
    at: float
    event: dict[str, Any] | None = None
    audio: bytes | None = None


@dataclass
class VoiceClient:
    socket: Any
    received: list[Received] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, base_url: str, query: str = "") -> VoiceClient:
        url = base_url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")
        client = cls(await websockets.connect(url, max_size=2**22))
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.socket:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.received.append(Received(now, audio=message))
                else:
                    self.received.append(Received(now, event=json.loads(message)))
                self._arrived.set()

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(data))

    async def stream(self, pcm: np.ndarray, realtime: bool = True) -> float:
        """Send ``pcm`` in 40 ms frames at real-time pace; returns when the last was sent."""
        started = time.monotonic()
        for index, start in enumerate(range(0, len(pcm), FRAME_SAMPLES)):
            await self.socket.send(pcm[start : start + FRAME_SAMPLES].astype("<i2").tobytes())
            if realtime:
                due = started + (index + 1) * FRAME_SAMPLES / 16000
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        return time.monotonic()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            r.event for r in self.received if r.event and (kind is None or r.event["type"] == kind)
        ]

    def first(self, kind: str) -> Received:
        return next(r for r in self.received if r.event and r.event["type"] == kind)

    def audio_after(self, moment: float) -> list[Received]:
        return [r for r in self.received if r.audio is not None and r.at > moment]

    async def wait_for(self, kind: str, within: float = 60.0, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            found = self.events(kind)
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [e["type"] for e in self.events()]
                raise TimeoutError(f"no {kind!r} after {within}s; got {kinds}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_for_reply(self, within: float = 60.0) -> dict[str, Any]:
        """The first ``response.done`` of a reply (not a line) that was not interrupted."""
        deadline = time.monotonic() + within
        while True:
            for done in self.events("response.done"):
                if not done["interrupted"] and "purpose" not in done:
                    return done
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no uninterrupted reply after {within}s: {self.events()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_for_audio(
        self, seconds: float, rate: int = 22050, within: float = 60.0
    ) -> float:
        """Wait until ``seconds`` of reply audio arrived; returns when."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            total = sum(len(r.audio) for r in self.received if r.audio is not None) / 2 / rate
            if total >= seconds:
                return time.monotonic()
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 1.0)
        raise TimeoutError(f"less than {seconds}s of audio after {within}s")

    async def close(self) -> None:
        await self.socket.close()
        if self._reader is not None:
            await self._reader

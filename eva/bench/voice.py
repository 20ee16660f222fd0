"""Voice turns over ``/ws``, measured from the client: utterances made for this run only,
streamed at real-time pace like a microphone.

- voice-to-voice: from the end of speech in the streamed audio to the first reply audio
  frame received;
- STT: the server's transcription time after the end of speech, and the word error rate
  of ``transcript.final`` against the text that was spoken;
- barge-in: the person speaks over a long reply; from the moment the barge-in speech
  starts (as sent) to the last reply audio frame received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jiwer
import numpy as np
import websockets

from eva.audio import resample_linear
from eva.config import Settings
from eva.engines import registry

FRAME_SAMPLES = 640  # 40 ms at 16 kHz, what a browser worklet sends
_SILENCE_LEVEL = 500

_PEOPLE = ["my sister", "my neighbour", "my best friend", "my uncle", "my daughter", "my coach"]
_DOINGS = [
    "is learning to paint",
    "bought a red bicycle",
    "moved to the seaside",
    "started a small bakery",
    "is training for a marathon",
    "found an old photo album",
]
_QUESTIONS = [
    "What do you think about that?",
    "Should I visit them soon?",
    "Is that a good idea?",
    "What would you say to them?",
    "Have you ever tried it?",
]


def unique_utterances(count: int, rng: random.Random) -> list[str]:
    made: set[str] = set()
    while len(made) < count:
        made.add(
            f"{rng.choice(_PEOPLE).capitalize()} {rng.choice(_DOINGS)} "
            f"{rng.choice(['this week', 'last month', 'on Sunday', 'again'])}. "
            f"{rng.choice(_QUESTIONS)}"
        )
    return sorted(made, key=lambda _: rng.random())


class Speaker:
    """Speech made in this process with Eva's own packaged voice (a stand-in for a person)."""

    def __init__(self) -> None:
        self.tts = registry.create("tts", "piper", Settings(tts_threads=1))
        self.voice = self.tts.voices()[0]

    def say(self, text: str) -> np.ndarray:
        pcm = np.concatenate(list(self.tts.synthesize(text, self.voice.id, threading.Event())))
        audio = resample_linear(pcm.astype(np.float32), self.voice.sample_rate, 16000)
        voiced = np.flatnonzero(np.abs(audio) > _SILENCE_LEVEL)
        return audio[voiced[0] : voiced[-1] + 1].astype(np.int16)


@dataclass
class _Connection:
    socket: Any
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio_at: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.socket:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.audio_at.append(now)
                else:
                    self.events.append((now, json.loads(message)))
                self.changed.set()

    def first(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        return next(((t, e) for t, e in self.events if e["type"] == kind), None)

    async def until(self, condition: Any, within: float, what: str) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def wait(self, kind: str, within: float) -> tuple[float, dict[str, Any]]:
        await self.until(lambda: self.first(kind) is not None, within, kind)
        found = self.first(kind)
        assert found is not None
        return found


async def _stream(socket: Any, pcm: np.ndarray) -> float:
    """Send at real-time pace; returns when the last sample was sent."""
    started = time.monotonic()
    for index, start in enumerate(range(0, len(pcm), FRAME_SAMPLES)):
        await socket.send(pcm[start : start + FRAME_SAMPLES].astype("<i2").tobytes())
        await asyncio.sleep(
            max(0.0, started + (index + 1) * FRAME_SAMPLES / 16000 - time.monotonic())
        )
    return time.monotonic()


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


async def voice_turn(url: str, spoken: str, pcm: np.ndarray) -> dict[str, float]:
    async with websockets.connect(url, max_size=2**22) as socket:
        connection = _Connection(socket)
        reader = asyncio.create_task(connection.read())
        await connection.wait("session.created", 10)
        lead = np.zeros(8000, np.int16)
        await _stream(socket, lead)
        speech_end = await _stream(socket, pcm)
        tail = asyncio.create_task(_stream(socket, np.zeros(16000 * 3, np.int16)))
        _, done = await connection.wait("response.done", 60)
        tail.cancel()
        first_audio = next((t for t in connection.audio_at if t > speech_end), float("nan"))
        final = connection.first("transcript.final")
        heard = final[1]["text"] if final else ""
        reader.cancel()
    timings = done.get("timings", {})
    return {
        "voice_to_voice_ms": (first_audio - speech_end) * 1000,
        "server_voice_to_voice_ms": timings.get("voice_to_voice_ms", float("nan")),
        "stt_ms": timings.get("stt_ms", float("nan")),
        "wer": jiwer.wer(_words(spoken), _words(heard)) if heard else 1.0,
    }


async def barge_in(url: str, interruption: np.ndarray) -> dict[str, float]:
    async with websockets.connect(url, max_size=2**22) as socket:
        connection = _Connection(socket)
        reader = asyncio.create_task(connection.read())
        await connection.wait("session.created", 10)
        await socket.send(
            json.dumps(
                {
                    "type": "text",
                    "text": "Tell me a long story about "
                    f"a sailor number {random.randint(1, 10**6)}.",
                }
            )
        )
        # about a second of reply audio (40 ms frames)
        await connection.until(lambda: len(connection.audio_at) >= 25, 30, "reply audio")
        speaking_from = time.monotonic()
        await _stream(socket, interruption)
        await connection.wait("response.done", 30)
        started = connection.first("speech.started")
        last_audio = max(connection.audio_at)
        reader.cancel()
    return {
        "barge_in_stop_ms": (last_audio - speaking_from) * 1000,
        "stop_after_speech_started_ms": max(0.0, (last_audio - started[0]) * 1000)
        if started
        else float("nan"),
    }


def run_voice(base: str, count: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    url = base.replace("http://", "ws://") + "/ws"
    speaker = Speaker()
    results: dict[str, list[float]] = {}
    for text in unique_utterances(count, rng):
        for name, value in asyncio.run(voice_turn(url, text, speaker.say(text))).items():
            results.setdefault(name, []).append(value)
    interruption = speaker.say("Wait, sorry, can I ask something else?")
    for _ in range(max(3, count // 3)):
        for name, value in asyncio.run(barge_in(url, interruption)).items():
            results.setdefault(name, []).append(value)
    return results
